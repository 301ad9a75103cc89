/** `hyperbox-runc gc`: releases hyperbox state of containers runc no longer knows. */
import { existsSync } from 'node:fs';
import { writeSync } from 'node:fs';
import type { AnyFeature } from '../features/types.js';
import { listContainerStateDirs, readPlan, removeContainerState, runcStatePath } from '../oci/state.js';
import type { Logger } from './log.js';
import { releaseContainer } from './release.js';

/** Releases one state dir (or all) whose container runc does not have; prints what it released. */
export async function gc(features: readonly AnyFeature[], log: Logger, onlyStateDir?: string): Promise<number> {
  const dirs = onlyStateDir ? (existsSync(onlyStateDir) ? [onlyStateDir] : []) : listContainerStateDirs();
  let failed = 0;
  for (const dir of dirs) {
    let plan;
    try {
      plan = readPlan(dir);
    } catch {
      // A dir without a readable plan was never finished by a create: nothing runs from it.
      removeContainerState(dir);
      continue;
    }
    if (existsSync(runcStatePath(plan.runcRoot, plan.id))) continue;
    if (!(await releaseContainer(dir, features, log, undefined))) failed++;
    if (!onlyStateDir) writeSync(1, `released ${plan.id} (runc root ${plan.runcRoot})\n`);
  }
  return failed ? 1 : 0;
}
