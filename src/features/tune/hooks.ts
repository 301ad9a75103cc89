/**
 * The hooks' side of tuning: createRuntime registers the container's cgroups
 * with the host tuner (starting it when none runs), poststop unregisters it.
 * Neither fails the container: what cannot be tuned is said once, in a warning.
 */
import { existsSync } from 'node:fs';
import { reasonOf } from '../../errors.js';
import { cgroup2Mount, psiAvailable } from '../../kernel/probes.js';
import type { Native } from '../../native/index.js';
import type { HookContext } from '../types.js';
import { cgroupsOfPid } from './cgroupfs.js';
import type { TuneOptions } from './index.js';
import { register, tuneKey, tunerDaemon, unregister } from './store.js';

export function registerContainer(nat: Native, ctx: HookContext<TuneOptions>): void {
  const id = ctx.plan.id;
  const untuned = (why: unknown) => ctx.log.warn(`hyperbox-runc: tune: container ${id} runs untuned: ${reasonOf(why)}`);
  const pid = ctx.state?.pid;
  if (!pid) return untuned('runc gave no container pid at createRuntime');
  const unified = cgroup2Mount();
  if (!unified || !psiAvailable()) return untuned('this kernel has no pressure stall information (PSI) or no cgroup v2 hierarchy (hyperbox-runc doctor)');
  let paths;
  try {
    paths = cgroupsOfPid(pid, { unified, memoryV1: '/sys/fs/cgroup/memory' });
  } catch (err) {
    return untuned(err);
  }
  if (!existsSync(`${paths.pressureDir}/memory.pressure`)) return untuned(`its cgroup ${paths.pressureDir} has no memory.pressure`);
  if (!existsSync(`${paths.memoryDir}/${paths.mode === 'v1' ? 'memory.limit_in_bytes' : 'memory.current'}`)) return untuned(`its cgroup ${paths.memoryDir} has no memory controller`);
  const o = ctx.options;
  try {
    register({
      ...paths,
      key: tuneKey(ctx.plan.runcRoot, id),
      containerId: id,
      runcRoot: ctx.plan.runcRoot,
      instance: ctx.plan.instance,
      targetUs: o.targetUs,
      min: o.min,
      ...(o.max !== undefined ? { max: o.max } : {}),
      ...(o.callerLimit !== undefined ? { callerLimit: o.callerLimit } : {}),
      registeredAt: Date.now(),
    });
    tunerDaemon().ensure(nat);
  } catch (err) {
    unregister(tuneKey(ctx.plan.runcRoot, id), ctx.plan.instance);
    untuned(err);
  }
}

/** poststop, or gc after a crash: this instance's registration goes (the tuner notices within a moment). */
export function unregisterContainer(ctx: HookContext<TuneOptions>): void {
  unregister(tuneKey(ctx.plan.runcRoot, ctx.plan.id), ctx.plan.instance);
}
