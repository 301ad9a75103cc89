/**
 * Poststop summaries: <store>/trace/<container id>.json, root-only, written
 * atomically. The newest KEEP are kept, so a CI host that runs thousands of
 * traced containers does not fill its disk with them.
 */
import { mkdirSync, readdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { HyperboxError, reasonOf } from '../../errors.js';
import { isValidContainerId } from '../../oci/state.js';
import { writeFileAtomic } from '../../store/atomic.js';
import { storeBase } from '../../store/profiles.js';
import type { TraceSummary } from './sample.js';

const KEEP = 500;

export function summaryDir(): string {
  return join(storeBase(), 'trace');
}

export function writeSummary(summary: TraceSummary): void {
  const dir = summaryDir();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileAtomic(join(dir, `${summary.containerId}.json`), JSON.stringify(summary, null, 2) + '\n', { mode: 0o600 });
  const files = readdirSync(dir).filter((f) => f.endsWith('.json') && !f.startsWith('.'));
  if (files.length <= KEEP) return;
  const byAge = files.map((f) => ({ f, t: statSync(join(dir, f)).mtimeMs })).sort((a, b) => a.t - b.t);
  for (const { f } of byAge.slice(0, files.length - KEEP)) unlinkSync(join(dir, f));
}

export function readSummary(id: string): TraceSummary {
  if (!isValidContainerId(id)) throw new HyperboxError('E_USAGE', `bad container id ${JSON.stringify(id)}`);
  const path = join(summaryDir(), `${id}.json`);
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as TraceSummary;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new HyperboxError('E_NOT_FOUND', `no trace summary for container ${id} (summaries are written when a traced container is deleted)`);
    throw new HyperboxError('E_STORE', `cannot read ${path}: ${reasonOf(err)}`, { cause: err });
  }
}
