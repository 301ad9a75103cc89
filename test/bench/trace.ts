/**
 * Telemetry benchmark, side by side in one run:
 *  1. nanoseconds added per syscall (static getppid loop), interleaved: a host
 *     process with nothing attached vs. while a container is traced
 *     (untraced process), and a container untraced vs. traced with
 *     syscalls,net,exec (traced process: counted and timed);
 *  2. the slowdown of realistic workloads (file copy, loopback HTTP serving)
 *     when traced, timed inside the container so start-up and hooks are not counted.
 * Prints markdown; `--readme` rewrites the README's bench:trace block.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { buildCFixture } from '../../fixtures/cfixture.js';
import { findRunc } from '../../fixtures/tools.js';
import { benchBox, nsPerCall, REALISTIC_WORKLOADS, timeitMs } from './harness.js';
import { median, replaceReadmeBlock } from './stats.js';

const ROUNDS = Number(process.env.BENCH_TRACE_ROUNDS ?? 7);
const LOOP_CALLS = Number(process.env.BENCH_TRACE_LOOP ?? 5_000_000);
const TRACE = ['--trace', 'syscalls,net,exec'];

const box = benchBox('trace');

async function perSyscall(): Promise<string> {
  const loop = await buildCFixture('syscall_loop', ['-static']);
  const bundle = await box.bundleFor('loop', { args: ['/bin/syscall_loop', String(LOOP_CALLS)] });
  const sleeper = await box.bundleFor('sleeper', { args: ['sleep', '600'] });
  const host = () => {
    const r = spawnSync(loop, [String(LOOP_CALLS)], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`syscall_loop failed: ${r.stderr}`);
    return nsPerCall(r.stdout);
  };
  const results = { hostIdle: [] as number[], hostUntraced: [] as number[], ctrPlain: [] as number[], ctrTraced: [] as number[] };
  for (let i = 0; i < ROUNDS; i++) {
    results.hostIdle.push(host());
    results.ctrPlain.push(nsPerCall(box.runContainer(bundle, []).stdout));
    // A traced container keeps sys_enter and sys_exit attached while the host loop runs.
    const id = box.startDetached(sleeper, TRACE);
    results.hostUntraced.push(host());
    box.deleteForce(id);
    results.ctrTraced.push(nsPerCall(box.runContainer(bundle, TRACE).stdout));
  }
  const m = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, median(v)])) as Record<keyof typeof results, number>;
  const row = (what: string, base: number, with_: number, target: string) =>
    `| ${what} | ${base.toFixed(1)} | ${with_.toFixed(1)} | ${(with_ - base).toFixed(1)} | ${(with_ / base).toFixed(2)}x | ${target} |`;
  return [
    `getppid() in a tight loop of ${LOOP_CALLS.toLocaleString('en-US')} calls, ns per call, median of ${ROUNDS} interleaved rounds:`,
    '',
    '| process | not traced | traced | added ns | ratio | target |',
    '|---|---|---|---|---|---|',
    row('host process, untraced (another container traced)', m.hostIdle, m.hostUntraced, '< 40 ns'),
    row('container, traced (syscalls,net,exec)', m.ctrPlain, m.ctrTraced, '< 100 ns'),
  ].join('\n');
}

async function workloadSlowdown(): Promise<string> {
  const rows: string[] = [];
  for (const [j, job] of REALISTIC_WORKLOADS.entries()) {
    const bundle = await box.bundleFor(`job${j}`, job.w);
    const plain: number[] = [];
    const traced: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      plain.push(timeitMs(box.runContainer(bundle, []).stderr));
      traced.push(timeitMs(box.runContainer(bundle, TRACE).stderr));
    }
    const a = median(plain);
    const b = median(traced);
    rows.push(`| ${job.name} | ${a.toFixed(1)} ms | ${b.toFixed(1)} ms | ${((b / a - 1) * 100).toFixed(1)}% |`);
  }
  return [
    `Workload time measured inside the container (median of ${ROUNDS} interleaved rounds):`,
    '',
    '| workload | untraced | traced (syscalls,net,exec) | slowdown (target < 2%) |',
    '|---|---|---|---|',
    ...rows,
  ].join('\n');
}

export async function traceBench(): Promise<string> {
  if (!findRunc()) throw new Error('runc is not installed');
  try {
    const cost = await perSyscall();
    const slowdown = await workloadSlowdown();
    return [
      `Measured with \`make bench\` (test/bench/trace.ts) on ${new Date().toISOString().slice(0, 10)}, kernel ${readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()}.`,
      '',
      cost,
      '',
      slowdown,
    ].join('\n');
  } finally {
    box.cleanup();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const text = await traceBench();
  process.stdout.write(text + '\n');
  if (process.argv.includes('--readme')) writeFileSync('README.md', replaceReadmeBlock(readFileSync('README.md', 'utf8'), 'trace', text));
}
