/**
 * Prometheus text exposition (format 0.0.4) of every traced container:
 * counters with a _total suffix, latency as a classic histogram in seconds
 * with the same bucket edges as OTLP.
 */
import { EXPORT_BOUNDS_NS, exportBuckets } from './otlp.js';
import type { TraceSample } from './sample.js';

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function labels(pairs: Record<string, string>): string {
  return '{' + Object.entries(pairs).map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',') + '}';
}

/** Seconds as Prometheus prints them: shortest exact decimal. */
function seconds(ns: number): string {
  return String(ns / 1e9);
}

export function exposition(samples: readonly TraceSample[]): string {
  const families = new Map<string, { help: string; type: string; lines: string[] }>();
  const family = (name: string, type: string, help: string) => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { help, type, lines: [] }));
    return f.lines;
  };
  for (const s of samples) {
    const c = { container_id: s.containerId };
    if (s.what.includes('syscalls')) {
      const calls = family('hyperbox_syscalls_total', 'counter', 'Syscalls entered by the container.');
      const hist = family('hyperbox_syscall_duration_seconds', 'histogram', 'Time from syscall entry to return.');
      for (const call of s.syscalls) {
        const l = { ...c, syscall: call.name, abi: call.arch };
        calls.push(`hyperbox_syscalls_total${labels(l)} ${call.count}`);
        if (!call.latency || call.latency.count === 0n) continue;
        let cumulative = 0n;
        exportBuckets(call.latency.buckets).forEach((n, i) => {
          cumulative += n;
          const le = i < EXPORT_BOUNDS_NS.length ? seconds(EXPORT_BOUNDS_NS[i]!) : '+Inf';
          hist.push(`hyperbox_syscall_duration_seconds_bucket${labels({ ...l, le })} ${cumulative}`);
        });
        hist.push(`hyperbox_syscall_duration_seconds_sum${labels(l)} ${seconds(Number(call.latency.sumNs))}`);
        hist.push(`hyperbox_syscall_duration_seconds_count${labels(l)} ${call.latency.count}`);
      }
    }
    if (s.what.includes('net')) {
      family('hyperbox_network_bytes_total', 'counter', "IP bytes through the container cgroup's sockets.").push(
        `hyperbox_network_bytes_total${labels({ ...c, direction: 'receive' })} ${s.net.rxBytes}`,
        `hyperbox_network_bytes_total${labels({ ...c, direction: 'transmit' })} ${s.net.txBytes}`,
      );
      family('hyperbox_network_packets_total', 'counter', "IP packets through the container cgroup's sockets.").push(
        `hyperbox_network_packets_total${labels({ ...c, direction: 'receive' })} ${s.net.rxPackets}`,
        `hyperbox_network_packets_total${labels({ ...c, direction: 'transmit' })} ${s.net.txPackets}`,
      );
    }
    if (s.what.includes('exec')) {
      family('hyperbox_execs_total', 'counter', 'Successful execs in the container.').push(`hyperbox_execs_total${labels(c)} ${s.execs.total}`);
    }
  }
  let out = '';
  for (const [name, f] of families) out += `# HELP ${name} ${f.help}\n# TYPE ${name} ${f.type}\n${f.lines.join('\n')}\n`;
  return out;
}
