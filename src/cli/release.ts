/**
 * Releasing a container: the features' poststop, config.json put back, state
 * removed. Shared by the poststop hook, `gc`, and the restore watcher after a
 * failed create, so all three leave the host the same way.
 */
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { OciState } from '../../config-schema/state.js';
import { reasonOf } from '../errors.js';
import type { AnyFeature } from '../features/types.js';
import type { Native } from '../native/index.js';
import { claimState, generatedBundlesDir, lockRoot, ORIGINAL_CONFIG, readPlan, removeContainerState, WRITTEN_CONFIG } from '../oci/state.js';
import { writeFileAtomic } from '../store/atomic.js';
import type { Logger } from './log.js';

/**
 * Releases one container's state: claims it under the root lock (only what
 * `expected` names, see claimState), then runs the release on the claimed
 * copy. Returns false when some step failed (each is logged).
 */
export async function releaseContainer(nat: Native, stateDir: string, features: readonly AnyFeature[], log: Logger, state: OciState | undefined, expected?: string | null): Promise<boolean> {
  const unlock = lockRoot(nat, stateDir);
  let claimed: string | undefined;
  try {
    claimed = claimState(stateDir, expected);
  } finally {
    unlock();
  }
  return claimed === undefined ? true : releaseClaimed(claimed, features, log, state);
}

/** The release itself, on a claimed state dir: features' poststop, config.json back, state removed. */
export async function releaseClaimed(claimed: string, features: readonly AnyFeature[], log: Logger, state: OciState | undefined): Promise<boolean> {
  let plan;
  try {
    plan = readPlan(claimed);
  } catch (err) {
    log.warn(`hyperbox-runc: ${reasonOf(err)}; removing it`);
    removeContainerState(claimed);
    return false;
  }
  let ok = true;
  for (const [name, options] of Object.entries(plan.features)) {
    const feature = features.find((f) => f.name === name);
    const poststop = feature?.hooks?.poststop;
    if (!poststop) continue;
    try {
      await poststop({ stage: 'poststop', state, options, plan, stateDir: claimed, log });
    } catch (err) {
      ok = false;
      log.warn(`hyperbox-runc: ${name}: releasing container ${plan.id} failed: ${reasonOf(err)}`);
    }
  }
  ok = restoreConfig(plan.configPath, claimed, log) && ok;
  if (dirname(plan.bundle) === generatedBundlesDir()) rmSync(plan.bundle, { recursive: true, force: true });
  if (!removeContainerState(claimed)) {
    log.warn(`hyperbox-runc: ${claimed} still has mounts; left in place for \`hyperbox-runc gc\``);
    return false;
  }
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
