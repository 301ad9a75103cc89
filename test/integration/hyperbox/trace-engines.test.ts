/**
 * eBPF telemetry through Podman (--annotation) and containerd (ctr run
 * --annotation): exact syscall counts and the execs in the poststop summary,
 * OTLP received by a local collector with the engine's container id, and the
 * recorder let go of the container once it is gone. Engines do not pass
 * HYPERBOX_* to the runtime, so these use the real state (/run/hyperbox), BPF
 * pin (/sys/fs/bpf/hyperbox) and store (/var/lib/hyperbox); the summaries these
 * containers leave there are removed at the end.
 */
import t, { type Test } from 'tap';
import { cpSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { exportMetricsRequestSchema, exportTraceRequestSchema } from '../../../config-schema/otlp.js';
import { busyboxRootfs, rootfsTar } from '../../../fixtures/busybox.js';
import { ociImageArchive } from '../../../fixtures/oci-image.js';
import { native } from '../../../src/native/index.js';
import { containerdHarness } from '../../helpers/containerd.js';
import { podmanHarness } from '../../helpers/podman.js';
import { checkPrerequisites, describe, registerId, testTempDir, waitFor } from '../../helpers/runtime.js';
import { installKnownCalls, otlpReceiver, points, type OtlpPost } from '../../helpers/trace.js';

const LAUNCHER = resolve('build/hyperbox-runc');
const PIN = '/sys/fs/bpf/hyperbox';
const SUMMARIES = '/var/lib/hyperbox/trace';
const EXPORTER_PID = '/run/hyperbox/trace/exporter.pid';
/** 321 sysinfo, no times, 3 sleeps of 2 ms, then exec busybox echo. */
const WORKLOAD = ['/bin/known_calls', '321', '0', '3', '2', '/bin/busybox', 'echo', 'done'];

/** A busybox rootfs with /bin/known_calls, as a directory. */
async function workloadRootfs(t: Test): Promise<string> {
  const dir = join(await testTempDir(t, 'tr-rootfs'), 'rootfs');
  cpSync(await busyboxRootfs(), dir, { recursive: true, verbatimSymlinks: true });
  await installKnownCalls(dir);
  return dir;
}

/** The summary the container's poststop writes, removed at teardown. */
async function summaryOf(t: Test, id: string): Promise<any> {
  const file = join(SUMMARIES, `${id}.json`);
  t.teardown(() => rmSync(file, { force: true }));
  await waitFor(`the summary of ${id} (written at poststop)`, () => existsSync(file), 20_000);
  return JSON.parse(readFileSync(file, 'utf8'));
}

function call(summary: any, name: string) {
  return summary.syscalls?.calls.find((c: any) => c.name === name && c.arch === 'x86_64');
}

/** The cgroup ids the host-wide recorder tracks (none, and no pin, when nothing is traced). */
function tracked(): string[] {
  return native()
    .recorderTracked(PIN)
    .map((id) => id.toString());
}

function checkSummary(t: Test, sum: any, id: string) {
  t.equal(sum.containerId, id, "the summary is under the engine's container id");
  t.equal(call(sum, 'sysinfo')?.count, 321, 'sysinfo: exactly 321');
  t.equal(call(sum, 'clock_nanosleep')?.count, 3, 'clock_nanosleep: exactly 3');
  t.notOk(call(sum, 'times'), 'no times call');
  t.same(sum.execs?.recent.map((e: any) => e.filename), ['/bin/known_calls', '/bin/busybox'], 'both execs, in order, by filename');
  t.ok(sum.execs?.recent.every((e: any) => e.pid > 0 && e.nsPid === 1), 'host pid and pid 1 in the container');
  t.notOk('net' in sum, 'only what was asked');
}

/** What the collector got for this container: valid OTLP, its id, the complete final count. */
async function checkOtlp(t: Test, posts: OtlpPost[], id: string) {
  await waitFor('the span at /v1/traces', () => posts.some((p) => p.path === '/v1/traces'), 15_000);
  t.ok(posts.some((p) => p.path === '/v1/metrics'), 'metrics at /v1/metrics');
  t.same([...new Set(posts.map((p) => p.path))].sort(), ['/v1/metrics', '/v1/traces'], 'nothing else was posted');
  for (const p of posts) {
    const schema = p.path === '/v1/metrics' ? exportMetricsRequestSchema : exportTraceRequestSchema;
    const r = schema.safeParse(p.body);
    t.ok(r.success, r.success ? `${p.path}: valid OTLP JSON` : `${p.path}: ${JSON.stringify(r.error.issues).slice(0, 500)}`);
  }
  const last = posts.filter((p) => p.path === '/v1/metrics').at(-1)!.body;
  const res = Object.fromEntries(last.resourceMetrics[0].resource.attributes.map((a: any) => [a.key, a.value.stringValue]));
  t.same(res, { 'container.id': id, 'container.runtime': 'hyperbox-runc', 'host.name': hostname() }, 'metrics resource attributes');
  t.equal(points(last, 'hyperbox.syscall.count').find((p) => p.attrs['syscall.name'] === 'sysinfo')?.value, '321', 'the final metrics are complete');
  const traces = posts.filter((p) => p.path === '/v1/traces');
  t.equal(traces.length, 1, 'one span per container');
  const rs = traces[0]!.body.resourceSpans[0];
  const spanRes = Object.fromEntries(rs.resource.attributes.map((a: any) => [a.key, a.value.stringValue]));
  t.equal(spanRes['container.id'], id, 'span resource container.id');
  const span = rs.scopeSpans[0].spans[0];
  t.equal(span.name, `container ${id}`, 'the span is named for the container');
  const execs = span.events.map((e: any) => e.attributes.find((a: any) => a.key === 'process.executable.path').value.stringValue);
  t.same(execs, ['/bin/known_calls', '/bin/busybox'], 'the execs are the span events');
}

/** Once the container is gone: its cgroup untracked, nothing new tracked, the exporter gone. */
async function checkLetGo(t: Test, before: string[], cgroupId: string) {
  const after = tracked();
  t.notOk(after.includes(cgroupId), "the container's cgroup is no longer tracked");
  t.ok(
    after.every((c) => before.includes(c)),
    `nothing tracked that was not before (before ${JSON.stringify(before)}, after ${JSON.stringify(after)})`,
  );
  if (after.length === 0) t.notOk(existsSync(PIN), `${PIN} is unpinned once nothing is traced`);
  // It was started from a hook, so it sits in the engine's cgroups: it must be gone before they are removed.
  await waitFor('the OTLP exporter to exit when idle', () => !existsSync(EXPORTER_PID), 20_000);
  t.pass('the OTLP exporter exited');
}

t.test('Podman: --annotation io.hyperbox.trace counts exactly, reports OTLP, lets go', async (t) => {
  if (!checkPrerequisites(t, { root: true, bpf: true })) return;
  const pm = await podmanHarness(t, { runtime: LAUNCHER, importImage: false });
  if (!pm) return;
  const tar = join(pm.dir, 'tr-rootfs.tar');
  await rootfsTar(await workloadRootfs(t), tar);
  const image = 'localhost/hbxt-trace:latest';
  const imp = await pm.podman(['import', '--quiet', tar, image]);
  t.equal(imp.exitCode, 0, describe(imp));
  const rx = await otlpReceiver(t);
  const before = tracked();

  // `podman run --rm` prints nothing and leaves nothing to inspect; create --rm prints the
  // full id the runtime is given, and start --attach is the rest of `run --rm`.
  const name = pm.name('trace');
  registerId(name);
  const annotations = { 'io.hyperbox.trace': 'syscalls,exec', 'io.hyperbox.trace.otlp': rx.url };
  const args = ['create', '--rm', '--name', name, ...pm.runFlags];
  // Podman 4.3's --annotation is a string slice, read as CSV: an unquoted comma would split
  // "syscalls,exec" into two annotations ("annotations must be formatted KEY=VALUE").
  for (const [k, v] of Object.entries(annotations)) args.push('--annotation', `"${k}=${v}"`);
  const created = await pm.podman([...args, image, ...WORKLOAD]);
  t.equal(created.exitCode, 0, describe(created));
  const id = created.stdout.trim();
  t.match(id, /^[0-9a-f]{64}$/, 'the full container id');
  registerId(id);
  const r = await pm.podman(['start', '--attach', name]);
  t.equal(r.exitCode, 0, describe(r));
  t.equal(r.stdout, 'done\n', 'the program ran as it would untraced');
  await waitFor('the container to be removed', async () => (await pm.podman(['container', 'exists', name])).exitCode === 1, 20_000);

  const sum = await summaryOf(t, id);
  checkSummary(t, sum, id);
  await checkOtlp(t, rx.posts, id);
  await checkLetGo(t, before, sum.cgroupId);
});

t.test('containerd: ctr run --annotation io.hyperbox.trace counts exactly, reports OTLP, lets go', async (t) => {
  if (!checkPrerequisites(t, { root: true, bpf: true })) return;
  const cd = await containerdHarness(t, { runtime: LAUNCHER, importImage: false });
  if (!cd) return;
  const image = 'docker.io/hbxtest/trace:latest';
  const archive = await ociImageArchive(join(cd.dir, 'tr-oci.tar'), { ref: image }, await workloadRootfs(t));
  const imp = await cd.ctr(['images', 'import', archive.path]);
  t.equal(imp.exitCode, 0, describe(imp));
  const rx = await otlpReceiver(t);
  const before = tracked();

  const id = cd.id('trace');
  registerId(id);
  const annotations = { 'io.hyperbox.trace': 'syscalls,exec', 'io.hyperbox.trace.otlp': rx.url, 'io.hyperbox.trace.interval': '200ms' };
  const args = ['run', '--rm', ...cd.runtimeFlags];
  for (const [k, v] of Object.entries(annotations)) args.push('--annotation', `${k}=${v}`);
  const r = await cd.ctr([...args, image, id, ...WORKLOAD]);
  t.equal(r.exitCode, 0, describe(r));
  t.equal(r.stdout.replace(/\r/g, ''), 'done\n', 'the program ran as it would untraced');

  const sum = await summaryOf(t, id);
  checkSummary(t, sum, id);
  await checkOtlp(t, rx.posts, id);
  await checkLetGo(t, before, sum.cgroupId);
});
