/**
 * A directory as an image source: one layer whose entries come from walking the
 * tree (lstat, never following symlinks), minus what its `.dockerignore`
 * excludes, the way `COPY . /` of a Docker build context would see it.
 *
 * The cache key is a stat-only tree hash (paths, kinds, modes, owners, sizes,
 * mtimes, ctimes, inode numbers, link targets, plus the .dockerignore text):
 * writing a file changes its ctime, so an unchanged key means unchanged content
 * without reading any data (the argument git's index makes). Files are checked
 * again when read, so a file written after the walk fails the build instead of
 * being cached under the old key.
 *
 * Node cannot read extended attributes, so directory entries carry none.
 */
import { createHash } from 'node:crypto';
import { lstat, open, readdir, readFile, readlink, stat, type FileHandle } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { join } from 'node:path';
import dockerignore from '@balena/dockerignore';
import { HyperboxError, reasonOf } from '../errors.js';
import type { EntryKind, ImageSource, LayerEntry, StreamedEntry } from './types.js';

const CHUNK = 256 * 1024;
const q = (s: string) => JSON.stringify(s);
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** An entry of the walk, with the stat its key and its later checks come from. */
interface Walked {
  entry: LayerEntry;
  abs: string;
  st: BigIntStats;
}

function kindOf(st: BigIntStats): EntryKind | undefined {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  return undefined;
}

/** glibc's major()/minor() of a dev_t. */
function devNumbers(rdev: bigint): [number, number] {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return [Number(major), Number(minor)];
}

function toEntry(path: string, st: BigIntStats, kind: EntryKind): LayerEntry {
  const ns = st.mtimeNs;
  const sec = ns >= 0n ? ns / 1_000_000_000n : -((-ns + 999_999_999n) / 1_000_000_000n);
  const entry: LayerEntry = {
    path,
    kind,
    mode: Number(st.mode & 0o7777n),
    uid: Number(st.uid),
    gid: Number(st.gid),
    mtimeSec: Number(sec),
    mtimeNsec: Number(ns - sec * 1_000_000_000n),
    size: kind === 'file' ? Number(st.size) : 0,
    xattrs: [],
  };
  if (kind === 'char' || kind === 'block') [entry.devMajor, entry.devMinor] = devNumbers(st.rdev);
  return entry;
}

/** The .dockerignore matcher, and whether it has '!' exceptions (then excluded dirs must still be walked). */
function matcherFor(text: string | undefined): { ignores(path: string): boolean; exceptions: boolean } {
  if (text === undefined) return { ignores: () => false, exceptions: false };
  // A CommonJS module whose types declare `export default`: the factory is `.default` (also at run time).
  const ig = dockerignore.default({ ignorecase: false }).add(text);
  const exceptions = text.split(/\r?\n/).some((l) => l.trim().startsWith('!'));
  return { ignores: (p) => ig.ignores(p), exceptions };
}

async function readIgnoreFile(dir: string): Promise<string | undefined> {
  try {
    return await readFile(join(dir, '.dockerignore'), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new HyperboxError('E_IMAGE', `cannot read ${join(dir, '.dockerignore')} (${reasonOf(e)})`, { cause: e });
  }
}

/**
 * Walks `dir` in sorted order (parents before children). An excluded directory
 * is entered only when '!' exceptions might re-include something below it, and
 * is then listed just before the first entry kept inside it (a file cannot
 * exist without its parent). Hard links are grouped by (dev, ino): the first
 * path kept is the file, later ones are 'hardlink' entries to it.
 */
async function walk(dir: string, ignoreText: string | undefined): Promise<Walked[]> {
  const matcher = matcherFor(ignoreText);
  const out: Walked[] = [];
  const firstPath = new Map<string, string>();

  // stat, not lstat: the directory may be named through a symlink.
  const rootSt = await stat(dir, { bigint: true });
  out.push({ entry: toEntry('', rootSt, 'dir'), abs: dir, st: rootSt });

  const visit = async (rel: string, abs: string, pending: Walked[]): Promise<void> => {
    let raw: Buffer[];
    try {
      raw = await readdir(abs, { encoding: 'buffer' });
    } catch (e) {
      throw new HyperboxError('E_IMAGE', `cannot read the directory ${abs} (${reasonOf(e)})`, { cause: e });
    }
    raw.sort(Buffer.compare);
    for (const nameBytes of raw) {
      let name: string;
      try {
        name = utf8.decode(nameBytes);
      } catch {
        throw new HyperboxError('E_IMAGE', `${abs} holds a file whose name is not valid UTF-8 (${q(nameBytes.toString('latin1'))}): rename it or exclude it in .dockerignore`);
      }
      const path = rel ? `${rel}/${name}` : name;
      const childAbs = join(abs, name);
      let st: BigIntStats;
      try {
        st = await lstat(childAbs, { bigint: true });
      } catch (e) {
        throw new HyperboxError('E_IMAGE', `cannot read ${childAbs} (${reasonOf(e)}): was it removed while the directory was read?`, { cause: e });
      }
      const kind = kindOf(st);
      if (!kind) throw new HyperboxError('E_IMAGE', `${childAbs} is of a file type an image cannot hold`);
      const excluded = matcher.ignores(path);
      const item: Walked = { entry: toEntry(path, st, kind), abs: childAbs, st };
      if (kind === 'dir') {
        if (!excluded) {
          out.push(...pending.splice(0), item);
          await visit(path, childAbs, []);
        } else if (matcher.exceptions) {
          const below = [...pending, item];
          await visit(path, childAbs, below);
          // Whatever `visit` emitted took the pending parents with it; ours must not be emitted twice.
          if (below.length === 0) pending.length = 0;
        }
        continue;
      }
      if (excluded) continue;
      out.push(...pending.splice(0));
      if (kind === 'symlink') item.entry.linkTarget = await readlink(childAbs);
      if (st.nlink > 1n) {
        const id = `${st.dev}:${st.ino}`;
        const first = firstPath.get(id);
        if (first === undefined) {
          firstPath.set(id, path);
        } else {
          item.entry = { ...toEntry(path, st, 'hardlink'), linkTarget: first };
        }
      }
      out.push(item);
    }
  };
  await visit('', dir, []);
  return out;
}

/** The stat-only tree hash (see the module comment). */
function treeKey(walked: Walked[], ignoreText: string | undefined): string {
  const h = createHash('sha256');
  h.update('hyperbox-erofs-dir-v1\n');
  for (const { entry: e, st } of walked) {
    const fields = [e.path, e.kind, e.mode, e.uid, e.gid, e.size, st.mtimeNs, st.ctimeNs, st.ino, st.dev, e.linkTarget ?? '', e.devMajor ?? '', e.devMinor ?? ''];
    h.update(`${fields.join('\0')}\n`);
  }
  h.update(`dockerignore\0${ignoreText ?? ''}`);
  return `sha256:${h.digest('hex')}`;
}

/** A file's data, refused if the file is no longer what the walk saw. */
async function* fileBody(w: Walked): AsyncGenerator<Buffer> {
  const changed = (detail: string) =>
    new HyperboxError('E_IMAGE', `${w.abs} changed while the image was being built (${detail}): build again once nothing writes to it`);
  let fh: FileHandle;
  try {
    fh = await open(w.abs, 'r');
  } catch (e) {
    throw new HyperboxError('E_IMAGE', `cannot read ${w.abs} (${reasonOf(e)})`, { cause: e });
  }
  try {
    const size = w.entry.size;
    let done = 0;
    while (done < size) {
      const buf = Buffer.allocUnsafe(Math.min(CHUNK, size - done));
      const { bytesRead } = await fh.read(buf, 0, buf.length, done);
      if (bytesRead === 0) throw changed(`it was ${size} bytes and is now ${done}`);
      done += bytesRead;
      yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
    }
    const { bytesRead } = await fh.read(Buffer.alloc(1), 0, 1, size);
    const now = await fh.stat({ bigint: true });
    if (bytesRead > 0 || now.size !== w.st.size) throw changed(`it was ${size} bytes and is now ${now.size}`);
    if (now.mtimeNs !== w.st.mtimeNs || now.ctimeNs !== w.st.ctimeNs || now.ino !== w.st.ino) throw changed('it was written to');
  } finally {
    await fh.close();
  }
}

async function* noBody(): AsyncGenerator<Buffer> {}

async function* entries(walked: Walked[]): AsyncGenerator<StreamedEntry> {
  for (const w of walked) {
    if (w.entry.kind === 'file') {
      yield { entry: w.entry, body: { [Symbol.asyncIterator]: () => fileBody(w) }, skip: async () => {} };
    } else {
      yield { entry: w.entry, body: { [Symbol.asyncIterator]: noBody }, skip: async () => {} };
    }
  }
}

/** Opens directory `dir` (named `location` by the user) as a one-layer image source. */
export async function openDirectory(dir: string, location: string): Promise<ImageSource> {
  const ignoreText = await readIgnoreFile(dir);
  const walked = await walk(dir, ignoreText);
  return {
    kind: 'directory',
    location,
    key: treeKey(walked, ignoreText),
    names: [],
    config: {},
    layers: [{ open: () => entries(walked) }],
  };
}
