/**
 * Foundation benchmark, side by side in one run (interleaved, so machine
 * noise hits every mode alike): `state` of a running container, and a full
 * lifecycle (create, start, wait for exit, delete) timed per call, for
 *   runc                       the baseline
 *   hyperbox, nothing asked    the launcher's pass-through
 *   hyperbox through Node      a create that plans, modifies and writes config.json
 * Prints a markdown table of medians and ratios; `--readme` also rewrites the
 * README's bench:foundation block.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { writeBundle } from '../../fixtures/busybox.js';
import { findRunc } from '../../fixtures/tools.js';
import { median, ms, replaceReadmeBlock } from './stats.js';

const LAUNCHER = resolve('build/hyperbox-runc');
const STATE_RUNS = Number(process.env.BENCH_STATE_RUNS ?? 60);
const LIFECYCLE_RUNS = Number(process.env.BENCH_LIFECYCLE_RUNS ?? 25);

interface Mode {
  name: string;
  bin: string;
  bundle: string;
}

const env: Record<string, string> = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HYPERBOX_CLI: resolve('dist/test/bench/cli-with-bench.js') };

let errLog = '/dev/null';

/**
 * Wall time of one command in ms; throws when it fails. stderr goes to a file:
 * a created container inherits it, and a pipe would not close until it exits.
 */
function timed(bin: string, args: string[]): number {
  const errFd = openSync(errLog, 'a');
  const t0 = process.hrtime.bigint();
  const r = spawnSync(bin, args, { env, stdio: ['ignore', 'ignore', errFd] });
  const t1 = process.hrtime.bigint();
  closeSync(errFd);
  if (r.status !== 0) throw new Error(`${bin} ${args.join(' ')} failed (${r.status}): ${readFileSync(errLog, 'utf8').slice(-500)}`);
  return Number(t1 - t0) / 1e6;
}

function waitForExit(pid: number): void {
  while (existsSync(`/proc/${pid}`)) {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(' ')[2];
    if (stat === 'Z') break;
    spawnSync('sleep', ['0.001']);
  }
}

export async function foundationBench(): Promise<string> {
  const runc = findRunc();
  if (!runc) throw new Error('runc is not installed');
  const top = mkdtempSync(join(tmpdir(), 'hbx-bench-'));
  const root = join(top, 'root');
  env.HYPERBOX_STATE = join(top, 'hbstate');
  errLog = join(top, 'stderr.log');
  try {
    const plain = await writeBundle(join(top, 'plain'), { args: ['true'] });
    const asks = await writeBundle(join(top, 'asks'), { args: ['true'], annotations: { 'io.hyperbox.bench': '1' } });
    const sleeper = await writeBundle(join(top, 'sleeper'), { args: ['sleep', '600'] });
    const modes: Mode[] = [
      { name: 'runc', bin: runc, bundle: plain.dir },
      { name: 'hyperbox-runc, nothing asked', bin: LAUNCHER, bundle: plain.dir },
      { name: 'hyperbox-runc through Node', bin: LAUNCHER, bundle: asks.dir },
    ];

    // state of one running container, interleaved.
    timed(runc, ['--root', root, 'run', '-d', '--bundle', sleeper.dir, 'bench-sleeper']);
    const state = { runc: [] as number[], hyperbox: [] as number[] };
    for (let i = 0; i < STATE_RUNS; i++) {
      state.runc.push(timed(runc, ['--root', root, 'state', 'bench-sleeper']));
      state.hyperbox.push(timed(LAUNCHER, ['--root', root, 'state', 'bench-sleeper']));
    }
    timed(runc, ['--root', root, 'delete', '-f', 'bench-sleeper']);

    // Full lifecycles, interleaved mode by mode.
    const calls = ['create', 'start', 'delete', 'total'] as const;
    const life = new Map(modes.map((m) => [m.name, Object.fromEntries(calls.map((c) => [c, [] as number[]])) as Record<(typeof calls)[number], number[]>]));
    for (let i = 0; i < LIFECYCLE_RUNS; i++) {
      for (const m of modes) {
        const id = `bench-${i}-${modes.indexOf(m)}`;
        const pidFile = join(top, `${id}.pid`);
        const t0 = process.hrtime.bigint();
        const create = timed(m.bin, ['--root', root, 'create', '--bundle', m.bundle, '--pid-file', pidFile, id]);
        const start = timed(m.bin, ['--root', root, 'start', id]);
        waitForExit(Number(readFileSync(pidFile, 'utf8')));
        const del = timed(m.bin, ['--root', root, 'delete', id]);
        const total = Number(process.hrtime.bigint() - t0) / 1e6;
        const r = life.get(m.name)!;
        r.create.push(create);
        r.start.push(start);
        r.delete.push(del);
        r.total.push(total);
      }
    }

    const base = life.get('runc')!;
    const lines = [
      `Measured by \`make bench\` (test/bench/foundation.ts) on ${process.arch}, kernel ${readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()}, ${spawnSync(runc, ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0]}, Node ${process.version}; medians of ${STATE_RUNS} \`state\` calls and ${LIFECYCLE_RUNS} lifecycles per mode, interleaved in one run.`,
      '',
      '| what | runc | hyperbox-runc | ratio | target |',
      '|---|---|---|---|---|',
      `| \`state\` of a running container (pass-through) | ${ms(median(state.runc))} | ${ms(median(state.hyperbox))} | ${(median(state.hyperbox) / median(state.runc)).toFixed(2)}x | within 1.10x |`,
    ];
    for (const m of modes.slice(1)) {
      const r = life.get(m.name)!;
      for (const c of calls) {
        const target = c === 'total' && m.name.includes('nothing') ? 'within 1.10x' : c === 'create' && m.name.includes('Node') ? 'runc + 60 ms' : '';
        const delta = median(r[c]) - median(base[c]);
        lines.push(`| ${c === 'total' ? 'lifecycle total' : `\`${c}\``}, ${m.name} | ${ms(median(base[c]))} | ${ms(median(r[c]))} | ${(median(r[c]) / median(base[c])).toFixed(2)}x (${delta >= 0 ? '+' : ''}${delta.toFixed(1)} ms) | ${target} |`);
      }
    }
    return lines.join('\n');
  } finally {
    spawnSync(runc, ['--root', root, 'delete', '-f', 'bench-sleeper'], { stdio: 'ignore' });
    rmSync(top, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const table = await foundationBench();
  process.stdout.write(table + '\n');
  if (process.argv.includes('--readme')) {
    const readme = readFileSync('README.md', 'utf8');
    writeFileSync('README.md', replaceReadmeBlock(readme, 'foundation', table));
  }
}
