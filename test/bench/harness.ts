/**
 * What the capability benchmarks share: a private runc root, hyperbox state,
 * store and BPF pin dir; containers run to completion through the launcher;
 * bundles holding the static C fixtures; and the realistic workloads, timed
 * inside the container (fixtures/c/timeit.c) so start-up and hooks are not counted.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { writeBundle } from '../../fixtures/busybox.js';
import { buildCFixture } from '../../fixtures/cfixture.js';
import { HTTP_PORT, installCWorkload, workloadBundle, type Workload } from '../helpers/seccomp.js';
import { median } from './stats.js';

export const LAUNCHER = resolve('build/hyperbox-runc');

export interface BenchBox {
  top: string;
  root: string;
  store: string;
  env: Record<string, string>;
  /** Runs a container to completion; throws on failure. */
  runContainer(bundle: string, flags: string[]): { stdout: string; stderr: string };
  /** Starts a detached container (run -d) and returns its id. */
  startDetached(bundle: string, flags: string[]): string;
  deleteForce(id: string): void;
  /** A workload bundle with syscall_mix, syscall_loop and timeit in /bin. */
  bundleFor(name: string, w: Pick<Workload, 'args' | 'hostNetwork'>): Promise<string>;
  cleanup(): void;
}

export function benchBox(tag: string): BenchBox {
  const top = mkdtempSync(join(tmpdir(), `hbx-bench-${tag}-`));
  const root = join(top, 'root');
  const store = join(top, 'store');
  const env: Record<string, string> = {
    PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
    HYPERBOX_STATE: join(top, 'hbstate'),
    HYPERBOX_STORE: store,
    HYPERBOX_BPF_PIN: `/sys/fs/bpf/hbx-bench-${tag}-${process.pid}`,
  };
  let seq = 0;
  const started = new Set<string>();
  const nextId = () => `hbx-bench-${tag}-${process.pid}-${seq++}`;
  const box: BenchBox = {
    top,
    root,
    store,
    env,
    runContainer(bundle, flags) {
      const r = spawnSync(LAUNCHER, ['--root', root, 'run', ...flags, '--bundle', bundle, nextId()], { env, encoding: 'utf8', timeout: 120_000 });
      if (r.status !== 0) throw new Error(`run ${flags.join(' ')} failed (${r.status}): ${r.stderr.slice(-800)}`);
      return { stdout: r.stdout, stderr: r.stderr };
    },
    startDetached(bundle, flags) {
      const id = nextId();
      const r = spawnSync(LAUNCHER, ['--root', root, 'run', '-d', ...flags, '--bundle', bundle, id], { env, stdio: 'ignore' });
      if (r.status !== 0) throw new Error(`run -d ${flags.join(' ')} failed (${r.status})`);
      started.add(id);
      return id;
    },
    deleteForce(id) {
      spawnSync(LAUNCHER, ['--root', root, 'delete', '-f', id], { env, stdio: 'ignore' });
      started.delete(id);
    },
    async bundleFor(name, w) {
      const b = await writeBundle(join(top, name), workloadBundle(w));
      await installCWorkload(b.rootfs);
      copyFileSync(await buildCFixture('syscall_loop', ['-static']), join(b.rootfs, 'bin', 'syscall_loop'));
      copyFileSync(await buildCFixture('timeit', ['-static']), join(b.rootfs, 'bin', 'timeit'));
      return b.dir;
    },
    cleanup() {
      for (const id of started) box.deleteForce(id);
      rmSync(top, { recursive: true, force: true });
    },
  };
  return box;
}

/** syscall_loop's output: ns per getppid(). */
export function nsPerCall(text: string): number {
  const m = /([\d.]+)/.exec(text.trim());
  if (!m) throw new Error(`syscall_loop printed ${JSON.stringify(text)}`);
  return Number(m[1]);
}

/** The realistic workloads, each printing timeit_us=N on stderr. */
export const REALISTIC_WORKLOADS: { name: string; w: Pick<Workload, 'args' | 'hostNetwork'> }[] = [
  {
    name: 'file copy (16 MiB x 8 copies, md5sum)',
    w: { args: ['/bin/timeit', '/bin/sh', '-c', 'dd if=/dev/urandom of=/tmp/src bs=64k count=256 2>/dev/null; for i in 1 2 3 4 5 6 7 8; do cp /tmp/src /tmp/dst$i; done; cat /tmp/dst* | md5sum >/dev/null; rm /tmp/dst* /tmp/src'] },
  },
  {
    name: 'loopback HTTP (busybox httpd, 200 wget of 64 KiB)',
    w: {
      hostNetwork: true,
      args: [
        '/bin/timeit', '/bin/sh', '-c',
        `mkdir -p /tmp/www; dd if=/dev/urandom of=/tmp/www/f bs=64k count=1 2>/dev/null; httpd -f -p 127.0.0.1:${HTTP_PORT + 1} -h /tmp/www & p=$!; ` +
          `until wget -q -O /dev/null http://127.0.0.1:${HTTP_PORT + 1}/f; do sleep 0.05; done; i=0; while [ $i -lt 200 ]; do wget -q -O /dev/null http://127.0.0.1:${HTTP_PORT + 1}/f; i=$((i+1)); done; kill $p`,
      ],
    },
  },
];

/** Milliseconds from timeit's stderr line. */
export function timeitMs(stderr: string): number {
  return Number(/timeit_us=(\d+)/.exec(stderr)?.[1] ?? NaN) / 1000;
}

/**
 * ns per getppid() in a tight loop, interleaved rounds: a host process with nothing attached vs.
 * while a container started with `sleeperFlags` runs (untracked), and a container without flags
 * vs. with `loopFlags` (tracked). Returns the markdown table.
 */
export async function syscallCostTable(
  box: BenchBox,
  o: { rounds: number; loopCalls: number; sleeperFlags: string[]; loopFlags: string[]; columns: [string, string]; hostRow: string; ctrRow: string; hostTarget: string; ctrTarget: string },
): Promise<string> {
  const loop = await buildCFixture('syscall_loop', ['-static']);
  const bundle = await box.bundleFor('loop', { args: ['/bin/syscall_loop', String(o.loopCalls)] });
  const sleeper = await box.bundleFor('sleeper', { args: ['sleep', '600'] });
  const host = () => {
    const r = spawnSync(loop, [String(o.loopCalls)], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`syscall_loop failed: ${r.stderr}`);
    return nsPerCall(r.stdout);
  };
  const results = { hostIdle: [] as number[], hostWith: [] as number[], ctrPlain: [] as number[], ctrWith: [] as number[] };
  for (let i = 0; i < o.rounds; i++) {
    results.hostIdle.push(host());
    results.ctrPlain.push(nsPerCall(box.runContainer(bundle, []).stdout));
    // The sleeper keeps the recorder attached while the host loop runs.
    const id = box.startDetached(sleeper, o.sleeperFlags);
    results.hostWith.push(host());
    box.deleteForce(id);
    results.ctrWith.push(nsPerCall(box.runContainer(bundle, o.loopFlags).stdout));
  }
  const m = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, median(v)])) as Record<keyof typeof results, number>;
  const row = (what: string, base: number, with_: number, target: string) =>
    `| ${what} | ${base.toFixed(1)} | ${with_.toFixed(1)} | ${(with_ - base).toFixed(1)} | ${(with_ / base).toFixed(2)}x | ${target} |`;
  return [
    `getppid() in a tight loop of ${o.loopCalls.toLocaleString('en-US')} calls, ns per call, median of ${o.rounds} interleaved rounds:`,
    '',
    `| process | ${o.columns[0]} | ${o.columns[1]} | added ns | ratio | target |`,
    '|---|---|---|---|---|---|',
    row(o.hostRow, m.hostIdle, m.hostWith, o.hostTarget),
    row(o.ctrRow, m.ctrPlain, m.ctrWith, o.ctrTarget),
  ].join('\n');
}

/** The realistic workloads without and with `flags(j)`, timed inside the container, interleaved. */
export async function slowdownTable(box: BenchBox, rounds: number, flags: (job: number) => string[], columns: [string, string]): Promise<string> {
  const rows: string[] = [];
  for (const [j, job] of REALISTIC_WORKLOADS.entries()) {
    const bundle = await box.bundleFor(`job${j}`, job.w);
    const plain: number[] = [];
    const with_: number[] = [];
    for (let i = 0; i < rounds; i++) {
      plain.push(timeitMs(box.runContainer(bundle, []).stderr));
      with_.push(timeitMs(box.runContainer(bundle, flags(j)).stderr));
    }
    const a = median(plain);
    const b = median(with_);
    rows.push(`| ${job.name} | ${a.toFixed(1)} ms | ${b.toFixed(1)} ms | ${((b / a - 1) * 100).toFixed(1)}% |`);
  }
  return [
    `Workload time measured inside the container (median of ${rounds} interleaved rounds):`,
    '',
    `| workload | ${columns[0]} | ${columns[1]} | slowdown (target < 2%) |`,
    '|---|---|---|---|',
    ...rows,
  ].join('\n');
}
