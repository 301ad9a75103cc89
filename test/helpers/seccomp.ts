/**
 * Shared by the learned-seccomp integration tests and benchmark: the test
 * workloads, a rootfs that has the static C workload in /bin, and a store
 * and BPF pin dir private to this process.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildCFixture } from '../../fixtures/cfixture.js';
import type { BundleOptions, OciSpec } from '../../fixtures/busybox.js';

/** One workload: what the container runs, and how its spec differs from `runc spec`. */
export interface Workload {
  name: string;
  args: string[];
  /** Share the host network namespace (for loopback traffic without CAP_NET_ADMIN). */
  hostNetwork?: boolean;
}

/** A free-ish TCP port for the loopback workload. */
export const HTTP_PORT = 20000 + (process.pid % 20000);

/** The workloads the issue names: shell pipelines and subshells, files, loopback network, a C program, many processes. */
export const WORKLOADS: Workload[] = [
  {
    name: 'shell',
    args: [
      'sh',
      '-c',
      'set -e; seq 1 200 | grep 7 | sort -r | head -3; (cd /tmp && echo sub > f && cat f); x=$(echo nested | tr a-z A-Z); echo "$x"; ' +
        'for i in 1 2 3; do echo "$i"; done | wc -l; mkdir -p /tmp/d && cp /etc/passwd /tmp/d/ && md5sum /tmp/d/passwd | cut -c1-8; ls /tmp/d; rm -r /tmp/d; echo done',
    ],
  },
  {
    name: 'network',
    hostNetwork: true,
    args: [
      'sh',
      '-c',
      `set -e; mkdir -p /tmp/www; seq 1 5000 > /tmp/www/data.txt; httpd -f -p 127.0.0.1:${HTTP_PORT} -h /tmp/www & pid=$!; ` +
        `i=0; until wget -q -O /tmp/got http://127.0.0.1:${HTTP_PORT}/data.txt 2>/dev/null; do i=$((i+1)); [ $i -lt 50 ] || exit 9; sleep 0.1; done; ` +
        'md5sum < /tmp/got | cut -c1-8; wc -l < /tmp/got; { kill $pid; wait $pid; } 2>/dev/null || true; echo done',
    ],
  },
  { name: 'cprog', args: ['/bin/syscall_mix', 'work'] },
  {
    name: 'multiproc',
    args: ['sh', '-c', '/bin/syscall_mix threads 8; (for i in 1 2 3 4; do (sleep 0.0$i; echo job$i) & done; wait) | sort; echo all | tee /tmp/o | cat; cat /tmp/o'],
  },
];

/** Syscalls no test workload makes; under enforce each must fail. */
export const FORBIDDEN = ['unshare', 'mount', 'ptrace', 'keyctl'];

/** The probe that tries them, in the container. */
export const PROBE_ARGS = ['/bin/syscall_mix', 'probe', ...FORBIDDEN];

/** Bundle options for a workload: CAP_SYS_ADMIN so unshare and mount are refused by seccomp, not by missing capabilities. */
export function workloadBundle(w: Pick<Workload, 'args' | 'hostNetwork'>, annotations: Record<string, string> = {}): BundleOptions {
  return {
    args: w.args,
    annotations,
    edit: (spec: OciSpec) => {
      const caps = (spec.process.capabilities ?? {}) as Record<string, string[]>;
      for (const set of ['bounding', 'effective', 'permitted']) caps[set] = [...new Set([...(caps[set] ?? []), 'CAP_SYS_ADMIN', 'CAP_SYS_PTRACE'])];
      spec.process.capabilities = caps;
      if (w.hostNetwork) {
        const linux = spec.linux as { namespaces?: { type: string }[] };
        linux.namespaces = (linux.namespaces ?? []).filter((n) => n.type !== 'network');
      }
    },
  };
}

/** Puts the static C workload into a rootfs as /bin/syscall_mix. */
export async function installCWorkload(rootfs: string): Promise<void> {
  const bin = await buildCFixture('syscall_mix', ['-static', '-pthread']);
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  copyFileSync(bin, join(rootfs, 'bin', 'syscall_mix'));
}

/** Docker's default profile allows this many syscalls on x86_64 (the reference figure). */
export const DOCKER_DEFAULT_SYSCALLS = 309;

/** The profile the store holds, parsed. */
export function storedProfile(store: string, name: string): { defaultAction: string; syscalls: { names: string[]; action: string; errnoRet?: number }[] } | undefined {
  const p = join(store, 'seccomp', `${name}.json`);
  return existsSync(p) ? JSON.parse(readFileSync(p, 'utf8')) : undefined;
}

/** Names the stored profile allows. */
export function allowedIn(store: string, name: string): string[] {
  return storedProfile(store, name)?.syscalls.find((r) => r.action === 'SCMP_ACT_ALLOW')?.names ?? [];
}
