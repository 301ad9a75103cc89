import t, { type Test } from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../../src/cli/main.js';
import { fakeNative } from '../helpers/fake-native.js';
import { probeFeature } from '../helpers/probe-feature.js';

const BASE_CONFIG = {
  ociVersion: '1.0.2-dev',
  process: { terminal: false, args: ['sh'], env: ['PATH=/bin'], cwd: '/' },
  root: { path: 'rootfs' },
  linux: { resources: { memory: { limit: 1 } } },
};

/** Container state dirs under a state base (the per-root key dirs stay: they are the locks). */
function containerDirs(base: string): string[] {
  if (!existsSync(base)) return [];
  return readdirSync(base).flatMap((key) => readdirSync(join(base, key)).map((id) => join(key, id)));
}

/** A fresh bundle, state base and config dir; returns paths and a runner. */
function setup(t: Test, config: object, policy?: object) {
  const top = mkdtempSync(join(tmpdir(), 'hbx-create-'));
  const bundle = join(top, 'bundle');
  const configDir = join(top, 'etc');
  mkdirSync(bundle);
  mkdirSync(configDir);
  // 64-bit value written by hand so the lossless path is exercised.
  const text = JSON.stringify(config, null, '\t').replace('"limit": 1', '"limit": 9223372036854775807') + '\n';
  writeFileSync(join(bundle, 'config.json'), text);
  if (policy) writeFileSync(join(configDir, 'policy.json'), JSON.stringify(policy));
  const log = join(top, 'log.json');
  const saved = process.env.HYPERBOX_STATE;
  process.env.HYPERBOX_STATE = join(top, 'state');
  t.teardown(() => {
    process.env.HYPERBOX_STATE = saved;
  });
  const fake = fakeNative({ configDir, bundle });
  const run = (...args: string[]) => main(['--log', log, '--log-format', 'json', ...args], { features: [probeFeature], native: () => fake.nat });
  const logLines = () => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { level: string; msg: string }) : []);
  return { top, bundle, text, run, fake, logLines, stateBase: join(top, 'state') };
}

t.test('a container that asks for nothing reaches runc with config.json untouched', async (t) => {
  const s = setup(t, BASE_CONFIG);
  await s.run('create', '--bundle', s.bundle, 'c1');
  t.equal(s.fake.execs.length, 1);
  t.same(s.fake.execs[0]!.argv, ['/fake/runc', '--log', join(s.top, 'log.json'), '--log-format', 'json', 'create', '--bundle', s.bundle, 'c1']);
  t.equal(s.fake.execs[0]!.config, s.text, 'byte-identical config.json');
  t.equal(s.fake.watchers.length, 0, 'no watcher');
  t.notOk(existsSync(s.stateBase), 'no state');
});

t.test('an annotation request: spec modified, hooks injected, state written, argv unchanged', async (t) => {
  const s = setup(t, { ...BASE_CONFIG, annotations: { 'io.hyperbox.test': 'abc', other: 'kept' } });
  await s.run('create', 'c2', '-b', s.bundle, '--pid-file', '/tmp/pid');
  const exec = s.fake.execs[0]!;
  t.same(exec.argv.slice(5), ['create', 'c2', '-b', s.bundle, '--pid-file', '/tmp/pid']);
  const cfg = JSON.parse(exec.config!.replace('9223372036854775807', '0'));
  t.ok(exec.config!.includes('"limit": 9223372036854775807'), '64-bit limit kept');
  t.same(cfg.process.env, ['PATH=/bin', 'HYPERBOX_TEST_VALUE=abc'], 'modify ran');
  t.same(Object.keys(cfg.hooks).sort(), ['createRuntime', 'poststart', 'poststop']);
  const hook = cfg.hooks.poststop[0];
  t.equal(hook.args[0], 'hyperbox-runc');
  t.same(hook.args.slice(1, 3), ['hook', 'poststop']);
  t.match(hook.path, /^\//, 'hook path is absolute (runc gives hooks no PATH)');
  t.same(cfg.annotations, { 'io.hyperbox.test': 'abc', other: 'kept' });
  const watcher = s.fake.watchers[0]!;
  t.equal(watcher.runcState, '/run/runc/c2/state.json');
  t.ok(watcher.stateDir.startsWith(s.stateBase));
  t.equal(hook.args[4], watcher.stateDir);
  const plan = exec.plan!;
  t.same(plan.features, { probe: { value: 'abc', fail: 'none' } });
  t.equal(plan.runcRoot, '/run/runc');
});

t.test('a CLI flag becomes the same annotation and is not passed to runc', async (t) => {
  const s = setup(t, BASE_CONFIG);
  await s.run('--root', join(s.top, 'root'), 'run', '--test-value', 'fromflag', '--bundle', s.bundle, 'c3', '--detach');
  const exec = s.fake.execs[0]!;
  t.same(exec.argv.slice(5), ['--root', join(s.top, 'root'), 'run', '--bundle', s.bundle, 'c3', '--detach']);
  t.same(JSON.parse(exec.config!.replace(/9223372036854775807/, '0')).annotations, { 'io.hyperbox.test': 'fromflag' });
});

t.test('policy defaults apply, the container annotation wins', async (t) => {
  const s = setup(t, { ...BASE_CONFIG, annotations: { 'io.hyperbox.test': 'mine' } }, { defaults: { 'io.hyperbox.test': 'policy' } });
  await s.run('create', '-b', s.bundle, 'c4');
  t.match(s.fake.execs[0]!.config!, /"io.hyperbox.test": "mine"/);
  const s2 = setup(t, BASE_CONFIG, { defaults: { 'io.hyperbox.test': 'policy' } });
  await s2.run('create', '-b', s2.bundle, 'c5');
  t.match(s2.fake.execs[0]!.config!, /"io.hyperbox.test": "policy"/);
});

t.test('same id under two runc roots gets two state dirs', async (t) => {
  const s = setup(t, { ...BASE_CONFIG, annotations: { 'io.hyperbox.test': 'x' } });
  await s.run('--root', join(s.top, 'ns1'), 'create', '-b', s.bundle, 'same');
  writeFileSync(join(s.bundle, 'config.json'), s.text.replace('"ociVersion"', '"annotations": {"io.hyperbox.test": "x"},\n\t"ociVersion"'));
  await s.run('--root', join(s.top, 'ns2'), 'create', '-b', s.bundle, 'same');
  const dirs = s.fake.watchers.map((w) => w.stateDir);
  t.equal(dirs.length, 2);
  t.not(dirs[0], dirs[1]);
  t.same(s.fake.execs.map((e) => e.plan?.runcRoot), [join(s.top, 'ns1'), join(s.top, 'ns2')]);
});

for (const [name, annotations, pattern] of [
  ['unknown hyperbox annotation', { 'io.hyperbox.nope': 'x' }, /unknown annotation io\.hyperbox\.nope: hyperbox annotations are io\.hyperbox\.test/],
  ['invalid feature option', { 'io.hyperbox.test': 'UPPER' }, /bad probe annotation: io\.hyperbox\.test must be lowercase/],
  ['a feature failing in modify', { 'io.hyperbox.test': 'x', 'io.hyperbox.test.fail': 'modify' }, /probe was asked to fail in modify/],
] as const) {
  t.test(`${name}: one clear error, exit 1, config.json and host untouched, runc never runs`, async (t) => {
    const s = setup(t, { ...BASE_CONFIG, annotations });
    const code = await s.run('create', '-b', s.bundle, 'bad');
    t.equal(code, 1);
    t.equal(s.fake.execs.length, 0);
    t.equal(readFileSync(join(s.bundle, 'config.json'), 'utf8'), s.text, 'config.json untouched');
    const lines = s.logLines();
    t.equal(lines.length, 1, 'exactly one log line');
    t.equal(lines[0]!.level, 'error');
    t.match(lines[0]!.msg, pattern);
    t.notMatch(lines[0]!.msg, /\n\s+at /, 'no stack trace');
    t.same(containerDirs(s.stateBase), [], 'no state left');
  });
}

t.test('malformed config.json with a hyperbox request: clear error naming the line', async (t) => {
  const s = setup(t, BASE_CONFIG);
  const broken = '{"ociVersion": "1", "annotations": {"io.hyperbox.test": "x",}}';
  writeFileSync(join(s.bundle, 'config.json'), broken);
  t.equal(await s.run('create', '-b', s.bundle, 'c6'), 1);
  t.match(s.logLines()[0]!.msg, /config\.json is not valid JSON: expected a string key at line 1 column 61/);
  t.equal(readFileSync(join(s.bundle, 'config.json'), 'utf8'), broken);
});

t.test('a malformed policy file is refused with its path', async (t) => {
  const s = setup(t, BASE_CONFIG, { defaults: { 'not.hyperbox': 'x' } });
  t.equal(await s.run('create', '-b', s.bundle, 'c7'), 1);
  t.match(s.logLines()[0]!.msg, /policy\.json: defaults\.not\.hyperbox: policy keys are io\.hyperbox\. annotations/);
});

t.test('flags runc does not know, with no hyperbox flag, go to runc unchanged (runc words the error)', async (t) => {
  const s = setup(t, { ...BASE_CONFIG, annotations: { 'io.hyperbox.test': 'x' } });
  await s.run('create', '--frobnicate', '-b', s.bundle, 'c8');
  t.same(s.fake.execs[0]!.argv.slice(5), ['create', '--frobnicate', '-b', s.bundle, 'c8']);
  t.equal(s.fake.execs[0]!.config, readFileSync(join(s.bundle, 'config.json'), 'utf8'));
  t.notMatch(s.fake.execs[0]!.config!, /hooks/);
});

t.test('a failed exec puts config.json back, runs the features\' release and removes the state', async (t) => {
  const s = setup(t, { ...BASE_CONFIG, annotations: { 'io.hyperbox.test': 'x' } });
  const record = mkdtempSync(join(tmpdir(), 'hbx-rec-'));
  const saved = process.env.HYPERBOX_TEST_RECORD;
  process.env.HYPERBOX_TEST_RECORD = record;
  t.teardown(() => {
    process.env.HYPERBOX_TEST_RECORD = saved;
  });
  const before = readFileSync(join(s.bundle, 'config.json'), 'utf8');
  t.equal(await s.run('create', '-b', s.bundle, 'c9'), 1, 'the fake exec fails');
  t.match(s.fake.execs[0]!.config!, /HYPERBOX_TEST_VALUE/, 'runc would have seen the modified config');
  t.equal(readFileSync(join(s.bundle, 'config.json'), 'utf8'), before, 'restored');
  t.same(containerDirs(s.stateBase), [], 'state removed');
  const calls = readFileSync(join(record, 'c9.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).stage);
  t.same(calls, ['poststop'], 'what modify attached is released');
});

t.test('own commands: unknown subcommand options are usage errors (exit 2), doctor runs', async (t) => {
  const s = setup(t, BASE_CONFIG);
  t.equal(await s.run('gc', '--bogus'), 2);
  t.match(s.logLines()[0]!.msg, /unknown option '--bogus'/);
  t.equal(await s.run('hook', 'nostage', '--state-dir', s.top), 2);
  t.match(s.logLines()[1]!.msg, /unknown hook stage nostage/);
});

t.test("gc --instance releases only the create it was given, not a later container that reused the id", async (t) => {
  const s = setup(t, { ...BASE_CONFIG, annotations: { 'io.hyperbox.test': 'x' } });
  const root = join(s.top, 'root');
  // The fake exec fails and the create cleans up after itself; write the state a live create leaves.
  s.fake.nat.execRunc = () => {
    throw Object.assign(new Error('stop here'), { keepState: true });
  };
  await s.run('--root', root, 'create', '-b', s.bundle, 'reused');
  const w = s.fake.watchers[0]!;
  t.notOk(existsSync(w.stateDir), 'a failed exec removes its own state');
  // Now a create that "succeeded" (state present, runc has no container yet, as right after exec).
  const { writeContainerState } = await import('../../src/oci/state.js');
  const plan = { version: 1 as const, id: 'reused', instance: 'second', runcRoot: root, bundle: s.bundle, configPath: join(s.bundle, 'config.json'), createdAt: new Date().toISOString(), features: {} };
  writeContainerState(w.stateDir, plan, Buffer.from(s.text), undefined);
  t.equal(await s.run('gc', '--state-dir', w.stateDir, '--instance', 'first'), 0);
  t.ok(existsSync(join(w.stateDir, 'plan.json')), 'the old create’s watcher leaves the new container alone');
  t.equal(await s.run('gc', '--state-dir', w.stateDir, '--instance', 'second'), 0);
  t.notOk(existsSync(w.stateDir), 'its own watcher releases it');
  t.same(readdirSync(join(w.stateDir, '..')), [], 'no claimed copy left');
});
