/** What the `trace` subcommands do; loaded only when one runs (commands.ts registers them). */
import { isatty } from 'node:tty';
import { hostname } from 'node:os';
import { basename, dirname, resolve } from 'node:path';
import { formatTable, writeStdout } from '../../cli/output.js';
import { HyperboxError } from '../../errors.js';
import { recorderPinDir } from '../../kernel/recorder.js';
import type { Native } from '../../native/index.js';
import { containerStateDir, listContainerStateDirs } from '../../oci/state.js';
import { writeFileAtomic } from '../../store/atomic.js';
import { readTraceState, type TraceState } from './collect.js';
import { exporterStatus } from './exporter.js';
import { parseInterval } from './index.js';
import { exposition } from './prometheus.js';
import { summarize, takeSample, type TraceSample } from './sample.js';
import { readSummary } from './store.js';
import { renderView } from './view.js';

interface Traced {
  stateDir: string;
  state: TraceState;
}

/** Every container with a trace state (created, running or stopped, not yet deleted). */
function listTraced(): Traced[] {
  const out: Traced[] = [];
  for (const stateDir of listContainerStateDirs()) {
    const state = readTraceState(stateDir);
    if (state) out.push({ stateDir, state });
  }
  return out;
}

function findTraced(id: string, root: string | undefined): Traced {
  const found = listTraced().filter((t) => basename(t.stateDir) === id && (root === undefined || t.stateDir === containerStateDir(resolve(root), id)));
  if (found.length === 0) throw new HyperboxError('E_NOT_FOUND', `container ${id} is not being traced (hyperbox-runc trace ls lists those that are)`);
  if (found.length > 1) throw new HyperboxError('E_USAGE', `${found.length} traced containers are named ${id} under different runc roots; pass --root`);
  return found[0]!;
}

function sampleOf(nat: Native, t: Traced): TraceSample | undefined {
  return takeSample(nat, recorderPinDir(), t.state);
}

export async function viewCommand(nat: Native, id: string | undefined, opts: { once?: boolean; json?: boolean; interval: string; root?: string }): Promise<number> {
  if (!id) throw new HyperboxError('E_USAGE', 'trace needs a container id (hyperbox-runc trace ls lists the traced ones)');
  const intervalMs = parseInterval(opts.interval, '--interval');
  const traced = findTraced(id, opts.root);
  const show = (s: TraceSample, prev?: TraceSample) => (opts.json ? JSON.stringify(summarize(s, hostname())) + '\n' : renderView(s, prev));
  let prev = sampleOf(nat, traced);
  if (!prev) throw new HyperboxError('E_NOT_FOUND', `container ${id} is not tracked by the recorder (its tracing failed at create, or it was deleted)`);
  if (opts.once) {
    writeStdout(show(prev));
    return 0;
  }
  const tty = isatty(1) && !opts.json;
  let stop = false;
  process.once('SIGINT', () => (stop = true));
  process.once('SIGTERM', () => (stop = true));
  let before: TraceSample | undefined;
  for (;;) {
    writeStdout((tty ? '\x1b[H\x1b[2J' : before && !opts.json ? '\n' : '') + show(prev, before));
    for (let waited = 0; waited < intervalMs && !stop; waited += 50) await new Promise((r) => setTimeout(r, Math.min(50, intervalMs - waited)));
    if (stop) return 0;
    const next = sampleOf(nat, traced);
    if (!next) {
      writeStdout(`container ${id} is no longer traced (it was deleted)\n`);
      return 0;
    }
    before = prev;
    prev = next;
  }
}

export function metricsCommand(nat: Native, output: string | undefined): void {
  const samples = listTraced()
    .map((t) => sampleOf(nat, t))
    .filter((s): s is TraceSample => s !== undefined);
  const text = exposition(samples);
  if (output === undefined) writeStdout(text);
  else {
    // Atomic, so a node_exporter textfile collector never reads half a file.
    try {
      writeFileAtomic(resolve(output), text, { mode: 0o644 });
    } catch (err) {
      throw new HyperboxError('E_USAGE', `cannot write ${output} (in ${dirname(resolve(output))}): ${(err as Error).message}`, { cause: err });
    }
  }
}

export function summaryCommand(id: string): void {
  writeStdout(JSON.stringify(readSummary(id), null, 2) + '\n');
}

export function lsCommand(json: boolean): void {
  const rows = listTraced().map((t) => ({ id: t.state.containerId, cgroupId: t.state.cgroupId, traced: t.state.what.join(','), since: new Date(Number(BigInt(t.state.startUnixNano) / 1_000_000n)).toISOString() }));
  const exporter = exporterStatus();
  if (json) {
    writeStdout(JSON.stringify({ containers: rows, exporter }, null, 2) + '\n');
    return;
  }
  const table = [['ID', 'TRACED', 'SINCE', 'CGROUP'], ...rows.map((r) => [r.id, r.traced, r.since, r.cgroupId])];
  writeStdout(formatTable(table));
  writeStdout(
    exporter.pid !== undefined
      ? `OTLP exporter: pid ${exporter.pid}, ${exporter.active} container(s) exporting, ${exporter.queued} final report(s) queued\n`
      : `OTLP exporter: not running${exporter.queued ? ` (${exporter.queued} report(s) queued)` : ''}\n`,
  );
}
