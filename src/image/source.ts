/**
 * What the user names as an image, opened without extracting anything: an OCI
 * image layout (directory), an OCI or Docker archive (`podman save`, `docker
 * save`), a plain rootfs tar, or a directory. Archives are indexed by their tar
 * headers; their JSON members are read in place and verified against their
 * digests, and each layer is streamed from its byte range through a digest
 * check into the tar reader.
 */
import { createReadStream, existsSync } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import { posix } from 'node:path';
import { HyperboxError, reasonOf } from '../errors.js';
import { checkStream, hashStream, parseDigest, sha256Of, shortDigest, verifyBuffer, verifyStream, type Expected } from './digest.js';
import { openDirectory } from './directory.js';
import { decompress, isTarHeader, readTarLayer, scanTarFile, type TarMember } from './tar.js';
import type { ImageConfig, ImageSource, LayerHandle, SourceKind, StreamedEntry } from './types.js';

const q = (s: string) => JSON.stringify(s);
const imageError = (message: string, cause?: unknown) => new HyperboxError('E_IMAGE', message, cause === undefined ? {} : { cause });

/** Read size for layer data: 1 MiB chunks read a layer about 1.6 times as fast as the 64 KiB default. */
const CHUNK = 1 << 20;

/** JSON members larger than this are not manifests, indexes or configs. */
const MAX_JSON = 16 * 1024 * 1024;

const MEDIA = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
};
const INDEX_TYPES = new Set([MEDIA.ociIndex, MEDIA.dockerList]);
const MANIFEST_TYPES = new Set([MEDIA.ociManifest, MEDIA.dockerManifest]);
const CONFIG_TYPES = new Set(['application/vnd.oci.image.config.v1+json', 'application/vnd.docker.container.image.v1+json']);
const LAYER_TYPES = new Set([
  'application/vnd.oci.image.layer.v1.tar',
  'application/vnd.oci.image.layer.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.docker.image.rootfs.diff.tar',
  'application/vnd.docker.image.rootfs.diff.tar.gzip',
  'application/vnd.docker.image.rootfs.foreign.diff.tar',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
]);

// ---------------------------------------------------------------------------------------------
// Location

/** A location split into the path and the tag asked for. */
export interface Location {
  path: string;
  tag?: string;
}

/**
 * "PATH" or "PATH:TAG". A ':' only starts a tag when the whole string is not an
 * existing path and the part before that ':' is; the rightmost such ':' wins, so
 * "img.tar:localhost/app:v1" asks img.tar for "localhost/app:v1".
 */
export function parseLocation(location: string): Location {
  if (existsSync(location)) return { path: location };
  for (let i = location.lastIndexOf(':'); i > 0; i = location.lastIndexOf(':', i - 1)) {
    const path = location.slice(0, i);
    const tag = location.slice(i + 1);
    if (tag && existsSync(path)) return { path, tag };
  }
  throw new HyperboxError('E_NOT_FOUND', `${location} does not exist (an image is an OCI layout or plain directory, or an OCI, Docker or rootfs tar, optionally followed by :TAG)`);
}

// ---------------------------------------------------------------------------------------------
// Where blobs are: a layout directory, or members of an archive

/** Named byte blobs: files under a layout directory, or members of an archive. */
interface Store {
  /** The directory or archive, for messages. */
  where: string;
  /** Byte size of `name`, or undefined when there is no such file or member. */
  size(name: string): Promise<number | undefined>;
  read(name: string): Promise<Buffer>;
  stream(name: string): AsyncIterable<Buffer>;
}

function dirStore(root: string): Store {
  const abs = (name: string) => posix.join(root, name);
  return {
    where: root,
    async size(name) {
      try {
        const st = await stat(abs(name));
        return st.isFile() ? st.size : undefined;
      } catch {
        return undefined;
      }
    },
    read: (name) => readFile(abs(name)),
    stream: (name) => createReadStream(abs(name), { highWaterMark: CHUNK }),
  };
}

async function* noBytes(): AsyncGenerator<Buffer> {}

function archiveStore(path: string, members: TarMember[]): Store {
  const byName = new Map<string, TarMember>();
  for (const m of members) byName.set(m.name, m); // a later member of the same name replaces the earlier one, as in tar
  const resolve = (name: string): TarMember | undefined => {
    let m = byName.get(name.split('/').filter((c) => c !== '' && c !== '.').join('/'));
    for (let hops = 0; m && hops < 8 && (m.type === 'symlink' || m.type === 'hardlink'); hops++) {
      // Docker archives link <id>/layer.tar to the layer stored once elsewhere.
      const target = m.type === 'symlink' ? posix.normalize(posix.join(posix.dirname(m.name), m.linkName ?? '')) : (m.linkName ?? '');
      m = byName.get(target.replace(/^(\.\/)+/, ''));
    }
    return m?.type === 'file' ? m : undefined;
  };
  const must = (name: string): TarMember => {
    const m = resolve(name);
    if (!m) throw imageError(`${path} has no member ${q(name)}`);
    return m;
  };
  return {
    where: path,
    size: async (name) => resolve(name)?.size,
    async read(name) {
      const m = must(name);
      const buf = Buffer.alloc(m.size);
      const fh = await open(path, 'r');
      try {
        const { bytesRead } = await fh.read(buf, 0, m.size, m.offset);
        if (bytesRead !== m.size) throw imageError(`${path} ends in the middle of member ${q(name)}: the archive is truncated`);
      } finally {
        await fh.close();
      }
      return buf;
    },
    stream(name) {
      const m = must(name);
      return m.size === 0 ? noBytes() : createReadStream(path, { start: m.offset, end: m.offset + m.size - 1, highWaterMark: CHUNK });
    },
  };
}

async function readJson(store: Store, name: string, label: string): Promise<unknown> {
  const size = await store.size(name);
  if (size === undefined) throw imageError(`${store.where} has no ${name}`);
  if (size > MAX_JSON) throw imageError(`${label} is ${size} bytes, too large to be image metadata`);
  return parseJson(await store.read(name), label);
}

function parseJson(buf: Buffer, label: string): unknown {
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch (e) {
    throw imageError(`${label} is not valid JSON (${(e as Error).message})`, e);
  }
}

// ---------------------------------------------------------------------------------------------
// OCI: index, manifest, config, descriptors

interface Platform {
  os?: string;
  architecture?: string;
  variant?: string;
}

interface Descriptor {
  mediaType?: string;
  digest: string;
  size: number;
  annotations: Record<string, string>;
  platform?: Platform;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function descriptor(v: unknown, label: string): Descriptor {
  if (!isObject(v)) throw imageError(`${label} is not a descriptor (a JSON object with mediaType, digest and size)`);
  parseDigest(v.digest, label);
  if (typeof v.size !== 'number' || !Number.isSafeInteger(v.size) || v.size < 0) throw imageError(`${label} has no valid size`);
  const d: Descriptor = { digest: v.digest as string, size: v.size, annotations: {} };
  if (typeof v.mediaType === 'string') d.mediaType = v.mediaType;
  if (isObject(v.annotations)) {
    for (const [k, a] of Object.entries(v.annotations)) if (typeof a === 'string') d.annotations[k] = a;
  }
  if (isObject(v.platform)) d.platform = v.platform as Platform;
  return d;
}

function descriptors(v: unknown, label: string): Descriptor[] {
  if (!Array.isArray(v)) throw imageError(`${label} is missing or not a list`);
  return v.map((d, i) => descriptor(d, `${label} #${i + 1}`));
}

const blobPath = (digest: string) => `blobs/${digest.replace(':', '/')}`;

/** Reads a small blob and checks it against its descriptor. */
async function readBlob(store: Store, d: Descriptor, label: string): Promise<Buffer> {
  const name = blobPath(d.digest);
  const size = await store.size(name);
  if (size === undefined) throw imageError(`${label} is missing from ${store.where} (no ${name})`);
  if (size > MAX_JSON) throw imageError(`${label} is ${size} bytes, too large to be image metadata`);
  const buf = await store.read(name);
  verifyBuffer(buf, { digest: d.digest, size: d.size, label });
  return buf;
}

/** Go's GOARCH for this process, as image platforms spell it. */
export function goArch(arch: string = process.arch): string {
  const map: Record<string, string> = { x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64' };
  return map[arch] ?? arch;
}

const ownPlatform = (p: Platform | undefined) => p?.os === 'linux' && p.architecture === goArch();
const platformName = (p: Platform | undefined) => (p ? `${p.os ?? '?'}/${p.architecture ?? '?'}${p.variant ? `/${p.variant}` : ''}` : 'no platform');

/** The names an index entry carries (containerd's full reference first). */
function refNames(d: Descriptor): string[] {
  const names = [d.annotations['io.containerd.image.name'], d.annotations['org.opencontainers.image.ref.name']];
  return [...new Set(names.filter((n): n is string => typeof n === 'string' && n !== ''))];
}

/** True when reference `name` is `tag`, or ends with ':tag' or '/tag' ("v1" and "app:v1" both pick "localhost/app:v1"). */
export function tagMatches(name: string, tag: string): boolean {
  return name === tag || name.endsWith(`:${tag}`) || (tag.includes(':') && name.endsWith(`/${tag}`));
}

/** The name an index entry is listed under in messages: containerd's full reference, else the ref name. */
const primaryName = (d: Descriptor): string[] => refNames(d).slice(0, 1);

function listNames(names: string[]): string {
  const uniq = [...new Set(names)];
  return uniq.length ? uniq.join(', ') : 'none';
}

/**
 * The image manifest the user asked for: by tag, else the only one, else the
 * one for this platform. Nested indexes (multi-platform images) are followed,
 * their entries chosen by platform.
 */
async function chooseManifest(store: Store, index: unknown, tag: string | undefined, where: string): Promise<{ manifest: Descriptor; names: string[] }> {
  if (!isObject(index)) throw imageError(`index.json of ${where} is not a JSON object`);
  const all = descriptors(index.manifests, `the manifests list of index.json of ${where}`);
  if (all.length === 0) throw imageError(`${where} holds no image (its index.json lists no manifests)`);
  const allNames = all.flatMap(primaryName);

  let candidates = all;
  if (tag !== undefined) {
    candidates = all.filter((d) => refNames(d).some((n) => tagMatches(n, tag)));
    if (candidates.length === 0) throw imageError(`${where} has no image tagged ${q(tag)} (it has: ${listNames(allNames)})`);
  }
  let chosen = candidates[0]!;
  if (candidates.length > 1) {
    // Several entries: one image for several platforms, or several images (to be told apart by tag).
    if (new Set(candidates.flatMap(primaryName)).size > 1) {
      const hint = tag === undefined ? `name one as ${where}:TAG` : 'name it in full';
      throw imageError(`${where} holds several images${tag === undefined ? '' : ` matching ${q(tag)}`} (${listNames(candidates.flatMap(primaryName))}): ${hint}`);
    }
    const mine = candidates.filter((d) => ownPlatform(d.platform));
    if (mine.length === 0) throw imageError(`${where} has no image for linux/${goArch()} (it has: ${listNames(candidates.map((d) => platformName(d.platform)))})`);
    chosen = mine[0]!;
  }
  const names = refNames(chosen);

  let d = chosen;
  for (let depth = 0; d.mediaType === undefined || INDEX_TYPES.has(d.mediaType); depth++) {
    const label = `image index ${shortDigest(d.digest)} of ${where}`;
    const nested = parseJson(await readBlob(store, d, label), label);
    if (!isObject(nested) || !Array.isArray(nested.manifests)) {
      // No media type in the descriptor: the blob said what it is, a manifest.
      if (d.mediaType === undefined) break;
      throw imageError(`${label} is not an image index (it has no manifests list)`);
    }
    if (depth >= 4) throw imageError(`${where} nests image indexes more than 4 deep`);
    const entries = descriptors(nested.manifests, `the manifests list of ${label}`);
    const mine = entries.filter((e) => ownPlatform(e.platform));
    if (mine.length === 0) throw imageError(`${where} has no image for linux/${goArch()} (it has: ${listNames(entries.map((e) => platformName(e.platform)))})`);
    // docker save keeps only the platforms it has: prefer an entry whose blob is present.
    const present = [];
    for (const e of mine) if ((await store.size(blobPath(e.digest))) !== undefined) present.push(e);
    d = present[0] ?? mine[0]!;
  }
  return { manifest: d, names };
}

function stringList(v: unknown, field: string, label: string): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) throw imageError(`${label} has a malformed ${field} (a list of strings expected)`);
  return v as string[];
}

function optString(v: unknown, field: string, label: string): string | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw imageError(`${label} has a malformed ${field} (a string expected)`);
  return v;
}

/** The process defaults of an image config; a non-Linux image is refused. */
export function imageConfig(json: unknown, label: string): ImageConfig {
  if (!isObject(json)) throw imageError(`${label} is not a JSON object`);
  if (json.os !== undefined && json.os !== 'linux') throw imageError(`${label} describes an image for ${String(json.os)}, not Linux`);
  const c = json.config ?? {};
  if (!isObject(c)) throw imageError(`${label} has a malformed config object`);
  const out: ImageConfig = {};
  const entrypoint = stringList(c.Entrypoint, 'Entrypoint', label);
  if (entrypoint) out.entrypoint = entrypoint;
  const cmd = stringList(c.Cmd, 'Cmd', label);
  if (cmd) out.cmd = cmd;
  const env = stringList(c.Env, 'Env', label);
  if (env) out.env = env;
  const workingDir = optString(c.WorkingDir, 'WorkingDir', label);
  if (workingDir) out.workingDir = workingDir;
  const user = optString(c.User, 'User', label);
  if (user) out.user = user;
  return out;
}

/** The cache key of an image built from these layers, bottom first. */
export function layersKey(digests: string[]): string {
  return sha256Of(`hyperbox-erofs-layers-v1\n${digests.join('\n')}`);
}

function checkLayerType(mediaType: string | undefined, label: string): void {
  if (mediaType === undefined || LAYER_TYPES.has(mediaType)) return;
  if (/zstd/.test(mediaType)) throw imageError(`${label} is compressed with zstd, which is not supported: re-save the image with gzip or uncompressed layers`);
  if (/encrypted/.test(mediaType)) throw imageError(`${label} is encrypted, which is not supported`);
  throw imageError(`${label} has the media type ${mediaType}, which is not a filesystem layer`);
}

/**
 * Layer entries; when the tar cannot be parsed, the blob is hashed again so that
 * a tampered or damaged blob is reported as a digest mismatch, not as a tar error.
 */
async function* preferDigestError(entries: AsyncIterable<StreamedEntry>, recheck: () => Promise<void>): AsyncGenerator<StreamedEntry> {
  try {
    yield* entries;
  } catch (e) {
    if (e instanceof HyperboxError && e.code !== 'E_IMAGE_DIGEST') {
      try {
        await recheck();
      } catch (d) {
        if (d instanceof HyperboxError && d.code === 'E_IMAGE_DIGEST') throw d;
      }
    }
    throw e;
  }
}

async function openOci(store: Store, kind: SourceKind, location: string, tag: string | undefined): Promise<ImageSource> {
  const where = store.where;
  const index = await readJson(store, 'index.json', `index.json of ${where}`);
  const { manifest: md, names } = await chooseManifest(store, index, tag, where);
  const mLabel = `manifest ${shortDigest(md.digest)} of ${where}`;
  if (md.mediaType !== undefined && !MANIFEST_TYPES.has(md.mediaType)) throw imageError(`${mLabel} has the media type ${md.mediaType}, which is not an image manifest`);
  const manifest = parseJson(await readBlob(store, md, mLabel), mLabel);
  if (!isObject(manifest)) throw imageError(`${mLabel} is not a JSON object`);

  const cd = descriptor(manifest.config, `the config descriptor of ${mLabel}`);
  const cLabel = `config ${shortDigest(cd.digest)} of ${where}`;
  if (cd.mediaType !== undefined && !CONFIG_TYPES.has(cd.mediaType)) throw imageError(`${where} is not a container image (its config has the media type ${cd.mediaType})`);
  const config = imageConfig(parseJson(await readBlob(store, cd, cLabel), cLabel), cLabel);

  const layers: LayerHandle[] = [];
  for (const ld of descriptors(manifest.layers, `the layers list of ${mLabel}`)) {
    const label = `layer ${shortDigest(ld.digest)} of ${where}`;
    checkLayerType(ld.mediaType, label);
    const name = blobPath(ld.digest);
    const size = await store.size(name);
    if (size === undefined) throw imageError(`${label} is missing (no ${name})`);
    if (size !== ld.size) throw new HyperboxError('E_IMAGE_DIGEST', `${label} is ${size} bytes where its descriptor says ${ld.size}: the image is corrupt or was altered`);
    const expected: Expected = { digest: ld.digest, size: ld.size, label };
    layers.push({
      digest: ld.digest,
      open: () => preferDigestError(readTarLayer(verifyStream(store.stream(name), expected), label), () => checkStream(store.stream(name), expected)),
    });
  }
  // A bare tag ("1") beside the full reference it abbreviates ("repo/app:1") is not a name of its own.
  const own = names.filter((n) => /[/:]/.test(n) || !names.some((o) => o.endsWith(`:${n}`)));
  return { kind, location, key: layersKey(layers.map((l) => l.digest!)), names: own, config, layers };
}

// ---------------------------------------------------------------------------------------------
// Docker archives (docker save before 25, podman save --format docker-archive)

interface DockerEntry {
  Config: string;
  RepoTags: string[];
  Layers: string[];
}

/** manifest.json as Docker writes it, or undefined when it is something else. */
function dockerManifest(json: unknown): DockerEntry[] | undefined {
  if (!Array.isArray(json) || json.length === 0) return undefined;
  const out: DockerEntry[] = [];
  for (const e of json) {
    if (!isObject(e) || typeof e.Config !== 'string' || !Array.isArray(e.Layers) || e.Layers.some((l) => typeof l !== 'string')) return undefined;
    const tags = Array.isArray(e.RepoTags) ? e.RepoTags.filter((t): t is string => typeof t === 'string') : [];
    out.push({ Config: e.Config, RepoTags: tags, Layers: e.Layers as string[] });
  }
  return out;
}

async function openDocker(store: Store, entries: DockerEntry[], location: string, tag: string | undefined): Promise<ImageSource> {
  const where = store.where;
  const allTags = entries.flatMap((e) => e.RepoTags);
  let chosen: DockerEntry[] = entries;
  if (tag !== undefined) {
    chosen = entries.filter((e) => e.RepoTags.some((t) => tagMatches(t, tag)));
    if (chosen.length === 0) throw imageError(`${where} has no image tagged ${q(tag)} (it has: ${listNames(allTags)})`);
  }
  if (chosen.length > 1) {
    const hint = tag === undefined ? `name one as ${where}:TAG` : 'name it in full';
    throw imageError(`${where} holds several images${tag === undefined ? '' : ` matching ${q(tag)}`} (${listNames(chosen.flatMap((e) => e.RepoTags))}): ${hint}`);
  }
  const entry = chosen[0]!;

  const cLabel = `config ${entry.Config} of ${where}`;
  const configBuf = await store.read(entry.Config);
  // The config is stored under its own digest ("<hex>.json", or "blobs/sha256/<hex>").
  const hex = /([0-9a-f]{64})(\.json)?$/.exec(entry.Config)?.[1];
  if (hex) verifyBuffer(configBuf, { digest: `sha256:${hex}`, label: cLabel });
  const configJson = parseJson(configBuf, cLabel);
  const config = imageConfig(configJson, cLabel);
  const rootfs = isObject(configJson) && isObject(configJson.rootfs) ? configJson.rootfs : {};
  const diffIds = Array.isArray(rootfs.diff_ids) ? rootfs.diff_ids : [];
  if (diffIds.length !== entry.Layers.length) {
    throw imageError(`${cLabel} lists ${diffIds.length} layer digests (rootfs.diff_ids) for ${entry.Layers.length} layers: the archive is corrupt`);
  }
  diffIds.forEach((d, i) => parseDigest(d, `layer ${i + 1} of ${cLabel}`));

  const layers: LayerHandle[] = [];
  for (const [i, member] of entry.Layers.entries()) {
    const diffId = diffIds[i] as string;
    const label = `layer ${shortDigest(diffId)} of ${where}`;
    if ((await store.size(member)) === undefined) throw imageError(`${label} is missing (no member ${q(member)})`);
    // The digest is that of the uncompressed tar (diff_id), so it is checked after decompression.
    const expected: Expected = { digest: diffId, label };
    layers.push({
      digest: diffId,
      open: () =>
        preferDigestError(readTarLayer(store.stream(member), label, { uncompressed: expected }), () => checkStream(decompress(store.stream(member), label), expected)),
    });
  }
  return { kind: 'docker-archive', location, key: layersKey(diffIds as string[]), names: entry.RepoTags, config, layers };
}

// ---------------------------------------------------------------------------------------------
// Rootfs tars

function rootfsTar(path: string, location: string, key?: string): ImageSource {
  let readKey = key;
  return {
    kind: 'rootfs-tar',
    location,
    ...(key ? { key } : {}),
    keyAfterRead() {
      if (!readKey) throw new Error(`the key of ${path} is known only once the whole tar has been read`);
      return readKey;
    },
    names: [],
    config: {},
    layers: [{ open: () => readTarLayer(hashStream(createReadStream(path, { highWaterMark: CHUNK }), (d) => (readKey = d)), path) }],
  };
}

/**
 * A gzip'd file: a compressed image archive cannot be read in place, so it is
 * refused; anything else is a rootfs tar, whose key is known after this scan.
 */
async function openGzipFile(path: string, location: string): Promise<ImageSource> {
  let key: string | undefined;
  const names = new Set<string>();
  let docker = false;
  for await (const se of readTarLayer(hashStream(createReadStream(path, { highWaterMark: CHUNK }), (d) => (key = d)), path)) {
    const p = se.entry.path;
    if (p === 'manifest.json' && se.entry.size <= MAX_JSON) {
      const chunks: Buffer[] = [];
      for await (const c of se.body) chunks.push(c);
      try {
        docker = dockerManifest(JSON.parse(Buffer.concat(chunks).toString('utf8'))) !== undefined;
      } catch {
        // Not JSON: an ordinary file of the rootfs.
      }
    } else {
      names.add(p);
      await se.skip();
    }
    if (docker || (names.has('oci-layout') && names.has('index.json'))) {
      throw imageError(`${path} is a compressed image archive, which cannot be read in place: decompress it (gunzip) and use the .tar`);
    }
  }
  return rootfsTar(path, location, key);
}

// ---------------------------------------------------------------------------------------------

/** Opens `location` ("PATH" or "PATH:TAG") as an image source; see the module comment for the kinds. */
export async function openSource(location: string): Promise<ImageSource> {
  const { path, tag } = parseLocation(location);
  const noTag = (what: string) => {
    if (tag !== undefined) throw imageError(`${path} is ${what}, which has no tags: drop ":${tag}"`);
  };
  let st;
  try {
    st = await stat(path);
  } catch (e) {
    throw new HyperboxError('E_NOT_FOUND', `cannot open ${path} (${reasonOf(e)})`, { cause: e });
  }

  if (st.isDirectory()) {
    if (existsSync(posix.join(path, 'oci-layout')) && existsSync(posix.join(path, 'index.json'))) {
      return openOci(dirStore(path), 'oci-layout', location, tag);
    }
    noTag('a plain directory');
    return openDirectory(path, location);
  }
  if (!st.isFile()) throw imageError(`${path} is neither a directory nor a file`);

  const head = Buffer.alloc(512);
  const fh = await open(path, 'r');
  let got: number;
  try {
    ({ bytesRead: got } = await fh.read(head, 0, 512, 0));
  } finally {
    await fh.close();
  }
  if (got >= 2 && head[0] === 0x1f && head[1] === 0x8b) {
    const src = await openGzipFile(path, location); // refuses a compressed image archive first
    noTag('a compressed rootfs tar');
    return src;
  }
  const compressed = [
    ['zstd', [0x28, 0xb5, 0x2f, 0xfd]],
    ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
    ['bzip2', [0x42, 0x5a, 0x68]],
  ] as const;
  for (const [name, magic] of compressed) {
    if (magic.every((b, i) => head[i] === b)) throw imageError(`${path} is compressed with ${name}, which is not supported: use an uncompressed or gzip-compressed tar`);
  }
  if (got < 512 || !isTarHeader(head)) {
    throw imageError(`${path} is not an image: not a directory, and not an OCI, Docker or rootfs tar archive (it does not start with a tar header)`);
  }

  const members = await scanTarFile(path, path);
  const store = archiveStore(path, members);
  if ((await store.size('oci-layout')) !== undefined && (await store.size('index.json')) !== undefined) {
    return openOci(store, 'oci-archive', location, tag);
  }
  const size = await store.size('manifest.json');
  if (size !== undefined && size <= MAX_JSON) {
    let docker: DockerEntry[] | undefined;
    try {
      docker = dockerManifest(JSON.parse((await store.read('manifest.json')).toString('utf8')));
    } catch {
      // Not JSON: then it is an ordinary file of a rootfs tar.
    }
    if (docker) return openDocker(store, docker, location, tag);
  }
  noTag('a rootfs tar');
  return rootfsTar(path, location);
}
