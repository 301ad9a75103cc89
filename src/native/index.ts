/** The typed face of the addon (build/hyperbox.node); the only module that loads it. */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { HyperboxError } from '../errors.js';

/** The ABIs the recorder tells apart on x86_64 (x32 numbers without __X32_SYSCALL_BIT). */
export type RecorderArch = 'x86_64' | 'x86' | 'x32';

/** What the recorder holds for one tracked cgroup (flags: bit 0 learn, bit 1 reserved for telemetry). */
export interface RecorderSnapshot {
  flags: number;
  /** True once runc's prctl(PR_GET_PDEATHSIG) was seen: counting starts after it. */
  armed: boolean;
  /** Non-zero counts only. */
  counts: { arch: RecorderArch; nr: number; count: bigint }[];
  /** Calls whose number fell outside the recorder's tables. */
  overflow: bigint;
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
  /** Stops tracking the cgroup; returns how many remain, and at 0 detaches the program and removes pinDir. */
  recorderUntrack(pinDir: string, cgroupId: bigint): number;
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
