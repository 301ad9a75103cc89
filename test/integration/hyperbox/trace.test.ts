/**
 * eBPF telemetry with real runc and the real kernel: exact syscall counts and latencies
 * from a program that makes known calls, network bytes that match a loopback transfer,
 * execs by filename, the live views, OTLP received by a local collector (checked against
 * the OTLP JSON shape), a dead or stuck collector costing the container nothing, untraced
 * containers left out of the maps, and bad requests refused before runc runs.
 */
import t, { type Test } from 'tap';
import { execa } from 'execa';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { exportMetricsRequestSchema, exportTraceRequestSchema } from '../../../config-schema/otlp.js';
import { findRunc } from '../../../fixtures/tools.js';
import { native } from '../../../src/native/index.js';
import { checkPrerequisites, describe, run, RuntimeHarness, sleep, testTempDir, waitFor, type RunResult } from '../../helpers/runtime.js';
import { installKnownCalls, loopbackTransfer, netBundle, otlpReceiver, points, type OtlpPost } from '../../helpers/trace.js';

const LAUNCHER = resolve('build/hyperbox-runc');

async function setup(t: Test, tag: string) {
  if (!checkPrerequisites(t, { root: true, runc: true, busybox: true, bpf: true })) return undefined;
  const tmp = await testTempDir(t, tag);
  const h = new RuntimeHarness({ path: LAUNCHER, label: 'hyperbox-runc', explicit: true }, findRunc()!, tmp);
  const state = join(tmp, 'hbstate');
  const store = join(tmp, 'store');
  const pin = `/sys/fs/bpf/hbxt-${process.pid}-${tag}`;
  const env = { HYPERBOX_STATE: state, HYPERBOX_STORE: store, HYPERBOX_BPF_PIN: pin };
  t.teardown(async () => {
    await h.cleanup();
    // The exporter this test's containers started, if it is still retrying.
    const pidFile = join(state, 'trace', 'exporter.pid');
    if (existsSync(pidFile)) {
      try {
        process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
  const dirsIn = (d: string) => readdirSync(d, { withFileTypes: true }).filter((e) => e.isDirectory() && e.name !== 'trace').map((e) => join(d, e.name));
  const stateDirs = (): string[] => (existsSync(state) ? dirsIn(state).flatMap(dirsIn) : []);
  let n = 0;
  const bundle = async (args: string[], annotations: Record<string, string> = {}) => {
    const b = await h.bundle(`b${n++}`, netBundle(args, annotations));
    await installKnownCalls(b.rootfs);
    return b;
  };
  /** `run` in the foreground of a fresh bundle. */
  const runIt = async (args: string[], flags: string[], annotations: Record<string, string> = {}): Promise<RunResult & { id: string; ms: number }> => {
    const b = await bundle(args, annotations);
    const id = h.id(tag);
    const started = Date.now();
    const r = await h.rt(['run', ...flags, '--bundle', b.dir, id], { env, timeout: 60_000 });
    return { ...r, id, ms: Date.now() - started };
  };
  const hb = (args: string[]) => run(LAUNCHER, args, { env, timeout: 30_000 });
  const summary = async (id: string) => {
    const r = await hb(['trace', 'summary', id]);
    return r.exitCode === 0 ? JSON.parse(r.stdout) : undefined;
  };
  return { h, env, tmp, state, store, pin, stateDirs, bundle, runIt, hb, summary };
}

type Setup = NonNullable<Awaited<ReturnType<typeof setup>>>;

function call(summary: any, name: string) {
  return summary.syscalls.calls.find((c: any) => c.name === name && c.arch === 'x86_64');
}

function nothingLeft(t: Test, s: Setup) {
  t.same(s.stateDirs(), [], 'no container state left');
  t.notOk(existsSync(s.pin), 'the recorder is detached and unpinned once nothing is traced');
}

t.test('a program that makes known calls is counted exactly, with latencies and its execs', async (t) => {
  const s = await setup(t, 'tr-exact');
  if (!s) return;
  const r = await s.runIt(['/bin/known_calls', '1000', '77', '5', '2', '/bin/busybox', 'echo', 'done'], ['--trace', 'syscalls,exec']);
  t.equal(r.exitCode, 0, describe(r));
  t.equal(r.stdout, 'done\n', 'the program ran as it would untraced');
  const sum = await s.summary(r.id);
  t.ok(sum, 'a summary was written at poststop');
  t.equal(call(sum, 'sysinfo')?.count, 1000, 'sysinfo: exactly 1000');
  t.equal(call(sum, 'times')?.count, 77, 'times: exactly 77');
  const sleepCall = call(sum, 'clock_nanosleep');
  t.equal(sleepCall?.count, 5, 'clock_nanosleep: exactly 5');
  t.ok(sleepCall.timeNs >= 5 * 2_000_000, `5 sleeps of 2 ms took ${sleepCall.timeNs} ns in all`);
  t.ok(sleepCall.p50Ns >= 2_000_000 && sleepCall.p50Ns <= 4_200_000, `p50 of a 2 ms sleep: ${sleepCall.p50Ns} ns`);
  t.ok(call(sum, 'sysinfo').p99Ns < 1_000_000, `sysinfo p99 ${call(sum, 'sysinfo').p99Ns} ns`);
  t.notOk(sum.syscalls.calls.some((c: any) => ['pivot_root', 'mount', 'sethostname'].includes(c.name)), "runc's own setup is not counted");
  t.same(sum.execs.recent.map((e: any) => e.filename), ['/bin/known_calls', '/bin/busybox'], 'both execs, in order, by filename');
  t.equal(sum.execs.total, 2);
  t.ok(sum.execs.recent.every((e: any) => e.pid > 0 && e.nsPid === 1), 'host pid and pid 1 in the container');
  t.ok(Date.parse(sum.execs.recent[0].time) >= Date.parse(sum.start) - 1000, 'exec times are wall-clock times of this run');
  t.notOk('net' in sum, 'only what was asked');
  nothingLeft(t, s);
});

t.test('network bytes and packets match a loopback transfer in the container', async (t) => {
  const s = await setup(t, 'tr-net');
  if (!s) return;
  const BYTES = 1_000_000;
  const r = await s.runIt(loopbackTransfer(BYTES), ['--trace', 'net']);
  t.equal(r.exitCode, 0, describe(r));
  t.equal(r.stdout.trim(), String(BYTES), 'the transfer arrived whole');
  const net = (await s.summary(r.id)).net;
  t.ok(net, 'net counters in the summary');
  // Both ends are in the container, on its own loopback: every packet leaves one of its
  // sockets and enters another. IP bytes carry ~52 bytes of headers per packet and the HTTP
  // request and response headers.
  t.ok(net.txBytes >= BYTES && net.txBytes <= BYTES + 80 * net.txPackets + 4096, `tx ${net.txBytes} bytes in ${net.txPackets} packets for ${BYTES} bytes of body`);
  t.ok(net.rxBytes >= BYTES && net.rxBytes <= BYTES + 80 * net.rxPackets + 4096, `rx ${net.rxBytes} bytes in ${net.rxPackets} packets`);
  // A few handshake and teardown segments are sent by the kernel on no socket of the container
  // (or received by two: listener and child), so rx and tx differ by a few small packets.
  t.ok(Math.abs(net.rxPackets - net.txPackets) <= 16 && Math.abs(net.rxBytes - net.txBytes) <= 16 * 80, `what left one socket entered the other (rx ${net.rxBytes}/${net.rxPackets}, tx ${net.txBytes}/${net.txPackets})`);
  nothingLeft(t, s);
});

t.test('while it runs: the live view, --once --json, Prometheus; an untraced neighbour is not in the maps', async (t) => {
  const s = await setup(t, 'tr-live');
  if (!s) return;
  const loop = ['sh', '-c', 'while [ ! -e /tmp/stop ]; do /bin/known_calls 100 0 0 0 >/dev/null; sleep 0.1; done'];
  const traced = s.h.id('tr-live');
  const plain = s.h.id('tr-plain');
  const bt = await s.bundle(loop);
  const bp = await s.bundle(loop);
  t.equal((await s.h.create(traced, bt.dir, ['--trace', 'syscalls,exec'], { env: s.env })).exitCode, 0);
  t.equal((await s.h.create(plain, bp.dir, [], { env: s.env })).exitCode, 0);
  for (const id of [traced, plain]) t.equal((await s.h.rt(['start', id], { env: s.env })).exitCode, 0);

  const cgroupOf = async (id: string) => {
    const pid = (await s.h.state(id, { env: s.env }))!.pid;
    const path = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::'))!.slice(3);
    return statSync(join('/sys/fs/cgroup/unified', path), { bigint: true }).ino;
  };
  const tracedCg = await cgroupOf(traced);
  const plainCg = await cgroupOf(plain);
  t.same(native().recorderTracked(s.pin), [tracedCg], 'only the traced container is tracked');
  t.notOk(native().recorderRead(s.pin, plainCg), 'the untraced one has no entry');

  await waitFor('counts', async () => {
    const r = await s.hb(['trace', traced, '--once', '--json']);
    return r.exitCode === 0 && call(JSON.parse(r.stdout), 'sysinfo')?.count >= 200;
  });
  const once = JSON.parse((await s.hb(['trace', traced, '--once', '--json'])).stdout);
  t.equal(once.containerId, traced);
  t.equal(once.ended, false);
  t.equal(call(once, 'sysinfo').count % 100, 0, `sysinfo comes in hundreds: ${call(once, 'sysinfo').count}`);
  t.ok(once.execs.recent.some((e: any) => e.filename === '/bin/known_calls'), 'execs so far');

  const prom = await s.hb(['trace', 'metrics']);
  t.equal(prom.exitCode, 0, describe(prom));
  t.match(prom.stdout, new RegExp(`^hyperbox_syscalls_total\\{container_id="${traced}",syscall="sysinfo",abi="x86_64"\\} \\d+00$`, 'm'));
  t.match(prom.stdout, new RegExp(`^hyperbox_syscall_duration_seconds_count\\{container_id="${traced}",syscall="sysinfo",abi="x86_64"\\} \\d+$`, 'm'));
  t.notMatch(prom.stdout, plain, 'nothing about the untraced container');
  const file = join(s.tmp, 'metrics.prom');
  t.equal((await s.hb(['trace', 'metrics', '-o', file])).exitCode, 0);
  t.match(readFileSync(file, 'utf8'), /^# TYPE hyperbox_syscalls_total counter$/m);

  const ls = await s.hb(['trace', 'ls']);
  t.match(ls.stdout, new RegExp(`^${traced} +syscalls,exec `, 'm'));
  t.notMatch(ls.stdout, plain);

  // The live view without a terminal: one table per interval until stopped.
  const live = execa(LAUNCHER, ['trace', traced, '--interval', '200ms'], { env: s.env, reject: false, timeout: 10_000, stdin: 'ignore' });
  await sleep(1100);
  live.kill('SIGINT');
  const view = await live;
  t.equal(view.exitCode, 0, `live view: ${view.stderr}`);
  const tables = view.stdout.match(/^SYSCALLS +\d+ calls, (\S+)\/s/gm) ?? [];
  t.ok(tables.length >= 3, `${tables.length} refreshes in 1.1 s at 200 ms`);
  t.match(view.stdout, /top by time/);
  t.match(view.stdout, /sysinfo +x86_64 +\d+ +\d+/, 'rates once there is an earlier reading');

  const missing = await s.hb(['trace', plain, '--once']);
  t.equal(missing.exitCode, 1);
  t.match(missing.stderr, /container \S+ is not being traced/);

  for (const id of [traced, plain]) {
    await s.h.rt(['exec', id, 'touch', '/tmp/stop'], { env: s.env });
    await s.h.waitForStatus(id, 'stopped');
    t.equal((await s.h.rt(['delete', id], { env: s.env })).exitCode, 0);
  }
  t.ok(call(await s.summary(traced), 'sysinfo').count >= call(once, 'sysinfo').count, 'the summary is the complete count');
  nothingLeft(t, s);
});

function validOtlp(t: Test, posts: OtlpPost[]) {
  for (const p of posts) {
    const schema = p.path === '/v1/metrics' ? exportMetricsRequestSchema : exportTraceRequestSchema;
    const r = schema.safeParse(p.body);
    t.ok(r.success, r.success ? `${p.path}: valid OTLP JSON` : `${p.path}: ${JSON.stringify(r.error.issues).slice(0, 500)}`);
  }
}

t.test('OTLP: sent while it runs and once more, complete, when it ends', async (t) => {
  const s = await setup(t, 'tr-otlp');
  if (!s) return;
  const rx = await otlpReceiver(t);
  const args = ['sh', '-c', 'for i in 1 2 3 4; do /bin/known_calls 100 0 0 0; sleep 0.3; done'];
  const r = await s.runIt(args, ['--trace', 'syscalls,net,exec', '--trace-otlp', rx.url], { 'io.hyperbox.trace.interval': '200ms' });
  const ended = Date.now();
  t.equal(r.exitCode, 0, describe(r));
  t.equal(r.stdout, 'done\n'.repeat(4));
  await waitFor('the span', () => rx.posts.some((p) => p.path === '/v1/traces'), 15_000);
  validOtlp(t, rx.posts);
  const metrics = rx.posts.filter((p) => p.path === '/v1/metrics');
  t.ok(metrics.some((p) => p.at < ended - 300), `metrics were sent while it ran (${metrics.length} POSTs)`);
  const last = metrics.at(-1)!.body;
  const res = Object.fromEntries(last.resourceMetrics[0].resource.attributes.map((a: any) => [a.key, a.value.stringValue]));
  t.same(res, { 'container.id': r.id, 'container.runtime': 'hyperbox-runc', 'host.name': hostname() }, 'resource attributes');
  t.equal(points(last, 'hyperbox.syscall.count').find((p) => p.attrs['syscall.name'] === 'sysinfo')?.value, '400', 'the final metrics are complete');
  const dur = points(last, 'hyperbox.syscall.duration').find((p) => p.attrs['syscall.name'] === 'sysinfo')!.value;
  t.equal(dur.count, '400', 'latency histogram of the same calls');

  const span = rx.posts.find((p) => p.path === '/v1/traces')!.body.resourceSpans[0].scopeSpans[0].spans[0];
  t.equal(span.name, `container ${r.id}`);
  t.ok(BigInt(span.endTimeUnixNano) - BigInt(span.startTimeUnixNano) >= 1_200_000_000n, 'the span covers the container life');
  const execs = span.events.map((e: any) => e.attributes.find((a: any) => a.key === 'process.executable.path').value.stringValue);
  t.same(execs.filter((f: string) => f === '/bin/known_calls').length, 4, 'the execs are the span events');
  t.equal(execs[0], '/bin/sh', 'starting with the container process');
  t.equal(points(last, 'hyperbox.process.execs')[0]?.value, String(execs.length), 'the exec count matches the events (sh, its sleeps and known_calls)');
  t.equal(rx.posts.filter((p) => p.path === '/v1/traces').length, 1, 'one span per container');
  await waitFor('the exporter to exit', () => !existsSync(join(s.state, 'trace', 'exporter.pid')), 10_000);
  nothingLeft(t, s);
});

t.test('a container that lives 100 ms is still reported', async (t) => {
  const s = await setup(t, 'tr-short');
  if (!s) return;
  const rx = await otlpReceiver(t);
  const r = await s.runIt(['/bin/known_calls', '10', '0', '0', '0'], ['--trace', 'syscalls'], { 'io.hyperbox.trace.otlp': rx.url });
  t.equal(r.exitCode, 0, describe(r));
  await waitFor('the report', () => rx.posts.some((p) => p.path === '/v1/traces'), 15_000);
  validOtlp(t, rx.posts);
  const final = rx.posts.filter((p) => p.path === '/v1/metrics').at(-1)!.body;
  t.equal(points(final, 'hyperbox.syscall.count').find((p) => p.attrs['syscall.name'] === 'sysinfo')?.value, '10');
});

t.test('a collector that is down or stuck costs the container nothing', async (t) => {
  const s = await setup(t, 'tr-down');
  if (!s) return;
  const stuck = await otlpReceiver(t, 'hang');
  const args = ['/bin/known_calls', '10', '0', '0', '0'];
  // Warm the fixtures, then time the same run against each collector.
  const base = await s.runIt(args, ['--trace', 'syscalls']);
  t.equal(base.exitCode, 0, describe(base));
  const timed: Record<string, number> = {};
  for (const [label, url] of [['no collector', undefined], ['stuck collector', stuck.url], ['dead port', 'http://127.0.0.1:9']] as const) {
    const r = await s.runIt(args, ['--trace', 'syscalls', ...(url ? ['--trace-otlp', url] : [])]);
    t.equal(r.exitCode, 0, `${label}: ${describe(r)}`);
    t.equal(r.stdout, 'done\n', `${label}: same output`);
    timed[label] = r.ms;
  }
  t.ok(timed['stuck collector']! < timed['no collector']! + 1500, `stuck collector: ${timed['stuck collector']} ms vs ${timed['no collector']} ms without OTLP`);
  t.ok(timed['dead port']! < timed['no collector']! + 1500, `dead port: ${timed['dead port']} ms vs ${timed['no collector']} ms`);
  const log = join(s.state, 'trace', 'exporter.log');
  await waitFor('the warning', () => existsSync(log) && /OTLP export failed: POST http:\/\/127\.0\.0\.1:9\//.test(readFileSync(log, 'utf8')), 10_000);
  t.ok(stuck.posts.length >= 1, 'the stuck collector was reached');
  t.equal(readFileSync(log, 'utf8').match(/127\.0\.0\.1:9\/v1\/\w+: connect ECONNREFUSED/g)?.length, 1, 'one warning for the dead collector, not one per try');
  t.same(s.stateDirs(), [], 'no container state left');
});

t.test('learning a profile and tracing at once share the recorder entry', async (t) => {
  const s = await setup(t, 'tr-learn');
  if (!s) return;
  const r = await s.runIt(['/bin/known_calls', '50', '0', '0', '0'], ['--trace', 'syscalls', '--seccomp-learn', 'both']);
  t.equal(r.exitCode, 0, describe(r));
  const profile = JSON.parse(readFileSync(join(s.store, 'seccomp', 'both.json'), 'utf8'));
  t.ok(profile.syscalls[0].names.includes('sysinfo'), 'the profile learned sysinfo');
  t.equal(call(await s.summary(r.id), 'sysinfo').count, 50, 'and the trace counted it');
  nothingLeft(t, s);
});

t.test('bad requests are refused before runc runs, config.json untouched', async (t) => {
  const s = await setup(t, 'tr-bad');
  if (!s) return;
  const cases: [Record<string, string>, RegExp][] = [
    [{ 'io.hyperbox.trace': 'syscalls,files' }, /bad io.hyperbox.trace value .*syscalls,files.*: .*files.* is not one of syscalls, net, exec/],
    [{ 'io.hyperbox.trace': 'net', 'io.hyperbox.trace.otlp': 'ftp://collector' }, /OTLP\/HTTP needs an http:\/\/ or https:\/\/ URL/],
    [{ 'io.hyperbox.trace': 'net', 'io.hyperbox.trace.interval': 'often' }, /bad io.hyperbox.trace.interval value .*often.*: expected a duration/],
    [{ 'io.hyperbox.trace.otlp': 'http://c:4318' }, /needs io.hyperbox.trace=/],
  ];
  for (const [annotations, message] of cases) {
    const b = await s.bundle(['true'], annotations);
    const before = readFileSync(b.configPath);
    const id = s.h.id('tr-bad');
    const r = await s.h.rt(['run', '--bundle', b.dir, id], { env: s.env });
    t.equal(r.exitCode, 1, JSON.stringify(annotations));
    t.match(r.stderr, message);
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
    t.notMatch(r.stderr, /at .*\.js:\d+/, 'no stack trace');
    t.ok(readFileSync(b.configPath).equals(before), 'config.json untouched');
    t.equal((await s.h.rt(['state', id], { env: s.env })).exitCode, 1, 'no container');
  }
  nothingLeft(t, s);
});
