/**
 * Merging image layers into one tree, top layer first.
 *
 * Reading top-down means the first entry seen for a path is the one that
 * survives: a lower entry at a path an upper layer already decided, under a
 * path an upper layer whited out (`.wh.NAME`), under a directory an upper layer
 * made opaque (`.wh..wh..opq`), or under an upper non-directory is skipped, its
 * data never read into the image. Directories merge: the topmost one's metadata
 * wins and every layer may add children.
 *
 * Hardlinks follow tar's rule: a link names a path as it was when its layer was
 * extracted, i.e. an entry earlier in its own layer or the path as the layers
 * below left it. A target from a lower layer is found when that layer is read
 * (and kept even if an upper layer hides its path); a target earlier in the same
 * layer that was skipped as shadowed is read again in a second pass over that layer.
 */
import { HyperboxError } from '../errors.js';
import type { ErofsWriter, Inode, InodeMeta } from './erofs.js';
import type { LayerEntry, LayerHandle, StreamedEntry } from './types.js';

const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';

interface Node {
  inode: Inode | undefined; // undefined: a hardlink waiting for its target from a lower layer
  kind: 'dir' | 'other';
  layer: number;
  /** Created for a child whose parent entry has not been seen (yet). */
  implicit: boolean;
}

interface PendingLink {
  path: string;
  /** The layer the link is in: its target is the path as seen from there. */
  view: number;
}

/** What a merge did. */
export interface MergeStats {
  entries: number;
  /** Entries read but not written: shadowed, whited out, or under an opaque directory. */
  skipped: number;
  whiteouts: number;
  /** Layers read a second time for hardlinks to skipped entries. */
  rereads: number;
}

function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i);
}

function baseOf(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** Proper ancestors, root ('') first. */
function ancestors(path: string): string[] {
  if (path === '') return [];
  const out = [''];
  let i = path.indexOf('/');
  while (i >= 0) {
    out.push(path.slice(0, i));
    i = path.indexOf('/', i + 1);
  }
  return out;
}

function metaOf(e: LayerEntry): InodeMeta {
  return { mode: e.mode, uid: e.uid, gid: e.gid, mtimeSec: e.mtimeSec, mtimeNsec: e.mtimeNsec, xattrs: e.xattrs };
}

const IMPLICIT_DIR: InodeMeta = { mode: 0o755, uid: 0, gid: 0, mtimeSec: 0, mtimeNsec: 0, xattrs: [] };

/** Merges `layers` (bottom first, as an image lists them) into `writer`. */
export async function mergeLayers(layers: readonly LayerHandle[], writer: ErofsWriter, names: readonly string[] = []): Promise<MergeStats> {
  const stats: MergeStats = { entries: 0, skipped: 0, whiteouts: 0, rereads: 0 };
  const nodes = new Map<string, Node>([['', { inode: writer.root, kind: 'dir', layer: Infinity, implicit: true }]]);
  const whiteouts = new Map<string, number[]>();
  const opaques = new Map<string, number[]>();
  const pending = new Map<string, PendingLink[]>();
  const layerName = (i: number): string => names[i] ?? `layer ${i + 1} of ${layers.length}`;

  const marked = (map: Map<string, number[]>, path: string, cur: number, view: number): boolean =>
    map.get(path)?.some((l) => l > cur && l <= view) ?? false;

  /** Whether an entry of layer `cur` at `path` is hidden from the tree as layer `view` sees it. */
  const hidden = (path: string, cur: number, view: number): boolean => {
    if (marked(whiteouts, path, cur, view)) return true;
    for (const a of ancestors(path)) {
      if (marked(opaques, a, cur, view) || marked(whiteouts, a, cur, view)) return true;
      if (view === Infinity) {
        const n = nodes.get(a);
        if (n && n.kind !== 'dir' && n.layer > cur) return true;
      }
    }
    return false;
  };

  /** The directory inode at `path`, creating missing (implicit) directories on the way. */
  const dirAt = (path: string, layer: number, what: string): Inode => {
    const n = nodes.get(path);
    if (n) {
      if (n.kind !== 'dir') throw new HyperboxError('E_IMAGE_TREE', `${what}: ${path} is not a directory in the same layer`);
      return n.inode!;
    }
    const parent = dirAt(parentOf(path), layer, what);
    const inode = writer.dir({ ...IMPLICIT_DIR });
    writer.link(parent, baseOf(path), inode);
    nodes.set(path, { inode, kind: 'dir', layer, implicit: true });
    return inode;
  };

  const place = (path: string, inode: Inode | undefined, kind: Node['kind'], layer: number, what: string): void => {
    const parent = dirAt(parentOf(path), layer, what);
    if (inode) writer.link(parent, baseOf(path), inode);
    nodes.set(path, { inode, kind, layer, implicit: false });
  };

  /** Links every waiting hardlink at `path` (and links waiting on those) to `inode`. */
  const resolve = (linkPath: string, inode: Inode): void => {
    const n = nodes.get(linkPath);
    if (n && n.inode === undefined) {
      n.inode = inode;
      writer.link(nodes.get(parentOf(linkPath))!.inode!, baseOf(linkPath), inode);
    }
    for (const p of pending.get(linkPath) ?? []) resolve(p.path, inode);
    pending.delete(linkPath);
  };

  /** Builds an inode from an entry (reading its data); hardlinks are not inodes. */
  const makeInode = async (s: StreamedEntry, what: string): Promise<Inode> => {
    const e = s.entry;
    const meta = metaOf(e);
    switch (e.kind) {
      case 'file':
        return writer.file(meta, e.size, s.body, what);
      case 'dir':
        return writer.dir(meta);
      case 'symlink':
        await s.skip();
        return writer.symlink(meta, e.linkTarget ?? '');
      case 'char':
      case 'block':
        await s.skip();
        return writer.special(e.kind, meta, e.devMajor ?? 0, e.devMinor ?? 0);
      case 'fifo':
      case 'socket':
        await s.skip();
        return writer.special(e.kind, meta);
      default:
        throw new Error(`makeInode: ${e.kind}`);
    }
  };

  for (let layer = layers.length - 1; layer >= 0; layer--) {
    const name = layerName(layer);
    /** This layer's entries so far: their inode, or null when skipped (for the second pass). */
    const seen = new Map<string, Inode | null>();
    const reread = new Map<string, string[]>(); // skipped target -> links waiting for it
    const alias = new Map<string, string>(); // hardlink name -> the name it links to

    for await (const s of layers[layer]!.open()) {
      const e = s.entry;
      const what = `${name}: ${e.path || '/'}`;
      stats.entries++;
      const base = baseOf(e.path);
      if (base.startsWith(WHITEOUT)) {
        await s.skip();
        stats.whiteouts++;
        const dir = parentOf(e.path);
        const key = base === OPAQUE ? dir : (dir ? `${dir}/` : '') + base.slice(WHITEOUT.length);
        const map = base === OPAQUE ? opaques : whiteouts;
        map.set(key, [...(map.get(key) ?? []), layer]);
        continue;
      }
      const kind: Node['kind'] = e.kind === 'dir' ? 'dir' : 'other';
      const existing = nodes.get(e.path);
      const waiting = (pending.get(e.path) ?? []).filter((p) => !hidden(e.path, layer, p.view));
      const visible = !hidden(e.path, layer, Infinity) && !(existing && existing.layer > layer && !(existing.implicit && kind === 'dir' && existing.kind === 'dir'));

      if (e.kind === 'hardlink') {
        await s.skip();
        // A link to a name that is itself a link in this layer means that name's target.
        let target = e.linkTarget!;
        for (let hops = 0; alias.has(target) && hops < 64; hops++) target = alias.get(target)!;
        const inSameLayer = seen.get(target);
        if (!visible && waiting.length === 0) {
          stats.skipped++;
          alias.set(e.path, target);
          continue;
        }
        if (visible) place(e.path, undefined, 'other', layer, what);
        if (inSameLayer) {
          resolve(e.path, inSameLayer);
          seen.set(e.path, inSameLayer);
        } else {
          alias.set(e.path, target);
          if (inSameLayer === null) reread.set(target, [...(reread.get(target) ?? []), e.path]);
          // From a lower layer: wait for it (what waited on this name now waits on the target too).
          else pending.set(target, [...(pending.get(target) ?? []), { path: e.path, view: layer }]);
        }
        continue;
      }

      if (!visible && waiting.length === 0) {
        await s.skip();
        stats.skipped++;
        seen.set(e.path, null);
        continue;
      }
      if (kind === 'dir' && existing?.kind === 'dir' && (existing.layer === layer || existing.implicit)) {
        // The same directory again (or the real entry of an implicit one): its metadata, same inode.
        await s.skip();
        existing.inode!.meta = metaOf(e);
        existing.implicit = false;
        existing.layer = layer;
        seen.set(e.path, existing.inode!);
        continue;
      }
      const inode = await makeInode(s, what);
      if (kind === 'dir') inode.children ??= new Map();
      if (visible) place(e.path, inode, kind, layer, what);
      seen.set(e.path, inode);
      for (const p of waiting) resolve(p.path, inode);
      if (waiting.length) pending.set(e.path, (pending.get(e.path) ?? []).filter((p) => !waiting.includes(p)));
      if (pending.get(e.path)?.length === 0) pending.delete(e.path);
    }

    if (reread.size > 0) {
      stats.rereads++;
      for await (const s of layers[layer]!.open()) {
        const links = reread.get(s.entry.path);
        if (!links || s.entry.kind === 'dir' || s.entry.kind === 'hardlink') {
          await s.skip();
          continue;
        }
        reread.delete(s.entry.path);
        const inode = await makeInode(s, `${name}: ${s.entry.path}`);
        for (const l of links) resolve(l, inode);
      }
      for (const [target, links] of reread) {
        throw new HyperboxError('E_IMAGE_LINK', `hardlink /${links[0]} in ${name} points to /${target}, which is not a file of that layer`);
      }
    }
  }

  for (const [target, links] of pending) {
    throw new HyperboxError('E_IMAGE_LINK', `hardlink /${links[0]!.path} in ${layerName(links[0]!.view)} points to /${target}, which no layer below it provides`);
  }
  return stats;
}
