/**
 * What the kernel offers the capabilities, probed once per process and cached.
 * Features ask here before relying on something, and `doctor` prints it all.
 */
import { existsSync, readFileSync, statfsSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

const CGROUP2_MAGIC = 0x63677270;
const TMPFS_MAGIC = 0x01021994;

const cache = new Map<string, unknown>();
function once<T>(key: string, probe: () => T): T {
  if (!cache.has(key)) cache.set(key, probe());
  return cache.get(key) as T;
}

/** A file's text, or fallback when it cannot be read. */
export function readOr(path: string, fallback = ''): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return fallback;
  }
}

/** unified (pure v2), hybrid (v1 controllers plus /sys/fs/cgroup/unified), or legacy (v1 only). */
export type CgroupMode = 'unified' | 'hybrid' | 'legacy';

export function cgroupMode(): CgroupMode {
  return once('cgroupMode', () => {
    const magic = (p: string) => {
      try {
        return statfsSync(p).type;
      } catch {
        return -1;
      }
    };
    if (magic('/sys/fs/cgroup') === CGROUP2_MAGIC) return 'unified';
    if (magic('/sys/fs/cgroup') === TMPFS_MAGIC && magic('/sys/fs/cgroup/unified') === CGROUP2_MAGIC) return 'hybrid';
    return 'legacy';
  });
}

/** Where the cgroup v2 hierarchy is mounted, if anywhere. */
export function cgroup2Mount(): string | undefined {
  const mode = cgroupMode();
  return mode === 'unified' ? '/sys/fs/cgroup' : mode === 'hybrid' ? '/sys/fs/cgroup/unified' : undefined;
}

/** Filesystems the kernel can mount (/proc/filesystems). */
export function filesystems(): Set<string> {
  return once('filesystems', () => new Set(readOr('/proc/filesystems').split('\n').map((l) => l.split('\t').pop()!.trim()).filter(Boolean)));
}

/** Whether a filesystem type is mounted at a path, from /proc/self/mountinfo. */
export function mountedAt(fsType: string, path: string): boolean {
  return readOr('/proc/self/mountinfo')
    .split('\n')
    .some((line) => {
      const [pre, post] = line.split(' - ');
      return pre?.split(' ')[4] === path && post?.split(' ')[0] === fsType;
    });
}

/** CONFIG_* values from /proc/config.gz, when the kernel exposes it. */
export function kernelConfig(): Map<string, string> | undefined {
  return once('kernelConfig', () => {
    try {
      const text = gunzipSync(readFileSync('/proc/config.gz')).toString('utf8');
      const map = new Map<string, string>();
      for (const line of text.split('\n')) {
        const eq = line.indexOf('=');
        if (line.startsWith('CONFIG_') && eq > 0) map.set(line.slice(0, eq), line.slice(eq + 1));
      }
      return map;
    } catch {
      return undefined;
    }
  });
}

/** The running kernel's version as [major, minor]. */
export function kernelVersion(): [number, number] {
  return once('kernelVersion', () => {
    const m = /^(\d+)\.(\d+)/.exec(readOr('/proc/sys/kernel/osrelease'));
    return m ? [Number(m[1]), Number(m[2])] : [0, 0];
  });
}

/** True when the kernel is at least major.minor. */
export function kernelAtLeast(major: number, minor: number): boolean {
  const [a, b] = kernelVersion();
  return a > major || (a === major && b >= minor);
}

/** PSI is on: system-wide pressure files are readable. */
export function psiAvailable(): boolean {
  return once('psi', () => readOr('/proc/pressure/memory').startsWith('some'));
}

/** Seccomp actions the kernel supports (actions_avail), e.g. "kill_process ... user_notif log allow". */
export function seccompActions(): string[] {
  return once('seccompActions', () => readOr('/proc/sys/kernel/seccomp/actions_avail').trim().split(/\s+/).filter(Boolean));
}

/** BTF for CO-RE BPF programs. */
export function btfAvailable(): boolean {
  return existsSync('/sys/kernel/btf/vmlinux');
}

/** The BPF syscall is built in (from the kernel config, else from the JIT sysctl it implies). */
export function bpfSyscallAvailable(): boolean {
  const config = kernelConfig();
  if (config) return config.get('CONFIG_BPF_SYSCALL') === 'y';
  return existsSync('/proc/sys/net/core/bpf_jit_enable');
}
