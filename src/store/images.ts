/**
 * The EROFS image cache: <store>/erofs/images/<hex>.erofs, content-addressed
 * by the source's key (layer digests, a rootfs tar's digest, a directory's tree
 * hash), with <hex>.json beside it (names, the image config, how it was built).
 *
 * An image is built into <store>/erofs/tmp and renamed into place only when
 * complete, so a crash never leaves a half image under a key. One flock per key
 * makes two creates of one image build it once: the second waits, then finds it.
 */
import { existsSync, fsyncSync, mkdirSync, openSync, closeSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { HyperboxError } from '../errors.js';
import type { Native } from '../native/index.js';
import type { ImageConfig, ImageSource, SourceKind } from '../image/types.js';
import { writeFileAtomic } from './atomic.js';
import { holdLock, withLock } from './lock.js';
import { storeBase } from './profiles.js';

/** What is kept beside each image. */
export interface ImageMeta {
  format: 1;
  /** "sha256:<hex>": the cache key, and the image's ID. */
  id: string;
  names: string[];
  source: { kind: SourceKind; location: string };
  config: ImageConfig;
  createdAt: string;
  bytes: number;
  inodes: number;
  buildMs: number;
  warnings?: string[];
}

export function imageStoreDir(): string {
  return join(storeBase(), 'erofs');
}

const hexOf = (id: string): string => id.replace(/^sha256:/, '');
export const imageFile = (id: string): string => join(imageStoreDir(), 'images', `${hexOf(id)}.erofs`);
const metaFile = (id: string): string => join(imageStoreDir(), 'images', `${hexOf(id)}.json`);
const lockFile = (what: string): string => join(imageStoreDir(), 'locks', `${what}.lock`);
const tmpDir = (): string => join(imageStoreDir(), 'tmp');
const sourcesFile = (): string => join(imageStoreDir(), 'sources.json');

const NAME = /^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,254}$/;

/** Image names are names, never paths: no leading '/' or '.', no '..' or '//' , at most 255 characters. */
export function checkImageRef(ref: string): string {
  if (!NAME.test(ref) || ref.split('/').some((c) => c === '' || c === '.' || c === '..')) {
    throw new HyperboxError(
      'E_IMAGE_NAME',
      `bad image name ${JSON.stringify(ref)}: use a name from \`hyperbox-runc image ls\` (letters, digits and . _ : @ / + -, not a path) or an image ID`,
    );
  }
  return ref;
}

export function readImageMeta(id: string): ImageMeta | undefined {
  try {
    return JSON.parse(readFileSync(metaFile(id), 'utf8')) as ImageMeta;
  } catch {
    return undefined;
  }
}

function writeImageMeta(meta: ImageMeta): void {
  writeFileAtomic(metaFile(meta.id), JSON.stringify(meta, null, 2) + '\n', { mode: 0o600 });
}

/** Every complete image in the cache (one without its .json yet is listed with no names). */
export function listImages(): ImageMeta[] {
  let files: string[];
  try {
    files = readdirSync(join(imageStoreDir(), 'images'));
  } catch {
    return [];
  }
  const out: ImageMeta[] = [];
  for (const f of files.filter((f) => /^[0-9a-f]{64}\.erofs$/.test(f)).sort()) {
    const id = `sha256:${f.slice(0, 64)}`;
    out.push(
      readImageMeta(id) ?? {
        format: 1, id, names: [], source: { kind: 'rootfs-tar', location: '?' }, config: {},
        createdAt: statSync(imageFile(id)).mtime.toISOString(), bytes: statSync(imageFile(id)).size, inodes: 0, buildMs: 0,
      },
    );
  }
  return out;
}

/** An image by name, by ID ("sha256:<hex>") or by a unique ID prefix of 12+ hex digits. */
export function findImage(ref: string): ImageMeta | undefined {
  checkImageRef(ref);
  const images = listImages();
  const byName = images.find((m) => m.names.includes(ref));
  if (byName) return byName;
  const hex = ref.startsWith('sha256:') ? ref.slice(7) : /^[0-9a-f]{12,64}$/.test(ref) ? ref : undefined;
  if (!hex) return undefined;
  const hits = images.filter((m) => hexOf(m.id).startsWith(hex));
  if (hits.length > 1) throw new HyperboxError('E_IMAGE_NAME', `image ID prefix ${ref} is ambiguous: give more digits`);
  return hits[0];
}

/** findImage, or a clear error naming what there is. */
export function requireImage(ref: string): ImageMeta {
  const found = findImage(ref);
  if (!found) {
    throw new HyperboxError('E_IMAGE_MISSING', `no image ${JSON.stringify(ref)} in the cache (${imageStoreDir()}): build it with \`hyperbox-runc image build SOURCE --name ${ref}\` or see \`hyperbox-runc image ls\``);
  }
  return found;
}

/** A source file's identity for the rootfs-tar shortcut: a changed file never matches (ctime moves on every write). */
function fingerprint(path: string): string {
  const st = statSync(path, { bigint: true });
  return `${resolve(path)}|${st.dev}|${st.ino}|${st.size}|${st.mtimeNs}|${st.ctimeNs}`;
}

function readSources(): Record<string, string> {
  try {
    return JSON.parse(readFileSync(sourcesFile(), 'utf8')) as Record<string, string>;
  } catch {
    return {};
  }
}

/** The outcome of ensureImage. */
export interface EnsuredImage {
  meta: ImageMeta;
  /** False when the cache already had it. */
  built: boolean;
}

/**
 * The cached image for `location` (an archive, layout, tar or directory),
 * building it if the cache does not have it. `names` are added to the image's names.
 */
export async function ensureImage(nat: Native, location: string, names: string[] = []): Promise<EnsuredImage> {
  for (const n of names) checkImageRef(n);
  const { openSource } = await import('../image/source.js');
  const source = await openSource(location);
  /** Adds the names, under the image's lock (so never while the caller holds it). */
  const finishNames = (meta: ImageMeta, built: boolean): EnsuredImage => {
    const all = [...new Set([...meta.names, ...source.names, ...names])];
    if (all.length !== meta.names.length) {
      withLock(nat, lockFile(hexOf(meta.id)), () => {
        const current = readImageMeta(meta.id) ?? meta;
        current.names = [...new Set([...current.names, ...all])];
        writeImageMeta(current);
        meta = current;
      });
    }
    takeNames(meta.id, all);
    return { meta, built };
  };

  if (source.key) {
    const key = source.key;
    const release = holdLock(nat, lockFile(hexOf(key)), 'file');
    let meta: ImageMeta | undefined;
    let built = false;
    try {
      meta = existsSync(imageFile(key)) ? readImageMeta(key) : undefined;
      if (!meta) {
        meta = await buildInto(source, key);
        built = true;
      }
    } finally {
      release();
    }
    return finishNames(meta, built);
  }

  // A rootfs tar: its key is the digest of its bytes, known once read; a file seen before is looked up by identity.
  const print = fingerprint(source.location);
  const cached = (): ImageMeta | undefined => {
    const id = readSources()[print];
    return id && existsSync(imageFile(id)) ? readImageMeta(id) : undefined;
  };
  const known = cached();
  if (known) return finishNames(known, false);
  const release = holdLock(nat, lockFile(`src-${await hashText(print)}`), 'file');
  let meta: ImageMeta;
  let built = false;
  try {
    const again = cached();
    if (again) meta = again;
    else {
      meta = await buildInto(source, undefined);
      built = true;
      withLock(nat, lockFile('sources'), () => {
        const sources = readSources();
        sources[print] = meta.id;
        writeFileAtomic(sourcesFile(), JSON.stringify(sources, null, 2) + '\n', { mode: 0o600 });
      });
    }
  } finally {
    release();
  }
  return finishNames(meta, built);
}

async function hashText(text: string): Promise<string> {
  const { createHash } = await import('node:crypto'); // not on every Node start: features/ imports this module
  return createHash('sha256').update(text).digest('hex');
}

/** Builds the source into tmp/, fsyncs, and renames it under its key (unless another build got there first). */
async function buildInto(source: ImageSource, key: string | undefined): Promise<ImageMeta> {
  mkdirSync(tmpDir(), { recursive: true, mode: 0o700 });
  mkdirSync(join(imageStoreDir(), 'images'), { recursive: true, mode: 0o700 });
  const tmp = join(tmpDir(), `build-${process.pid}-${Date.now().toString(36)}.erofs`);
  const started = Date.now();
  const { buildErofs } = await import('../image/build.js');
  try {
    const result = await buildErofs(source.layers, tmp, source.layers.map((l, i) => `layer ${i + 1} of ${source.layers.length}${l.digest ? ` (${l.digest.slice(0, 19)})` : ''} of ${source.location}`));
    const id = key ?? source.keyAfterRead?.();
    if (!id) throw new HyperboxError('E_INTERNAL', `no cache key for ${source.location}`);
    const fd = openSync(tmp, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    const meta: ImageMeta = {
      format: 1,
      id,
      names: [],
      source: { kind: source.kind, location: source.location },
      config: source.config,
      createdAt: new Date().toISOString(),
      bytes: result.bytes,
      inodes: result.inodes,
      buildMs: Date.now() - started,
      ...(result.warnings.length ? { warnings: result.warnings } : {}),
    };
    if (existsSync(imageFile(id)) && readImageMeta(id)) {
      rmSync(tmp, { force: true });
      return readImageMeta(id)!;
    }
    renameSync(tmp, imageFile(id));
    writeImageMeta(meta);
    return meta;
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** A name belongs to one image: giving it to `id` takes it from any other. */
function takeNames(id: string, names: string[]): void {
  if (names.length === 0) return;
  for (const other of listImages()) {
    if (other.id === id || !other.names.some((n) => names.includes(n))) continue;
    other.names = other.names.filter((n) => !names.includes(n));
    writeImageMeta(other);
  }
}

/** Images mounted now: by file-backed source path, or through a loop device's backing file. */
export function mountedImages(nat: Native): Set<string> {
  const out = new Set<string>();
  let info = '';
  try {
    info = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return out;
  }
  for (const line of info.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const [fstype, source] = line.slice(sep + 3).split(' ');
    if (fstype !== 'erofs' || !source) continue;
    const file = source.startsWith('/dev/loop') ? nat.loopBackingFile(source) : source.replace(/\\040/g, ' ');
    const m = file ? /([0-9a-f]{64})\.erofs$/.exec(file) : null;
    // Only this store's files: another store may hold an image with the same key.
    if (m && file === imageFile(`sha256:${m[1]}`)) out.add(`sha256:${m[1]}`);
  }
  return out;
}

/** Removes a name, or (given an ID, or a name that was the last) the image itself; never one that is mounted. */
export function removeImage(nat: Native, ref: string): { removed: 'name' | 'image'; meta: ImageMeta } {
  const meta = requireImage(ref);
  return withLock(nat, lockFile(hexOf(meta.id)), () => {
    const byName = meta.names.includes(ref);
    if (byName && meta.names.length > 1) {
      meta.names = meta.names.filter((n) => n !== ref);
      writeImageMeta(meta);
      return { removed: 'name' as const, meta };
    }
    if (mountedImages(nat).has(meta.id)) {
      throw new HyperboxError('E_IMAGE_BUSY', `image ${ref} is mounted by a container: delete the container first`);
    }
    rmSync(imageFile(meta.id), { force: true });
    rmSync(metaFile(meta.id), { force: true });
    return { removed: 'image' as const, meta };
  });
}

/** What prune removed. */
export interface PruneResult {
  images: ImageMeta[];
  bytes: number;
  partial: number;
}

/**
 * Removes images nothing names (all unmounted images with `all`), builds left
 * half-done by a dead process, and source shortcuts to images that are gone.
 */
export function pruneImages(nat: Native, all: boolean): PruneResult {
  const result: PruneResult = { images: [], bytes: 0, partial: 0 };
  const mounted = mountedImages(nat);
  for (const meta of listImages()) {
    if (mounted.has(meta.id) || (!all && meta.names.length > 0)) continue;
    withLock(nat, lockFile(hexOf(meta.id)), () => {
      rmSync(imageFile(meta.id), { force: true });
      rmSync(metaFile(meta.id), { force: true });
    });
    result.images.push(meta);
    result.bytes += meta.bytes;
  }
  let tmps: string[] = [];
  try {
    tmps = readdirSync(tmpDir());
  } catch {
    /* none */
  }
  for (const f of tmps) {
    const pid = Number(/^build-(\d+)-/.exec(f)?.[1]);
    if (pid && existsSync(`/proc/${pid}`)) continue;
    rmSync(join(tmpDir(), f), { force: true });
    result.partial++;
  }
  // Lock files of images that are gone (a lock nobody holds is just a name).
  let locks: string[] = [];
  try {
    locks = readdirSync(join(imageStoreDir(), 'locks'));
  } catch {
    /* none */
  }
  for (const f of locks) {
    const m = /^([0-9a-f]{64})\.lock$/.exec(f);
    if (m && !existsSync(imageFile(`sha256:${m[1]}`))) rmSync(join(imageStoreDir(), 'locks', f), { force: true });
  }
  withLock(nat, lockFile('sources'), () => {
    const sources = readSources();
    const kept = Object.fromEntries(Object.entries(sources).filter(([, id]) => existsSync(imageFile(id))));
    if (Object.keys(kept).length !== Object.keys(sources).length) writeFileAtomic(sourcesFile(), JSON.stringify(kept, null, 2) + '\n', { mode: 0o600 });
  });
  return result;
}
