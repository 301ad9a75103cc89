/**
 * An EROFS image writer: uncompressed, 4 KiB blocks, written in one pass.
 *
 * Layout of the image it writes:
 *   block 0            zeros, the superblock at byte 1024
 *   data area          file data as it streams in (full blocks; all-zero blocks are left as holes)
 *                      then directory blocks
 *   metadata area      inodes (root first, so its nid fits the superblock's 16 bits), each followed
 *                      by its xattrs and, when it fits in the same block, its inline tail
 *   shared xattrs      (name, value) pairs that more than one inode carries
 *
 * File data goes to disk as it arrives; only metadata (and the <4 KiB tails,
 * spilled to a side file past a budget) is held until finish(), because a
 * directory's contents and every inode's nid are only known once all layers
 * are read. Inodes are compact (32 bytes) when their fields fit and their mtime
 * is the image's build time (chosen as the commonest mtime), else extended (64).
 */
import { closeSync, ftruncateSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { HyperboxError } from '../errors.js';

export const BLOCK = 4096;
const SUPER_OFFSET = 1024;
const MAGIC = 0xe0f5e1e2;
const COMPACT_SIZE = 32;
const EXTENDED_SIZE = 64;
const DIRENT_SIZE = 12;
const NULL_BLK = 0;
const LAYOUT_PLAIN = 0;
const LAYOUT_INLINE = 2;
const ZERO_BLOCK = Buffer.alloc(BLOCK);
/** Tails kept in memory before they spill to a side file. */
const TAIL_MEMORY_BUDGET = 64 << 20;

const S_IFMT = { file: 0o100000, dir: 0o040000, symlink: 0o120000, char: 0o020000, block: 0o060000, fifo: 0o010000, socket: 0o140000 } as const;
const FILE_TYPE = { file: 1, dir: 2, char: 3, block: 4, fifo: 5, socket: 6, symlink: 7 } as const;

/** xattr name prefixes EROFS stores as an index; POSIX ACLs are whole names. */
const XATTR_PREFIXES: [string, number][] = [
  ['system.posix_acl_access', 2],
  ['system.posix_acl_default', 3],
  ['user.', 1],
  ['trusted.', 4],
  ['security.', 6],
];

export type InodeKind = keyof typeof S_IFMT;

/** What every inode carries besides its data. */
export interface InodeMeta {
  mode: number;
  uid: number;
  gid: number;
  mtimeSec: number;
  mtimeNsec: number;
  xattrs: [string, Buffer][];
}

/** An inode of the image being written. */
export interface Inode {
  kind: InodeKind;
  meta: InodeMeta;
  size: number;
  /** First data block (full blocks, or all blocks of a plain layout). */
  blkaddr: number;
  /** Tail stored inline after the inode: its place in the tail store, or -1. */
  tailRef: number;
  tailLen: number;
  rdev: number;
  /** Directories: children by name. */
  children?: Map<string, Inode>;
  /** Symlinks: the target. */
  target?: Buffer;
  nlink: number;
  nid: number;
}

/** What a finished image holds. */
export interface ErofsStats {
  bytes: number;
  blocks: number;
  inodes: number;
  /** Bytes of file data written (holes excluded). */
  dataBytes: number;
  /** Things that could not be represented (an xattr namespace EROFS has no index for). */
  warnings: string[];
}

interface EncodedXattr {
  key: string;
  index: number;
  name: Buffer;
  value: Buffer;
  /** Entry size, 4-aligned. */
  size: number;
}

function encodeXattr(name: string, value: Buffer): EncodedXattr | undefined {
  for (const [prefix, index] of XATTR_PREFIXES) {
    if (name === prefix || (prefix.endsWith('.') && name.startsWith(prefix) && name.length > prefix.length)) {
      const suffix = Buffer.from(prefix.endsWith('.') ? name.slice(prefix.length) : '', 'utf8');
      if (suffix.length > 255) return undefined;
      const size = (4 + suffix.length + value.length + 3) & ~3;
      return { key: `${index}\0${suffix.toString('latin1')}\0${value.toString('latin1')}`, index, name: suffix, value, size };
    }
  }
  return undefined;
}

function writeXattrEntry(buf: Buffer, off: number, x: EncodedXattr): void {
  buf[off] = x.name.length;
  buf[off + 1] = x.index;
  buf.writeUInt16LE(x.value.length, off + 2);
  x.name.copy(buf, off + 4);
  x.value.copy(buf, off + 4 + x.name.length);
}

/** Linux's new_encode_dev: how st_rdev is stored. */
function encodeDev(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

/** Tails of files until finish(): in memory up to a budget, then in a side file. */
class TailStore {
  private chunks: Buffer[] = [];
  private memStart = 0;
  private length = 0;
  private fd = -1;
  constructor(private readonly spillPath: string) {}

  add(data: Buffer): number {
    const ref = this.length;
    this.chunks.push(Buffer.from(data));
    this.length += data.length;
    if (this.length - this.memStart > TAIL_MEMORY_BUDGET) this.spill();
    return ref;
  }

  private spill(): void {
    if (this.fd < 0) this.fd = openSync(this.spillPath, 'w+', 0o600);
    const all = Buffer.concat(this.chunks);
    writeSync(this.fd, all, 0, all.length, this.memStart);
    this.memStart = this.length;
    this.chunks = [];
  }

  /** Reads tails back in any order (random reads from the side file). */
  get(ref: number, len: number): Buffer {
    if (ref >= this.memStart) {
      if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
      return this.chunks[0]!.subarray(ref - this.memStart, ref - this.memStart + len);
    }
    const out = Buffer.alloc(len);
    readSync(this.fd, out, 0, len, ref);
    return out;
  }

  close(): void {
    if (this.fd >= 0) {
      closeSync(this.fd);
      this.fd = -1;
      try {
        unlinkSync(this.spillPath);
      } catch {
        /* already gone */
      }
    }
    this.chunks = [];
  }
}

/** Sequential block writer for the data area that leaves all-zero blocks as holes. */
class BlockWriter {
  private buf = Buffer.alloc(1 << 20);
  private used = 0;
  /** Byte offset in the image where buf[0] goes. */
  private bufPos: number;
  dataBytes = 0;
  constructor(private readonly fd: number, startBlock: number) {
    this.bufPos = startBlock * BLOCK;
  }

  /** The block the next write starts at (the writer is always block aligned between files). */
  get nextBlock(): number {
    return (this.bufPos + this.used) / BLOCK;
  }

  /** Appends one block's bytes (a short last block is padded by the image's zeros). */
  block(data: Buffer): void {
    if (data.length === BLOCK && data.equals(ZERO_BLOCK)) {
      this.flush();
      this.bufPos += BLOCK;
      return;
    }
    if (this.used + BLOCK > this.buf.length) this.flush();
    data.copy(this.buf, this.used);
    if (data.length < BLOCK) this.buf.fill(0, this.used + data.length, this.used + BLOCK);
    this.used += BLOCK;
    this.dataBytes += data.length;
  }

  flush(): void {
    let off = 0;
    while (off < this.used) off += writeSync(this.fd, this.buf, off, this.used - off, this.bufPos + off);
    this.bufPos += this.used;
    this.used = 0;
  }
}

/** The image, built by adding inodes and linking them into directories, then finish(). */
export class ErofsWriter {
  readonly root: Inode;
  private readonly fd: number;
  private readonly data: BlockWriter;
  private readonly tails: TailStore;
  private readonly warnings: string[] = [];
  private finished = false;

  constructor(readonly path: string, rootMeta: InodeMeta) {
    this.fd = openSync(path, 'w', 0o644);
    this.data = new BlockWriter(this.fd, 1);
    this.tails = new TailStore(`${path}.tails`);
    this.root = this.newInode('dir', rootMeta);
    this.root.children = new Map();
  }

  private newInode(kind: InodeKind, meta: InodeMeta): Inode {
    return { kind, meta, size: 0, blkaddr: NULL_BLK, tailRef: -1, tailLen: 0, rdev: 0, nlink: 0, nid: -1 };
  }

  /** Room an inode's xattrs take inline at most (all unshared), to decide whether its tail fits. */
  private xattrRoom(meta: InodeMeta): number {
    let size = 0;
    for (const [name, value] of meta.xattrs) size += encodeXattr(name, value)?.size ?? 0;
    return size === 0 ? 0 : 12 + size;
  }

  private canInline(meta: InodeMeta, tail: number): boolean {
    return tail > 0 && EXTENDED_SIZE + this.xattrRoom(meta) + tail <= BLOCK;
  }

  dir(meta: InodeMeta): Inode {
    const inode = this.newInode('dir', meta);
    inode.children = new Map();
    return inode;
  }

  symlink(meta: InodeMeta, target: string): Inode {
    const inode = this.newInode('symlink', meta);
    inode.target = Buffer.from(target, 'utf8');
    inode.size = inode.target.length;
    return inode;
  }

  special(kind: 'char' | 'block' | 'fifo' | 'socket', meta: InodeMeta, major = 0, minor = 0): Inode {
    const inode = this.newInode(kind, meta);
    if (kind === 'char' || kind === 'block') inode.rdev = encodeDev(major, minor);
    return inode;
  }

  /** A regular file whose `size` bytes of data are read from `body` and written now. */
  async file(meta: InodeMeta, size: number, body: AsyncIterable<Buffer>, what: string): Promise<Inode> {
    const inode = this.newInode('file', meta);
    inode.size = size;
    const tail = size % BLOCK;
    const inline = this.canInline(meta, tail);
    const fullBlocks = inline ? Math.floor(size / BLOCK) : Math.ceil(size / BLOCK);
    inode.blkaddr = fullBlocks > 0 ? this.data.nextBlock : NULL_BLK;
    const block = Buffer.alloc(BLOCK);
    let fill = 0;
    let seen = 0;
    let blocksDone = 0;
    for await (const chunk of body) {
      if (seen + chunk.length > size) throw new HyperboxError('E_IMAGE_DATA', `${what} has more data than its header says (${size} bytes)`);
      seen += chunk.length;
      let off = 0;
      // Whole blocks straight from the chunk when nothing is pending: no copy.
      while (off < chunk.length) {
        if (fill === 0 && blocksDone < fullBlocks && chunk.length - off >= BLOCK) {
          this.data.block(chunk.subarray(off, off + BLOCK));
          blocksDone++;
          off += BLOCK;
          continue;
        }
        const n = Math.min(BLOCK - fill, chunk.length - off);
        chunk.copy(block, fill, off, off + n);
        fill += n;
        off += n;
        if (fill === BLOCK && blocksDone < fullBlocks) {
          this.data.block(block);
          blocksDone++;
          fill = 0;
        }
      }
    }
    if (seen !== size) throw new HyperboxError('E_IMAGE_DATA', `${what} ends after ${seen} of its ${size} bytes: the archive is truncated`);
    if (inline) {
      inode.tailRef = this.tails.add(block.subarray(0, fill));
      inode.tailLen = fill;
    } else if (fill > 0) {
      this.data.block(block.subarray(0, fill));
    }
    return inode;
  }

  /** Puts `inode` into directory `parent` as `name` (replacing what was there). */
  link(parent: Inode, name: string, inode: Inode): void {
    parent.children!.set(name, inode);
  }

  /** Writes directories, inodes, shared xattrs and the superblock; closes the file. */
  finish(): ErofsStats {
    if (this.finished) throw new Error('ErofsWriter.finish called twice');
    this.finished = true;
    try {
      return this.writeMetadata();
    } finally {
      this.tails.close();
      closeSync(this.fd);
    }
  }

  /** Abandons the image (the caller removes the file). */
  abort(): void {
    if (this.finished) return;
    this.finished = true;
    this.tails.close();
    closeSync(this.fd);
  }

  private writeMetadata(): ErofsStats {
    // Every inode once, depth first from the root; nlink from the links.
    const order: Inode[] = [];
    const parents = new Map<Inode, Inode>();
    const visit = (dir: Inode): void => {
      order.push(dir);
      dir.nlink = 2;
      for (const child of dir.children!.values()) {
        if (child.kind === 'dir') {
          dir.nlink++;
          if (parents.has(child)) throw new HyperboxError('E_IMAGE_TREE', 'a directory is linked twice in the image tree');
          parents.set(child, dir);
          visit(child);
        } else {
          if (child.nlink === 0) order.push(child);
          child.nlink++;
        }
      }
    };
    parents.set(this.root, this.root);
    visit(this.root);

    // Directory contents (names only, nids come later) give each directory's size.
    const dirLayouts = new Map<Inode, DirBlock[]>();
    for (const inode of order) {
      if (inode.kind !== 'dir') continue;
      const blocks = layoutDirectory(inode, parents.get(inode)!);
      dirLayouts.set(inode, blocks);
      inode.size = (blocks.length - 1) * BLOCK + blocks[blocks.length - 1]!.used;
    }

    // The commonest mtime becomes the build time, so those inodes can be compact.
    const mtimes = new Map<string, number>();
    for (const inode of order) {
      const k = `${inode.meta.mtimeSec}.${inode.meta.mtimeNsec}`;
      mtimes.set(k, (mtimes.get(k) ?? 0) + 1);
    }
    let buildKey = '0.0';
    let best = -1;
    for (const [k, n] of mtimes) if (n > best) [buildKey, best] = [k, n];
    const [buildSec, buildNsec] = buildKey.split('.').map(Number) as [number, number];

    // xattrs: a pair more than one inode carries is stored once, in the shared area.
    const encoded = new Map<Inode, EncodedXattr[]>();
    const pairCount = new Map<string, number>();
    for (const inode of order) {
      const list: EncodedXattr[] = [];
      for (const [name, value] of inode.meta.xattrs) {
        const x = encodeXattr(name, value);
        if (!x) {
          this.warnings.push(`xattr ${name} skipped: EROFS stores only user., trusted., security. and POSIX ACL xattrs`);
          continue;
        }
        list.push(x);
        pairCount.set(x.key, (pairCount.get(x.key) ?? 0) + 1);
      }
      if (list.length) encoded.set(inode, list);
    }
    const sharedIds = new Map<string, number>();
    const sharedEntries: { x: EncodedXattr; off: number }[] = [];
    let sharedSize = 0;
    for (const list of encoded.values()) {
      for (const x of list) {
        if ((pairCount.get(x.key) ?? 0) < 2 || sharedIds.has(x.key)) continue;
        if ((sharedSize % BLOCK) + x.size > BLOCK) sharedSize = Math.ceil(sharedSize / BLOCK) * BLOCK;
        sharedIds.set(x.key, sharedSize / 4);
        sharedEntries.push({ x, off: sharedSize });
        sharedSize += x.size;
      }
    }

    // Place every inode in the metadata area and decide what is inline.
    const dataEnd = (this.data.flush(), this.data.nextBlock);
    let dirBlk = dataEnd;
    let pos = 0;
    const placed: { inode: Inode; off: number; isize: number; xsize: number; inline: boolean; xattrs: EncodedXattr[] }[] = [];
    for (const inode of order) {
      const compact =
        inode.meta.uid <= 0xffff && inode.meta.gid <= 0xffff && inode.nlink <= 0xffff && inode.size <= 0xffffffff &&
        inode.meta.mtimeSec === buildSec && inode.meta.mtimeNsec === buildNsec;
      const isize = compact ? COMPACT_SIZE : EXTENDED_SIZE;
      const xattrs = encoded.get(inode) ?? [];
      let xbody = 0;
      for (const x of xattrs) xbody += sharedIds.has(x.key) ? 4 : x.size;
      const xsize = xattrs.length ? 12 + xbody : 0;
      let inline = false;
      if (inode.kind === 'file') {
        inline = inode.tailRef >= 0;
      } else if (inode.kind === 'dir' || inode.kind === 'symlink') {
        const tail = inode.size % BLOCK;
        inline = tail > 0 && isize + xsize + tail <= BLOCK;
        const blocks = inline ? Math.floor(inode.size / BLOCK) : Math.ceil(inode.size / BLOCK);
        inode.tailLen = inline ? tail : 0;
        if (blocks > 0) {
          inode.blkaddr = dirBlk;
          dirBlk += blocks;
        }
      }
      const total = isize + xsize + (inline ? inode.tailLen : 0);
      pos = (pos + 31) & ~31;
      if ((pos % BLOCK) + total > BLOCK && total <= BLOCK) pos = Math.ceil(pos / BLOCK) * BLOCK;
      inode.nid = pos / 32;
      placed.push({ inode, off: pos, isize, xsize, inline, xattrs });
      pos += total;
    }
    if (this.root.nid !== 0) throw new Error('root inode is not first');
    const metaBlk = dirBlk;
    const metaBlocks = Math.ceil(pos / BLOCK);
    const xattrBlk = metaBlk + metaBlocks;
    const totalBlocks = xattrBlk + Math.ceil(sharedSize / BLOCK);
    if (totalBlocks > 0xffffffff) throw new HyperboxError('E_IMAGE_SIZE', 'the image would exceed 16 TiB, the most a 4 KiB-block EROFS can address');

    // Data blocks of directories (and symlinks too long to inline).
    const out = new ChunkWriter(this.fd);
    const contents = (inode: Inode): Buffer => (inode.kind === 'dir' ? renderDirectory(dirLayouts.get(inode)!) : inode.target!);
    const tails = new Map<Inode, Buffer>();
    for (const { inode, inline } of placed) {
      if (inode.kind !== 'dir' && inode.kind !== 'symlink') continue;
      const bytes = contents(inode);
      if (inline) tails.set(inode, bytes.subarray(inode.size - inode.tailLen));
      if (inode.blkaddr === NULL_BLK) continue;
      const blocks = inline ? Math.floor(inode.size / BLOCK) : Math.ceil(inode.size / BLOCK);
      out.write(inode.blkaddr * BLOCK, blockPad(bytes.subarray(0, Math.min(bytes.length, blocks * BLOCK))));
    }

    // The metadata area, in order.
    const metaBase = metaBlk * BLOCK;
    for (const { inode, off, isize, xsize, inline, xattrs } of placed) {
      const rec = Buffer.alloc(isize + xsize + (inline ? inode.tailLen : 0));
      const layout = inline ? LAYOUT_INLINE : LAYOUT_PLAIN;
      const mode = S_IFMT[inode.kind] | (inode.meta.mode & 0o7777);
      const iu = inode.kind === 'char' || inode.kind === 'block' ? inode.rdev : inode.blkaddr;
      const icount = xsize ? (xsize - 12) / 4 + 1 : 0;
      if (isize === COMPACT_SIZE) {
        rec.writeUInt16LE((layout << 1) | 0, 0);
        rec.writeUInt16LE(icount, 2);
        rec.writeUInt16LE(mode, 4);
        rec.writeUInt16LE(inode.nlink, 6);
        rec.writeUInt32LE(inode.size, 8);
        rec.writeUInt32LE(iu, 16);
        rec.writeUInt32LE(inode.nid >>> 0, 20);
        rec.writeUInt16LE(inode.meta.uid, 24);
        rec.writeUInt16LE(inode.meta.gid, 26);
      } else {
        rec.writeUInt16LE((layout << 1) | 1, 0);
        rec.writeUInt16LE(icount, 2);
        rec.writeUInt16LE(mode, 4);
        rec.writeBigUInt64LE(BigInt(inode.size), 8);
        rec.writeUInt32LE(iu, 16);
        rec.writeUInt32LE(inode.nid >>> 0, 20);
        rec.writeUInt32LE(inode.meta.uid >>> 0, 24);
        rec.writeUInt32LE(inode.meta.gid >>> 0, 28);
        rec.writeBigInt64LE(BigInt(inode.meta.mtimeSec), 32);
        rec.writeUInt32LE(inode.meta.mtimeNsec, 40);
        rec.writeUInt32LE(inode.nlink, 44);
      }
      if (xsize) {
        const shared = xattrs.filter((x) => sharedIds.has(x.key));
        rec[isize + 4] = shared.length;
        let p = isize + 12;
        for (const x of shared) {
          rec.writeUInt32LE(sharedIds.get(x.key)!, p);
          p += 4;
        }
        for (const x of xattrs) {
          if (sharedIds.has(x.key)) continue;
          writeXattrEntry(rec, p, x);
          p += x.size;
        }
      }
      if (inline) {
        const start = isize + xsize;
        (inode.kind === 'file' ? this.tails.get(inode.tailRef, inode.tailLen) : tails.get(inode)!).copy(rec, start);
      }
      out.write(metaBase + off, rec);
    }

    // Shared xattrs.
    for (const { x, off } of sharedEntries) {
      const rec = Buffer.alloc(x.size);
      writeXattrEntry(rec, 0, x);
      out.write(xattrBlk * BLOCK + off, rec);
    }
    out.flush();

    const sb = Buffer.alloc(128);
    sb.writeUInt32LE(MAGIC, 0);
    sb[12] = 12; // blkszbits
    sb.writeUInt16LE(0, 14); // root nid
    sb.writeBigUInt64LE(BigInt(order.length), 16);
    sb.writeBigUInt64LE(BigInt(buildSec), 24);
    sb.writeUInt32LE(buildNsec, 32);
    sb.writeUInt32LE(totalBlocks, 36);
    sb.writeUInt32LE(metaBlk, 40);
    sb.writeUInt32LE(sharedSize ? xattrBlk : 0, 44);
    writeSync(this.fd, sb, 0, sb.length, SUPER_OFFSET);
    ftruncateSync(this.fd, totalBlocks * BLOCK);
    return { bytes: totalBlocks * BLOCK, blocks: totalBlocks, inodes: order.length, dataBytes: this.data.dataBytes, warnings: [...new Set(this.warnings)] };
  }
}

/** Positional writes gathered into sequential runs. */
class ChunkWriter {
  private parts: Buffer[] = [];
  private start = -1;
  private end = -1;
  constructor(private readonly fd: number) {}

  write(pos: number, data: Buffer): void {
    // Small gaps (inode alignment) are filled with zeros rather than cutting the run.
    if (this.start >= 0 && pos > this.end && pos - this.end < BLOCK) {
      this.parts.push(Buffer.alloc(pos - this.end));
      this.end = pos;
    }
    if (pos !== this.end || this.end - this.start > 1 << 20) this.flush();
    if (this.start < 0) this.start = this.end = pos;
    this.parts.push(data);
    this.end += data.length;
  }

  flush(): void {
    if (this.start < 0) return;
    const all = Buffer.concat(this.parts);
    let off = 0;
    while (off < all.length) off += writeSync(this.fd, all, off, all.length - off, this.start + off);
    this.parts = [];
    this.start = this.end = -1;
  }
}

interface DirBlock {
  entries: { name: Buffer; inode: Inode }[];
  used: number;
}

/** Sorted dirents (".", ".." included) cut into blocks; names are compared as bytes, as the kernel's lookup does. */
function layoutDirectory(dir: Inode, parent: Inode): DirBlock[] {
  const entries = [
    { name: Buffer.from('.'), inode: dir },
    { name: Buffer.from('..'), inode: parent },
    ...[...dir.children!].map(([name, inode]) => ({ name: Buffer.from(name, 'utf8'), inode })),
  ].sort((a, b) => Buffer.compare(a.name, b.name));
  const blocks: DirBlock[] = [];
  let cur: DirBlock = { entries: [], used: 0 };
  for (const e of entries) {
    if (e.name.length === 0 || e.name.length > 255) throw new HyperboxError('E_IMAGE_NAME', `a name of ${e.name.length} bytes cannot be stored (1 to 255 bytes)`);
    if (cur.used + DIRENT_SIZE + e.name.length > BLOCK) {
      blocks.push(cur);
      cur = { entries: [], used: 0 };
    }
    cur.entries.push(e);
    cur.used += DIRENT_SIZE + e.name.length;
  }
  blocks.push(cur);
  return blocks;
}

/** Directory blocks with nids filled in: full blocks padded with zeros, the last one as long as it is used. */
function renderDirectory(blocks: DirBlock[]): Buffer {
  const out = Buffer.alloc((blocks.length - 1) * BLOCK + blocks[blocks.length - 1]!.used);
  blocks.forEach((b, i) => {
    const base = i * BLOCK;
    let nameoff = b.entries.length * DIRENT_SIZE;
    b.entries.forEach((e, j) => {
      const d = base + j * DIRENT_SIZE;
      out.writeBigUInt64LE(BigInt(e.inode.nid), d);
      out.writeUInt16LE(nameoff, d + 8);
      out[d + 10] = FILE_TYPE[e.inode.kind];
      e.name.copy(out, base + nameoff);
      nameoff += e.name.length;
    });
  });
  return out;
}

function blockPad(data: Buffer): Buffer {
  const out = Buffer.alloc(Math.ceil(data.length / BLOCK) * BLOCK);
  data.copy(out);
  return out;
}
