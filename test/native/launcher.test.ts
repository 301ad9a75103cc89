/**
 * The native launcher: pass-through calls reach runc exactly as given, the
 * Node path (create with a hyperbox request) hands runc the same process
 * state, and runc is found without PATH and never as hyperbox-runc itself.
 */
import t from 'tap';
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { makeFakeRunc } from '../helpers/fake-runc.js';

const LAUNCHER = resolve('build/hyperbox-runc');
const PROBE_CLI = resolve('dist/test/helpers/cli-with-probe.js');

function launch(args: string[], env: Record<string, string>, opts: SpawnSyncOptions = {}) {
  const r = spawnSync(LAUNCHER, args, { env, ...opts, encoding: 'utf8' });
  return { status: r.status, stdout: String(r.stdout), stderr: String(r.stderr) };
}

function bundle(annotations?: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'hbx-lbundle-'));
  const cfg: Record<string, unknown> = { ociVersion: '1.0.2-dev', process: { args: ['sh'], env: ['PATH=/bin'], cwd: '/' }, root: { path: 'rootfs' } };
  if (annotations) cfg.annotations = annotations;
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg, null, '\t'));
  return dir;
}

t.test('pass-through: argv, environment, fds and exit status reach runc unchanged', async (t) => {
  const fake = makeFakeRunc();
  const b = bundle();
  const env = { HYPERBOX_RUNC: fake.path, FAKE_RUNC_OUT: fake.out, FAKE_RUNC_EXIT: '7', ODD: 'a=b c', EMPTY: '' };
  const extra = openSync(join(b, 'config.json'), 'r');
  t.teardown(() => closeSync(extra));
  const args = ['--root', '/r', '--log-format=json', 'create', 'c1', '-b', b, '--preserve-fds', '2'];
  const r = launch(args, env, { stdio: ['pipe', 'pipe', 'pipe', 'ignore', 'ignore', extra] });
  t.equal(r.status, 7, 'exit status');
  t.equal(r.stdout, '', 'nothing of ours on stdout');
  t.equal(r.stderr, '', 'nothing on stderr');
  const seen = fake.read();
  t.same(seen.argv, [fake.path, ...args], 'argv');
  // The reference is the fake started directly with the same env (the test runner adds its own variables to both).
  spawnSync(fake.path, args, { env });
  t.same(seen.environ.sort(), fake.read().environ.sort(), 'environment');
  t.ok(seen.environ.includes('ODD=a=b c') && seen.environ.includes('EMPTY='));
  t.ok(seen.fds.includes(5), 'inherited fd 5 is still open in runc');
});

t.test('every runc subcommand passes through', async (t) => {
  const fake = makeFakeRunc();
  const env = { HYPERBOX_RUNC: fake.path, FAKE_RUNC_OUT: fake.out };
  for (const cmd of ['checkpoint', 'delete', 'events', 'exec', 'kill', 'list', 'pause', 'ps', 'restore', 'resume', 'start', 'state', 'update', 'features', 'spec', 'nosuchcommand']) {
    const args = ['--root', '/r', cmd, 'c1'];
    const r = launch(args, env);
    t.equal(r.status, 0, cmd);
    t.same(fake.read().argv.slice(1), args, `${cmd} argv`);
  }
});

t.test('--version prints runc first, then hyperbox-runc', async (t) => {
  const fake = makeFakeRunc();
  const r = launch(['--version'], { HYPERBOX_RUNC: fake.path, FAKE_RUNC_OUT: fake.out });
  t.equal(r.status, 0);
  t.match(r.stdout, /^runc version 9\.9\.9-fake\nhyperbox-runc \d+\.\d+\.\d+\n$/);
  const v = launch(['-v'], { HYPERBOX_RUNC: fake.path, FAKE_RUNC_OUT: fake.out });
  t.equal(v.stdout, r.stdout, '-v is the same');
});

t.test('runc lookup: HYPERBOX_RUNC, then config.json, then PATH, then standard dirs; never itself', async (t) => {
  const fake = makeFakeRunc();
  const other = makeFakeRunc();
  const etc = mkdtempSync(join(tmpdir(), 'hbx-etc-'));
  writeFileSync(join(etc, 'config.json'), JSON.stringify({ runc: other.path }));
  const both = { HYPERBOX_RUNC: fake.path, HYPERBOX_CONFIG_DIR: etc, FAKE_RUNC_OUT: fake.out };
  launch(['state', 'x'], both);
  t.equal(fake.read().argv[0], fake.path, 'HYPERBOX_RUNC wins');
  launch(['state', 'x'], { HYPERBOX_CONFIG_DIR: etc, FAKE_RUNC_OUT: other.out });
  t.equal(other.read().argv[0], other.path, 'then /etc/hyperbox/config.json');

  // A PATH whose first "runc" is hyperbox-runc itself (installed under runc's name).
  const shadow = mkdtempSync(join(tmpdir(), 'hbx-shadow-'));
  symlinkSync(LAUNCHER, join(shadow, 'runc'));
  launch(['state', 'x'], { PATH: `${shadow}:${fake.dir}`, HYPERBOX_CONFIG_DIR: '/nonexistent', FAKE_RUNC_OUT: fake.out });
  t.equal(fake.read().argv[0], join(fake.dir, 'runc'), 'PATH, skipping hyperbox-runc itself');

  const r = launch(['--version'], {}); // Podman calls kill/delete with an empty environment
  t.equal(r.status, 0, 'empty environment finds the system runc');
  t.match(r.stdout, /^runc version /);
});

t.test('a runc that cannot be used is one clear error, exit 1, nothing on stdout', async (t) => {
  const r = launch(['state', 'x'], { HYPERBOX_RUNC: '/nonexistent/runc' });
  t.equal(r.status, 1);
  t.equal(r.stdout, '');
  t.match(r.stderr, /^time="[^"]+" level=error msg="hyperbox-runc: HYPERBOX_RUNC=\/nonexistent\/runc is not an executable runc/);
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  const log = join(mkdtempSync(join(tmpdir(), 'hbx-log-')), 'log.json');
  const j = launch(['--log', log, '--log-format', 'json', 'state', 'x'], { HYPERBOX_RUNC: '/nonexistent/runc' });
  t.equal(j.status, 1);
  const line = JSON.parse(readFileSync(log, 'utf8')) as Record<string, string>;
  t.same(Object.keys(line), ['level', 'msg', 'time']);
  t.equal(line.level, 'error');
  t.equal(j.stderr.trim(), line.msg, 'the bare message on stderr, as runc does with --log');
});

t.test('the Node path hands runc the same argv, environment, fds, signal state and RLIMIT_NOFILE', async (t) => {
  const fake = makeFakeRunc();
  const state = mkdtempSync(join(tmpdir(), 'hbx-state-'));
  const record = mkdtempSync(join(tmpdir(), 'hbx-rec-'));
  const root = mkdtempSync(join(tmpdir(), 'hbx-root-'));
  const plain = bundle();
  const asks = bundle({ 'io.hyperbox.test': 'probe' });
  const original = readFileSync(join(asks, 'config.json'), 'utf8');
  // The caller's NODE_* settings are not hyperbox's: a broken NODE_OPTIONS must neither break the
  // Node side nor be lost on the way to runc.
  const env = { HYPERBOX_RUNC: fake.path, FAKE_RUNC_OUT: fake.out, HYPERBOX_CLI: PROBE_CLI, HYPERBOX_STATE: state, HYPERBOX_TEST_RECORD: record, PATH: '/usr/bin:/bin', NODE_OPTIONS: '--require=/nonexistent/preload.js', NODE_EXTRA_CA_CERTS: '/nonexistent/ca.pem' };
  // The caller ignores SIGHUP, blocks nothing special, lowers its nofile limit and passes fd 5.
  const extra = openSync(join(plain, 'config.json'), 'r');
  t.teardown(() => closeSync(extra));
  const via = (b: string) => {
    const args = ['--root', root, 'create', '--bundle', b, 'ctr'];
    const r = spawnSync('/bin/sh', ['-c', `trap '' HUP; ulimit -n 1000; exec "$0" "$@"`, LAUNCHER, ...args], {
      env,
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'pipe', 'ignore', 'ignore', extra],
    });
    return { r, seen: fake.read(), args };
  };
  const direct = via(plain);
  const node = via(asks);
  t.equal(node.r.status, 0, node.r.stderr);
  t.same(node.seen.argv.slice(1), node.args, 'argv');
  t.same(node.seen.environ.sort(), direct.seen.environ.sort(), 'environment (launcher notes stripped)');
  t.notOk(node.seen.environ.some((e) => e.startsWith('HYPERBOX_LAUNCHER_')));
  // (tap replaces NODE_OPTIONS in its children with its own hook; NODE_EXTRA_CA_CERTS is ours.)
  t.ok(node.seen.environ.includes('NODE_EXTRA_CA_CERTS=/nonexistent/ca.pem'), "the caller's NODE_* variables reach runc");
  t.ok(node.seen.environ.some((e) => e.startsWith('NODE_OPTIONS=')), 'NODE_OPTIONS too');
  t.same(node.seen.fds, direct.seen.fds, 'open fds (Node marks them close-on-exec; they must survive)');
  t.ok(node.seen.fds.includes(5));
  t.equal(node.seen.signals, direct.seen.signals, 'ignored and blocked signals');
  t.match(direct.seen.signals, /SigIgn:\s+[0-9a-f]*[13579bdf]\n/, 'the caller really ignored SIGHUP (bit 0)');
  t.equal(node.seen.nofile, direct.seen.nofile, 'RLIMIT_NOFILE (Node raises it at start)');
  t.match(node.seen.nofile, /Max open files 1000 1000/);

  // The fake left no container, so the watcher must put config.json back and drop the state.
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline && readFileSync(join(asks, 'config.json'), 'utf8') !== original) await new Promise((r) => setTimeout(r, 50));
  t.equal(readFileSync(join(asks, 'config.json'), 'utf8'), original, 'config.json restored after runc left no container');
  while (Date.now() < deadline && spawnSync('find', [state, '-name', 'plan.json']).stdout.length) await new Promise((r) => setTimeout(r, 50));
  t.equal(spawnSync('find', [state, '-name', 'plan.json'], { encoding: 'utf8' }).stdout, '', 'no state left');
});

t.test('routing: only requests that need hyperbox start Node', async (t) => {
  const fake = makeFakeRunc();
  const etc = mkdtempSync(join(tmpdir(), 'hbx-etc-'));
  const logDir = mkdtempSync(join(tmpdir(), 'hbx-route-'));
  const state = mkdtempSync(join(tmpdir(), 'hbx-state-'));
  let n = 0;
  const route = (b: string, extraArgs: string[] = []) => {
    const log = join(logDir, `${n++}.log`);
    const r = launch(['--debug', '--log', log, 'create', ...extraArgs, '-b', b, 'rt'], {
      HYPERBOX_RUNC: fake.path, FAKE_RUNC_OUT: fake.out, HYPERBOX_CONFIG_DIR: etc, HYPERBOX_CLI: PROBE_CLI, HYPERBOX_STATE: state,
    });
    const text = existsSync(log) ? readFileSync(log, 'utf8') : '';
    return { r, passedStraight: /passing create straight to/.test(text), text };
  };
  t.ok(route(bundle()).passedStraight, 'no annotation: straight to runc');
  t.ok(route(bundle({ 'org.example': 'io.hyperbox is mentioned' })).passedStraight, 'a mention that is not a key: straight');
  t.notOk(route(bundle({ 'io.hyperbox.test': 'x' })).passedStraight, 'io.hyperbox. annotation: Node');
  const flagged = route(bundle(), ['--test-value', 'viaflag']);
  t.notOk(flagged.passedStraight, 'unknown flag: Node');
  t.equal(flagged.r.status, 0, flagged.r.stderr);
  t.same(fake.read().argv.slice(1).filter((a) => a === '--test-value' || a === 'viaflag'), [], 'hyperbox flag not passed to runc');
  writeFileSync(join(etc, 'policy.json'), JSON.stringify({ defaults: {} }));
  t.notOk(route(bundle()).passedStraight, 'a host policy: Node');
  rmSync(join(etc, 'policy.json'));
  mkdirSync(join(logDir, 'nobundle'));
  t.ok(route(join(logDir, 'nobundle')).passedStraight, 'missing config.json: runc words the error');
});
