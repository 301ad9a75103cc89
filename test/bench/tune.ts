/**
 * PSI tuning, tuned against untuned side by side in one run:
 *   (a) footprint: two twins read a 1 GiB cold file once, then work on a 64 MiB hot set;
 *       memory held and work done over the same time, and the tuned one's stall;
 *   (b) noisy neighbour: a latency-sensitive container (a 192 MiB hot set read over and
 *       over) and a page-cache streamer (1.5 GiB read in a loop) under one 512 MiB budget
 *       (a parent memory cgroup); the streamer tuned against nothing tuned;
 *   (c) the tuner's own CPU with 50 registered containers.
 * Writes the tuned containers' reports to docs/bench/.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeBundle } from '../../fixtures/busybox.js';
import { benchBox, LAUNCHER, type BenchBox } from './harness.js';
import { benchMain, measuredLine, median } from './stats.js';

const MiB = 1024 * 1024;
const ROUNDS = Number(process.env.HYPERBOX_BENCH_ROUNDS ?? 3);
const FOOTPRINT_S = 40;
const NOISY_S = 20;
const CPU_CONTAINERS = 50;
const CPU_S = 30;
const TARGET_US = 5000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function dd(file: string, mib: number): void {
  if (!existsSync(file)) execFileSync('dd', ['if=/dev/zero', `of=${file}`, 'bs=1M', `count=${mib}`, 'oflag=direct', 'status=none']);
}

interface Started {
  id: string;
  pid: number;
  memory: string;
  unified: string;
  out: string;
}

async function start(b: BenchBox, name: string, script: string, data: string, opts: { tune?: boolean; cgroupsPath?: string } = {}): Promise<Started> {
  const out = join(b.top, `${name}-out`);
  mkdirSync(out, { recursive: true });
  const bundle = await writeBundle(join(b.top, `b-${name}`), {
    args: ['sh', '-c', script],
    readonly: true,
    annotations: opts.tune ? { 'io.hyperbox.tune': 'memory' } : {},
    edit: (spec) => {
      const mounts = spec.mounts as unknown[];
      mounts.push({ destination: '/data', type: 'bind', source: data, options: ['rbind', 'ro'] });
      mounts.push({ destination: '/out', type: 'bind', source: out, options: ['rbind', 'rw'] });
      if (opts.cgroupsPath) (spec.linux as Record<string, unknown>).cgroupsPath = opts.cgroupsPath;
    },
  });
  const id = b.startDetached(bundle.dir, []);
  const st = JSON.parse(execFileSync(LAUNCHER, ['--root', b.root, 'state', id], { env: b.env, encoding: 'utf8' })) as { pid: number };
  const lines = readFileSync(`/proc/${st.pid}/cgroup`, 'utf8').split('\n');
  return {
    id,
    pid: st.pid,
    memory: join('/sys/fs/cgroup/memory', lines.find((l) => /^\d+:memory:/.test(l))!.split(':')[2]!),
    unified: join('/sys/fs/cgroup/unified', lines.find((l) => l.startsWith('0::'))!.slice(3)),
    out,
  };
}

const usage = (c: Started) => Number(readFileSync(join(c.memory, 'memory.usage_in_bytes'), 'utf8'));
const stallUs = (c: Started) => Number(/^some .*total=(\d+)/m.exec(readFileSync(join(c.unified, 'memory.pressure'), 'utf8'))![1]);
const lines = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').length - 1 : 0);

function report(b: BenchBox, c: Started, file: string): void {
  const r = spawnSync(LAUNCHER, ['tune', 'report', c.id], { env: b.env, encoding: 'utf8' });
  if (r.status === 0) {
    mkdirSync('docs/bench', { recursive: true });
    writeFileSync(file, r.stdout);
  }
}

async function footprint(b: BenchBox, round: number): Promise<{ held: [number, number]; work: [number, number]; stall: number }> {
  const datas = ['tuned', 'plain'].map((k) => {
    const d = join(b.top, `fp-${k}-${round}`);
    mkdirSync(d, { recursive: true });
    dd(join(d, 'cold'), 1024);
    dd(join(d, 'hot'), 64);
    return d;
  });
  const script = 'cat /data/cold > /dev/null; while :; do cat /data/hot > /dev/null; echo x >> /out/passes; done';
  const tuned = await start(b, `fp-t${round}`, script, datas[0]!, { tune: true });
  const plain = await start(b, `fp-p${round}`, script, datas[1]!);
  const s0 = stallUs(tuned);
  const held: [number[], number[]] = [[], []];
  const t0 = Date.now();
  while (Date.now() - t0 < FOOTPRINT_S * 1000) {
    await sleep(500);
    // Memory held over the second half, once both have read their cold file.
    if (Date.now() - t0 >= (FOOTPRINT_S * 1000) / 2) {
      held[0].push(usage(tuned));
      held[1].push(usage(plain));
    }
  }
  const stall = ((stallUs(tuned) - s0) / (Date.now() - t0)) * 1000;
  const work: [number, number] = [lines(join(tuned.out, 'passes')), lines(join(plain.out, 'passes'))];
  if (round === ROUNDS - 1) report(b, tuned, 'docs/bench/tune-footprint.svg');
  b.deleteForce(tuned.id);
  b.deleteForce(plain.id);
  const avg = (xs: number[]) => xs.reduce((a, x) => a + x, 0) / xs.length;
  return { held: [avg(held[0]), avg(held[1])], work, stall };
}

const BUDGET = '/sys/fs/cgroup/memory/hbx-bench-budget';

async function noisy(b: BenchBox, data: string, tuned: boolean, round: number): Promise<{ lsStallMs: number; batchMBs: number }> {
  mkdirSync(BUDGET, { recursive: true });
  writeFileSync(join(BUDGET, 'memory.limit_in_bytes'), String(512 * MiB));
  const tag = `${tuned ? 't' : 'u'}${round}`;
  const ls = await start(b, `nn-ls-${tag}`, 'while :; do cat /data/hot > /dev/null; done', data, { cgroupsPath: `/hbx-bench-budget/ls-${tag}` });
  const files = Array.from({ length: 24 }, (_, i) => `/data/b${i}`).join(' ');
  const batch = await start(b, `nn-batch-${tag}`, `while :; do for f in ${files}; do cat $f > /dev/null; echo x >> /out/files; done; done`, data, {
    tune: tuned,
    cgroupsPath: `/hbx-bench-budget/batch-${tag}`,
  });
  await sleep(3000); // both running; the LS container has its hot set in
  const s0 = stallUs(ls);
  const f0 = lines(join(batch.out, 'files'));
  const t0 = Date.now();
  await sleep(NOISY_S * 1000);
  const secs = (Date.now() - t0) / 1000;
  const out = { lsStallMs: (stallUs(ls) - s0) / 1000, batchMBs: ((lines(join(batch.out, 'files')) - f0) * 64 * MiB) / 1e6 / secs };
  if (tuned && round === ROUNDS - 1) report(b, batch, 'docs/bench/tune-noisy-batch.svg');
  b.deleteForce(ls.id);
  b.deleteForce(batch.id);
  return out;
}

function cpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return Number(rest[11]) + Number(rest[12]); // utime + stime
}

async function tunerCpu(b: BenchBox): Promise<{ pct: number; n: number }> {
  const data = join(b.top, 'cpu-data');
  mkdirSync(data, { recursive: true });
  const ids: Started[] = [];
  for (let i = 0; i < CPU_CONTAINERS; i++) ids.push(await start(b, `cpu-${i}`, 'sleep 100000', data, { tune: true }));
  await sleep(3000);
  const pid = Number(readFileSync(join(b.env.HYPERBOX_STATE!, 'tune', 'tuner.pid'), 'utf8'));
  const hz = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
  const c0 = cpuTicks(pid);
  const t0 = Date.now();
  await sleep(CPU_S * 1000);
  const pct = (((cpuTicks(pid) - c0) / hz) / ((Date.now() - t0) / 1000)) * 100;
  // What the tuner had registered while it was measured, not what was asked for.
  const n = readdirSync(join(b.env.HYPERBOX_STATE!, 'tune', 'registered')).filter((f) => f.endsWith('.json')).length;
  for (const c of ids) b.deleteForce(c.id);
  return { pct, n };
}

const mib = (n: number) => `${(n / MiB).toFixed(0)} MiB`;
const pctOf = (a: number, b: number) => `${((a / b) * 100).toFixed(0)}%`;

async function tuneBench(): Promise<string> {
  const b = benchBox('tune');
  try {
    const fp = [];
    for (let r = 0; r < ROUNDS; r++) fp.push(await footprint(b, r));
    const heldT = median(fp.map((x) => x.held[0]));
    const heldU = median(fp.map((x) => x.held[1]));
    const workT = median(fp.map((x) => x.work[0]));
    const workU = median(fp.map((x) => x.work[1]));
    const stall = median(fp.map((x) => x.stall));
    const saved = 1 - heldT / heldU;

    const data = join(b.top, 'nn-data');
    mkdirSync(data, { recursive: true });
    dd(join(data, 'hot'), 192);
    for (let i = 0; i < 24; i++) dd(join(data, `b${i}`), 64);
    const nn: { u: { lsStallMs: number; batchMBs: number }[]; t: { lsStallMs: number; batchMBs: number }[] } = { u: [], t: [] };
    for (let r = 0; r < ROUNDS; r++) {
      // Alternate which goes first, so neither always meets a fresher page cache.
      for (const tuned of r % 2 ? [true, false] : [false, true]) (tuned ? nn.t : nn.u).push(await noisy(b, data, tuned, r));
    }
    try {
      rmdirSync(BUDGET);
    } catch {
      // a container's cgroup may linger a moment
    }
    const lsU = median(nn.u.map((x) => x.lsStallMs));
    const lsT = median(nn.t.map((x) => x.lsStallMs));
    const bU = median(nn.u.map((x) => x.batchMBs));
    const bT = median(nn.t.map((x) => x.batchMBs));

    const cpu = await tunerCpu(b);
    const runc = execFileSync('runc', ['--version'], { encoding: 'utf8' }).split('\n')[0];
    const verdict = (ok: boolean) => (ok ? 'met' : 'missed');
    return [
      measuredLine('test/bench/tune.ts'),
      `${runc}, Node ${process.version}, cgroup v1 memory + v2 pressure (hybrid). Data files written with O_DIRECT so each container's page cache is charged to it; medians of ${ROUNDS} rounds; the tuner at its defaults (target 0.5% of the time stalled, 1 s interval, 2 s trigger window).`,
      '',
      `(a) Footprint: two containers side by side, one with \`--tune memory\`, each reading its own 1 GiB cold file once and then a 64 MiB hot file over and over for ${FOOTPRINT_S} s. Memory held: memory.usage_in_bytes averaged over the second half; work: hot-set passes in the whole ${FOOTPRINT_S} s.`,
      '',
      '| | untuned | tuned | tuned / untuned | target |',
      '|---|---|---|---|---|',
      `| memory held | ${mib(heldU)} | ${mib(heldT)} | ${pctOf(heldT, heldU)} (${(saved * 100).toFixed(0)}% less) | at least 20% less: ${verdict(saved >= 0.2)} |`,
      `| work done (passes) | ${workU} | ${workT} | ${pctOf(workT, workU)} | equal work |`,
      `| tuned memory stall | | ${(stall / 10_000).toFixed(3)}% of the time | | under ${TARGET_US / 10_000}%: ${verdict(stall < TARGET_US)} |`,
      '',
      `(b) Noisy neighbour: a latency-sensitive container reading a 192 MiB hot file in a loop and a batch container streaming 24 × 64 MiB files in a loop, both in one parent memory cgroup limited to 512 MiB (runc cgroupsPath). Untuned: neither tuned; tuned: the batch container with \`io.hyperbox.tune=memory\` (the latency-sensitive one untuned). ${NOISY_S} s each, after 3 s of warm-up; the order alternates every round.`,
      '',
      '| | untuned | tuned | change | target |',
      '|---|---|---|---|---|',
      `| latency-sensitive memory stall | ${lsU.toFixed(0)} ms | ${lsT.toFixed(0)} ms | ${((1 - lsT / lsU) * 100).toFixed(0)}% lower | at least 50% lower: ${verdict(lsT <= lsU / 2)} |`,
      `| batch throughput | ${bU.toFixed(0)} MB/s | ${bT.toFixed(0)} MB/s | ${pctOf(bT, bU)} of untuned | at least 90%: ${verdict(bT >= 0.9 * bU)} |`,
      '',
      `(c) The tuner's own CPU (utime + stime from /proc/PID/stat) over ${CPU_S} s with ${cpu.n} registered, idle containers: **${cpu.pct.toFixed(2)}% of one core** (target under 1%: ${verdict(cpu.pct < 1)}).`,
      '',
      'Plots (`hyperbox-runc tune report ID`) of the last round: the tuned container of (a), and the tuned batch container of (b):',
      '',
      '![footprint](docs/bench/tune-footprint.svg)',
      '',
      '![noisy neighbour, the batch container](docs/bench/tune-noisy-batch.svg)',
    ].join('\n');
  } finally {
    b.cleanup();
  }
}

await benchMain(import.meta.url, 'tune', tuneBench);
