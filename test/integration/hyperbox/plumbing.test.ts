/**
 * The feature plumbing, end to end with real runc: a test-only feature
 * (test/helpers/probe-feature.ts) is requested by annotation and flag, edits
 * the spec, is called back by runc's hooks, and everything it touched -
 * config.json, hyperbox state - is put back at delete, after a failed create,
 * and by gc after a crash.
 */
import t, { type Test } from 'tap';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { findRunc } from '../../../fixtures/tools.js';
import { checkPrerequisites, describe, run, RuntimeHarness, testTempDir, waitFor } from '../../helpers/runtime.js';

const LAUNCHER = resolve('build/hyperbox-runc');
const PROBE_CLI = resolve('dist/test/helpers/cli-with-probe.js');

interface HookLine {
  stage: string;
  status: string | null;
  pid: number | null;
  cgroup?: string;
  options: { value: string };
}

/** A harness driving build/hyperbox-runc (with the probe feature) whatever HYPERBOX_TEST_RUNTIME says. */
async function setup(t: Test, tag: string) {
  if (!checkPrerequisites(t, { root: true, runc: true, busybox: true })) return undefined;
  const tmp = await testTempDir(t, tag);
  const h = new RuntimeHarness({ path: LAUNCHER, label: 'hyperbox-runc', explicit: true }, findRunc()!, tmp);
  t.teardown(() => h.cleanup());
  const record = join(tmp, 'record');
  const state = join(tmp, 'hbstate');
  mkdirSync(record);
  const env = { HYPERBOX_CLI: PROBE_CLI, HYPERBOX_STATE: state, HYPERBOX_TEST_RECORD: record };
  const hooks = (id: string): HookLine[] =>
    existsSync(join(record, `${id}.jsonl`)) ? readFileSync(join(record, `${id}.jsonl`), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as HookLine) : [];
  const stateDirs = (): string[] => (existsSync(state) ? readdirSync(state).flatMap((k) => readdirSync(join(state, k)).map((id) => join(state, k, id))) : []);
  return { h, env, hooks, stateDirs, tmp };
}

t.test('run with an annotation: spec edited, every hook called with the cgroup, config.json back afterwards', async (t) => {
  const s = await setup(t, 'plumb-run');
  if (!s) return;
  const b = await s.h.bundle('b', { args: ['sh', '-c', 'echo "value=$HYPERBOX_TEST_VALUE"; exit 7'], annotations: { 'io.hyperbox.test': 'hello' } });
  const before = readFileSync(b.configPath, 'utf8');
  const id = s.h.id('run');
  const r = await s.h.rt(['run', '--bundle', b.dir, id], { env: s.env });
  t.equal(r.exitCode, 7, describe(r));
  t.equal(r.stdout, 'value=hello\n');
  t.equal(r.stderr, '');
  const hooks = s.hooks(id);
  t.same(hooks.map((l) => l.stage), ['createRuntime', 'poststart', 'poststop']);
  t.equal(hooks[0]!.status, 'creating');
  t.match(hooks[0]!.cgroup, /^0::\/.+/, 'createRuntime sees the container cgroup (v2 path on this hybrid host)');
  t.ok(hooks[0]!.pid! > 0);
  t.equal(hooks[2]!.status, 'stopped');
  t.equal(readFileSync(b.configPath, 'utf8'), before, 'config.json byte-identical after run');
  t.same(s.stateDirs(), [], 'no hyperbox state left');
});

t.test('create/start/delete: config.json carries the request while the container lives, put back at delete', async (t) => {
  const s = await setup(t, 'plumb-life');
  if (!s) return;
  const b = await s.h.bundle('b', { args: ['sh', '-c', 'echo "value=$HYPERBOX_TEST_VALUE"; sleep 30'] });
  const before = readFileSync(b.configPath, 'utf8');
  const id = s.h.id('life');
  const c = await s.h.create(id, b.dir, ['--test-value', 'viaflag'], { env: s.env });
  t.equal(c.exitCode, 0, describe(c));
  const live = JSON.parse(readFileSync(b.configPath, 'utf8'));
  t.equal(live.annotations['io.hyperbox.test'], 'viaflag', 'the flag became the annotation');
  t.equal(live.hooks.poststop.at(-1).path, LAUNCHER);
  const st = await s.h.state(id);
  t.equal(st?.annotations?.['io.hyperbox.test'], 'viaflag', 'runc state shows the request');
  t.equal(s.stateDirs().length, 1);
  t.equal((await s.h.rt(['start', id], { env: s.env })).exitCode, 0);
  await waitFor('container output', () => readFileSync(c.outFile, 'utf8').includes('value=viaflag'));
  t.equal((await s.h.rt(['delete', '-f', id], { env: {} , extendEnv: false })).exitCode, 0, 'delete with an empty environment, as Podman does');
  t.same(s.hooks(id).map((l) => l.stage), ['createRuntime', 'poststart', 'poststop']);
  t.equal(readFileSync(b.configPath, 'utf8'), before, 'config.json put back at delete');
  t.same(s.stateDirs(), []);
});

t.test('a createRuntime failure fails the create with the reason, and leaves nothing', async (t) => {
  const s = await setup(t, 'plumb-hookfail');
  if (!s) return;
  const b = await s.h.bundle('b', { args: ['true'], annotations: { 'io.hyperbox.test': 'x', 'io.hyperbox.test.fail': 'createRuntime' } });
  const before = readFileSync(b.configPath, 'utf8');
  const id = s.h.id('hookfail');
  const r = await s.h.create(id, b.dir, [], { env: s.env });
  t.not(r.exitCode, 0);
  t.match(r.stderr, /probe \(createRuntime\): probe was asked to fail in createRuntime/);
  t.equal(await s.h.state(id), undefined, 'no container');
  await waitFor('config.json restored', () => readFileSync(b.configPath, 'utf8') === before);
  await waitFor('state removed', () => s.stateDirs().length === 0);
  t.pass('config.json restored and state removed by the watcher');
});

t.test('runc refusing the modified config: runc words the error, config.json restored', async (t) => {
  const s = await setup(t, 'plumb-runcfail');
  if (!s) return;
  const b = await s.h.bundle('b', { args: ['true'], annotations: { 'io.hyperbox.test': 'x' }, edit: (spec) => (spec.root.path = 'no-such-rootfs') });
  const before = readFileSync(b.configPath, 'utf8');
  const id = s.h.id('runcfail');
  const r = await s.h.create(id, b.dir, [], { env: s.env });
  t.equal(r.exitCode, 1);
  t.match(r.stderr, /no-such-rootfs/);
  await waitFor('config.json restored', () => readFileSync(b.configPath, 'utf8') === before);
  await waitFor('state removed', () => s.stateDirs().length === 0);
  t.pass();
});

t.test('a bad request is refused before runc runs: one line, exit 1, config.json untouched', async (t) => {
  const s = await setup(t, 'plumb-bad');
  if (!s) return;
  for (const [annotations, pattern] of [
    [{ 'io.hyperbox.tset': 'x' }, /^time="[^"]+" level=error msg="hyperbox-runc: unknown annotation io\.hyperbox\.tset: hyperbox annotations are io\.hyperbox\.seccomp, io\.hyperbox\.trace, io\.hyperbox\.rootfs, io\.hyperbox\.tune, io\.hyperbox\.test"\n$/],
    [{ 'io.hyperbox.test': '../etc' }, /bad probe annotation: io\.hyperbox\.test must be lowercase letters, digits and dashes/],
  ] as const) {
    const b = await s.h.bundle(`b${Object.keys(annotations)[0]}`, { args: ['true'], annotations });
    const before = readFileSync(b.configPath, 'utf8');
    const id = s.h.id('bad');
    const r = await s.h.rt(['create', '--bundle', b.dir, id], { env: s.env });
    t.equal(r.exitCode, 1);
    t.equal(r.stdout, '');
    t.match(r.stderr, pattern);
    t.notMatch(r.stderr, /\bat .*\.js:\d+/, 'no stack trace');
    t.equal(readFileSync(b.configPath, 'utf8'), before);
    t.equal(await s.h.state(id), undefined);
  }
  t.same(s.stateDirs(), []);
});

t.test('gc releases what a crashed create left, and keeps live containers', async (t) => {
  const s = await setup(t, 'plumb-gc');
  if (!s) return;
  // A live container with hyperbox state.
  const liveBundle = await s.h.bundle('live', { args: ['sleep', '30'], annotations: { 'io.hyperbox.test': 'live' } });
  const liveId = s.h.id('live');
  t.equal((await s.h.create(liveId, liveBundle.dir, [], { env: s.env })).exitCode, 0);
  // What a hyperbox-runc killed between writing config.json and runc creating the container leaves.
  const crashed = await s.h.bundle('crashed', { args: ['true'] });
  const original = readFileSync(crashed.configPath);
  const written = Buffer.from(original.toString().replace('"ociVersion"', '"annotations": {"io.hyperbox.test": "gone"},\n\t"ociVersion"'));
  writeFileSync(crashed.configPath, written);
  const liveDir = s.stateDirs()[0]!;
  const crashedDir = join(liveDir, '..', 'crashed-one');
  mkdirSync(crashedDir);
  writeFileSync(join(crashedDir, 'config.original.json'), original);
  writeFileSync(join(crashedDir, 'config.written.json'), written);
  writeFileSync(join(crashedDir, 'plan.json'), JSON.stringify({ version: 1, id: 'crashed-one', instance: 'x1', runcRoot: s.h.root, bundle: crashed.dir, configPath: crashed.configPath, createdAt: new Date(Date.now() - 3600_000).toISOString(), features: { probe: { value: 'gone', fail: 'none' } } }));
  // A create still on its way to runc (state written a moment ago, no runc container yet) is left alone.
  const inflight = await s.h.bundle('inflight', { args: ['true'] });
  const inflightDir = join(liveDir, '..', 'inflight-one');
  mkdirSync(inflightDir);
  writeFileSync(join(inflightDir, 'plan.json'), JSON.stringify({ version: 1, id: 'inflight-one', instance: `${process.pid.toString(36)}-x2-inflight`, runcRoot: s.h.root, bundle: inflight.dir, configPath: inflight.configPath, createdAt: new Date().toISOString(), features: {} }));
  const r = await s.h.exec(['gc'], { env: s.env });
  t.equal(r.exitCode, 0, describe(r));
  t.match(r.stdout, /released crashed-one/);
  t.same(readFileSync(crashed.configPath), original, 'config.json put back');
  t.same(s.hooks('crashed-one').map((l) => [l.stage, l.status]), [['poststop', null]], 'the feature released it without an OCI state');
  t.same(s.stateDirs().sort(), [liveDir, inflightDir].sort(), 'the live container and the in-flight create keep their state');
  rmSync(inflightDir, { recursive: true });
  t.equal((await s.h.rt(['delete', '-f', liveId])).exitCode, 0);
  t.same(s.stateDirs(), []);
});

t.test('the same id under two runc roots (containerd namespaces) does not collide', async (t) => {
  const s = await setup(t, 'plumb-roots');
  if (!s) return;
  const b1 = await s.h.bundle('b1', { args: ['sleep', '30'], annotations: { 'io.hyperbox.test': 'one' } });
  const b2 = await s.h.bundle('b2', { args: ['sleep', '30'], annotations: { 'io.hyperbox.test': 'two' } });
  // A second harness is a second runc --root, as a second containerd namespace would be.
  mkdirSync(join(s.tmp, 'ns2'));
  const h2 = new RuntimeHarness({ path: LAUNCHER, label: 'hyperbox-runc', explicit: true }, findRunc()!, join(s.tmp, 'ns2'));
  t.teardown(() => h2.cleanup());
  const id = s.h.id('same');
  t.equal((await s.h.create(id, b1.dir, [], { env: s.env })).exitCode, 0);
  const second = await h2.create(id, b2.dir, [], { env: s.env });
  t.equal(second.exitCode, 0, describe(second));
  t.equal(s.stateDirs().length, 2);
  t.equal((await h2.rt(['delete', '-f', id])).exitCode, 0);
  t.equal(s.stateDirs().length, 1, 'deleting one leaves the other');
  t.equal((await s.h.rt(['delete', '-f', id])).exitCode, 0);
  t.same(s.stateDirs(), []);
});

t.test('a container that asks for nothing sees exactly what runc gives it', async (t) => {
  const s = await setup(t, 'plumb-invisible');
  if (!s) return;
  const probeScript = 'env | sort; grep -E "^(Sig|Cap|NoNewPrivs|Seccomp)" /proc/self/status; cat /proc/self/limits; ls /proc/self/fd; cat /proc/self/cgroup | sed "s/[0-9a-f]\\{6,\\}//g" | sed "s/plumb-[a-z0-9-]*//g"; exit 3';
  const outputs: Record<string, string> = {};
  for (const [name, bin, annotations] of [
    ['runc', findRunc()!, undefined],
    ['hyperbox pass-through', LAUNCHER, undefined],
    ['hyperbox with a request', LAUNCHER, { 'io.hyperbox.test': 'x' }],
  ] as const) {
    const b = await s.h.bundle(name.replace(/\W/g, ''), { args: ['sh', '-c', probeScript], annotations });
    const id = `inv-${name.replace(/\W/g, '')}`;
    const r = await run(bin, ['--root', s.h.root, 'run', '--bundle', b.dir, id], { env: s.env });
    t.equal(r.exitCode, 3, `${name}: ${describe(r)}`);
    outputs[name] = r.stdout.replace(/inv-\w+/g, 'ID');
  }
  t.equal(outputs['hyperbox pass-through'], outputs.runc, 'pass-through: identical');
  t.equal(outputs['hyperbox with a request']!.replace('HYPERBOX_TEST_VALUE=x\n', ''), outputs.runc, 'Node path: identical but for what was asked');
});
