/**
 * Tar archives without extraction: a layer is read once, as a stream of
 * normalised, validated entries (`readTarLayer`), and an archive on disk is
 * indexed by reading its headers only (`scanTarFile`), so that its members can
 * be read in place as byte ranges.
 */
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import tarStream from 'tar-stream';
import { HyperboxError, reasonOf } from '../errors.js';
import { verifyStream, type Expected } from './digest.js';
import type { EntryKind, LayerEntry, StreamedEntry } from './types.js';

/** Larger files than this (8 TiB) only come from a corrupt size field. */
export const MAX_ENTRY_SIZE = 2 ** 43;

const q = (s: string) => JSON.stringify(s);
const imageError = (message: string, cause?: unknown) => new HyperboxError('E_IMAGE', message, cause === undefined ? {} : { cause });

// ---------------------------------------------------------------------------------------------
// Names and header fields

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Raw name bytes as a string; names that are not UTF-8 are refused rather than mangled. */
function decodeName(raw: Buffer, what: string): string {
  try {
    return utf8.decode(raw);
  } catch {
    throw imageError(`${what} has an entry whose name is not valid UTF-8 (${q(raw.toString('latin1'))}), which this image builder cannot represent`);
  }
}

/**
 * A member name as a LayerEntry path: './', '.' and empty components dropped, no
 * trailing '/', '' for the root. Absolute names, '..' components and NUL bytes
 * are refused: a layer must not write outside the image.
 */
export function normalizeEntryPath(name: string, what: string): string {
  if (name.includes('\0')) throw imageError(`${what} has an entry whose name contains a NUL byte (${q(name)})`);
  if (name.startsWith('/')) throw imageError(`${what} has an entry with the absolute path ${q(name)}: layer entries must be relative to the image root`);
  const parts: string[] = [];
  for (const c of name.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') throw imageError(`${what} has an entry ${q(name)} with a '..' component, which could write outside the image`);
    parts.push(c);
  }
  return parts.join('/');
}

/** Member names of an outer archive, leniently: only looked up, never written anywhere. */
function memberName(name: string): string {
  return name.split('/').filter((c) => c !== '' && c !== '.').join('/');
}

/** A numeric header field: octal (space/NUL padded) or GNU base-256; NaN when it is neither. */
export function headerNumber(block: Buffer, off: number, len: number): number {
  const f = block.subarray(off, off + len);
  if (f[0]! & 0x80) {
    if (f[0] === 0xff) return NaN; // negative: never a valid size, uid or offset here
    let v = BigInt(f[0]! & 0x7f);
    for (let i = 1; i < f.length; i++) v = (v << 8n) | BigInt(f[i]!);
    return v > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(v);
  }
  const s = f.toString('latin1').replace(/[\0 ]+$/, '').replace(/^[ ]+/, '');
  if (s === '') return 0;
  return /^[0-7]+$/.test(s) ? parseInt(s, 8) : NaN;
}

/** True when `block` is a tar header with a valid checksum (unsigned, or the signed variant old tars wrote). */
export function isTarHeader(block: Buffer): boolean {
  if (block.length < 512) return false;
  let unsigned = 8 * 0x20;
  let signed = 8 * 0x20;
  for (let i = 0; i < 512; i++) {
    if (i >= 148 && i < 156) continue;
    unsigned += block[i]!;
    signed += block[i]! > 127 ? block[i]! - 256 : block[i]!;
  }
  const stored = headerNumber(block, 148, 8);
  return unsigned !== 8 * 0x20 && (stored === unsigned || stored === signed);
}

/** PAX extended header records, values as raw bytes (xattr values are binary). Empty values unset a key. */
export function parsePax(buf: Buffer, where: string, after?: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let pos = 0;
  while (pos < buf.length && buf[pos] !== 0) {
    const sp = buf.indexOf(0x20, pos);
    const lenText = sp < 0 ? '' : buf.toString('latin1', pos, sp);
    const len = /^[0-9]{1,9}$/.test(lenText) ? Number(lenText) : NaN;
    const eq = sp < 0 ? -1 : buf.indexOf(0x3d, sp + 1);
    if (!(len > 0) || pos + len > buf.length || buf[pos + len - 1] !== 0x0a || eq < 0 || eq >= pos + len - 1) {
      throw imageError(`${where} has a malformed PAX extended header${after === undefined ? '' : ` after entry ${q(after)}`}`);
    }
    out.set(buf.toString('utf8', sp + 1, eq), Buffer.from(buf.subarray(eq + 1, pos + len - 1)));
    pos += len;
  }
  return out;
}

/**
 * Global records overridden by local ones; an empty value removes a key,
 * except an xattr's: GNU tar writes an xattr whose value is empty that way.
 */
function mergePax(global: Map<string, Buffer>, local: Map<string, Buffer> | undefined): Map<string, Buffer> {
  const out = new Map(global);
  for (const [k, v] of local ?? []) out.set(k, v);
  for (const [k, v] of out) if (v.length === 0 && !/^(SCHILY|LIBARCHIVE)\.xattr\./.test(k)) out.delete(k);
  return out;
}

/** A PAX time ("1577836800.123456789", maybe negative) as exact seconds and nanoseconds. */
function paxTime(v: string, what: string, name: string): [number, number] {
  const m = /^(-?)([0-9]{1,15})(?:\.([0-9]*))?$/.exec(v);
  if (!m) throw imageError(`${what} has an entry ${q(name)} with a malformed PAX mtime (${q(v)})`);
  let sec = Number(m[2]);
  let nsec = Number((m[3] ?? '').slice(0, 9).padEnd(9, '0'));
  if (m[1]) {
    sec = -sec;
    if (nsec) {
      sec -= 1;
      nsec = 1e9 - nsec;
    }
  }
  return [sec, nsec];
}

/** A PAX decimal field (uid, gid) within 32 bits. */
function paxId(v: string, what: string, name: string, key: string): number {
  const n = /^[0-9]{1,10}$/.test(v) ? Number(v) : NaN;
  if (!(n < 2 ** 32)) throw imageError(`${what} has an entry ${q(name)} with a malformed PAX ${key} (${q(v)})`);
  return n;
}

/** Extended attributes from PAX records: SCHILY.xattr.NAME (raw bytes), LIBARCHIVE.xattr.NAME (URL-encoded name, base64 value). */
function paxXattrs(pax: Map<string, Buffer>): [string, Buffer][] {
  const seen = new Map<string, Buffer>();
  for (const [key, value] of pax) {
    if (key.startsWith('SCHILY.xattr.')) {
      const name = key.slice('SCHILY.xattr.'.length);
      if (name && !seen.has(name)) seen.set(name, value);
    } else if (key.startsWith('LIBARCHIVE.xattr.')) {
      // bsdtar writes both forms for one attribute; the first one wins (they agree).
      let name: string;
      try {
        name = decodeURIComponent(key.slice('LIBARCHIVE.xattr.'.length));
      } catch {
        continue;
      }
      if (name && !seen.has(name)) seen.set(name, Buffer.from(value.toString('latin1'), 'base64'));
    }
  }
  return [...seen];
}

// ---------------------------------------------------------------------------------------------
// tar-stream, as far as this module relies on it (tar-stream 3.x)

interface TsHeader {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: Date;
  type: string | null;
  linkname: string | null;
  devmajor: number;
  devminor: number;
}

interface TsEntry {
  header: TsHeader;
  [Symbol.asyncIterator](): AsyncIterator<Buffer>;
}

interface TsExtract {
  write(chunk: Buffer): boolean;
  end(): void;
  destroy(err?: unknown): void;
  readonly destroying: boolean;
  on(event: string, fn: (...args: unknown[]) => void): void;
  off(event: string, fn: (...args: unknown[]) => void): void;
  [Symbol.asyncIterator](): AsyncIterator<TsEntry>;
  /** Internal: decodes a PAX or GNU long-name record. Hooked to see PAX values as bytes. */
  _decodeLongHeader?: (buf: Buffer) => void;
  _header: { type: string | null } | null;
}

/** Per-layer parse state shared by the hooks, the entries and the error mapping. */
interface ParseState {
  what: string;
  globalPax: Map<string, Buffer>;
  localPax: Map<string, Buffer> | undefined;
  /** PAX records of the entry tar-stream emitted last. */
  entryPax: Map<string, Buffer>;
  /** Name of the last entry, and whether its data has been read to its end. */
  last: string | undefined;
  lastComplete: boolean;
}

/**
 * tar-stream decodes PAX values as UTF-8 strings, which destroys binary xattr
 * values (security.capability). Its record decoder is wrapped to keep the raw
 * bytes; the 'entry' listener (registered before tar-stream's iterator) then
 * hands them to the entry they belong to.
 */
function hookPax(ex: TsExtract, st: ParseState): void {
  const original = ex._decodeLongHeader;
  if (typeof original !== 'function') throw new Error('tar-stream internals changed: Extract._decodeLongHeader is gone');
  ex._decodeLongHeader = function (this: TsExtract, buf: Buffer) {
    const type = this._header?.type;
    if (type === 'pax-header') st.localPax = parsePax(buf, st.what, st.last);
    else if (type === 'pax-global-header') st.globalPax = mergePax(st.globalPax, parsePax(buf, st.what, st.last));
    original.call(this, buf);
  };
  ex.on('entry', () => {
    st.entryPax = mergePax(st.globalPax, st.localPax);
    st.localPax = undefined;
  });
}

const KINDS: Record<string, EntryKind> = {
  file: 'file',
  'contiguous-file': 'file',
  directory: 'dir',
  symlink: 'symlink',
  link: 'hardlink',
  'character-device': 'char',
  'block-device': 'block',
  fifo: 'fifo',
};

/** A tar-stream header (plus its raw PAX records) as a validated LayerEntry. */
function toEntry(h: TsHeader, pax: Map<string, Buffer>, what: string): LayerEntry {
  const rawName = pax.get('path') ?? Buffer.from(h.name, 'latin1');
  const name = decodeName(rawName, what);
  const kind = h.type === null ? undefined : KINDS[h.type];
  if (!kind || [...pax.keys()].some((k) => k.startsWith('GNU.sparse.'))) {
    const sparse = [...pax.keys()].some((k) => k.startsWith('GNU.sparse.'));
    throw imageError(
      `${what} has an entry ${q(name)} of an unsupported kind (${sparse ? 'a GNU sparse file' : h.type === null ? 'a GNU sparse file, volume label or other special header' : h.type}): write the archive without sparse files or special entries`,
    );
  }
  const path = normalizeEntryPath(name, what);
  if (path === '' && kind !== 'dir') throw imageError(`${what} has a ${kind} entry ${q(name)} for the image root, which must be a directory`);

  if (!(h.size >= 0) || h.size > MAX_ENTRY_SIZE) {
    throw imageError(`${what} has an entry ${q(name)} with a size of ${h.size} bytes, beyond the 8 TiB limit: its header is corrupt`);
  }
  const ids = [h.mode, h.uid, h.gid];
  if (ids.some((n) => !Number.isSafeInteger(n) || n < 0)) throw imageError(`${what} has an entry ${q(name)} with a corrupt mode, uid or gid field`);

  const entry: LayerEntry = {
    path,
    kind,
    mode: h.mode & 0o7777,
    uid: h.uid,
    gid: h.gid,
    mtimeSec: 0,
    mtimeNsec: 0,
    size: kind === 'file' ? h.size : 0,
    xattrs: paxXattrs(pax),
  };
  const paxUid = pax.get('uid');
  if (paxUid) entry.uid = paxId(paxUid.toString('latin1'), what, name, 'uid');
  const paxGid = pax.get('gid');
  if (paxGid) entry.gid = paxId(paxGid.toString('latin1'), what, name, 'gid');
  if (entry.uid >= 2 ** 32 || entry.gid >= 2 ** 32) throw imageError(`${what} has an entry ${q(name)} with a uid or gid beyond 32 bits`);

  const paxMtime = pax.get('mtime');
  if (paxMtime) {
    [entry.mtimeSec, entry.mtimeNsec] = paxTime(paxMtime.toString('latin1'), what, name);
  } else {
    const ms = h.mtime.getTime();
    if (!Number.isFinite(ms)) throw imageError(`${what} has an entry ${q(name)} with a corrupt mtime field`);
    entry.mtimeSec = Math.floor(ms / 1000);
  }

  if (kind === 'symlink' || kind === 'hardlink') {
    const rawLink = pax.get('linkpath') ?? Buffer.from(h.linkname ?? '', 'latin1');
    const link = decodeName(rawLink, what);
    if (link === '') throw imageError(`${what} has a ${kind === 'symlink' ? 'symbolic' : 'hard'} link ${q(name)} with an empty target`);
    if (link.includes('\0')) throw imageError(`${what} has a link ${q(name)} whose target contains a NUL byte`);
    if (kind === 'symlink') {
      entry.linkTarget = link;
    } else {
      let target: string;
      try {
        target = normalizeEntryPath(link, what);
      } catch {
        throw imageError(`${what} has a hard link ${q(name)} to ${q(link)}, which is outside the image`);
      }
      if (target === '') throw imageError(`${what} has a hard link ${q(name)} to the image root, which is a directory`);
      entry.linkTarget = target;
    }
  }
  if (kind === 'char' || kind === 'block') {
    entry.devMajor = h.devmajor;
    entry.devMinor = h.devminor;
  }
  return entry;
}

/** One sentence for whatever tar-stream, zlib or the input threw. */
function mapError(err: unknown, st: ParseState): HyperboxError {
  if (err instanceof HyperboxError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  const what = st.what;
  const after = st.last === undefined ? 'at its start' : `after entry ${q(st.last)}`;
  if (msg === 'Unexpected end of data') {
    return st.last !== undefined && !st.lastComplete
      ? imageError(`${what} ends in the middle of entry ${q(st.last)}: the archive is truncated`, err)
      : imageError(`${what} ends in the middle of a header ${after}: the archive is truncated`, err);
  }
  if (msg.startsWith('Invalid tar header')) {
    return st.last === undefined
      ? imageError(`${what} is not a tar archive (its first header has a bad checksum)`, err)
      : imageError(`${what} has a corrupt header ${after} (bad checksum): the archive is damaged`, err);
  }
  if (msg === 'Invalid header') return imageError(`${what} has a corrupt header ${after} (its size field is not a number)`, err);
  if (msg === 'Header exceeds max size') return imageError(`${what} has a long-name or PAX header ${after} larger than 4 MiB: the archive is damaged`, err);
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return new HyperboxError('E_IMAGE', `cannot read ${what} (${reasonOf(err)})`, { cause: err });
  if (typeof code === 'string' && code.startsWith('Z_')) {
    return code === 'Z_BUF_ERROR'
      ? imageError(`${what} ends in the middle of its gzip data: the archive is truncated`, err)
      : imageError(`${what} is not valid gzip data (${msg})`, err);
  }
  return imageError(`${what} could not be read as a tar archive (${msg})`, err);
}

// ---------------------------------------------------------------------------------------------
// Decompression and feeding tar-stream

async function* buffers(input: AsyncIterable<Buffer | string | Uint8Array> | NodeJS.ReadableStream): AsyncGenerator<Buffer> {
  for await (const c of input as AsyncIterable<Buffer | string | Uint8Array>) {
    yield Buffer.isBuffer(c) ? c : typeof c === 'string' ? Buffer.from(c, 'latin1') : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
  }
}

/** `first`, then the rest of `it`; closes `it` when the reader stops early. */
async function* resume(first: Buffer, it: AsyncIterator<Buffer>): AsyncGenerator<Buffer> {
  let done = false;
  try {
    if (first.length) yield first;
    for (;;) {
      const r = await it.next();
      if (r.done) {
        done = true;
        return;
      }
      yield r.value;
    }
  } finally {
    if (!done) await it.return?.();
  }
}

async function* gunzip(src: AsyncIterable<Buffer>, st: ParseState): AsyncGenerator<Buffer> {
  const feed = Readable.from(src, { objectMode: false });
  const z = createGunzip();
  feed.on('error', (e) => z.destroy(e));
  feed.pipe(z);
  try {
    for await (const c of z) yield c as Buffer;
  } catch (e) {
    throw mapError(e, st);
  } finally {
    feed.destroy();
    z.destroy();
  }
}

/** The tar bytes of `input`: gzip is undone (by its magic), other compressions are refused. */
async function* decompressed(input: AsyncIterable<Buffer>, st: ParseState): AsyncGenerator<Buffer> {
  const it = input[Symbol.asyncIterator]();
  const head: Buffer[] = [];
  let n = 0;
  let ended = false;
  while (n < 6) {
    const r = await it.next();
    if (r.done) {
      ended = true;
      break;
    }
    head.push(r.value);
    n += r.value.length;
  }
  const first = Buffer.concat(head);
  const rest = ended ? resume(first, (async function* () {})()) : resume(first, it);
  const magic = (bytes: number[]) => bytes.every((b, i) => first[i] === b);
  const refuse = async (name: string) => {
    if (!ended) await it.return?.();
    return imageError(`${st.what} is compressed with ${name}, which is not supported: use an uncompressed or gzip-compressed tar`);
  };
  if (magic([0x1f, 0x8b])) yield* gunzip(rest, st);
  else if (magic([0x28, 0xb5, 0x2f, 0xfd])) throw await refuse('zstd');
  else if (magic([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) throw await refuse('xz');
  else if (magic([0x42, 0x5a, 0x68])) throw await refuse('bzip2');
  else yield* rest;
}

/** The tar bytes of a possibly gzip-compressed stream (as readTarLayer sees them). */
export function decompress(input: AsyncIterable<Buffer>, what: string): AsyncIterable<Buffer> {
  return decompressed(input, { what, globalPax: new Map(), localPax: undefined, entryPax: new Map(), last: undefined, lastComplete: true });
}

/** How the data ended: an archive must close with a zero block, else it was cut at a header boundary. */
class Tail {
  total = 0;
  trailingZeros = 0;
  add(chunk: Buffer): void {
    this.total += chunk.length;
    let i = chunk.length - 1;
    while (i >= 0 && chunk[i] === 0) i--;
    this.trailingZeros = i < 0 ? this.trailingZeros + chunk.length : chunk.length - 1 - i;
  }
}

/** Writes `src` into tar-stream with backpressure; stops when the parser was destroyed. */
async function pump(src: AsyncIterable<Buffer>, ex: TsExtract, tail: Tail): Promise<void> {
  for await (const chunk of src) {
    if (ex.destroying) return;
    tail.add(chunk);
    if (!ex.write(chunk)) {
      if (ex.destroying) return;
      await new Promise<void>((resolve) => {
        const done = () => {
          ex.off('drain', done);
          ex.off('close', done);
          resolve();
        };
        ex.on('drain', done);
        ex.on('close', done);
      });
    }
  }
  if (!ex.destroying) ex.end();
}

/** The data of one entry, pulled from tar-stream on demand. */
class Body {
  private readonly it: AsyncIterator<Buffer>;
  private state: 'new' | 'reading' | 'done' | 'closed' = 'new';
  private got = 0;
  readonly streamed: StreamedEntry;

  constructor(
    ts: TsEntry,
    private readonly entry: LayerEntry,
    private readonly dataSize: number,
    private readonly st: ParseState,
  ) {
    this.it = ts[Symbol.asyncIterator]();
    const isFile = entry.kind === 'file';
    this.streamed = {
      entry,
      body: { [Symbol.asyncIterator]: () => (isFile ? this.read() : this.none()) },
      skip: () => this.drain(),
    };
  }

  private async *none(): AsyncGenerator<Buffer> {}

  private async *read(): AsyncGenerator<Buffer> {
    if (this.state === 'closed') throw new Error(`the body of ${this.entry.path} was read after the next entry was requested`);
    if (this.state !== 'new') throw new Error(`the body of ${this.entry.path} was already read or skipped`);
    this.state = 'reading';
    for (;;) {
      const chunk = await this.pull();
      if (!chunk) return;
      yield chunk;
    }
  }

  private async pull(): Promise<Buffer | undefined> {
    if (this.state === 'done') return undefined;
    if (this.state === 'closed') throw new Error(`the body of ${this.entry.path} was read after the next entry was requested`);
    let r: IteratorResult<Buffer>;
    try {
      r = await this.it.next();
    } catch (e) {
      throw mapError(e, this.st);
    }
    if (r.done) {
      if (this.got !== this.dataSize) throw imageError(`${this.st.what} ends in the middle of entry ${q(this.entry.path)}: the archive is truncated`);
      this.state = 'done';
      this.st.lastComplete = true;
      return undefined;
    }
    this.got += r.value.length;
    return r.value;
  }

  /** Reads to the end of the data, dropping it. */
  async drain(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = this.state === 'new' ? 'reading' : this.state;
    while (await this.pull());
  }

  /** Called when the next entry is asked for: the rest of the data is skipped, later reads fail. */
  async close(): Promise<void> {
    await this.drain();
    this.state = 'closed';
  }
}

export interface ReadTarOptions {
  /** Verify the uncompressed tar bytes too (a Docker archive's diff_id). */
  uncompressed?: Expected;
}

/**
 * The entries of a tar layer (plain or gzip), normalised into LayerEntry and
 * streamed: each entry's data must be read or skipped before the next one (an
 * unread body is skipped automatically). `what` names the layer in errors. Any
 * corruption, including an error of `input` itself (a digest mismatch), rejects
 * the iteration with one sentence. Whiteouts pass through as ordinary entries.
 */
export async function* readTarLayer(
  input: AsyncIterable<Buffer> | NodeJS.ReadableStream,
  what: string,
  opts: ReadTarOptions = {},
): AsyncGenerator<StreamedEntry> {
  const st: ParseState = { what, globalPax: new Map(), localPax: undefined, entryPax: new Map(), last: undefined, lastComplete: true };
  // latin1 keeps ustar and GNU long names byte-exact; decodeName then insists on UTF-8.
  const extractOptions = { filenameEncoding: 'latin1', allowUnknownFormat: true } as Parameters<typeof tarStream.extract>[0];
  const ex = tarStream.extract(extractOptions) as unknown as TsExtract;
  hookPax(ex, st);
  const entries = ex[Symbol.asyncIterator]();
  const tail = new Tail();
  let src: AsyncIterable<Buffer> = decompressed(buffers(input), st);
  if (opts.uncompressed) src = verifyStream(src, opts.uncompressed);
  const pumping = pump(src, ex, tail).catch((e: unknown) => ex.destroy(e));

  let finished = false;
  try {
    for (;;) {
      let r: IteratorResult<TsEntry>;
      try {
        r = await entries.next();
      } catch (e) {
        throw mapError(e, st);
      }
      if (r.done) break;
      const entry = toEntry(r.value.header, st.entryPax, what);
      st.last = entry.path;
      // tar-stream delivers no data for directories, whatever their size field says.
      const dataSize = r.value.header.type === 'directory' ? 0 : r.value.header.size;
      st.lastComplete = dataSize === 0;
      const body = new Body(r.value, entry, dataSize, st);
      yield body.streamed;
      await body.close();
    }
    await pumping;
    if (tail.total === 0) throw imageError(`${what} is empty, not a tar archive`);
    if (tail.trailingZeros < 512) {
      throw imageError(`${what} ends without the end-of-archive marker${st.last === undefined ? '' : ` after entry ${q(st.last)}`}: the archive is truncated`);
    }
    finished = true;
  } finally {
    if (!finished) {
      ex.destroy();
      await pumping;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Archives on disk, indexed by their headers

/** A member of a tar file on disk: where its data is, and what it is. */
export interface TarMember {
  /** Leniently normalised (no './', no trailing '/'). */
  name: string;
  type: 'file' | 'dir' | 'symlink' | 'hardlink' | 'other';
  /** Byte offset of the data in the file, and its length. */
  offset: number;
  size: number;
  linkName?: string;
}

const MEMBER_TYPES: Record<string, TarMember['type']> = { '0': 'file', '\0': 'file', '7': 'file', '5': 'dir', '2': 'symlink', '1': 'hardlink' };

/**
 * The members of an (uncompressed) tar file, from its headers alone: each header
 * is read with a positional read and the data is skipped, so indexing a
 * multi-gigabyte image archive reads a few kilobytes. Handles ustar prefixes,
 * PAX path/linkpath/size and GNU long names.
 */
export async function scanTarFile(path: string, what: string): Promise<TarMember[]> {
  const fh = await open(path, 'r');
  try {
    const fileSize = (await fh.stat()).size;
    const members: TarMember[] = [];
    const block = Buffer.alloc(512);
    let pos = 0;
    let global = new Map<string, Buffer>();
    let local: Map<string, Buffer> | undefined;
    let longName: string | undefined;
    let longLink: string | undefined;
    const readAt = async (len: number, at: number): Promise<Buffer> => {
      const buf = Buffer.alloc(len);
      const { bytesRead } = await fh.read(buf, 0, len, at);
      if (bytesRead < len) throw imageError(`${what} ends in the middle of a member${members.length ? ` after ${q(members[members.length - 1]!.name)}` : ''}: the archive is truncated`);
      return buf;
    };
    for (;;) {
      const { bytesRead } = await fh.read(block, 0, 512, pos);
      if (bytesRead === 0) throw imageError(`${what} ends without the end-of-archive marker: the archive is truncated`);
      if (bytesRead < 512) throw imageError(`${what} ends in the middle of a header: the archive is truncated`);
      if (block.every((b) => b === 0)) break;
      if (!isTarHeader(block)) {
        const after = members.length ? `after member ${q(members[members.length - 1]!.name)}` : 'at its start';
        throw imageError(`${what} has a corrupt header ${after} (bad checksum): the archive is damaged`);
      }
      const typeflag = String.fromCharCode(block[156]!);
      let size = headerNumber(block, 124, 12);
      if (!(size >= 0) || size > MAX_ENTRY_SIZE) throw imageError(`${what} has a header with a corrupt size field at byte ${pos}`);
      const dataAt = pos + 512;
      const next = () => dataAt + Math.ceil(size / 512) * 512;

      if (typeflag === 'x' || typeflag === 'g' || typeflag === 'L' || typeflag === 'K') {
        if (size > 4 * 1024 * 1024) throw imageError(`${what} has a long-name or PAX header larger than 4 MiB at byte ${pos}: the archive is damaged`);
        const data = await readAt(size, dataAt);
        if (typeflag === 'x') local = parsePax(data, what);
        else if (typeflag === 'g') global = mergePax(global, parsePax(data, what));
        else {
          const nul = data.indexOf(0);
          const text = data.toString('utf8', 0, nul < 0 ? data.length : nul);
          if (typeflag === 'L') longName = text;
          else longLink = text;
        }
        pos = next();
        continue;
      }

      const pax = mergePax(global, local);
      const str = (off: number, len: number) => {
        const f = block.subarray(off, off + len);
        const nul = f.indexOf(0);
        return f.toString('utf8', 0, nul < 0 ? len : nul);
      };
      let name = str(0, 100);
      if (block.toString('latin1', 257, 262) === 'ustar' && block[345] !== 0 && block[262] === 0) name = `${str(345, 155)}/${name}`;
      name = pax.get('path')?.toString('utf8') ?? longName ?? name;
      const link = pax.get('linkpath')?.toString('utf8') ?? longLink ?? str(157, 100);
      const paxSize = pax.get('size')?.toString('latin1');
      if (paxSize !== undefined) {
        size = /^[0-9]{1,15}$/.test(paxSize) ? Number(paxSize) : NaN;
        if (!(size <= MAX_ENTRY_SIZE)) throw imageError(`${what} has a malformed PAX size for member ${q(name)}`);
      }
      local = undefined;
      longName = undefined;
      longLink = undefined;

      let type = MEMBER_TYPES[typeflag] ?? 'other';
      if (type === 'file' && name.endsWith('/')) type = 'dir';
      const member: TarMember = { name: memberName(name), type, offset: dataAt, size: type === 'file' ? size : 0 };
      if (type === 'symlink') member.linkName = link;
      if (type === 'hardlink') member.linkName = memberName(link);
      if (dataAt + size > fileSize) throw imageError(`${what} ends in the middle of member ${q(member.name)}: the archive is truncated`);
      members.push(member);
      pos = next();
    }
    return members;
  } finally {
    await fh.close();
  }
}
