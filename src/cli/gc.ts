/** `hyperbox-runc gc`: releases hyperbox state of containers runc no longer knows. */
import { existsSync, statSync, writeSync } from 'node:fs';
import type { PlanRecord } from '../../config-schema/plan.js';
import type { AnyFeature } from '../features/types.js';
import type { Native } from '../native/index.js';
import { claimedAge, listContainerStateDirs, readPlan, runcStatePath } from '../oci/state.js';
import type { Logger } from './log.js';
import { releaseClaimed, releaseContainer } from './release.js';

/**
 * State younger than this is left alone by a full gc: it may belong to a
 * create still on its way to runc, or a release still under way elsewhere.
 */
export const GRACE_MS = 5 * 60_000;

/**
 * Whether the process that made this state may still be creating: the pid in
 * its instance (the create's own pid, which becomes runc) still exists. A
 * hyperbox-runc killed mid-create is gone, so its state need not wait out the grace.
 */
function creatorMayRun(plan: PlanRecord | undefined): boolean {
  const m = plan ? /^([0-9a-z]+)-[0-9a-z]+-[0-9a-z]+$/.exec(plan.instance) : null; // newInstance()'s shape
  const pid = m ? parseInt(m[1]!, 36) : NaN;
  return !Number.isInteger(pid) || pid <= 0 || existsSync(`/proc/${pid}`);
}

function ageOf(dir: string, plan: PlanRecord | undefined): number {
  const since = plan ? Date.parse(plan.createdAt) : statSync(dir, { throwIfNoEntry: false })?.mtimeMs;
  return since === undefined || Number.isNaN(since) ? Infinity : Date.now() - since;
}

/**
 * Releases the state of containers runc no longer knows: one state dir (the
 * restore watcher passes the create's instance, so a container that reused
 * the id is left alone) or all of them. Prints what it released.
 */
export async function gc(nat: Native, features: readonly AnyFeature[], log: Logger, only?: { stateDir: string; instance?: string }): Promise<number> {
  const dirs = only ? [only.stateDir] : listContainerStateDirs();
  let failed = 0;
  for (const dir of dirs) {
    const age = claimedAge(dir);
    if (age !== undefined) {
      // Claimed by a release that crashed (or is still running, if recent).
      if (age > GRACE_MS && !(await releaseClaimed(dir, features, log, undefined))) failed++;
      continue;
    }
    let plan;
    try {
      plan = readPlan(dir);
    } catch {
      plan = undefined; // a create that never finished writing its plan
    }
    if (plan && existsSync(runcStatePath(plan.runcRoot, plan.id))) continue;
    if (only?.instance && plan?.instance !== only.instance) continue;
    if (!only && ageOf(dir, plan) < GRACE_MS && creatorMayRun(plan)) continue;
    if (!(await releaseContainer(nat, dir, features, log, undefined, plan?.instance ?? null))) failed++;
    if (!only) writeSync(1, `released ${plan?.id ?? dir}${plan ? ` (runc root ${plan.runcRoot})` : ''}\n`);
  }
  return failed ? 1 : 0;
}
