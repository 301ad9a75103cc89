/**
 * Learned seccomp. `io.hyperbox.seccomp=learn` records the syscalls the
 * container's cgroup makes (from runc's last setup step to the end) and
 * writes them into a named profile when the container is deleted;
 * `enforce` injects that profile into config.json (intersected with the
 * caller's own), `audit` the same with SCMP_ACT_LOG as the default.
 *
 * Every create through Node loads this module to plan, so it holds only the
 * request's grammar; learning, enforcing and the commands' work are loaded
 * when a container or command needs them.
 */
import { HyperboxError } from '../../errors.js';
import { native as loadNative, type Native } from '../../native/index.js';
import { checkProfileName } from '../../store/names.js';
import type { DoctorLine, Feature } from '../types.js';
import { seccompCommands } from './commands.js';

export const ANNOTATION = 'io.hyperbox.seccomp';
export const PROFILE_ANNOTATION = 'io.hyperbox.seccomp.profile';
const MODES = ['learn', 'enforce', 'audit'] as const;

/** What a container asked for. */
export interface SeccompOptions {
  mode: (typeof MODES)[number];
  profile: string;
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

    async modify(spec, options, ctx) {
      if (options.mode === 'learn') {
        const { prepareLearning } = await import('./learn.js');
        return prepareLearning(spec, ctx.stateDir);
      }
      const { injectProfile } = await import('./enforce.js');
      injectProfile(deps.native(), spec, options, ctx);
    },

    hooks: {
      async createRuntime(ctx) {
        if (ctx.options.mode !== 'learn') return;
        const { startLearning } = await import('./learn.js');
        startLearning(deps.native(), ctx);
      },
      async poststop(ctx) {
        if (ctx.options.mode !== 'learn') return;
        const { finishLearning } = await import('./learn.js');
        finishLearning(deps.native(), ctx);
      },
    },

    commands: [seccompCommands(deps)],

    async doctor(): Promise<DoctorLine[]> {
      const { bpfSyscallAvailable, btfAvailable, cgroup2Mount, seccompActions } = await import('../../kernel/probes.js');
      const { recorderPinDir } = await import('../../kernel/recorder.js');
      const bpf = bpfSyscallAvailable() && btfAvailable();
      let learning = 'not attached (nothing is learning)';
      try {
        const tracked = deps.native().recorderTracked(recorderPinDir()).length;
        if (tracked) learning = `attached, ${tracked} container cgroup(s) learning`;
      } catch (err) {
        learning = `cannot read ${recorderPinDir()}: ${(err as Error).message}`;
      }
      return [
        { check: 'seccomp log action', ok: seccompActions().includes('log'), detail: seccompActions().includes('log') ? 'available' : 'missing', consequence: 'audit fails the create' },
        { check: 'BPF for seccomp learning', ok: bpf, detail: `bpf syscall ${bpfSyscallAvailable() ? 'yes' : 'no'}, BTF ${btfAvailable() ? 'yes' : 'no'}`, consequence: 'learn fails the create' },
        { check: 'cgroup v2 for seccomp learning', ok: cgroup2Mount() !== undefined, detail: cgroup2Mount() ?? 'not mounted', consequence: 'learn fails the create' },
        { check: 'syscall recorder', ok: true, detail: learning },
      ];
    },
  };
}
