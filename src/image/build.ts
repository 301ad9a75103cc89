/** From an opened source to an EROFS image file: the layers merged and streamed into the writer. */
import { createReadStream, rmSync } from 'node:fs';
import { ErofsWriter, type ErofsStats } from './erofs.js';
import { mergeLayers, type MergeStats } from './merge.js';
import { readTarLayer } from './tar.js';
import type { LayerHandle } from './types.js';

export interface BuildResult extends ErofsStats {
  merge: MergeStats;
}

/** The root's metadata when no layer carries a './' entry (what tar -x into a fresh 0755 directory gives). */
const DEFAULT_ROOT = { mode: 0o755, uid: 0, gid: 0, mtimeSec: 0, mtimeNsec: 0, xattrs: [] as [string, Buffer][] };

/** Writes `layers` (bottom first) into a new image at `out`; on failure the partial file is removed. */
export async function buildErofs(layers: readonly LayerHandle[], out: string, layerNames?: string[]): Promise<BuildResult> {
  const writer = new ErofsWriter(out, { ...DEFAULT_ROOT });
  try {
    const merge = await mergeLayers(layers, writer, layerNames);
    return { ...writer.finish(), merge };
  } catch (err) {
    writer.abort();
    rmSync(out, { force: true });
    throw err;
  }
}

/** Layers from plain (or gzip'd) tar files, bottom first: what the tests and the benchmark feed. */
export function tarLayers(tarPaths: readonly string[]): LayerHandle[] {
  return tarPaths.map((path) => ({ open: () => readTarLayer(createReadStream(path, { highWaterMark: 1 << 20 }), path) }));
}

export async function buildErofsFromTars(tarPaths: string[], out: string): Promise<BuildResult> {
  return buildErofs(tarLayers(tarPaths), out, tarPaths);
}
