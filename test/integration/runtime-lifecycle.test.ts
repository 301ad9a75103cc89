// The container lifecycle as a runc user sees it, through the runtime under test
// (HYPERBOX_TEST_RUNTIME, default: the real runc). The same assertions must hold for both.
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import {
  checkPrerequisites,
  describe,
  leftoverTest,
  run,
  runtimeHarness,
  runtimeUnderTest,
  testTempDir,
  title,
  waitFor,
  type OciState,
} from '../helpers/runtime.js';
import { findRunc } from '../../fixtures/tools.js';

const RT = runtimeUnderTest();
// Default tap timeout is 30 s per file; the file is meant to take well under that, this is slack
// for a loaded 2-core CI machine.
t.setTimeout(120_000);

// A container that stays up until SIGTERM and says so on stdout. `sleep & wait` because a trap
// runs only between commands, and `wait` is interruptible where a foreground `sleep` is not.
const UNTIL_TERM = ['sh', '-c', 'trap "echo got-term; exit 0" TERM; echo started; sleep 300 & wait'];

function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

t.test(title('--version prints runc\'s version banner'), async (t) => {
  if (!checkPrerequisites(t, { runtime: true })) return;
  for (const flag of ['--version', '-v']) {
    const r = await run(RT.path, [flag]);
    t.equal(r.exitCode, 0, `${flag}: ${describe(r)}`);
    t.match(r.stdout.split('\n')[0], /^runc version \S+/, `${flag}: first line`);
    t.match(r.stdout, /^spec: \S+$/m, `${flag}: spec line`);
    t.equal(r.stderr, '', `${flag}: nothing on stderr`);
  }
});

t.test(title('spec writes the same config.json as runc spec'), async (t) => {
  if (!checkPrerequisites(t, { root: true, runtime: true, runc: true })) return;
  const tmp = await testTempDir(t, 'spec');
  const ref = await run(findRunc()!, ['spec', '--bundle', tmp]);
  t.equal(ref.exitCode, 0, `reference runc spec: ${describe(ref)}`);
  const want = JSON.parse(await readFile(join(tmp, 'config.json'), 'utf8')) as unknown;

  const viaFlag = await testTempDir(t, 'spec-flag');
  const r1 = await run(RT.path, ['spec', '--bundle', viaFlag]);
  t.equal(r1.exitCode, 0, describe(r1));
  t.equal(r1.stdout, '', 'nothing on stdout');
  t.same(JSON.parse(await readFile(join(viaFlag, 'config.json'), 'utf8')), want, 'spec --bundle DIR');

  const viaCwd = await testTempDir(t, 'spec-cwd');
  const r2 = await run(RT.path, ['spec'], { cwd: viaCwd });
  t.equal(r2.exitCode, 0, describe(r2));
  t.same(JSON.parse(await readFile(join(viaCwd, 'config.json'), 'utf8')), want, 'spec in the current directory');

  // runc refuses to overwrite; a drop-in must not clobber a user's config either.
  const again = await run(RT.path, ['spec', '--bundle', viaFlag]);
  t.not(again.exitCode, 0, `second spec into the same bundle fails: ${describe(again)}`);
  t.match(again.stderr, /config\.json exists/i);
});

t.test(title('create, start, state, list, kill, delete'), async (t) => {
  const h = await runtimeHarness(t, 'life');
  if (!h) return;
  const id = h.id('life');
  const b = await h.bundle(id, { args: UNTIL_TERM });

  const c = await h.create(id, b.dir);
  t.equal(c.exitCode, 0, `create: ${describe(c)}`);

  const created = await h.state(id);
  t.ok(created, 'state after create');
  if (!created) return;
  t.equal(created.id, id);
  t.equal(created.status, 'created');
  t.equal(created.bundle, b.dir);
  t.ok(created.pid > 0 && isAlive(created.pid), `init pid ${created.pid} exists`);
  t.equal(await readFile(c.outFile, 'utf8'), '', 'the process has not run yet');

  const table = await h.rt(['list']);
  t.equal(table.exitCode, 0, describe(table));
  t.match(table.stdout.split('\n')[0], /^ID\s+PID\s+STATUS\s+BUNDLE\s+CREATED\s+OWNER/);
  t.match(table.stdout, new RegExp(`^${id}\\s+${created.pid}\\s+created\\s+${b.dir}\\s`, 'm'), 'list shows the container');
  const listed = await h.rt(['list', '--format', 'json']);
  t.equal(listed.exitCode, 0, describe(listed));
  const entries = JSON.parse(listed.stdout) as Array<{ id: string; status: string; pid: number; bundle: string }>;
  t.match(entries, [{ id, status: 'created', pid: created.pid, bundle: b.dir }], 'list --format json');
  const quiet = await h.rt(['list', '-q']);
  t.equal(quiet.stdout, `${id}\n`, 'list -q prints just the id');

  const s = await h.rt(['start', id]);
  t.equal(s.exitCode, 0, `start: ${describe(s)}`);
  t.equal(s.stdout, '', 'start prints nothing');
  const running = await h.state(id);
  t.equal(running?.status, 'running');
  t.equal(running?.pid, created.pid, 'same init pid after start');
  await waitFor('container output "started"', async () => (await readFile(c.outFile, 'utf8')).includes('started\n'));

  const k = await h.rt(['kill', id]);
  t.equal(k.exitCode, 0, `kill (default SIGTERM): ${describe(k)}`);
  const stopped = await h.waitForStatus(id, 'stopped');
  t.equal(stopped.status, 'stopped');
  t.equal(await readFile(c.outFile, 'utf8'), 'started\ngot-term\n', 'the workload saw SIGTERM');
  t.notOk(isAlive(created.pid), 'init is gone');

  const d = await h.rt(['delete', id]);
  t.equal(d.exitCode, 0, `delete: ${describe(d)}`);
  t.equal(d.stdout, '');
  const gone = await h.rt(['state', id]);
  t.not(gone.exitCode, 0, 'state fails after delete');
  t.match(gone.stderr, /does not exist/);
  const after = await h.rt(['list', '-q']);
  t.equal(after.stdout, '', 'list is empty after delete');
});

t.test(title('run: exit status and stdio of the container'), async (t) => {
  const h = await runtimeHarness(t, 'run');
  if (!h) return;
  const id = h.id('run');
  const b = await h.bundle(id, { args: ['sh', '-c', 'echo to-stdout; echo to-stderr >&2; exit 7'] });
  const r = await h.rt(['run', '--bundle', b.dir, id]);
  t.equal(r.exitCode, 7, `exit status is the container's: ${describe(r)}`);
  t.equal(r.stdout, 'to-stdout\n');
  t.equal(r.stderr, 'to-stderr\n');
  t.equal(await h.state(id), undefined, 'run deletes the container when it exits');

  const id2 = h.id('run0');
  const b2 = await h.bundle(id2, { args: ['sh', '-c', 'read line; echo "got $line"'] });
  const r2 = await h.rt(['run', '--bundle', b2.dir, id2], { input: 'stdin-data\n' });
  t.equal(r2.exitCode, 0, describe(r2));
  t.equal(r2.stdout, 'got stdin-data\n', 'stdin reaches the container');
});

t.test(title('run --detach leaves the container running'), async (t) => {
  const h = await runtimeHarness(t, 'det');
  if (!h) return;
  const id = h.id('det');
  const b = await h.bundle(id, { args: UNTIL_TERM });
  const out = join(h.tmp, 'det.out');
  const r = await h.rtToFiles(['run', '--detach', '--bundle', b.dir, id], out, out);
  t.equal(r.exitCode, 0, describe(r));
  const s = await h.state(id);
  t.equal(s?.status, 'running');
  await waitFor('detached container output', async () => (await readFile(out, 'utf8')).includes('started'));

  // A running container is not deleted without --force.
  const d = await h.rt(['delete', id]);
  t.not(d.exitCode, 0, `delete of a running container fails: ${describe(d)}`);
  t.match(d.stderr, /not stopped|running/);
  t.equal((await h.state(id))?.status, 'running', 'still running after the refused delete');

  const f = await h.rt(['delete', '--force', id]);
  t.equal(f.exitCode, 0, `delete --force: ${describe(f)}`);
  t.equal(await h.state(id), undefined, 'gone');
  if (s) await waitFor(`pid ${s.pid} to exit`, () => !isAlive(s.pid));
});

t.test(title('kill/state/pause/resume/delete with an empty environment (as Podman calls them)'), async (t) => {
  const h = await runtimeHarness(t, 'env');
  if (!h) return;
  const id = h.id('env');
  const b = await h.bundle(id, { args: UNTIL_TERM });
  t.equal((await h.create(id, b.dir)).exitCode, 0, 'create');
  t.equal((await h.rt(['start', id])).exitCode, 0, 'start');
  const bare = { env: {}, extendEnv: false } as const;

  const st = await h.rt(['state', id], bare);
  t.equal(st.exitCode, 0, `state: ${describe(st)}`);
  t.equal((JSON.parse(st.stdout) as OciState).status, 'running');

  const p = await h.rt(['pause', id], bare);
  t.equal(p.exitCode, 0, `pause: ${describe(p)}`);
  t.equal((await h.state(id))?.status, 'paused');
  const rs = await h.rt(['resume', id], bare);
  t.equal(rs.exitCode, 0, `resume: ${describe(rs)}`);
  t.equal((await h.state(id))?.status, 'running');

  const k = await h.rt(['kill', id, 'KILL'], bare);
  t.equal(k.exitCode, 0, `kill: ${describe(k)}`);
  await h.waitForStatus(id, 'stopped');
  const d = await h.rt(['delete', id], bare);
  t.equal(d.exitCode, 0, `delete: ${describe(d)}`);
  t.equal(await h.state(id), undefined);
});

t.test(title('errors look like runc\'s (stderr, exit status)'), async (t) => {
  const h = await runtimeHarness(t, 'err');
  if (!h) return;
  const missing = h.id('missing');
  const norm = (s: string) => s.replace(/time="[^"]*"/g, 'time="T"');
  for (const args of [['state', missing], ['kill', missing], ['delete', missing], ['start', missing]]) {
    const mine = await h.rt(args);
    const ref = await run(h.runc, ['--root', h.root, ...args]);
    t.not(mine.exitCode, 0, `${args[0]} of a missing container fails`);
    t.equal(mine.exitCode, ref.exitCode, `${args[0]}: same exit status as runc`);
    t.equal(mine.stdout, ref.stdout, `${args[0]}: same stdout as runc`);
    t.equal(norm(mine.stderr), norm(ref.stderr), `${args[0]}: same stderr as runc`);
  }
  const bad = await h.rt(['no-such-command']);
  const badRef = await run(h.runc, ['--root', h.root, 'no-such-command']);
  t.not(bad.exitCode, 0, 'unknown subcommand fails');
  t.equal(bad.exitCode, badRef.exitCode, 'unknown subcommand: same exit status as runc');
  t.equal(existsSync(join(h.root, missing)), false, 'no state left for a container that never existed');
});

leftoverTest(t, RT.label);
