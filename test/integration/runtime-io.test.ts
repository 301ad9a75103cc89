// What crosses the runtime's process boundary: signals, pid files, inherited fds, the console
// socket and the --log file. A wrapper that re-spawns or buffers instead of exec'ing runc breaks
// exactly these, so each is checked against the runtime under test.
import { closeSync, openSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa, type Options } from 'execa';
import t, { type Test } from 'tap';
import { buildCFixture } from '../../fixtures/cfixture.js';
import {
  describe,
  leftoverTest,
  run,
  runtimeHarness,
  runtimeUnderTest,
  settle,
  title,
  waitFor,
  waitForOutput,
  withPrerequisite,
} from '../helpers/runtime.js';

const RT = runtimeUnderTest();

// execa hands an integer in `stdio` to the child as that fd; its types only admit 3..9 there.
const withFd3 = (fd: number) => ({ stdio: ['ignore', 'pipe', 'pipe', fd] }) as unknown as Options;
t.setTimeout(120_000);

t.test(title('run forwards signals to the container and returns its exit status'), async (t) => {
  const h = await runtimeHarness(t, 'sig');
  if (!h) return;
  const id = h.id('sig');
  const b = await h.bundle(id, {
    args: ['sh', '-c', 'trap "echo got-usr1" USR1; trap "echo got-term; exit 42" TERM; echo ready; while :; do sleep 300 & wait; done'],
  });
  const p = h.spawn(['run', '--bundle', b.dir, id]);
  await waitForOutput(p.stdout, /ready\n/);
  p.kill('SIGUSR1');
  await waitForOutput(p.stdout, /got-usr1\n/);
  p.kill('SIGTERM');
  const r = await settle(p);
  t.equal(r.exitCode, 42, `exit status from the trap: exit ${r.exitCode} signal ${r.signal} stderr ${JSON.stringify(r.stderr)}`);
  t.equal(r.stdout, 'ready\ngot-usr1\ngot-term\n', 'both signals reached the workload, in order');
  t.equal(await h.state(id), undefined, 'container deleted after run returned');
});

t.test(title('run returns 128+N when the container is killed by signal N'), async (t) => {
  const h = await runtimeHarness(t, 'sigkill');
  if (!h) return;
  const id = h.id('sigkill');
  const b = await h.bundle(id, { args: ['sh', '-c', 'echo ready; sleep 300'] });
  const p = h.spawn(['run', '--bundle', b.dir, id]);
  await waitForOutput(p.stdout, /ready\n/);
  const k = await h.rt(['kill', id, 'KILL']);
  t.equal(k.exitCode, 0, describe(k));
  const r = await settle(p);
  t.equal(r.exitCode, 137, `exit ${r.exitCode} signal ${r.signal}`);
});

t.test(title('--pid-file holds the pid of the container init'), async (t) => {
  const h = await runtimeHarness(t, 'pidf');
  if (!h) return;
  const id = h.id('pidf');
  const b = await h.bundle(id, { args: ['sleep', '300'] });
  const pidFile = join(h.tmp, 'init.pid');
  const c = await h.create(id, b.dir, ['--pid-file', pidFile]);
  t.equal(c.exitCode, 0, describe(c));
  const text = readFileSync(pidFile, 'utf8');
  t.match(text, /^\d+$/, 'pid file is a bare number, as runc writes it');
  const pid = Number(text);
  const st = await h.state(id);
  t.equal(pid, st?.pid, 'same pid as state');
  t.not(readlinkSync(`/proc/${pid}/ns/pid`), readlinkSync('/proc/self/ns/pid'), 'the pid is in another pid namespace');
  t.match(readFileSync(`/proc/${pid}/cgroup`, 'utf8'), new RegExp(`/${id}$`, 'm'), "the pid is in the container's cgroup");

  t.equal((await h.rt(['start', id])).exitCode, 0, 'start');
  await h.waitForExec(pid, ['sleep', '300']);
  t.pass('after start the pid runs the workload');

  // Relative paths are relative to the caller's cwd (Podman and CI scripts pass both kinds).
  const id2 = h.id('pidrel');
  const b2 = await h.bundle(id2, { args: ['sleep', '300'] });
  const c2 = await h.create(id2, b2.dir, ['--pid-file', 'rel.pid'], { cwd: h.tmp });
  t.equal(c2.exitCode, 0, describe(c2));
  t.equal(Number(readFileSync(join(h.tmp, 'rel.pid'), 'utf8')), (await h.state(id2))?.pid, 'relative --pid-file lands in the cwd');
});

t.test(title('--preserve-fds passes extra fds to the container'), async (t) => {
  const h = await runtimeHarness(t, 'fds');
  if (!h) return;
  const payload = join(h.tmp, 'payload');
  writeFileSync(payload, 'fd3-payload\n');
  const fd = openSync(payload, 'r');
  t.teardown(() => closeSync(fd));

  const id = h.id('fds');
  const b = await h.bundle(id, { args: ['sh', '-c', 'cat <&3'] });
  const r = await h.rt(['run', '--preserve-fds', '1', '--bundle', b.dir, id], withFd3(fd));
  t.equal(r.exitCode, 0, describe(r));
  t.equal(r.stdout, 'fd3-payload\n', 'the container read fd 3');

  // Without the flag fd 3 must not leak into the container: this is what makes the check above mean something.
  const id2 = h.id('nofds');
  const b2 = await h.bundle(id2, { args: ['sh', '-c', 'cat <&3'] });
  const r2 = await h.rt(['run', '--bundle', b2.dir, id2], withFd3(fd));
  t.not(r2.exitCode, 0, `without --preserve-fds fd 3 is closed: ${describe(r2)}`);
  t.equal(r2.stdout, '');
});

t.test(title('--console-socket: the container gets a pty, the master arrives on the socket'), async (t) => {
  const h = await runtimeHarness(t, 'tty');
  if (!h) return;
  const recvtty = await withPrerequisite(t, () => buildCFixture('recvtty'));
  if (!recvtty) return;
  const sock = join(h.tmp, 'console.sock');
  const rx = h.track(execa(recvtty, [sock], { reject: false, stdin: 'ignore', timeout: 30_000 }));
  await waitForOutput(rx.stderr, /ready\n/);

  const id = h.id('tty');
  const b = await h.bundle(id, { terminal: true, args: ['sh', '-c', 'tty; echo pty-ok; exit 3'] });
  const c = await h.create(id, b.dir, ['--console-socket', sock]);
  t.equal(c.exitCode, 0, describe(c));
  t.equal(c.stdout, '', 'nothing on create stdout: output goes to the pty');
  const s = await h.rt(['start', id]);
  t.equal(s.exitCode, 0, describe(s));

  const out = await settle(rx);
  t.equal(out.exitCode, 0, `receiver exit: ${out.stderr}`);
  const lines = out.stdout.split(/\r?\n/);
  t.match(lines[0], /^\/dev\/pts\/\d+$/, '`tty` names a pty');
  t.equal(lines[1], 'pty-ok');
  t.match(out.stdout, /\r\n/, 'the line discipline turned \\n into \\r\\n, so it really went through a tty');
  const st = await h.waitForStatus(id, 'stopped');
  t.equal(st.status, 'stopped');

  // A terminal without a console socket cannot work when the runtime detaches; runc refuses.
  const id2 = h.id('nosock');
  const b2 = await h.bundle(id2, { terminal: true, args: ['true'] });
  const c2 = await h.create(id2, b2.dir);
  t.not(c2.exitCode, 0, 'create with terminal:true and no --console-socket fails');
  t.match(c2.stderr, /console.socket|console socket/i);
});

interface LogLine {
  level: string;
  msg: string;
  time: string;
}

function parseJsonLog(t: Test, text: string): LogLine[] {
  const lines = text.split('\n').filter(Boolean);
  return lines.map((l, i) => {
    let o: Partial<LogLine> = {};
    try {
      o = JSON.parse(l) as Partial<LogLine>;
    } catch {
      t.fail(`log line ${i + 1} is not JSON: ${JSON.stringify(l)}`);
    }
    t.ok(typeof o.level === 'string' && typeof o.msg === 'string' && typeof o.time === 'string' && !Number.isNaN(Date.parse(o.time)), `log line ${i + 1} has level, msg, time: ${l}`);
    return o as LogLine;
  });
}

t.test(title('--log FILE --log-format json'), async (t) => {
  const h = await runtimeHarness(t, 'log');
  if (!h) return;

  // 1. A create that fails before runc does anything (no such bundle).
  const missingBundle = join(h.tmp, 'no-such-bundle');
  const log1 = join(h.tmp, 'a.log');
  const id1 = h.id('logfail');
  const r1 = await h.rt(['--log', log1, '--log-format', 'json', 'create', '--bundle', missingBundle, id1]);
  const ref1 = await run(h.runc, ['--root', h.root, '--log', join(h.tmp, 'a-ref.log'), '--log-format', 'json', 'create', '--bundle', missingBundle, id1]);
  t.equal(r1.exitCode, 1, describe(r1));
  t.equal(r1.stdout, '', 'nothing on stdout');
  t.equal(r1.stderr, ref1.stderr, 'stderr is what runc prints');
  const lines1 = parseJsonLog(t, await readFile(log1, 'utf8'));
  t.ok(lines1.some((l) => l.level === 'error' && l.msg.includes('no-such-bundle')), 'an error line names the problem');

  // 2. A create that fails inside runc (the workload binary does not exist).
  const id2 = h.id('lognoexe');
  const b2 = await h.bundle(id2, { args: ['/no/such/binary'] });
  const log2 = join(h.tmp, 'b.log');
  const r2log = await h.rtToFiles(['--log', log2, '--log-format', 'json', 'create', '--bundle', b2.dir, id2], join(h.tmp, 'b.out'), join(h.tmp, 'b.err'));
  t.equal(r2log.exitCode, 1, describe(r2log));
  t.equal(r2log.stdout, '');
  t.match(r2log.stderr, /^runc create failed: .*\/no\/such\/binary.*no such file or directory\n$/, 'stderr: the error, once');
  const lines2 = parseJsonLog(t, await readFile(log2, 'utf8'));
  t.ok(lines2.some((l) => l.level === 'error' && l.msg.includes('/no/such/binary')), 'an error line names the binary');
  const left = await h.rt(['list', '-q']);
  t.equal(left.stdout, '', 'a failed create leaves no container');

  // 3. A clean lifecycle writes nothing to the log: nothing at info level, nothing of ours.
  const id3 = h.id('logok');
  const b3 = await h.bundle(id3, { args: ['sleep', '300'] });
  const log3 = join(h.tmp, 'c.log');
  const g = ['--log', log3, '--log-format', 'json'];
  t.equal((await h.rtToFiles([...g, 'create', '--bundle', b3.dir, id3], join(h.tmp, 'c.out'), join(h.tmp, 'c.err'))).exitCode, 0, 'create');
  t.equal((await h.rt([...g, 'start', id3])).exitCode, 0, 'start');
  t.equal((await h.rt([...g, 'state', id3])).exitCode, 0, 'state');
  t.equal((await h.rt([...g, 'kill', id3, 'KILL'])).exitCode, 0, 'kill');
  await h.waitForStatus(id3, 'stopped');
  t.equal((await h.rt([...g, 'delete', id3])).exitCode, 0, 'delete');
  t.equal(await readFile(log3, 'utf8').catch(() => ''), '', 'log is empty');

  // 4. --debug: many lines, every one of them JSON.
  const id4 = h.id('logdbg');
  const b4 = await h.bundle(id4, { args: ['true'] });
  const log4 = join(h.tmp, 'd.log');
  const r4 = await h.rtToFiles(['--debug', '--log', log4, '--log-format', 'json', 'create', '--bundle', b4.dir, id4], join(h.tmp, 'd.out'), join(h.tmp, 'd.err'));
  t.equal(r4.exitCode, 0, describe(r4));
  const lines4 = parseJsonLog(t, await readFile(log4, 'utf8'));
  t.ok(lines4.some((l) => l.level === 'debug'), 'debug lines present');
  await waitFor('debug container created', async () => (await h.state(id4))?.status === 'created');
});

leftoverTest(t, RT.label);
