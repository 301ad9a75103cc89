/** What the `tune` subcommands do; loaded only when one runs (commands.ts registers them). */
import { resolve } from 'node:path';
import { Logger } from '../../cli/log.js';
import { formatBytes, formatTable, writeStdout } from '../../cli/output.js';
import { HyperboxError, reasonOf } from '../../errors.js';
import type { Native } from '../../native/index.js';
import { writeFileAtomic } from '../../store/atomic.js';
import { parseInterval } from '../trace/index.js';
import { MemoryCgroup, NO_LIMIT, type PressureReading } from './cgroupfs.js';
import { readHistory, type TuneSample } from './history.js';
import { renderReport } from './report.js';
import { historyKeys, historyPath, readRegistration, readTunerState, registeredKeys, tuneKey, tunerDaemon, type TuneRegistration } from './store.js';
import { Tuner } from './tuner.js';

interface Status {
  id: string;
  root: string;
  actuator: string;
  targetUs: number;
  memory?: { avg10: number; avg60: number };
  io?: { avg10: number; avg60: number };
  current?: number;
  limit?: number;
  hardLimit?: number;
  given: number;
  lastTrigger?: string;
  error?: string;
}

function statusOf(reg: TuneRegistration): Status {
  const state = readTunerState(reg.key);
  const given = state && state.instance === reg.instance ? state.given : 0;
  const out: Status = { id: reg.containerId, root: reg.runcRoot, actuator: '', targetUs: reg.targetUs, given };
  if (state?.instance === reg.instance && state.limit !== undefined) out.limit = state.limit;
  if (state?.instance === reg.instance && state.lastTrigger) out.lastTrigger = new Date(state.lastTrigger).toISOString();
  try {
    const cg = new MemoryCgroup(reg);
    out.actuator = cg.actuator;
    const avg = (p: PressureReading) => ({ avg10: p.avg10, avg60: p.avg60 });
    out.memory = avg(cg.readPressure('memory'));
    out.io = avg(cg.readPressure('io'));
    const mem = cg.readMemory();
    out.current = mem.current;
    if (mem.limit < NO_LIMIT) out.hardLimit = mem.limit;
  } catch (err) {
    out.error = reasonOf(err);
  }
  return out;
}

function registrations(root: string | undefined): TuneRegistration[] {
  return registeredKeys()
    .map((k) => readRegistration(k))
    .filter((r): r is TuneRegistration => r !== undefined && (root === undefined || r.runcRoot === resolve(root)));
}

function findRegistration(id: string, root: string | undefined): TuneRegistration {
  const found = registrations(root).filter((r) => r.containerId === id);
  if (found.length === 0) throw new HyperboxError('E_NOT_FOUND', `container ${id} is not tuned (hyperbox-runc tune status lists those that are)`);
  if (found.length > 1) throw new HyperboxError('E_USAGE', `${found.length} tuned containers are named ${id} under different runc roots; pass --root`);
  return found[0]!;
}

const pct = (n: number | undefined) => (n === undefined ? '-' : `${n.toFixed(2)}%`);
const bytes = (n: number | undefined) => (n === undefined ? '-' : formatBytes(n));

export function statusCommand(id: string | undefined, opts: { json?: boolean; root?: string }): void {
  const tuner = tunerDaemon().pid();
  if (id !== undefined) {
    const s = statusOf(findRegistration(id, opts.root));
    if (opts.json) return writeStdout(JSON.stringify({ ...s, tuner: tuner ?? null }) + '\n');
    const rows = [
      ['container', s.id],
      ['tuner', tuner ? `pid ${tuner}` : 'not running'],
      ['actuator', s.actuator || '-'],
      ['target', `${pct(s.targetUs / 10_000)} of the time stalled`],
      ['memory stall', `${pct(s.memory?.avg10)} avg10, ${pct(s.memory?.avg60)} avg60`],
      ['io stall', `${pct(s.io?.avg10)} avg10, ${pct(s.io?.avg60)} avg60`],
      ['memory', bytes(s.current)],
      ['limit', bytes(s.limit)],
      ['hard limit', s.hardLimit === undefined ? 'none' : bytes(s.hardLimit)],
      ['given back', bytes(s.given)],
      ['last trigger', s.lastTrigger ?? 'never'],
      ...(s.error ? [['error', s.error]] : []),
    ];
    return writeStdout(rows.map(([k, v]) => `${(k + ':').padEnd(14)}${v}`).join('\n') + '\n');
  }
  const all = registrations(opts.root).map(statusOf);
  if (opts.json) return writeStdout(JSON.stringify({ tuner: tuner ?? null, containers: all }) + '\n');
  const rows = [['ID', 'STALL AVG10', 'AVG60', 'IO AVG10', 'MEMORY', 'LIMIT', 'GIVEN BACK', 'TARGET']];
  for (const s of all) rows.push([s.id, pct(s.memory?.avg10), pct(s.memory?.avg60), pct(s.io?.avg10), bytes(s.current), bytes(s.limit), bytes(s.given), pct(s.targetUs / 10_000)]);
  writeStdout(formatTable(rows) + `tuner: ${tuner ? `pid ${tuner}` : 'not running'}\n`);
}

/** The history file of a container: the running one's, else the newest left by one that is gone. */
function findHistory(id: string, root: string | undefined): string {
  if (root !== undefined) return historyPath(tuneKey(resolve(root), id));
  const live = registrations(undefined).filter((r) => r.containerId === id);
  if (live.length === 1) return historyPath(live[0]!.key);
  const keys = historyKeys().filter((k) => /^[0-9a-f]{16}\./.test(k) && k.slice(17) === id);
  if (keys.length === 0) throw new HyperboxError('E_NOT_FOUND', `no tuning history for container ${id} (it was never tuned, or its history has been pruned)`);
  if (keys.length > 1) throw new HyperboxError('E_USAGE', `${keys.length} tuned containers named ${id} under different runc roots left a history; pass --root`);
  return historyPath(keys[0]!);
}

function loadHistory(id: string, root: string | undefined): { header: { containerId: string; targetUs: number; startedAt: number }; samples: TuneSample[] } {
  const h = readHistory(findHistory(id, root));
  if (!h) throw new HyperboxError('E_NOT_FOUND', `no tuning history for container ${id} yet (the tuner writes one within seconds of its start)`);
  return h;
}

export function historyCommand(id: string, opts: { json?: boolean; root?: string }): void {
  const { samples } = loadHistory(id, opts.root);
  if (opts.json) return writeStdout(samples.map((s) => JSON.stringify(s)).join('\n') + (samples.length ? '\n' : ''));
  const rows = [['TIME', 'STALL', 'MEM', 'IO', 'MEMORY', 'LIMIT', 'FLOOR', 'GIVEN BACK', 'ACTION']];
  for (const s of samples) {
    rows.push([
      new Date(s.t).toISOString().slice(11, 23),
      pct(s.stallUs / 10_000),
      pct(s.memUs / 10_000),
      pct(s.ioUs / 10_000),
      formatBytes(s.current),
      formatBytes(s.limit),
      formatBytes(s.floor),
      formatBytes(s.given),
      s.action + (s.triggered ? ' (trigger)' : ''),
    ]);
  }
  writeStdout(formatTable(rows));
}

export function reportCommand(id: string, opts: { output?: string; root?: string }): void {
  const { header, samples } = loadHistory(id, opts.root);
  const svg = renderReport(header, samples);
  if (opts.output) writeFileAtomic(opts.output, svg, { mode: 0o644 });
  else writeStdout(svg);
}

export async function daemonCommand(nat: Native, opts: { interval: string; window: string; persist?: boolean; log?: string }): Promise<number> {
  const intervalMs = parseInterval(opts.interval, '--interval');
  const windowMs = parseInterval(opts.window, '--window');
  if (windowMs < 500 || windowMs > 10_000) throw new HyperboxError('E_USAGE', `--window ${opts.window}: the kernel takes PSI trigger windows from 500ms to 10s`);
  const log = new Logger({ log: opts.log, logFormat: 'text', debug: false });
  const other = tunerDaemon().claim(nat);
  if (other !== undefined) {
    log.warn(`hyperbox-runc: tune: the tuner already runs as pid ${other}`);
    return 0;
  }
  // Test knobs: stop after a while; hold each lowered limit (a window to kill the tuner in).
  const lifetime = process.env.HYPERBOX_TUNE_LIFETIME_MS;
  const hold = process.env.HYPERBOX_TUNE_HOLD_MS;
  const tuner = new Tuner(nat, {
    intervalMs,
    windowUs: windowMs * 1000,
    persist: opts.persist === true,
    log,
    ...(lifetime ? { lifetimeMs: Number(lifetime) } : {}),
    ...(hold ? { holdMs: Number(hold) } : {}),
  });
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => tuner.stop());
  return tuner.run();
}

