/**
 * The OTLP exporter in-process, against a local HTTP receiver and a fake recorder: periodic
 * cumulative metrics while a container is registered, final reports delivered and removed,
 * a dead collector retried with backoff and then given up with one warning, a bounded outbox,
 * and an exporter that exits once nothing is left.
 */
import t, { type Test } from 'tap';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { exportMetricsRequestSchema } from '../../../config-schema/otlp.js';
import { enqueueFinal, exporterStatus, MAX_OUTBOX, registerExport, runExporter, traceRunDir, unregisterExport } from '../../../src/features/trace/exporter.js';
import type { Native, RecorderSnapshot } from '../../../src/native/index.js';
import { processTempDir } from '../../../fixtures/tmp.js';
import { fakeNative } from '../../helpers/fake-native.js';

process.env.HYPERBOX_STATE = processTempDir('trace-exporter');

interface Received {
  path: string;
  body: any;
}

async function receiver(t: Test, status: () => number = () => 200): Promise<{ url: string; got: Received[] }> {
  const got: Received[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      got.push({ path: req.url ?? '', body: JSON.parse(body) });
      res.writeHead(status(), { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, got };
}

/** A closed port: bind, note it, close. */
async function deadUrl(): Promise<string> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return `http://127.0.0.1:${port}`;
}

let count = 0n;
const snapshot = (): RecorderSnapshot => ({
  flags: 2,
  armed: true,
  counts: [{ arch: 'x86_64', nr: 39, count: (count += 10n) }],
  overflow: 0n,
  net: { rxBytes: 0n, rxPackets: 0n, txBytes: 0n, txPackets: 0n },
  execs: { total: 0n, recent: [] },
  latencyDropped: 0n,
});
const nat: Native = { ...fakeNative({ configDir: '/nonexistent' }).nat, recorderRead: (_pin, id) => (id === 77n ? snapshot() : undefined), seccompResolve: () => 'getpid' };

const endpoints = (base: string) => ({ metrics: `${base}/v1/metrics`, traces: `${base}/v1/traces`, headers: { 'x-team': 'ci' } });
const outbox = () => (existsSync(join(traceRunDir(), 'outbox')) ? readdirSync(join(traceRunDir(), 'outbox')) : []);

t.test('a final report is delivered, and the exporter exits when nothing is left', async (t) => {
  const { url, got } = await receiver(t);
  enqueueFinal({ containerId: 'c1', otlp: endpoints(url), metrics: '{"resourceMetrics":[]}', traces: '{"resourceSpans":[]}' });
  t.equal(await runExporter(nat, { backoffMs: 10 }), 0);
  t.same(got.map((g) => g.path), ['/v1/metrics', '/v1/traces'], 'metrics, then the span');
  t.same(outbox(), [], 'the outbox is empty');
  t.equal(exporterStatus().pid, undefined, 'the pid file is gone');
});

t.test('a running container is sent every interval, cumulatively, until unregistered', async (t) => {
  const { url, got } = await receiver(t);
  registerExport({ containerId: 'run1', cgroupId: '77', what: ['syscalls'], startUnixNano: '1000', otlp: endpoints(url), intervalMs: 100, hostName: 'h' });
  const done = runExporter(nat, { backoffMs: 10 });
  const deadline = Date.now() + 5000;
  while (got.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  unregisterExport('77');
  t.equal(await done, 0, 'exits once unregistered');
  t.ok(got.length >= 3, `sent ${got.length} times in the meantime`);
  const values = got.map((g) => Number(g.body.resourceMetrics[0].scopeMetrics[0].metrics[0].sum.dataPoints[0].asInt));
  t.ok(values.every((v, i) => i === 0 || v > values[i - 1]!), `cumulative counts grow: ${values.join(', ')}`);
  t.ok(got.every((g) => exportMetricsRequestSchema.safeParse(g.body).success), 'each one valid OTLP');
  t.ok(got.every((g) => g.path === '/v1/metrics'), 'no span while it runs');
});

t.test('a registration whose cgroup is no longer tracked is dropped', async (t) => {
  const { url, got } = await receiver(t);
  registerExport({ containerId: 'gone', cgroupId: '78', what: ['syscalls'], startUnixNano: '1000', otlp: endpoints(url), intervalMs: 100, hostName: 'h' });
  t.equal(await runExporter(nat, { backoffMs: 10 }), 0);
  t.same(got, [], 'nothing sent for it');
  t.equal(exporterStatus().active, 0);
});

t.test('a dead collector: retried with backoff, given up, one warning per outage', async (t) => {
  const url = await deadUrl();
  const logFile = join(process.env.HYPERBOX_STATE!, 'dead.log');
  enqueueFinal({ containerId: 'c2', otlp: endpoints(url), metrics: '{}', traces: '{}' });
  enqueueFinal({ containerId: 'c3', otlp: endpoints(url), metrics: '{}', traces: '{}' });
  const started = Date.now();
  t.equal(await runExporter(nat, { backoffMs: 10, logFile }), 0);
  const log = readFileSync(logFile, 'utf8');
  t.equal(log.match(/OTLP export failed/g)?.length, 1, 'one warning for the outage, not one per try');
  t.match(log, /ECONNREFUSED/);
  t.match(log, /dropped the final report of container c2 after 8 attempts/);
  t.match(log, /dropped the final report of container c3 after 8 attempts/);
  t.ok(Date.now() - started >= 10 * (1 + 2 + 4 + 8 + 16 + 32 + 64), 'the tries were spaced by a doubling delay');
  t.same(outbox(), []);
});

t.test('a collector that comes back gets the queued report, and it is said', async (t) => {
  let calls = 0;
  const { url, got } = await receiver(t, () => (++calls <= 2 ? 503 : 200));
  const logFile = join(process.env.HYPERBOX_STATE!, 'back.log');
  enqueueFinal({ containerId: 'c4', otlp: endpoints(url), metrics: '{"resourceMetrics":[]}', traces: '{"resourceSpans":[]}' });
  t.equal(await runExporter(nat, { backoffMs: 20, logFile }), 0);
  t.same(got.map((g) => g.path), ['/v1/metrics', '/v1/metrics', '/v1/metrics', '/v1/traces'], 'retried until accepted, then the span');
  const log = readFileSync(logFile, 'utf8');
  t.equal(log.match(/OTLP export failed: POST \S+ HTTP 503/g)?.length, 1, 'one warning for the outage');
  t.match(log, /works again/);
  t.same(outbox(), []);
});

t.test('the outbox is bounded: the oldest reports go, with a warning', async (t) => {
  const url = await deadUrl();
  for (let i = 0; i < MAX_OUTBOX + 3; i++) enqueueFinal({ containerId: `q${i}`, otlp: endpoints(url), metrics: '{}', traces: '{}' });
  t.equal(outbox().length, MAX_OUTBOX);
  const log = readFileSync(join(traceRunDir(), 'exporter.log'), 'utf8');
  t.same([...log.matchAll(/dropped the report of container (q\d+)/g)].map((m) => m[1]), ['q0', 'q1', 'q2']);
  rmSync(join(traceRunDir(), 'outbox'), { recursive: true });
});
