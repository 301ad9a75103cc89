/**
 * Learned seccomp. `io.hyperbox.seccomp=learn` records the syscalls the
 * container's cgroup makes (from runc's last setup step to the end) and
 * writes them into a named profile when the container is deleted;
 * `enforce` injects that profile into config.json (intersected with the
 * caller's own), `audit` the same with SCMP_ACT_LOG as the default.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import type { ProfileMeta } from '../../../config-schema/seccomp-profile.js';
import { seccompSchema } from '../../../config-schema/oci.js';
import { HyperboxError, reasonOf } from '../../errors.js';
import { containerCgroup2 } from '../../kernel/cgroup.js';
import { bpfSyscallAvailable, btfAvailable, cgroup2Mount, seccompActions } from '../../kernel/probes.js';
import { TRACK_LEARN, trackCgroup, untrackCgroup } from '../../kernel/recorder.js';
import { native as loadNative, type Native } from '../../native/index.js';
import { launcherPath } from '../../oci/hooks.js';
import { isJsonObject, stringifyJson, type JsonObject } from '../../oci/json.js';
import { checkProfileName, profileExists, readProfile, withStoreLock, writeProfile } from '../../store/profiles.js';
import type { DoctorLine, Feature, HookContext } from '../types.js';
import { auditVariant, intersectProfiles } from './intersect.js';
import { learnedNames, learnedProfile, mergeCounts, namedCounts } from './profile.js';
import { seccompCommands } from './commands.js';

export const ANNOTATION = 'io.hyperbox.seccomp';
export const PROFILE_ANNOTATION = 'io.hyperbox.seccomp.profile';
const MODES = ['learn', 'enforce', 'audit'] as const;

/** What a container asked for. */
export interface SeccompOptions {
  mode: (typeof MODES)[number];
  profile: string;
}

/** What the hooks leave for each other in the container's state dir. */
interface LearnState {
  command: string[];
  cgroupId?: string;
  cgroupPath?: string;
}
const LEARN_STATE = 'seccomp-learn.json';

/** Compiles a profile with libseccomp, as runc will; a profile that cannot load fails here, before runc runs. */
export function compileProfile(nat: Native, profile: JsonObject, what: string): number {
  try {
    return nat.seccompCompile(stringifyJson(profile)).instructions;
  } catch (err) {
    throw new HyperboxError('E_SECCOMP', `${what} cannot be loaded: ${reasonOf(err)}`, { cause: err });
  }
}

function planOptions(annotations: Readonly<Record<string, string>>): SeccompOptions | undefined {
  for (const key of Object.keys(annotations)) {
    if (key.startsWith(ANNOTATION + '.') && key !== PROFILE_ANNOTATION) {
      throw new HyperboxError('E_ANNOTATION', `unknown annotation ${key}: seccomp takes ${ANNOTATION} and ${PROFILE_ANNOTATION}`);
    }
  }
  const mode = annotations[ANNOTATION];
  const profile = annotations[PROFILE_ANNOTATION];
  if (mode === undefined) {
    if (profile !== undefined) throw new HyperboxError('E_ANNOTATION', `${PROFILE_ANNOTATION} needs ${ANNOTATION}=learn, enforce or audit beside it`);
    return undefined;
  }
  if (!(MODES as readonly string[]).includes(mode)) {
    throw new HyperboxError('E_ANNOTATION', `bad ${ANNOTATION} value ${JSON.stringify(mode)}: expected learn, enforce or audit`);
  }
  if (profile === undefined || profile === '') {
    throw new HyperboxError('E_ANNOTATION', `${ANNOTATION}=${mode} needs a profile name: ${PROFILE_ANNOTATION}=NAME`);
  }
  return { mode: mode as SeccompOptions['mode'], profile: checkProfileName(profile) };
}

/** The profile to inject: the stored one (audit: logging instead of refusing), within the caller's own. */
export function enforcedProfile(nat: Native, options: SeccompOptions, callers: JsonObject | undefined): JsonObject {
  const stored = readProfile(options.profile).profile;
  const ours = options.mode === 'audit' ? auditVariant(stored) : stored;
  const result = callers ? intersectProfiles(ours, callers) : ours;
  compileProfile(nat, result, `seccomp profile ${options.profile}${callers ? " combined with the caller's profile" : ''}`);
  return result;
}

function readLearnState(stateDir: string): LearnState | undefined {
  try {
    return JSON.parse(readFileSync(join(stateDir, LEARN_STATE), 'utf8')) as LearnState;
  } catch {
    return undefined;
  }
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
async function saveLearned(nat: Native, ctx: HookContext<SeccompOptions>, named: Pick<ProfileMeta, 'syscalls' | 'unresolved'>, command: string[]): Promise<void> {
  const name = ctx.options.profile;
  const now = new Date().toISOString();
  await withStoreLock(nat, () => {
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

/** The feature, with its side effects behind `deps` so tests can record them. */
export function seccompFeature(deps: { native: () => Native } = { native: loadNative }): Feature<SeccompOptions> {
  return {
    name: 'seccomp',
    annotationPrefix: ANNOTATION,
    flags: [
      {
        names: ['seccomp-learn'],
        value: true,
        commands: ['run', 'create'],
        description: 'record the syscalls this container makes into seccomp profile NAME (merged with earlier runs)',
        toAnnotations: (v) => ({ [ANNOTATION]: 'learn', [PROFILE_ANNOTATION]: String(v) }),
      },
      {
        names: ['seccomp'],
        value: true,
        commands: ['run', 'create'],
        description: "enforce seccomp profile NAME (within the config's own profile, if it has one)",
        toAnnotations: (v) => ({ [ANNOTATION]: 'enforce', [PROFILE_ANNOTATION]: String(v) }),
      },
      {
        names: ['seccomp-audit'],
        value: true,
        commands: ['run', 'create'],
        description: 'like --seccomp, but log (SCMP_ACT_LOG) what the profile would refuse instead of refusing it',
        toAnnotations: (v) => ({ [ANNOTATION]: 'audit', [PROFILE_ANNOTATION]: String(v) }),
      },
    ],

    plan: (input) => planOptions(input.annotations),

    stages: (options) => (options.mode === 'learn' ? ['createRuntime', 'poststop'] : []),

    modify(spec, options, ctx) {
      const nat = deps.native();
      if (options.mode === 'learn') {
        // Fail before runc runs, not in a hook, when the kernel cannot record.
        if (!cgroup2Mount()) throw new HyperboxError('E_SECCOMP', 'learning a seccomp profile needs the cgroup v2 hierarchy, which this host lacks (hyperbox-runc doctor)');
        if (!bpfSyscallAvailable()) throw new HyperboxError('E_SECCOMP', 'learning a seccomp profile needs BPF, which this kernel lacks (hyperbox-runc doctor)');
        const proc = isJsonObject(spec.process) ? spec.process : {};
        const command = Array.isArray(proc.args) ? proc.args.map(String) : [];
        writeFileSync(join(ctx.stateDir, LEARN_STATE), JSON.stringify({ command } satisfies LearnState), { mode: 0o600 });
        return;
      }
      if (options.mode === 'audit' && !seccompActions().includes('log')) {
        throw new HyperboxError('E_SECCOMP', 'io.hyperbox.seccomp=audit needs the kernel seccomp action "log", which it lacks: use enforce');
      }
      const linux = isJsonObject(spec.linux) ? spec.linux : (spec.linux = {});
      let callers: JsonObject | undefined;
      if (linux.seccomp !== undefined) {
        const checked = seccompSchema.safeParse(linux.seccomp);
        if (!checked.success || !isJsonObject(linux.seccomp)) {
          throw new HyperboxError('E_CONFIG', `config.json linux.seccomp is not a valid seccomp profile (${checked.success ? 'not an object' : checked.error.issues[0]!.message})`);
        }
        callers = linux.seccomp;
      }
      linux.seccomp = enforcedProfile(nat, options, callers);
      ctx.log.debug(`hyperbox-runc: ${ctx.id}: seccomp profile ${options.profile} (${options.mode})${callers ? " within the caller's profile" : ''}`);
    },

    hooks: {
      createRuntime(ctx) {
        if (ctx.options.mode !== 'learn') return;
        const pid = ctx.state?.pid;
        if (!pid) throw new HyperboxError('E_HOOK', 'runc gave no container pid at createRuntime');
        const cgroup = containerCgroup2(pid);
        const learn = readLearnState(ctx.stateDir) ?? { command: [] };
        // Written before tracking: a poststop after a failure here must find what to untrack.
        writeFileSync(join(ctx.stateDir, LEARN_STATE), JSON.stringify({ ...learn, cgroupId: cgroup.id.toString(), cgroupPath: cgroup.path } satisfies LearnState), { mode: 0o600 });
        trackCgroup(deps.native(), cgroup.id, TRACK_LEARN);
      },

      async poststop(ctx) {
        if (ctx.options.mode !== 'learn') return;
        const learn = readLearnState(ctx.stateDir);
        if (!learn?.cgroupId) return; // never got as far as being tracked
        const nat = deps.native();
        const snapshot = untrackCgroup(nat, BigInt(learn.cgroupId));
        if (!snapshot?.armed || snapshot.counts.length === 0) {
          ctx.log.warn(`hyperbox-runc: seccomp: container ${ctx.plan.id} never started its process; profile ${ctx.options.profile} left as it was`);
          return;
        }
        await saveLearned(nat, ctx, namedCounts(snapshot.counts, (arch, nr) => nat.seccompResolve(arch, nr)), learn.command);
      },
    },

    commands: [seccompCommands(deps)],

    doctor(): DoctorLine[] {
      const actions = seccompActions();
      return [
        { check: 'seccomp log action', ok: actions.includes('log'), detail: actions.includes('log') ? 'available' : 'missing', consequence: 'audit fails the create' },
        { check: 'BPF for seccomp learning', ok: bpfSyscallAvailable() && btfAvailable(), detail: `bpf syscall ${bpfSyscallAvailable() ? 'yes' : 'no'}, BTF ${btfAvailable() ? 'yes' : 'no'}`, consequence: 'learn fails the create' },
        { check: 'cgroup v2 for seccomp learning', ok: cgroup2Mount() !== undefined, detail: cgroup2Mount() ?? 'not mounted', consequence: 'learn fails the create' },
      ];
    },
  };
}
