/** The terminal view of `hyperbox-runc trace ID`: a table of one reading, with rates against the one before. */
import { formatBytes } from '../../cli/output.js';
import type { SyscallStat, TraceSample } from './sample.js';
import { bucketRange, quantileNs } from './sample.js';

const TOP = 10;
/** Quantiles in the recorder's open last bucket are only known to be at least this. */
const OPEN_NS = bucketRange(63)[0];

export function formatNs(ns: number | undefined): string {
  if (ns === undefined) return '-';
  if (ns < 1_000) return `${ns}ns`;
  if (ns < 1_000_000) return `${(ns / 1_000).toFixed(ns < 10_000 ? 1 : 0)}µs`;
  if (ns < 1_000_000_000) return `${(ns / 1_000_000).toFixed(ns < 10_000_000 ? 1 : 0)}ms`;
  return `${(ns / 1_000_000_000).toFixed(2)}s`;
}

function formatQuantile(ns: number | undefined): string {
  return ns !== undefined && ns >= OPEN_NS ? `≥${formatNs(ns)}` : formatNs(ns);
}

function pad(s: string, n: number, right = false): string {
  return right ? s.padStart(n) : s.padEnd(n);
}

function rate(now: bigint, before: bigint | undefined, seconds: number): string {
  if (before === undefined || seconds <= 0) return '-';
  return (Number(now - before) / seconds).toFixed(0);
}

function key(c: SyscallStat): string {
  return `${c.arch}/${c.nr}`;
}

/** The table for one reading; `prev` (an earlier reading of the same container) gives the rates. */
export function renderView(s: TraceSample, prev?: TraceSample): string {
  const seconds = prev ? Number(s.timeUnixNano - prev.timeUnixNano) / 1e9 : 0;
  const up = Number(s.timeUnixNano - s.startUnixNano) / 1e9;
  const lines = [`container ${s.containerId}   cgroup ${s.cgroupId}   traced ${s.what.join(',')}   up ${up.toFixed(1)}s${s.ended ? '   (ended)' : ''}`, ''];
  if (s.what.includes('syscalls')) {
    const before = new Map(prev?.syscalls.map((c) => [key(c), c.count]));
    const total = s.syscalls.reduce((a, c) => a + c.count, 0n);
    const totalBefore = prev?.syscalls.reduce((a, c) => a + c.count, 0n);
    lines.push(`SYSCALLS  ${total} calls, ${rate(total, totalBefore, seconds)}/s${s.overflow ? `, ${s.overflow} with unknown numbers` : ''}${s.latencyDropped ? `, ${s.latencyDropped} untimed (latency map full)` : ''}`);
    const head = `  ${pad('syscall', 18)}${pad('abi', 7)}${pad('calls', 11, true)}${pad('/s', 9, true)}${pad('time', 10, true)}${pad('p50', 9, true)}${pad('p99', 9, true)}`;
    const row = (c: SyscallStat) => {
      const l = c.latency;
      return `  ${pad(c.name, 18)}${pad(c.arch, 7)}${pad(String(c.count), 11, true)}${pad(rate(c.count, before.get(key(c)), seconds), 9, true)}${pad(l ? formatNs(Number(l.sumNs)) : '-', 10, true)}${pad(formatQuantile(l && quantileNs(l.buckets, 0.5)), 9, true)}${pad(formatQuantile(l && quantileNs(l.buckets, 0.99)), 9, true)}`;
    };
    lines.push('', ' top by count', head, ...s.syscalls.slice(0, TOP).map(row));
    const byTime = [...s.syscalls].filter((c) => c.latency && c.latency.sumNs > 0n).sort((a, b) => (a.latency!.sumNs > b.latency!.sumNs ? -1 : a.latency!.sumNs < b.latency!.sumNs ? 1 : 0));
    lines.push('', ' top by time', head, ...byTime.slice(0, TOP).map(row), '');
  }
  if (s.what.includes('net')) {
    const n = s.net;
    const r = (now: bigint, was: bigint | undefined) => (prev && seconds > 0 ? `${formatBytes(Number(now - (was ?? 0n)) / seconds)}/s` : '-');
    lines.push(`NETWORK   rx ${formatBytes(Number(n.rxBytes))} in ${n.rxPackets} packets (${r(n.rxBytes, prev?.net.rxBytes)})   tx ${formatBytes(Number(n.txBytes))} in ${n.txPackets} packets (${r(n.txBytes, prev?.net.txBytes)})`, '');
  }
  if (s.what.includes('exec')) {
    lines.push(`EXECS     ${s.execs.total} in all${s.execs.total > BigInt(s.execs.recent.length) ? `, the last ${s.execs.recent.length} kept` : ''}`);
    for (const e of s.execs.recent.slice(-TOP)) {
      const t = new Date(Number(e.timeUnixNano / 1_000_000n)).toISOString().slice(11, 23);
      lines.push(`  ${t}  pid ${pad(String(e.pid), 8)} (${e.nsPid} in the container)  ${e.filename}`);
    }
  }
  return lines.join('\n') + '\n';
}
