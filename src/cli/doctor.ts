/** `hyperbox-runc doctor`: which kernel and host features the capabilities need are here, and what falls back. */
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import type { AnyFeature, DoctorLine } from '../features/types.js';
import * as probes from '../kernel/probes.js';

async function firstLine(cmd: string, args: string[]): Promise<string | undefined> {
  try {
    const { stdout } = await execa(cmd, args, { timeout: 5000 });
    return stdout.split('\n')[0];
  } catch {
    return undefined;
  }
}

/** The host checks every capability relies on. */
export async function hostChecks(runc: string | undefined, runcWhy: string | undefined): Promise<DoctorLine[]> {
  const fs = probes.filesystems();
  const mode = probes.cgroupMode();
  const runcVersion = runc ? await firstLine(runc, ['--version']) : undefined;
  const crunVersion = await firstLine('crun', ['--version']);
  const actions = probes.seccompActions();
  const [major, minor] = probes.kernelVersion();
  return [
    { check: 'runc', ok: Boolean(runcVersion), detail: runcVersion ? `${runc}: ${runcVersion}` : (runcWhy ?? `${runc} does not answer --version`), consequence: 'nothing runs without runc' },
    { check: 'crun', ok: Boolean(crunVersion), detail: crunVersion ?? 'not installed (optional)' },
    { check: 'kernel', ok: true, detail: `${major}.${minor}` },
    { check: 'cgroups', ok: mode !== 'legacy', detail: `${mode}${probes.cgroup2Mount() ? ` (cgroup2 at ${probes.cgroup2Mount()})` : ''}`, consequence: 'no cgroup2: PSI tuning, per-container BPF and network counters fall back off' },
    { check: 'PSI', ok: probes.psiAvailable(), detail: probes.psiAvailable() ? '/proc/pressure/memory readable' : 'no /proc/pressure (boot with psi=1)', consequence: 'memory tuning falls back off' },
    { check: 'BPF syscall', ok: probes.bpfSyscallAvailable(), detail: probes.bpfSyscallAvailable() ? 'CONFIG_BPF_SYSCALL' : 'not built in', consequence: 'seccomp learning fails the create; telemetry falls back off' },
    { check: 'BTF', ok: probes.btfAvailable(), detail: probes.btfAvailable() ? '/sys/kernel/btf/vmlinux' : 'missing', consequence: 'BPF programs cannot load' },
    { check: 'tracefs', ok: fs.has('tracefs'), detail: probes.mountedAt('tracefs', '/sys/kernel/tracing') ? 'mounted' : fs.has('tracefs') ? 'not mounted; hyperbox mounts it when needed' : 'not in the kernel', consequence: 'syscall tracepoints unavailable' },
    { check: 'bpffs', ok: fs.has('bpf'), detail: probes.mountedAt('bpf', '/sys/fs/bpf') ? 'mounted' : fs.has('bpf') ? 'not mounted; hyperbox mounts it when needed' : 'not in the kernel', consequence: 'BPF objects cannot be pinned across calls' },
    { check: 'EROFS', ok: fs.has('erofs'), detail: fs.has('erofs') ? 'in /proc/filesystems' : 'not in the kernel', consequence: 'rootfs images fall back to runc on an extracted tree' },
    { check: 'EROFS file-backed mounts', ok: fs.has('erofs') && probes.kernelAtLeast(6, 12), detail: probes.kernelAtLeast(6, 12) ? 'kernel 6.12+' : 'kernel before 6.12', consequence: 'a loop device is used instead' },
    { check: 'loop devices', ok: existsSync('/dev/loop-control'), detail: existsSync('/dev/loop-control') ? '/dev/loop-control' : 'missing' },
    { check: 'overlayfs', ok: fs.has('overlay'), detail: fs.has('overlay') ? 'in /proc/filesystems' : 'not in the kernel', consequence: 'EROFS rootfs runs read-only' },
    { check: 'seccomp', ok: actions.length > 0, detail: actions.length ? `actions: ${actions.join(' ')}` : 'not available', consequence: 'seccomp requests fail the create' },
  ];
}

/** Runs every check and prints a table (or JSON); exits 1 only when runc itself is missing. */
export async function doctor(features: readonly AnyFeature[], runc: string | undefined, runcWhy: string | undefined, json: boolean): Promise<number> {
  const lines = await hostChecks(runc, runcWhy);
  for (const feature of features) if (feature.doctor) lines.push(...(await feature.doctor()));
  if (json) {
    process.stdout.write(JSON.stringify(lines, null, 2) + '\n');
  } else {
    const width = Math.max(...lines.map((l) => l.check.length));
    for (const l of lines) {
      const tail = !l.ok && l.consequence ? `  -> ${l.consequence}` : '';
      process.stdout.write(`${l.ok ? 'ok  ' : 'MISS'}  ${l.check.padEnd(width)}  ${l.detail}${tail}\n`);
    }
  }
  return lines[0]!.ok ? 0 : 1;
}
