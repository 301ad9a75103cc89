/**
 * Learned-seccomp benchmark, side by side in one run:
 *  1. profile size per test workload (syscalls allowed, JSON bytes, BPF
 *     instructions) against Docker's default (309 syscalls on x86_64) and the
 *     Podman default on this machine;
 *  2. recorder cost per syscall, interleaved: a host process with nothing
 *     attached vs. while a container is learning (untracked), and a container
 *     not learning vs. learning (tracked), from a static getppid loop;
 *  3. the slowdown of realistic workloads (file copy, loopback HTTP) in a
 *     learning container, timed inside the container so container start and
 *     hooks are not counted.
 * Prints markdown; `--readme` rewrites the README's bench:seccomp block.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildCFixture } from '../../fixtures/cfixture.js';
import { findRunc } from '../../fixtures/tools.js';
import { allowedNames } from '../../src/features/seccomp/intersect.js';
import { native } from '../../src/native/index.js';
import { parseJson, type JsonObject } from '../../src/oci/json.js';
import { DOCKER_DEFAULT_SYSCALLS, WORKLOADS } from '../helpers/seccomp.js';
import { benchBox, LAUNCHER, nsPerCall, REALISTIC_WORKLOADS, timeitMs } from './harness.js';
import { median, replaceReadmeBlock } from './stats.js';

const ROUNDS = Number(process.env.BENCH_SECCOMP_ROUNDS ?? 7);
const LOOP_CALLS = Number(process.env.BENCH_SECCOMP_LOOP ?? 5_000_000);

const box = benchBox('seccomp');
const { root, store, env, runContainer, bundleFor } = box;

/** Syscalls Podman's default profile (containers/common, Docker-derived) allows for any container, unconditionally. */
function podmanDefaultAllowed(): number | undefined {
  const path = '/usr/share/containers/seccomp.json';
  if (!existsSync(path)) return undefined;
  const doc = JSON.parse(readFileSync(path, 'utf8')) as { syscalls: { names: string[]; action: string; args?: unknown[]; includes?: object }[] };
  const names = new Set<string>();
  for (const r of doc.syscalls) {
    if (r.action === 'SCMP_ACT_ALLOW' && !(r.args ?? []).length && !Object.keys(r.includes ?? {}).length) r.names.forEach((n) => names.add(n));
  }
  return names.size;
}

async function profileSizes(): Promise<string> {
  const rows: string[] = [];
  for (const w of WORKLOADS) {
    const bundle = await bundleFor(`size-${w.name}`, w);
    runContainer(bundle, ['--seccomp-learn', `bench-${w.name}`]);
    const file = join(store, 'seccomp', `bench-${w.name}.json`);
    const profile = parseJson(readFileSync(file, 'utf8')) as JsonObject;
    const allowed = allowedNames(profile).length;
    const insns = native().seccompCompile(readFileSync(file, 'utf8')).instructions;
    const fewer = (1 - allowed / DOCKER_DEFAULT_SYSCALLS) * 100;
    rows.push(`| ${w.name} | ${allowed} | ${statSync(file).size} | ${insns} | ${fewer.toFixed(1)}% |`);
  }
  const podman = podmanDefaultAllowed();
  return [
    '| workload | syscalls allowed | profile JSON bytes | BPF instructions | fewer syscalls than Docker\'s default |',
    '|---|---|---|---|---|',
    ...rows,
    `| Docker default (reference) | ${DOCKER_DEFAULT_SYSCALLS} | | | |`,
    ...(podman ? [`| Podman default on this machine (unconditional) | ${podman} | | | |`] : []),
  ].join('\n');
}

/** ns per getppid from syscall_loop's output. */
async function recorderCost(): Promise<string> {
  const loop = await buildCFixture('syscall_loop', ['-static']);
  const bundle = await bundleFor('loop', { args: ['/bin/syscall_loop', String(LOOP_CALLS)] });
  const sleeperBundle = await bundleFor('sleeper', { args: ['sleep', '600'] });
  const host = () => {
    const r = spawnSync(loop, [String(LOOP_CALLS)], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`syscall_loop failed: ${r.stderr}`);
    return nsPerCall(r.stdout);
  };
  const results = { hostIdle: [] as number[], hostUntracked: [] as number[], ctrPlain: [] as number[], ctrLearning: [] as number[] };
  for (let i = 0; i < ROUNDS; i++) {
    results.hostIdle.push(host());
    results.ctrPlain.push(nsPerCall(runContainer(bundle, []).stdout));
    // A learning container keeps the recorder attached while the host loop runs.
    const sleeper = `hbx-bench-${process.pid}-sleeper`;
    const c = spawnSync(LAUNCHER, ['--root', root, 'run', '-d', '--seccomp-learn', 'bench-sleeper', '--bundle', sleeperBundle, sleeper], { env, stdio: 'ignore' });
    if (c.status !== 0) throw new Error('starting the learning sleeper failed');
    results.hostUntracked.push(host());
    results.ctrLearning.push(nsPerCall(runContainer(bundle, ['--seccomp-learn', 'bench-loop']).stdout));
    spawnSync(LAUNCHER, ['--root', root, 'delete', '-f', sleeper], { env, stdio: 'ignore' });
  }
  const m = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, median(v)])) as Record<keyof typeof results, number>;
  const row = (what: string, base: number, with_: number, target: string) =>
    `| ${what} | ${base.toFixed(1)} | ${with_.toFixed(1)} | ${(with_ - base).toFixed(1)} | ${(with_ / base).toFixed(2)}x | ${target} |`;
  return [
    `getppid() in a tight loop of ${LOOP_CALLS.toLocaleString('en-US')} calls, ns per call, median of ${ROUNDS} interleaved rounds:`,
    '',
    '| process | without recorder | with recorder | added ns | ratio | target |',
    '|---|---|---|---|---|---|',
    row('host process, untracked (another container learning)', m.hostIdle, m.hostUntracked, '< 40 ns'),
    row('container, learning (tracked)', m.ctrPlain, m.ctrLearning, ''),
  ].join('\n');
}

async function workloadSlowdown(): Promise<string> {
  const jobs = REALISTIC_WORKLOADS;
  const rows: string[] = [];
  for (const [j, job] of jobs.entries()) {
    const bundle = await bundleFor(`job${j}`, job.w);
    const plain: number[] = [];
    const learning: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      plain.push(timeitMs(runContainer(bundle, []).stderr));
      learning.push(timeitMs(runContainer(bundle, ['--seccomp-learn', `bench-job${j}`]).stderr));
    }
    const a = median(plain);
    const b = median(learning);
    rows.push(`| ${job.name} | ${a.toFixed(1)} ms | ${b.toFixed(1)} ms | ${((b / a - 1) * 100).toFixed(1)}% |`);
  }
  return [
    `Workload time measured inside the container (median of ${ROUNDS} interleaved rounds):`,
    '',
    '| workload | not learning | learning | slowdown (target < 2%) |',
    '|---|---|---|---|',
    ...rows,
  ].join('\n');
}

export async function seccompBench(): Promise<string> {
  if (!findRunc()) throw new Error('runc is not installed');
  try {
    const sizes = await profileSizes();
    const cost = await recorderCost();
    const slowdown = await workloadSlowdown();
    return [
      `Measured with \`make bench\` (test/bench/seccomp.ts) on ${new Date().toISOString().slice(0, 10)}, kernel ${readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()}.`,
      '',
      'Learned profile per test workload (Docker\'s default allows 309 syscalls on x86_64; target: at least 80% fewer, under 60 for the busybox-shell workloads):',
      '',
      sizes,
      '',
      cost,
      '',
      slowdown,
    ].join('\n');
  } finally {
    spawnSync(findRunc()!, ['--root', root, 'delete', '-f', `hbx-bench-${process.pid}-sleeper`], { stdio: 'ignore' });
    box.cleanup();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const text = await seccompBench();
  process.stdout.write(text + '\n');
  if (process.argv.includes('--readme')) writeFileSync('README.md', replaceReadmeBlock(readFileSync('README.md', 'utf8'), 'seccomp', text));
}
