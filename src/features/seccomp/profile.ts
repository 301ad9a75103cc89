/**
 * From recorded syscall numbers to a profile: counts become names (through
 * libseccomp, per architecture), runs merge by union, and the names become
 * one OCI linux.seccomp object.
 */
import type { ProfileMeta } from '../../../config-schema/seccomp-profile.js';
import type { JsonObject } from '../../oci/json.js';
import { ENOSYS, EPERM } from './actions.js';

/** A native architecture and the compat ones its kernel may run. */
const COMPAT: Record<string, string[]> = {
  SCMP_ARCH_X86_64: ['SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
  SCMP_ARCH_AARCH64: ['SCMP_ARCH_ARM'],
};

/**
 * Calls the kernel makes on a task's behalf rather than the workload choosing
 * them: returning from a signal handler, restarting an interrupted sleep,
 * exiting. A run that never caught a signal would otherwise learn a profile
 * that kills the workload the first time it does.
 */
export const RUNTIME_FLOOR = ['exit', 'exit_group', 'restart_syscall', 'rt_sigreturn'];

/** One recorded count, as the addon reports it. */
export interface RecordedCount {
  arch: string;
  nr: number;
  count: bigint;
}

/** Resolves a syscall number to its name on an architecture (libseccomp through the addon). */
export type Resolver = (arch: string, nr: number) => string | undefined;

/** Turns recorded numbers into named counts per architecture; numbers with no name are kept apart. */
export function namedCounts(counts: readonly RecordedCount[], resolve: Resolver): Pick<ProfileMeta, 'syscalls' | 'unresolved'> {
  const syscalls: ProfileMeta['syscalls'] = {};
  const unresolved: ProfileMeta['unresolved'] = {};
  for (const c of counts) {
    const name = resolve(c.arch, c.nr);
    const bucket = name ? (syscalls[c.arch] ??= {}) : (unresolved[c.arch] ??= {});
    const key = name ?? String(c.nr);
    bucket[key] = (bucket[key] ?? 0) + Number(c.count);
  }
  return { syscalls, unresolved };
}

/** Adds one run's counts into the stored ones (union of names, sums of counts). */
export function mergeCounts(into: Record<string, Record<string, number>>, add: Record<string, Record<string, number>>): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const source of [into, add]) {
    for (const [arch, names] of Object.entries(source)) {
      const bucket = (out[arch] ??= {});
      for (const [name, n] of Object.entries(names)) bucket[name] = (bucket[name] ?? 0) + n;
    }
  }
  for (const arch of Object.keys(out)) out[arch] = Object.fromEntries(Object.entries(out[arch]!).sort(([a], [b]) => a.localeCompare(b)));
  return out;
}

/** Every name learned on any architecture. */
export function learnedNames(meta: Pick<ProfileMeta, 'syscalls'>): string[] {
  return [...new Set(Object.values(meta.syscalls).flatMap((names) => Object.keys(names)))].sort();
}

/**
 * The OCI profile for a learned set: EPERM for anything not learned, the
 * native architecture with its compat ones, one ALLOW rule. An OCI rule cannot
 * name an architecture, so compat calls (kept apart in the metadata) join the
 * one list. clone3, when not learned, gets ENOSYS: glibc falls back to clone
 * only on ENOSYS, and EPERM would make it fail thread creation.
 */
export function learnedProfile(meta: Pick<ProfileMeta, 'syscalls'>, nativeArch: string): JsonObject {
  const names = [...new Set([...learnedNames(meta), ...RUNTIME_FLOOR])].sort();
  const syscalls: JsonObject[] = [{ names, action: 'SCMP_ACT_ALLOW' }];
  if (!names.includes('clone3')) syscalls.push({ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS });
  return {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: EPERM,
    architectures: [nativeArch, ...(COMPAT[nativeArch] ?? [])],
    syscalls,
  };
}
