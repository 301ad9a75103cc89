/**
 * OTLP/HTTP JSON, written by hand: ExportMetricsServiceRequest for
 * POST /v1/metrics and ExportTraceServiceRequest for POST /v1/traces, in the
 * protobuf JSON mapping OTLP specifies (64-bit integers as decimal strings,
 * trace and span ids as hex, enums as numbers). Metrics are cumulative from
 * the container's start, so a reading lost on the way costs nothing but its
 * own moment.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { bucketRange, type TraceSample } from './sample.js';

const CUMULATIVE = 2;
const SPAN_KIND_INTERNAL = 1;

/** Export bounds in ns: powers of two from ~1 µs to ~2.1 s; each is a bucket edge of the recorder, so re-bucketing is exact. */
export const EXPORT_BOUNDS_NS: readonly number[] = Array.from({ length: 22 }, (_, i) => 2 ** (i + 10));

/** The recorder's 64 fine buckets summed into EXPORT_BOUNDS_NS.length + 1 export buckets (the last is +Inf). */
export function exportBuckets(fine: readonly bigint[]): bigint[] {
  const out = new Array<bigint>(EXPORT_BOUNDS_NS.length + 1).fill(0n);
  fine.forEach((n, i) => {
    if (n === 0n) return;
    const high = bucketRange(i)[1];
    const j = EXPORT_BOUNDS_NS.findIndex((b) => high <= b);
    out[j === -1 ? EXPORT_BOUNDS_NS.length : j]! += n;
  });
  return out;
}

let cachedVersion: string | undefined;
export function hyperboxVersion(): string {
  if (cachedVersion === undefined) {
    try {
      cachedVersion = String((JSON.parse(readFileSync(new URL('../../../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown');
    } catch {
      cachedVersion = 'unknown';
    }
  }
  return cachedVersion;
}

type AnyValue = { stringValue: string } | { intValue: string } | { arrayValue: { values: AnyValue[] } };
interface KeyValue {
  key: string;
  value: AnyValue;
}

function str(key: string, value: string): KeyValue {
  return { key, value: { stringValue: value } };
}
function int(key: string, value: bigint | number): KeyValue {
  return { key, value: { intValue: String(value) } };
}

function resource(s: TraceSample, hostName: string) {
  return { attributes: [str('container.id', s.containerId), str('container.runtime', 'hyperbox-runc'), str('host.name', hostName)] };
}

function scope() {
  return { name: 'hyperbox-runc', version: hyperboxVersion() };
}

/** The ExportMetricsServiceRequest for one reading. */
export function metricsRequest(s: TraceSample, hostName: string): object {
  const start = String(s.startUnixNano);
  const time = String(s.timeUnixNano);
  const point = (attributes: KeyValue[], value: bigint) => ({ attributes, startTimeUnixNano: start, timeUnixNano: time, asInt: String(value) });
  const counter = (name: string, unit: string, description: string, dataPoints: object[]) => ({
    name,
    description,
    unit,
    sum: { dataPoints, aggregationTemporality: CUMULATIVE, isMonotonic: true },
  });
  const metrics: object[] = [];
  if (s.what.includes('syscalls')) {
    const abi = (c: { name: string; arch: string }) => [str('syscall.name', c.name), str('syscall.abi', c.arch)];
    metrics.push(counter('hyperbox.syscall.count', '{call}', 'Syscalls entered by the container', s.syscalls.map((c) => point(abi(c), c.count))));
    const timed = s.syscalls.filter((c) => c.latency && c.latency.count > 0n);
    metrics.push({
      name: 'hyperbox.syscall.duration',
      description: 'Time from syscall entry to return',
      unit: 's',
      histogram: {
        aggregationTemporality: CUMULATIVE,
        dataPoints: timed.map((c) => ({
          attributes: abi(c),
          startTimeUnixNano: start,
          timeUnixNano: time,
          count: String(c.latency!.count),
          sum: Number(c.latency!.sumNs) / 1e9,
          bucketCounts: exportBuckets(c.latency!.buckets).map(String),
          explicitBounds: EXPORT_BOUNDS_NS.map((ns) => ns / 1e9),
        })),
      },
    });
  }
  if (s.what.includes('net')) {
    const dir = (d: string) => [str('network.io.direction', d)];
    metrics.push(counter('hyperbox.network.io', 'By', 'IP bytes through the container cgroup\'s sockets', [point(dir('receive'), s.net.rxBytes), point(dir('transmit'), s.net.txBytes)]));
    metrics.push(counter('hyperbox.network.packets', '{packet}', 'IP packets through the container cgroup\'s sockets', [point(dir('receive'), s.net.rxPackets), point(dir('transmit'), s.net.txPackets)]));
  }
  if (s.what.includes('exec')) {
    metrics.push(counter('hyperbox.process.execs', '{exec}', 'Successful execs in the container', [point([], s.execs.total)]));
  }
  return { resourceMetrics: [{ resource: resource(s, hostName), scopeMetrics: [{ scope: scope(), metrics }] }] };
}

/** The ExportTraceServiceRequest: one span for the container's life, its execs as events. */
export function tracesRequest(s: TraceSample, hostName: string, ids = { traceId: randomBytes(16).toString('hex'), spanId: randomBytes(8).toString('hex') }): object {
  const total = s.syscalls.reduce((a, c) => a + c.count, 0n);
  const attributes = [str('container.id', s.containerId), str('hyperbox.traced', s.what.join(','))];
  if (s.what.includes('syscalls')) attributes.push(int('hyperbox.syscalls', total));
  if (s.what.includes('net')) attributes.push(int('hyperbox.network.rx_bytes', s.net.rxBytes), int('hyperbox.network.tx_bytes', s.net.txBytes));
  if (s.what.includes('exec')) attributes.push(int('hyperbox.execs', s.execs.total));
  const span = {
    traceId: ids.traceId,
    spanId: ids.spanId,
    name: `container ${s.containerId}`,
    kind: SPAN_KIND_INTERNAL,
    startTimeUnixNano: String(s.startUnixNano),
    endTimeUnixNano: String(s.timeUnixNano),
    attributes,
    events: s.execs.recent.map((e) => ({
      timeUnixNano: String(e.timeUnixNano),
      name: 'exec',
      attributes: [int('process.pid', e.pid), int('hyperbox.ns_pid', e.nsPid), str('process.executable.path', e.filename)],
    })),
    droppedEventsCount: Number(s.execs.total) - s.execs.recent.length,
    status: {},
  };
  return { resourceSpans: [{ resource: resource(s, hostName), scopeSpans: [{ scope: scope(), spans: [span] }] }] };
}

/** POSTs one OTLP JSON body; resolves on 2xx, rejects with one sentence on anything else. */
export function postOtlp(url: string, body: string, headers: Record<string, string>, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let target: URL;
    try {
      target = new URL(url);
    } catch {
      reject(new Error(`bad OTLP endpoint ${url}`));
      return;
    }
    const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(target, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      timeout: timeoutMs,
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err) => reject(new Error(`POST ${url}: ${err.message}`)));
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => {
        const code = res.statusCode ?? 0;
        if (code >= 200 && code < 300) resolve();
        else reject(new Error(`POST ${url}: HTTP ${code}`));
      });
      res.on('error', (err) => reject(new Error(`POST ${url}: ${err.message}`)));
    });
    req.end(body);
  });
}
