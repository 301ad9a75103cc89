/**
 * The telemetry's pure parts: the request grammar and OTEL_* endpoints, the recorder's
 * latency buckets, and the OTLP, Prometheus, summary and terminal renderings of one reading.
 */
import t from 'tap';
import { exportMetricsRequestSchema, exportTraceRequestSchema } from '../../../config-schema/otlp.js';
import { resolveEndpoints, signalUrl } from '../../../src/features/trace/endpoints.js';
import { parseInterval, planOptions, traceFeature } from '../../../src/features/trace/index.js';
import { EXPORT_BOUNDS_NS, exportBuckets, metricsRequest, tracesRequest } from '../../../src/features/trace/otlp.js';
import { exposition } from '../../../src/features/trace/prometheus.js';
import { bucketRange, quantileNs, summarize, type TraceSample } from '../../../src/features/trace/sample.js';
import { formatBytes } from '../../../src/cli/output.js';
import { formatNs, renderView } from '../../../src/features/trace/view.js';
import { LATENCY_BUCKETS } from '../../../src/native/index.js';

/** The recorder's bucket for a duration, as addon/bpf/recorder.bpf.c computes it. */
function bucketOf(ns: number): number {
  if (ns < 2) return 0;
  const k = Math.floor(Math.log2(ns));
  return Math.min(63, 2 * k + (Math.floor(ns / 2 ** (k - 1)) & 1));
}

function histogram(durations: number[]): bigint[] {
  const b = new Array<bigint>(LATENCY_BUCKETS).fill(0n);
  for (const d of durations) b[bucketOf(d)]! += 1n;
  return b;
}

const START = 1_700_000_000_000_000_000n;
function sample(over: Partial<TraceSample> = {}): TraceSample {
  const reads = [900, 1500, 3000, 3000, 70_000];
  return {
    containerId: 'web-1',
    cgroupId: '4242',
    what: ['syscalls', 'net', 'exec'],
    startUnixNano: START,
    timeUnixNano: START + 2_500_000_000n,
    ended: true,
    syscalls: [
      { name: 'read', arch: 'x86_64', nr: 0, count: 5n, latency: { arch: 'x86_64', nr: 0, count: 5n, sumNs: BigInt(reads.reduce((a, b) => a + b)), buckets: histogram(reads) } },
      { name: 'exit_group', arch: 'x86_64', nr: 231, count: 1n },
      { name: 'getppid', arch: 'x86', nr: 64, count: 2n, latency: { arch: 'x86', nr: 64, count: 2n, sumNs: 10_000_000_000n, buckets: histogram([5_000_000_000, 5_000_000_000]) } },
    ],
    overflow: 0n,
    latencyDropped: 0n,
    net: { rxBytes: 1234n, rxPackets: 10n, txBytes: 5678n, txPackets: 12n },
    execs: { total: 70n, recent: [{ timeUnixNano: START + 1_000_000n, pid: 4321, nsPid: 1, filename: '/bin/sh' }] },
    ...over,
  };
}

t.test('plan: kinds, OTLP endpoint, interval', async (t) => {
  const env = {};
  t.equal(planOptions({}, env), undefined, 'nothing asked');
  t.same(planOptions({ 'io.hyperbox.trace': 'net, syscalls' }, env), { what: ['syscalls', 'net'], intervalMs: 60_000 }, 'subset, in canonical order; OTel default interval');
  t.same(planOptions({ 'io.hyperbox.trace': 'all' }, env)?.what, ['syscalls', 'net', 'exec']);
  const o = planOptions({ 'io.hyperbox.trace': 'exec', 'io.hyperbox.trace.otlp': 'http://collector:4318', 'io.hyperbox.trace.interval': '2s' }, env)!;
  t.same(o.otlp, { metrics: 'http://collector:4318/v1/metrics', traces: 'http://collector:4318/v1/traces', headers: {} });
  t.equal(o.intervalMs, 2000);
  t.equal(planOptions({ 'io.hyperbox.trace': 'exec' }, { OTEL_METRIC_EXPORT_INTERVAL: '1500' })!.intervalMs, 1500, 'OTEL_METRIC_EXPORT_INTERVAL is in ms');
  const feature = traceFeature({ native: () => { throw new Error('unused'); }, env: {} });
  t.same(feature.flags!.find((f) => f.names[0] === 'trace')!.toAnnotations('syscalls'), { 'io.hyperbox.trace': 'syscalls' });
  t.same(feature.flags!.find((f) => f.names[0] === 'trace-otlp')!.toAnnotations('http://x'), { 'io.hyperbox.trace.otlp': 'http://x' });
});

t.test('plan: bad requests are refused with a sentence', async (t) => {
  const bad: [Record<string, string>, Record<string, string>, RegExp][] = [
    [{ 'io.hyperbox.trace': 'files' }, {}, /bad io.hyperbox.trace value "files": "files" is not one of syscalls, net, exec/],
    [{ 'io.hyperbox.trace': '' }, {}, /expected a comma-separated list/],
    [{ 'io.hyperbox.trace': 'net,,exec' }, {}, /expected a comma-separated list/],
    [{ 'io.hyperbox.trace.otlp': 'http://x' }, {}, /io.hyperbox.trace.otlp needs io.hyperbox.trace=/],
    [{ 'io.hyperbox.trace': 'net', 'io.hyperbox.trace.otlp': 'collector:4318' }, {}, /expected an http:\/\/ or https:\/\/ URL|OTLP\/HTTP needs/],
    [{ 'io.hyperbox.trace': 'net', 'io.hyperbox.trace.otlp': 'grpc://c:4317' }, {}, /OTLP\/HTTP needs an http/],
    [{ 'io.hyperbox.trace': 'net', 'io.hyperbox.trace.interval': '0' }, {}, /bad io.hyperbox.trace.interval value "0"/],
    [{ 'io.hyperbox.trace': 'net', 'io.hyperbox.trace.interval': 'soon' }, {}, /expected a duration/],
    [{ 'io.hyperbox.trace': 'net', 'io.hyperbox.trace.colour': 'red' }, {}, /unknown annotation io.hyperbox.trace.colour/],
    [{ 'io.hyperbox.trace': 'net' }, { OTEL_EXPORTER_OTLP_ENDPOINT: 'not a url' }, /bad OTEL_EXPORTER_OTLP_ENDPOINT value/],
    [{ 'io.hyperbox.trace': 'net' }, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c', OTEL_EXPORTER_OTLP_HEADERS: 'novalue' }, /bad OTEL_EXPORTER_OTLP_HEADERS: "novalue"/],
    [{ 'io.hyperbox.trace': 'net' }, { OTEL_METRIC_EXPORT_INTERVAL: '10' }, /bad OTEL_METRIC_EXPORT_INTERVAL value "10"/],
  ];
  for (const [annotations, env, message] of bad) t.throws(() => planOptions(annotations, env), message, JSON.stringify({ annotations, env }));
});

t.test('endpoints: the OpenTelemetry exporter rules', async (t) => {
  t.equal(signalUrl('http://c:4318', 'metrics'), 'http://c:4318/v1/metrics');
  t.equal(signalUrl('http://c:4318/base/', 'traces'), 'http://c:4318/base/v1/traces', 'a path keeps, one slash');
  t.equal(resolveEndpoints(undefined, {}), undefined, 'no variable, no OTLP');
  t.same(resolveEndpoints(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://base:4318' }), { metrics: 'http://base:4318/v1/metrics', traces: 'http://base:4318/v1/traces', headers: {} });
  t.same(
    resolveEndpoints(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://base:4318', OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: 'http://m:9/custom' }),
    { metrics: 'http://m:9/custom', traces: 'http://base:4318/v1/traces', headers: {} },
    'the per-signal variable is used as it is and wins',
  );
  t.same(resolveEndpoints(undefined, { OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: 'http://m:9/x' }), { metrics: 'http://m:9/x', traces: '', headers: {} }, 'a signal without an endpoint is not sent');
  t.same(
    resolveEndpoints('http://ann:1', { OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: 'http://m:9/x', OTEL_EXPORTER_OTLP_HEADERS: 'api-key=s%3Dcret, X-Team = a b' }),
    { metrics: 'http://ann:1/v1/metrics', traces: 'http://ann:1/v1/traces', headers: { 'api-key': 's=cret', 'x-team': 'a b' } },
    'the annotation wins over the variables; headers are URL-decoded',
  );
});

t.test('durations: parseInterval', async (t) => {
  t.equal(parseInterval('250ms', 'x'), 250);
  t.equal(parseInterval('1.5s', 'x'), 1500);
  t.equal(parseInterval('2m', 'x'), 120_000);
  t.throws(() => parseInterval('2h', 'x'), /expected a duration/);
});

t.test('latency buckets: contiguous, and each duration falls in its own bucket', async (t) => {
  let edge = 2;
  for (let i = 2; i < 63; i++) {
    const [low, high] = bucketRange(i);
    if (i === 2 || i === 3) t.equal(low, i, `bucket ${i} starts at ${i}`);
    t.equal(low, edge, `bucket ${i} starts where ${i - 1} ended`);
    edge = high;
  }
  t.equal(bucketRange(63)[1], Infinity, 'the last bucket is open');
  for (const ns of [0, 1, 2, 3, 4, 5, 6, 7, 8, 1000, 1023, 1024, 1535, 1536, 123_456_789, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 40]) {
    const [low, high] = bucketRange(bucketOf(ns));
    t.ok(ns >= low && ns < high, `${ns} ns in [${low}, ${high})`);
  }
});

t.test('quantiles come from the bucket that holds the rank', async (t) => {
  t.equal(quantileNs(histogram([]), 0.5), undefined, 'no calls, no quantile');
  const b = histogram([...Array(98).fill(1000), 1_000_000, 1_000_000]);
  t.equal(quantileNs(b, 0.5), 1024, 'p50: upper edge of the bucket of 1000 ns');
  t.equal(quantileNs(b, 0.99), bucketRange(bucketOf(1_000_000))[1], 'p99 reaches the slow calls');
  t.ok(quantileNs(b, 0.99)! >= 1_000_000 && quantileNs(b, 0.99)! < 1_000_000 * 1.5, 'within one √2 step');
});

t.test('OTLP: requests match the protobuf JSON mapping and carry the counts', async (t) => {
  const s = sample();
  const metrics = metricsRequest(s, 'host-a');
  const parsed = exportMetricsRequestSchema.safeParse(JSON.parse(JSON.stringify(metrics)));
  t.ok(parsed.success, parsed.success ? 'metrics request is valid OTLP JSON' : JSON.stringify(parsed.error.issues));
  const rm = (metrics as { resourceMetrics: { resource: { attributes: { key: string; value: { stringValue: string } }[] }; scopeMetrics: { metrics: Record<string, any>[] }[] }[] }).resourceMetrics[0]!;
  t.same(Object.fromEntries(rm.resource.attributes.map((a) => [a.key, a.value.stringValue])), { 'container.id': 'web-1', 'container.runtime': 'hyperbox-runc', 'host.name': 'host-a' });
  const byName = Object.fromEntries(rm.scopeMetrics[0]!.metrics.map((m) => [m.name, m]));
  t.same(Object.keys(byName), ['hyperbox.syscall.count', 'hyperbox.syscall.duration', 'hyperbox.network.io', 'hyperbox.network.packets', 'hyperbox.process.execs']);
  t.same(byName['hyperbox.syscall.count'].sum.dataPoints.map((p: any) => p.asInt), ['5', '1', '2']);
  t.equal(byName['hyperbox.syscall.count'].sum.dataPoints[0].startTimeUnixNano, String(START), 'cumulative from the container start');
  const read = byName['hyperbox.syscall.duration'].histogram.dataPoints[0];
  t.equal(read.count, '5');
  t.equal(read.sum, 78_400 / 1e9);
  t.same(read.bucketCounts.slice(0, 3), ['1', '1', '2'], '900 ns ≤ 1.024 µs, 1500 ns ≤ 2.048 µs, 3000 ns twice ≤ 4.096 µs');
  t.equal(byName['hyperbox.syscall.duration'].histogram.dataPoints.length, 2, 'exit_group never returned: no histogram');
  t.same(byName['hyperbox.network.io'].sum.dataPoints.map((p: any) => [p.attributes[0].value.stringValue, p.asInt]), [['receive', '1234'], ['transmit', '5678']]);
  t.equal(byName['hyperbox.process.execs'].sum.dataPoints[0].asInt, '70');

  const traces = tracesRequest(s, 'host-a');
  const tp = exportTraceRequestSchema.safeParse(JSON.parse(JSON.stringify(traces)));
  t.ok(tp.success, tp.success ? 'trace request is valid OTLP JSON' : JSON.stringify(tp.error.issues));
  const span = (traces as any).resourceSpans[0].scopeSpans[0].spans[0];
  t.equal(span.endTimeUnixNano, String(START + 2_500_000_000n), 'the span lasts the container life');
  t.same(span.events.map((e: any) => e.attributes.find((a: any) => a.key === 'process.executable.path').value.stringValue), ['/bin/sh']);
  t.equal(span.droppedEventsCount, 69, 'execs beyond the kept ones are counted as dropped');
  t.notOk(exportMetricsRequestSchema.safeParse({ resourceMetrics: [{ resource: { attributes: [] }, scopeMetrics: [{ scope: { name: 'x' }, metrics: [{ name: 'm', sum: { dataPoints: [], aggregationTemporality: 2, isMonotonic: true, extra: 1 } }] }] }] }).success, 'the schema refuses an unknown field');
});

t.test('export buckets: the fine histogram re-bucketed exactly', async (t) => {
  const durations = [0, 1, 1023, 1024, 1025, 2047, 5000, 2 ** 20, 2 ** 31 - 1, 2 ** 31, 2 ** 33];
  const coarse = exportBuckets(histogram(durations));
  t.equal(coarse.length, EXPORT_BOUNDS_NS.length + 1);
  t.equal(coarse.reduce((a, b) => a + b, 0n), BigInt(durations.length), 'nothing lost');
  t.equal(coarse[0], 3n, '0, 1, 1023 ≤ 1024 ns (1024 itself starts the next recorder bucket)');
  t.equal(coarse.at(-1), 2n, '2^31 and 2^33 ns are beyond the last bound');
});

t.test('Prometheus: text exposition', async (t) => {
  const text = exposition([sample(), sample({ containerId: 'db"2', what: ['net'] })]);
  t.match(text, /^# HELP hyperbox_syscalls_total /m);
  t.match(text, /^# TYPE hyperbox_syscall_duration_seconds histogram$/m);
  t.match(text, /^hyperbox_syscalls_total\{container_id="web-1",syscall="read",abi="x86_64"\} 5$/m);
  t.match(text, /^hyperbox_syscall_duration_seconds_bucket\{container_id="web-1",syscall="read",abi="x86_64",le="\+Inf"\} 5$/m);
  t.match(text, /^hyperbox_syscall_duration_seconds_count\{container_id="web-1",syscall="read",abi="x86_64"\} 5$/m);
  t.match(text, /^hyperbox_network_bytes_total\{container_id="db\\"2",direction="transmit"\} 5678$/m, 'label values escaped');
  t.match(text, /^hyperbox_execs_total\{container_id="web-1"\} 70$/m);
  t.equal(text.match(/^# TYPE hyperbox_network_bytes_total/gm)?.length, 1, 'one TYPE line per family');
  const buckets = [...text.matchAll(/^hyperbox_syscall_duration_seconds_bucket\{container_id="web-1",syscall="read".*\} (\d+)$/gm)].map((m) => Number(m[1]));
  t.ok(buckets.every((v, i) => i === 0 || v >= buckets[i - 1]!), 'bucket counts are cumulative');
});

t.test('summary and the terminal view', async (t) => {
  const s = summarize(sample(), 'host-a');
  t.equal(s.syscalls!.total, 8);
  t.same(s.syscalls!.calls[0], { name: 'read', arch: 'x86_64', nr: 0, count: 5, timeNs: 78_400, p50Ns: 3072, p99Ns: 98_304 });
  t.same(s.net, { rxBytes: 1234, rxPackets: 10, txBytes: 5678, txPackets: 12 });
  t.equal(s.execs!.recent[0]!.filename, '/bin/sh');
  t.notOk('net' in summarize(sample({ what: ['exec'] }), 'h'), 'only what was traced');
  const before = sample({ timeUnixNano: START + 1_500_000_000n, syscalls: [{ name: 'read', arch: 'x86_64', nr: 0, count: 1n }] });
  const view = renderView(sample(), before);
  t.match(view, /container web-1 +cgroup 4242/);
  t.match(view, /SYSCALLS +8 calls, 7\/s/, 'rates against the earlier reading');
  t.match(view, /read +x86_64 +5 +4 +78µs +3\.1µs +98µs/);
  t.match(view, /getppid +x86 +2 +- +10\.00s +≥3\.22s +≥3\.22s/, 'the open last bucket is a lower bound');
  t.match(view, /NETWORK +rx 1\.2 KiB in 10 packets/);
  t.match(view, /EXECS +70 in all, the last 1 kept/);
  t.match(view, /pid 4321 .*\/bin\/sh/);
  t.equal(formatNs(999), '999ns');
  t.equal(formatNs(2_500_000_000), '2.50s');
  t.equal(formatBytes(3 * 1024 * 1024), '3.0 MiB');
});
