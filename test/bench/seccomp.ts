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
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { findRunc } from '../../fixtures/tools.js';
import { allowedNames } from '../../src/features/seccomp/intersect.js';
import { native } from '../../src/native/index.js';
import { parseJson, type JsonObject } from '../../src/oci/json.js';
import { DOCKER_DEFAULT_SYSCALLS, WORKLOADS } from '../helpers/seccomp.js';
import { benchBox, slowdownTable, syscallCostTable } from './harness.js';
import { benchMain, measuredLine } from './stats.js';

const ROUNDS = Number(process.env.BENCH_SECCOMP_ROUNDS ?? 7);
const LOOP_CALLS = Number(process.env.BENCH_SECCOMP_LOOP ?? 5_000_000);

const box = benchBox('seccomp');
const { store, runContainer, bundleFor } = box;

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
function recorderCost(): Promise<string> {
  return syscallCostTable(box, {
    rounds: ROUNDS,
    loopCalls: LOOP_CALLS,
    sleeperFlags: ['--seccomp-learn', 'bench-sleeper'],
    loopFlags: ['--seccomp-learn', 'bench-loop'],
    columns: ['without recorder', 'with recorder'],
    hostRow: 'host process, untracked (another container learning)',
    ctrRow: 'container, learning (tracked)',
    hostTarget: '< 40 ns',
    ctrTarget: '',
  });
}

function workloadSlowdown(): Promise<string> {
  return slowdownTable(box, ROUNDS, (j) => ['--seccomp-learn', `bench-job${j}`], ['not learning', 'learning']);
}

export async function seccompBench(): Promise<string> {
  if (!findRunc()) throw new Error('runc is not installed');
  try {
    const sizes = await profileSizes();
    const cost = await recorderCost();
    const slowdown = await workloadSlowdown();
    return [
      measuredLine('test/bench/seccomp.ts'),
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
    box.cleanup();
  }
}

await benchMain(import.meta.url, 'seccomp', seccompBench);
