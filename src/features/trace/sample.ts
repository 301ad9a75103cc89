/**
 * One reading of a traced container from the recorder, and the JSON summary
 * made of it. Every export (OTLP, Prometheus, the terminal view, the poststop
 * summary) starts from a TraceSample, so they all say the same thing.
 */
import type { ExecEvent, NetCounters, Native, RecorderArch, SyscallLatency } from '../../native/index.js';
import type { TraceKind } from './index.js';

/** One syscall of one ABI: how often it was entered and, when traced, how long it took. */
export interface SyscallStat {
  name: string;
  arch: RecorderArch;
  nr: number;
  count: bigint;
  latency?: SyscallLatency;
}

export interface TraceSample {
  containerId: string;
  cgroupId: string;
  what: TraceKind[];
  startUnixNano: bigint;
  timeUnixNano: bigint;
  /** The final reading, taken at poststop. */
  ended: boolean;
  syscalls: SyscallStat[];
  overflow: bigint;
  latencyDropped: bigint;
  net: NetCounters;
  execs: { total: bigint; recent: ExecEvent[] };
}

/** What identifies a traced container to the readers. */
export interface TracedContainer {
  containerId: string;
  cgroupId: string;
  what: TraceKind[];
  startUnixNano: string;
}

export function nowUnixNano(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

const ZERO_NET: NetCounters = { rxBytes: 0n, rxPackets: 0n, txBytes: 0n, txPackets: 0n };

/** Reads the recorder for one container; undefined when it is not tracked (any more). */
export function takeSample(nat: Native, pinDir: string, c: TracedContainer, ended = false): TraceSample | undefined {
  const id = BigInt(c.cgroupId);
  const snap = nat.recorderRead(pinDir, id);
  if (!snap) return undefined;
  const traced = c.what.includes('syscalls');
  const latency = new Map<string, SyscallLatency>();
  if (traced) for (const l of nat.recorderLatency(pinDir, id)) latency.set(`${l.arch}/${l.nr}`, l);
  const syscalls: SyscallStat[] = traced
    ? snap.counts.map((c) => ({
        name: nat.seccompResolve(c.arch, c.nr) ?? `syscall_${c.nr}`,
        arch: c.arch,
        nr: c.nr,
        count: c.count,
        latency: latency.get(`${c.arch}/${c.nr}`),
      }))
    : [];
  syscalls.sort((a, b) => (a.count === b.count ? a.name.localeCompare(b.name) : a.count > b.count ? -1 : 1));
  return {
    containerId: c.containerId,
    cgroupId: c.cgroupId,
    what: c.what,
    startUnixNano: BigInt(c.startUnixNano),
    timeUnixNano: nowUnixNano(),
    ended,
    syscalls,
    overflow: traced ? snap.overflow : 0n,
    latencyDropped: traced ? snap.latencyDropped : 0n,
    net: c.what.includes('net') ? snap.net : ZERO_NET,
    execs: c.what.includes('exec') ? snap.execs : { total: 0n, recent: [] },
  };
}

/** [low, high) in ns of the recorder's latency bucket i (see SyscallLatency). */
export function bucketRange(i: number): [number, number] {
  if (i === 0) return [0, 2];
  const k = i >> 1;
  if (k === 0) return [2, 2]; // bucket 1: never used
  const low = 2 ** k + (i & 1) * 2 ** (k - 1);
  return [low, i === 63 ? Infinity : low + 2 ** (k - 1)];
}

/**
 * The q-quantile of a histogram as the upper bound of the bucket it falls in
 * (the bucket's low end for the open last bucket); undefined for no calls.
 * Buckets are √2 apart, so the true value is within 30% below what is shown.
 */
export function quantileNs(buckets: readonly bigint[], q: number): number | undefined {
  const total = buckets.reduce((a, b) => a + b, 0n);
  if (total === 0n) return undefined;
  const rank = BigInt(Math.max(1, Math.ceil(q * Number(total))));
  let seen = 0n;
  for (let i = 0; i < buckets.length; i++) {
    seen += buckets[i]!;
    if (seen >= rank) {
      const [low, high] = bucketRange(i);
      return high === Infinity ? low : high;
    }
  }
  return undefined;
}

/** The JSON a person or script reads: `trace ID --once --json` and the poststop summary. */
export interface TraceSummary {
  containerId: string;
  runtime: 'hyperbox-runc';
  hostName: string;
  cgroupId: string;
  traced: TraceKind[];
  start: string;
  time: string;
  ended: boolean;
  syscalls?: {
    total: number;
    overflow: number;
    latencyDropped: number;
    calls: { name: string; arch: RecorderArch; nr: number; count: number; timeNs?: number; p50Ns?: number; p99Ns?: number }[];
  };
  net?: { rxBytes: number; rxPackets: number; txBytes: number; txPackets: number };
  execs?: { total: number; recent: { time: string; pid: number; nsPid: number; filename: string }[] };
}

export function isoOf(unixNano: bigint): string {
  return new Date(Number(unixNano / 1_000_000n)).toISOString();
}

export function summarize(s: TraceSample, hostName: string): TraceSummary {
  const out: TraceSummary = {
    containerId: s.containerId,
    runtime: 'hyperbox-runc',
    hostName,
    cgroupId: s.cgroupId,
    traced: s.what,
    start: isoOf(s.startUnixNano),
    time: isoOf(s.timeUnixNano),
    ended: s.ended,
  };
  if (s.what.includes('syscalls')) {
    out.syscalls = {
      total: Number(s.syscalls.reduce((a, c) => a + c.count, 0n)),
      overflow: Number(s.overflow),
      latencyDropped: Number(s.latencyDropped),
      calls: s.syscalls.map((c) => ({
        name: c.name,
        arch: c.arch,
        nr: c.nr,
        count: Number(c.count),
        ...(c.latency && c.latency.count > 0n
          ? { timeNs: Number(c.latency.sumNs), p50Ns: quantileNs(c.latency.buckets, 0.5), p99Ns: quantileNs(c.latency.buckets, 0.99) }
          : {}),
      })),
    };
  }
  if (s.what.includes('net')) {
    out.net = { rxBytes: Number(s.net.rxBytes), rxPackets: Number(s.net.rxPackets), txBytes: Number(s.net.txBytes), txPackets: Number(s.net.txPackets) };
  }
  if (s.what.includes('exec')) {
    out.execs = {
      total: Number(s.execs.total),
      recent: s.execs.recent.map((e) => ({ time: isoOf(e.timeUnixNano), pid: e.pid, nsPid: e.nsPid, filename: e.filename })),
    };
  }
  return out;
}
