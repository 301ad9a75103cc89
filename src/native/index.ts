/** The typed face of the addon (build/hyperbox.node); the only module that loads it. */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { HyperboxError } from '../errors.js';

/** The ABIs the recorder tells apart on x86_64 (x32 numbers without __X32_SYSCALL_BIT). */
export type RecorderArch = 'x86_64' | 'x86' | 'x32';

/** Entry flags of the recorder (addon/bpf/recorder.h). */
export const RECORDER_FLAGS = {
  /** Count syscalls for a seccomp profile. */
  learn: 1,
  /** Count syscalls and time them (sys_enter/sys_exit) for telemetry. */
  syscalls: 2,
  /** Count bytes and packets (cgroup_skb, once recorderNetAttach attached them). */
  net: 4,
  /** Log execs (sched_process_exec). */
  exec: 8,
} as const;

/** Network counters of one cgroup: IP packets as cgroup_skb sees them (headers included). */
export interface NetCounters {
  rxBytes: bigint;
  rxPackets: bigint;
  txBytes: bigint;
  txPackets: bigint;
}

/** One exec seen in a tracked cgroup. */
export interface ExecEvent {
  /** Wall-clock time, ns since the epoch (converted from the kernel's monotonic clock). */
  timeUnixNano: bigint;
  /** Host pid (tgid) and the pid in the task's own pid namespace. */
  pid: number;
  nsPid: number;
  /** The path exec was given (linux_binprm.filename), at most 255 bytes. */
  filename: string;
}

/** Number of latency buckets per syscall (their edges: bucketRange in src/features/trace/sample.ts). */
export const LATENCY_BUCKETS = 64;

/**
 * Latency of one syscall of a traced cgroup. Bucket i (0..63) holds calls whose
 * duration d in ns has k = floor(log2 d), i = 2k + (bit k-1 of d) for d >= 2, i = 0 for d < 2;
 * the last bucket also takes everything from 2^32 ns up.
 */
export interface SyscallLatency {
  arch: RecorderArch;
  nr: number;
  /** Calls that returned (exit and exit_group never do; execve does, in the new program). */
  count: bigint;
  sumNs: bigint;
  buckets: bigint[];
}

/** What the recorder holds for one tracked cgroup. */
export interface RecorderSnapshot {
  /** RECORDER_FLAGS bits. */
  flags: number;
  /** True once runc's prctl(PR_GET_PDEATHSIG) was seen: counting starts after it. */
  armed: boolean;
  /** Non-zero counts only. */
  counts: { arch: RecorderArch; nr: number; count: bigint }[];
  /** Calls whose number fell outside the recorder's tables. */
  overflow: bigint;
  /** All zero unless net is flagged and attached. */
  net: NetCounters;
  /** Execs seen (total) and the last ones kept (at most 64, oldest first). */
  execs: { total: bigint; recent: ExecEvent[] };
  /** Returned calls whose latency was not kept because the host-wide latency map was full. */
  latencyDropped: bigint;
}

/** The native operations, as an interface so logic can be tested with a recording fake. */
export interface Native {
  /** runc's path, found the way the launcher finds it (never `self`). */
  findRunc(self?: string): string;
  /** $HYPERBOX_CONFIG_DIR or /etc/hyperbox. */
  configDir(): string;
  /** Replaces this process with runc; returns only by throwing. */
  execRunc(path: string, argv: string[]): never;
  /** Starts the detached watcher that cleans up if runc leaves no container behind. */
  spawnRestoreWatcher(launcher: string, runcStatePath: string, stateDir: string, instance: string, env: string[]): void;
  /** Takes an exclusive flock on an open fd, waiting for it; closing the fd releases it. */
  flock(fd: number): void;
  /** Loads/pins the syscall recorder under pinDir if needed (mounting bpffs), then tracks the cgroup or ORs flags into its entry. */
  recorderTrack(pinDir: string, cgroupId: bigint, flags: number): void;
  /** The recorder's entry for the cgroup; undefined when nothing is pinned or the cgroup is not tracked. */
  recorderRead(pinDir: string, cgroupId: bigint): RecorderSnapshot | undefined;
  /**
   * Clears flags (all when omitted) of the cgroup's entry, removing the entry (and its latency
   * records and network links) once none are left; returns how many cgroups remain tracked, and
   * at 0 detaches every program and removes pinDir.
   */
  recorderUntrack(pinDir: string, cgroupId: bigint, flags?: number): number;
  /** Latency histograms of a tracked cgroup, one per syscall that returned at least once ([] when not tracked). */
  recorderLatency(pinDir: string, cgroupId: bigint): SyscallLatency[];
  /** Attaches the cgroup_skb ingress/egress counters to the tracked cgroup at cgroupDir (a cgroup v2 directory whose inode is cgroupId). */
  recorderNetAttach(pinDir: string, cgroupId: bigint, cgroupDir: string): void;
  /** The cgroup ids the recorder under pinDir tracks ([] when nothing is pinned). */
  recorderTracked(pinDir: string): bigint[];
  /** libseccomp's name for syscall nr on arch ('x86_64' | 'x86' | 'x32' or SCMP_ARCH_*); throws on an unknown arch. */
  seccompResolve(arch: string, nr: number): string | undefined;
  /** The syscall number of name on arch; undefined when there is none (or only a libseccomp pseudo number, e.g. i386 socket calls). */
  seccompNumber(name: string, arch: string): number | undefined;
  /** The native architecture in OCI spelling, e.g. 'SCMP_ARCH_X86_64'. */
  seccompNativeArch(): string;
  /** Builds an OCI linux.seccomp (JSON text) with libseccomp as runc 1.1.5 would; throws one sentence on what it rejects. */
  seccompCompile(profileJson: string): { instructions: number };
  /**
   * Mounts the EROFS image file read-only (MS_RDONLY, nothing else) at target: file-backed when the
   * kernel can (6.12+), else, or when forceLoop, through a loop device attached read-only with
   * autoclear, so it detaches itself once unmounted. Returns that device ('/dev/loopN') or null.
   * On failure nothing stays mounted or attached; throws with the errno.
   */
  mountErofs(image: string, target: string, forceLoop: boolean): string | null;
  /** Mounts overlay at target (one lower layer); throws (errno EINVAL) on paths with ',', ':' or '\\'. */
  mountOverlay(lower: string, upper: string, work: string, target: string): void;
  /**
   * umount2 (never following a symlink at target), lazily when detach; false when target is not
   * a mount point or does not exist. Throws on anything else, EBUSY included (retry with detach).
   */
  unmount(target: string, detach: boolean): boolean;
  /** The file attached to a loop device ('/dev/loopN'), or null when it is free. */
  loopBackingFile(dev: string): string | null;
  /** Detaches the loop device's file (LOOP_CLR_FD; at once, or after its last user closes it); a free device is fine. */
  loopDetach(dev: string): void;
  /**
   * Opens a cgroup pressure file (memory.pressure, io.pressure) with a PSI trigger
   * `some <stallUs> <windowUs>` on it and returns the descriptor (close-on-exec).
   * Throws with the errno: EINVAL for a window the kernel refuses, EOPNOTSUPP without PSI.
   */
  psiTriggerOpen(path: string, stallUs: number, windowUs: number): number;
  psiTriggerClose(fd: number): void;
  /** Waits on a worker thread until a trigger fires (POLLPRI), a cgroup goes (POLLERR) or timeoutMs pass; [] on timeout. */
  pollPressure(fds: number[], timeoutMs: number): Promise<PressureEvent[]>;
  readonly POLLPRI: number;
  readonly POLLERR: number;
}

/** A descriptor pollPressure found ready, with its revents. */
export interface PressureEvent {
  fd: number;
  events: number;
}

let loaded: Native | undefined;

/** Loads the addon once; a missing build is a clear error, not a stack trace. */
export function native(): Native {
  if (loaded) return loaded;
  const path = fileURLToPath(new URL('../../../build/hyperbox.node', import.meta.url));
  try {
    loaded = createRequire(import.meta.url)(path) as Native;
  } catch (err) {
    throw new HyperboxError('E_ADDON', `cannot load the hyperbox addon at ${path}; run make`, { cause: err });
  }
  return loaded;
}
