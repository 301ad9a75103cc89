/**
 * The OTLP exporter: `hyperbox-runc trace daemon`, one per host (per
 * $HYPERBOX_STATE), started on demand by the first traced container that asks
 * for OTLP and gone once nothing is left to send. Hooks never talk to a
 * collector themselves: they register a running container (active/) or drop
 * its final report in a bounded outbox (outbox/), and return at once, so a
 * collector that is down or slow costs the container nothing.
 *
 * While a container runs its cumulative metrics are sent every interval (a
 * failed send is simply superseded by the next one); its final report (metrics
 * and the lifetime span) is retried with exponential backoff, then dropped.
 * One warning per endpoint outage goes to the exporter's log.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Logger } from '../../cli/log.js';
import { reasonOf } from '../../errors.js';
import { recorderPinDir } from '../../kernel/recorder.js';
import type { Native } from '../../native/index.js';
import { HostDaemon } from '../../oci/daemon.js';
import { stateBase } from '../../oci/state.js';
import { writeFileAtomic } from '../../store/atomic.js';
import type { OtlpEndpoints } from './endpoints.js';
import { metricsRequest, postOtlp } from './otlp.js';
import { takeSample, type TracedContainer } from './sample.js';

/** A running container whose metrics are sent every interval. */
export interface Registration extends TracedContainer {
  otlp: OtlpEndpoints;
  intervalMs: number;
  hostName: string;
}

/** A finished container's last word, waiting to be delivered. */
export interface OutboxItem {
  containerId: string;
  otlp: OtlpEndpoints;
  metrics: string;
  traces: string;
  attempts?: number;
  nextAttemptMs?: number;
  sent?: { metrics?: boolean; traces?: boolean };
}

/** Bounds: the outbox holds at most this many reports (the oldest go first)... */
export const MAX_OUTBOX = 256;
/** ...each tried this many times, 1 s apart doubling up to a minute (about 3 minutes in all). */
export const MAX_ATTEMPTS = 8;
const MAX_BACKOFF_MS = 60_000;
export const POST_TIMEOUT_MS = 5_000;
const TICK_MS = 250;

export function traceRunDir(): string {
  return join(stateBase(), 'trace');
}
const activeDir = () => join(traceRunDir(), 'active');
const outboxDir = () => join(traceRunDir(), 'outbox');
const exporterDaemon = () => new HostDaemon(traceRunDir(), 'trace', 'exporter');
/** Where the exporter's warnings go. */
export const exporterLog = () => exporterDaemon().logFile;

function ensureDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}

function jsonFiles(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter((f) => f.endsWith('.json') && !f.startsWith('.'))
      .sort();
  } catch {
    return [];
  }
}

function readJson<T>(path: string): T | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

export function registerExport(reg: Registration): void {
  ensureDir(activeDir());
  writeFileAtomic(join(activeDir(), `${reg.cgroupId}.json`), JSON.stringify(reg), { mode: 0o600 });
}

export function unregisterExport(cgroupId: string): void {
  try {
    unlinkSync(join(activeDir(), `${cgroupId}.json`));
  } catch {
    // not registered (no OTLP asked, or never got that far)
  }
}

function appendLog(msg: string): void {
  new Logger({ log: exporterLog(), logFormat: 'text', debug: false }).warn(msg);
}

/** Queues a final report; beyond MAX_OUTBOX the oldest are dropped (with a warning), so a dead collector cannot fill the host. */
export function enqueueFinal(item: OutboxItem): void {
  ensureDir(outboxDir());
  // The host's monotonic clock orders reports across processes, so "oldest" is well defined.
  const name = `${process.hrtime.bigint().toString().padStart(20, '0')}-${process.pid}.json`;
  writeFileAtomic(join(outboxDir(), name), JSON.stringify(item), { mode: 0o600 });
  const queued = jsonFiles(outboxDir());
  const excess = queued.slice(0, Math.max(0, queued.length - MAX_OUTBOX));
  for (const f of excess) {
    const dropped = readJson<OutboxItem>(join(outboxDir(), f));
    try {
      unlinkSync(join(outboxDir(), f));
    } catch {
      continue; // sent or dropped meanwhile
    }
    appendLog(`hyperbox-runc: trace: OTLP outbox full (${MAX_OUTBOX}); dropped the report of container ${dropped?.containerId ?? '?'}`);
  }
}

/** The pid of the running exporter, if there is one. */
export function exporterPid(): number | undefined {
  return exporterDaemon().pid();
}

/** Starts the exporter unless one runs. Under the exporter lock, which is also where a idle exporter decides to exit. */
export function ensureExporter(nat: Native): void {
  exporterDaemon().ensure(nat);
}

function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return url;
  }
}

class Exporter {
  private readonly lastSent = new Map<string, number>();
  private readonly busy = new Set<string>();
  private readonly failing = new Map<string, string>();
  private stopping = false;

  constructor(
    private readonly nat: Native,
    private readonly log: Logger,
    private readonly backoffMs: number,
  ) {}

  stop(): void {
    this.stopping = true;
  }

  /** Sends one body; warns once when a collector (scheme, host and port) starts failing and once when it is back. */
  private async send(url: string, body: string, headers: Record<string, string>): Promise<boolean> {
    if (!url) return true; // no endpoint for this signal
    const collector = originOf(url);
    try {
      await postOtlp(url, body, headers, POST_TIMEOUT_MS);
      if (this.failing.delete(collector)) this.log.warn(`hyperbox-runc: trace: OTLP export to ${collector} works again`);
      return true;
    } catch (err) {
      if (!this.failing.has(collector)) this.log.warn(`hyperbox-runc: trace: OTLP export failed: ${reasonOf(err)}; retrying with backoff (containers are not affected)`);
      this.failing.set(collector, reasonOf(err));
      return false;
    }
  }

  private periodic(now: number): void {
    for (const f of jsonFiles(activeDir())) {
      const reg = readJson<Registration>(join(activeDir(), f));
      if (!reg || this.busy.has(reg.cgroupId)) continue;
      if ((this.lastSent.get(reg.cgroupId) ?? 0) + reg.intervalMs > now) continue;
      this.lastSent.set(reg.cgroupId, now);
      let sample;
      try {
        sample = takeSample(this.nat, recorderPinDir(), reg);
      } catch (err) {
        this.log.warn(`hyperbox-runc: trace: cannot read container ${reg.containerId}: ${reasonOf(err)}`);
        continue;
      }
      if (!sample) {
        // Untracked without a poststop (a crash): gc releases it; stop sending for it.
        unregisterExport(reg.cgroupId);
        continue;
      }
      this.busy.add(reg.cgroupId);
      void this.send(reg.otlp.metrics, JSON.stringify(metricsRequest(sample, reg.hostName)), reg.otlp.headers).finally(() => this.busy.delete(reg.cgroupId));
    }
  }

  private async deliver(path: string, item: OutboxItem, now: number): Promise<void> {
    const sent = item.sent ?? {};
    if (!sent.metrics) sent.metrics = await this.send(item.otlp.metrics, item.metrics, item.otlp.headers);
    // A collector that just refused the metrics is not asked for the span in the same round.
    if (!sent.traces && (sent.metrics || originOf(item.otlp.metrics) !== originOf(item.otlp.traces))) sent.traces = await this.send(item.otlp.traces, item.traces, item.otlp.headers);
    if (sent.metrics && sent.traces) {
      unlinkSync(path);
      return;
    }
    const attempts = (item.attempts ?? 0) + 1;
    if (attempts >= MAX_ATTEMPTS) {
      unlinkSync(path);
      this.log.warn(`hyperbox-runc: trace: dropped the final report of container ${item.containerId} after ${attempts} attempts`);
      return;
    }
    const next: OutboxItem = { ...item, attempts, sent, nextAttemptMs: now + Math.min(MAX_BACKOFF_MS, this.backoffMs * 2 ** (attempts - 1)) };
    if (existsSync(path)) writeFileAtomic(path, JSON.stringify(next), { mode: 0o600 });
  }

  private outbox(now: number): void {
    for (const f of jsonFiles(outboxDir())) {
      const path = join(outboxDir(), f);
      if (this.busy.has(path)) continue;
      const item = readJson<OutboxItem>(path);
      if (!item) {
        // A report that cannot be read will never be sent.
        try {
          unlinkSync(path);
        } catch {
          // already gone
        }
        continue;
      }
      if ((item.nextAttemptMs ?? 0) > now) continue;
      this.busy.add(path);
      void this.deliver(path, item, now)
        .catch((err) => this.log.warn(`hyperbox-runc: trace: ${reasonOf(err)}`))
        .finally(() => this.busy.delete(path));
    }
  }

  private idle(): boolean {
    return this.busy.size === 0 && jsonFiles(activeDir()).length === 0 && jsonFiles(outboxDir()).length === 0;
  }

  async run(): Promise<number> {
    for (;;) {
      const now = Date.now();
      if (!this.stopping) {
        this.periodic(now);
        this.outbox(now);
      }
      if (this.stopping ? this.busy.size === 0 : this.idle()) {
        // Decided under the lock ensureExporter takes, so no registration is missed.
        if (exporterDaemon().exitIfIdle(this.nat, () => this.stopping || this.idle())) return 0;
      }
      await new Promise((r) => setTimeout(r, TICK_MS));
    }
  }
}

/**
 * `hyperbox-runc trace daemon`: runs until there is nothing left to send (or SIGTERM).
 * Warnings go to stderr (the exporter log, when started on demand) unless `logFile` is given;
 * `backoffMs` is the first retry delay.
 */
export async function runExporter(nat: Native, opts: { backoffMs?: number; logFile?: string } = {}): Promise<number> {
  const log = new Logger({ log: opts.logFile, logFormat: 'text', debug: false });
  const other = exporterDaemon().claim(nat);
  if (other !== undefined) {
    log.warn(`hyperbox-runc: trace: the exporter already runs as pid ${other}`);
    return 0;
  }
  const exporter = new Exporter(nat, log, opts.backoffMs ?? 1000);
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => exporter.stop());
  return exporter.run();
}

/** For `trace ls`: the exporter's pid and how much waits. */
export function exporterStatus(): { pid: number | undefined; active: number; queued: number; since?: string } {
  const pid = exporterPid();
  let since: string | undefined;
  if (pid !== undefined) {
    try {
      since = statSync(exporterDaemon().pidFile).mtime.toISOString();
    } catch {
      // gone meanwhile
    }
  }
  return { pid, active: jsonFiles(activeDir()).length, queued: jsonFiles(outboxDir()).length, ...(since ? { since } : {}) };
}
