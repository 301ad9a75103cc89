/**
 * Telemetry benchmark, side by side in one run:
 *  1. nanoseconds added per syscall (static getppid loop), interleaved: a host
 *     process with nothing attached vs. while a container is traced
 *     (untraced process), and a container untraced vs. traced with
 *     syscalls,net,exec (traced process: counted and timed);
 *  2. the slowdown of realistic workloads (file copy, loopback HTTP serving)
 *     when traced (all of it, and net,exec only), timed inside the container so
 *     start-up and hooks are not counted.
 * Prints markdown; `--readme` rewrites the README's bench:trace block.
 */
import { findRunc } from '../../fixtures/tools.js';
import { benchBox, slowdownTable, syscallCostTable } from './harness.js';
import { benchMain, measuredLine } from './stats.js';

const ROUNDS = Number(process.env.BENCH_TRACE_ROUNDS ?? 7);
const LOOP_CALLS = Number(process.env.BENCH_TRACE_LOOP ?? 5_000_000);
const TRACE = ['--trace', 'syscalls,net,exec'];

const box = benchBox('trace');

function perSyscall(): Promise<string> {
  return syscallCostTable(box, {
    rounds: ROUNDS,
    loopCalls: LOOP_CALLS,
    sleeperFlags: TRACE,
    loopFlags: TRACE,
    columns: ['not traced', 'traced'],
    hostRow: 'host process, untraced (another container traced)',
    ctrRow: 'container, traced (syscalls,net,exec)',
    hostTarget: '< 40 ns',
    ctrTarget: '< 100 ns',
  });
}

async function workloadSlowdown(): Promise<string> {
  const all = await slowdownTable(box, ROUNDS, () => TRACE, ['untraced', 'traced (syscalls,net,exec)']);
  // Without syscall timing: no sys_exit program, no per-call latency work.
  const light = await slowdownTable(box, ROUNDS, () => ['--trace', 'net,exec'], ['untraced', 'traced (net,exec)']);
  return `${all}\n\nThe same without syscall counts and latencies:\n\n${light.split('\n').slice(2).join('\n')}`;
}

export async function traceBench(): Promise<string> {
  if (!findRunc()) throw new Error('runc is not installed');
  try {
    const cost = await perSyscall();
    const slowdown = await workloadSlowdown();
    return [
      measuredLine('test/bench/trace.ts'),
      '',
      cost,
      '',
      slowdown,
    ].join('\n');
  } finally {
    box.cleanup();
  }
}

await benchMain(import.meta.url, 'trace', traceBench);
