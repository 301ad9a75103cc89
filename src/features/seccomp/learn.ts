/**
 * Learning: the container's cgroup is tracked by the syscall recorder from
 * createRuntime to poststop, and what it called is folded into the named
 * profile. Loaded only by a container that learns.
 */
import { execFileSync } from 'node:child_process';
import { release } from 'node:os';
import type { ProfileMeta } from '../../../config-schema/seccomp-profile.js';
import { HyperboxError } from '../../errors.js';
import { containerCgroup2 } from '../../kernel/cgroup.js';
import { bpfSyscallAvailable, cgroup2Mount } from '../../kernel/probes.js';
import { TRACK_LEARN, trackCgroup, untrackCgroup } from '../../kernel/recorder.js';
import type { Native } from '../../native/index.js';
import { launcherPath } from '../../oci/hooks.js';
import { isJsonObject, type JsonObject } from '../../oci/json.js';
import { readFeatureState, writeFeatureState } from '../../oci/state.js';
import { profileExists, readProfile, withStoreLock, writeProfile } from '../../store/profiles.js';
import type { HookContext } from '../types.js';
import type { SeccompOptions } from './index.js';
import { learnedNames, learnedProfile, mergeCounts, namedCounts } from './profile.js';

/** What the hooks leave for each other in the container's state dir. */
interface LearnState {
  command: string[];
  cgroupId?: string;
}
const LEARN_STATE = 'seccomp-learn.json';

const readLearnState = (stateDir: string) => readFeatureState<LearnState>(stateDir, LEARN_STATE);
const writeLearnState = (stateDir: string, learn: LearnState) => writeFeatureState(stateDir, LEARN_STATE, learn);

/** modify for learn: fails before runc runs, not in a hook, when the kernel cannot record; keeps the workload command for the provenance. */
export function prepareLearning(spec: JsonObject, stateDir: string): void {
  if (!cgroup2Mount()) throw new HyperboxError('E_SECCOMP', 'learning a seccomp profile needs the cgroup v2 hierarchy, which this host lacks (hyperbox-runc doctor)');
  if (!bpfSyscallAvailable()) throw new HyperboxError('E_SECCOMP', 'learning a seccomp profile needs BPF, which this kernel lacks (hyperbox-runc doctor)');
  const proc = isJsonObject(spec.process) ? spec.process : {};
  writeLearnState(stateDir, { command: Array.isArray(proc.args) ? proc.args.map(String) : [] });
}

/** createRuntime: the container's own cgroup v2 starts being recorded. */
export function startLearning(nat: Native, ctx: HookContext<SeccompOptions>): void {
  const pid = ctx.state?.pid;
  if (!pid) throw new HyperboxError('E_HOOK', 'runc gave no container pid at createRuntime');
  const cgroup = containerCgroup2(pid);
  // Written before tracking: a poststop after a failure here must find what to untrack.
  writeLearnState(ctx.stateDir, { ...(readLearnState(ctx.stateDir) ?? { command: [] }), cgroupId: cgroup.id.toString() });
  trackCgroup(nat, cgroup.id, TRACK_LEARN);
}

/** poststop (or gc): stop recording and fold what was recorded into the profile. */
export function finishLearning(nat: Native, ctx: HookContext<SeccompOptions>): void {
  const learn = readLearnState(ctx.stateDir);
  if (!learn?.cgroupId) return; // never got as far as being tracked
  const snapshot = untrackCgroup(nat, BigInt(learn.cgroupId), TRACK_LEARN);
  if (!snapshot?.armed || snapshot.counts.length === 0) {
    ctx.log.warn(`hyperbox-runc: seccomp: container ${ctx.plan.id} never started its process; profile ${ctx.options.profile} left as it was`);
    return;
  }
  saveLearned(nat, ctx, namedCounts(snapshot.counts, (arch, nr) => nat.seccompResolve(arch, nr)), learn.command);
}

function runcVersion(nat: Native): string {
  try {
    const out = execFileSync(nat.findRunc(launcherPath()), ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 });
    return out.split('\n')[0]!.replace(/^runc version /, '');
  } catch {
    return 'unknown';
  }
}

/** Folds one run into the named profile (union with earlier runs) and writes it. */
function saveLearned(nat: Native, ctx: HookContext<SeccompOptions>, named: Pick<ProfileMeta, 'syscalls' | 'unresolved'>, command: string[]): void {
  const name = ctx.options.profile;
  const now = new Date().toISOString();
  withStoreLock(nat, () => {
    let previous: ProfileMeta | undefined;
    if (profileExists(name)) {
      const stored = readProfile(name);
      // An imported profile is not a record of runs; learning over it starts afresh.
      if (stored.meta?.source === 'learned') previous = stored.meta;
    }
    const meta: ProfileMeta = {
      version: 1,
      name,
      source: 'learned',
      syscalls: mergeCounts(previous?.syscalls ?? {}, named.syscalls),
      unresolved: mergeCounts(previous?.unresolved ?? {}, named.unresolved),
      runs: [
        ...(previous?.runs ?? []),
        {
          date: now,
          containerId: ctx.plan.id,
          kernel: release(),
          arch: nat.seccompNativeArch(),
          runc: runcVersion(nat),
          command,
          syscalls: learnedNames(named).length,
        },
      ],
      created: previous?.created ?? now,
      updated: now,
    };
    writeProfile(name, learnedProfile(meta, nat.seccompNativeArch()), meta);
  });
  const unknown = Object.values(named.unresolved).reduce((n, m) => n + Object.keys(m).length, 0);
  if (unknown) ctx.log.warn(`hyperbox-runc: seccomp profile ${name}: ${unknown} syscall number(s) have no name in this libseccomp and cannot be allowed (seccomp show ${name})`);
}
