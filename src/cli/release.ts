/**
 * Releasing a container: the features' poststop, config.json put back, state
 * removed. Shared by the poststop hook, `gc`, and the restore watcher after a
 * failed create, so all three leave the host the same way.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { OciState } from '../../config-schema/state.js';
import { reasonOf } from '../errors.js';
import type { AnyFeature } from '../features/types.js';
import { ORIGINAL_CONFIG, readPlan, removeContainerState, WRITTEN_CONFIG } from '../oci/state.js';
import { writeFileAtomic } from '../store/atomic.js';
import type { Logger } from './log.js';

/** Releases one container's state dir; returns false when some step failed (and was logged). */
export async function releaseContainer(stateDir: string, features: readonly AnyFeature[], log: Logger, state: OciState | undefined): Promise<boolean> {
  let plan;
  try {
    plan = readPlan(stateDir);
  } catch (err) {
    log.warn(`hyperbox-runc: ${reasonOf(err)}; removing it`);
    removeContainerState(stateDir);
    return false;
  }
  let ok = true;
  for (const [name, options] of Object.entries(plan.features)) {
    const feature = features.find((f) => f.name === name);
    const poststop = feature?.hooks?.poststop;
    if (!poststop) continue;
    try {
      await poststop({ stage: 'poststop', state, options, plan, stateDir, log });
    } catch (err) {
      ok = false;
      log.warn(`hyperbox-runc: ${name}: releasing container ${plan.id} failed: ${reasonOf(err)}`);
    }
  }
  ok = restoreConfig(plan.configPath, stateDir, log) && ok;
  removeContainerState(stateDir);
  return ok;
}

/**
 * Puts the caller's config.json back, but only while it still holds exactly
 * what hyperbox wrote: an edit made since is the caller's and is kept.
 */
function restoreConfig(configPath: string, stateDir: string, log: Logger): boolean {
  const writtenPath = join(stateDir, WRITTEN_CONFIG);
  if (!existsSync(writtenPath)) return true;
  try {
    const written = readFileSync(writtenPath);
    const current = readFileSync(configPath);
    if (!current.equals(written)) return true;
    const st = statSync(configPath);
    writeFileAtomic(configPath, readFileSync(join(stateDir, ORIGINAL_CONFIG)), { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true; // bundle already gone
    log.warn(`hyperbox-runc: cannot restore ${configPath}: ${reasonOf(err)}`);
    return false;
  }
}
