/**
 * For tests of the recorder against the real kernel: a private pin dir, cgroups of their own in
 * the unified hierarchy, and a teardown (on the file's top-level test) that untracks everything,
 * unpins and removes the cgroups whatever happened.
 */
import type { Test } from 'tap';
import { existsSync, mkdirSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { native } from '../../src/native/index.js';
import { requireRoot, skipOrFail } from './runtime.js';

export const CG_ROOT = '/sys/fs/cgroup/unified';

/** Why this machine cannot run the recorder, or undefined when it can. */
export function missingBpf(): string | undefined {
  if (!existsSync('/sys/kernel/btf/vmlinux')) return 'the kernel has no BTF (/sys/kernel/btf/vmlinux)';
  if (!existsSync('/proc/sys/net/core/bpf_jit_enable')) return 'the kernel has no BPF syscall';
  if (!existsSync(`${CG_ROOT}/cgroup.procs`)) return `no cgroup2 mount at ${CG_ROOT}`;
  return undefined;
}

export function bpfSandbox(top: Test, tag: string) {
  const pin = `/sys/fs/bpf/hyperbox-test-${tag}-${process.pid}`;
  const cgroups: string[] = [];
  top.teardown(() => {
    const nat = native();
    try {
      for (const id of nat.recorderTracked(pin)) nat.recorderUntrack(pin, id);
    } catch {
      // Reported by the tests themselves; what follows still cleans up.
    }
    if (existsSync(pin)) rmSync(pin, { recursive: true, force: true });
    for (const dir of [...cgroups].reverse()) if (existsSync(dir)) rmdirSync(dir);
  });
  return {
    pin,
    /** True when the test can go on (root, BPF, BTF, cgroup2); otherwise skipped (failed under CI). */
    ready(t: Test): boolean {
      if (!requireRoot(t)) return false;
      const missing = missingBpf();
      if (missing) {
        skipOrFail(t, missing);
        return false;
      }
      return true;
    },
    /** A new cgroup under the unified root (or under `parent`), removed at teardown. */
    makeCgroup(name: string, parent = CG_ROOT): { dir: string; id: bigint } {
      const dir = parent === CG_ROOT ? `${CG_ROOT}/hyperbox-test-${tag}-${process.pid}-${name}` : `${parent}/${name}`;
      mkdirSync(dir);
      cgroups.push(dir);
      return { dir, id: statSync(dir, { bigint: true }).ino };
    },
  };
}
