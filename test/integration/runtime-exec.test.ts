// Operations on a running container: exec, pause/resume, update, ps, events, kill's signal forms.
import { readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { describe, leftoverTest, runtimeHarness, runtimeUnderTest, sleep, title, waitFor, type RuntimeHarness } from '../helpers/runtime.js';

const RT = runtimeUnderTest();
t.setTimeout(120_000);

/** create + start; returns the init pid. */
async function started(t: Test, h: RuntimeHarness, id: string, args: string[]): Promise<number> {
  const b = await h.bundle(id, { args });
  const c = await h.create(id, b.dir);
  t.equal(c.exitCode, 0, `create: ${describe(c)}`);
  const s = await h.rt(['start', id]);
  t.equal(s.exitCode, 0, `start: ${describe(s)}`);
  const st = await h.state(id);
  if (st?.status !== 'running') throw new Error(`${id} is not running: ${JSON.stringify(st)}`);
  await h.waitForExec(st.pid, args);
  return st.pid;
}

/** Host path of the container's cgroup dir in a v1 hierarchy, from its init's /proc/PID/cgroup. */
function hostCgroupDir(pid: number, controller: string): string {
  const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8')
    .split('\n')
    .find((l) => (l.split(':')[1] ?? '').split(',').includes(controller));
  if (!line) throw new Error(`pid ${pid} has no ${controller} cgroup`);
  return join('/sys/fs/cgroup', controller, line.split(':').slice(2).join(':'));
}

t.test(title('exec: output, exit status, env, cwd, stdin, --process, --detach'), async (t) => {
  const h = await runtimeHarness(t, 'exec');
  if (!h) return;
  const id = h.id('exec');
  await started(t, h, id, ['sleep', '300']);

  const r = await h.rt(['exec', id, 'sh', '-c', 'echo in-exec; echo err >&2; exit 3']);
  t.equal(r.exitCode, 3, `exit status of the exec'd process: ${describe(r)}`);
  t.equal(r.stdout, 'in-exec\n');
  t.equal(r.stderr, 'err\n');

  const ns = await h.rt(['exec', id, 'cat', '/proc/1/cmdline']);
  t.equal(ns.stdout, 'sleep\x00300\x00', "exec runs in the container's pid namespace");

  const env = await h.rt(['exec', '--env', 'FOO=bar', '--cwd', '/tmp', id, 'sh', '-c', 'echo "$FOO $(pwd)"']);
  t.equal(env.stdout, 'bar /tmp\n', `--env and --cwd: ${describe(env)}`);

  const cat = await h.rt(['exec', id, 'cat'], { input: 'through-stdin\n' });
  t.equal(cat.stdout, 'through-stdin\n', 'stdin reaches the exec process');

  const proc = join(h.tmp, 'process.json');
  writeFileSync(proc, JSON.stringify({ terminal: false, user: { uid: 0, gid: 0 }, args: ['sh', '-c', 'echo from-process-json'], env: ['PATH=/bin'], cwd: '/' }));
  const p = await h.rt(['exec', '--process', proc, id]);
  t.equal(p.exitCode, 0, describe(p));
  t.equal(p.stdout, 'from-process-json\n', '--process FILE');

  const d = await h.rtToFiles(['exec', '--detach', id, 'sh', '-c', 'echo detached > /tmp/marker'], join(h.tmp, 'd.out'), join(h.tmp, 'd.err'));
  t.equal(d.exitCode, 0, `exec --detach: ${describe(d)}`);
  const marker = await waitFor('detached exec to write its marker', async () => {
    const m = await h.rt(['exec', id, 'cat', '/tmp/marker']);
    return m.exitCode === 0 ? m.stdout : undefined;
  });
  t.equal(marker, 'detached\n');

  const missing = await h.rt(['exec', id, '/no/such/binary']);
  t.not(missing.exitCode, 0, 'exec of a missing binary fails');
  t.match(missing.stderr, /no such file or directory/);
});

t.test(title('pause and resume freeze and thaw the workload'), async (t) => {
  const h = await runtimeHarness(t, 'pause');
  if (!h) return;
  const id = h.id('pause');
  const pid = await started(t, h, id, ['sh', '-c', 'i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.02; done']);
  const countFile = join(h.tmp, id, 'rootfs/tmp/count');
  const count = async () => Number((await readFile(countFile, 'utf8').catch(() => '0')).trim() || 0);
  await waitFor('the counter to run', async () => (await count()) > 2);

  const p = await h.rt(['pause', id]);
  t.equal(p.exitCode, 0, describe(p));
  t.equal((await h.state(id))?.status, 'paused', 'state says paused');
  t.equal(readFileSync(join(hostCgroupDir(pid, 'freezer'), 'freezer.state'), 'utf8').trim(), 'FROZEN', 'freezer cgroup is frozen');
  const frozenAt = await count();
  await sleep(300);
  t.equal(await count(), frozenAt, 'the counter does not move while paused');

  const e = await h.rt(['exec', id, 'true']);
  t.not(e.exitCode, 0, 'exec into a paused container is refused');
  t.match(e.stderr, /paused/);

  const r = await h.rt(['resume', id]);
  t.equal(r.exitCode, 0, describe(r));
  t.equal((await h.state(id))?.status, 'running', 'state says running');
  await waitFor('the counter to move again', async () => (await count()) > frozenAt + 2);
  t.pass('the counter moves after resume');
});

t.test(title('update changes the cgroup limits'), async (t) => {
  const h = await runtimeHarness(t, 'upd');
  if (!h) return;
  const id = h.id('upd');
  const pid = await started(t, h, id, ['sleep', '300']);
  const pidsMaxInside = async () => (await h.rt(['exec', id, 'cat', '/sys/fs/cgroup/pids/pids.max'])).stdout.trim();
  const pidsMaxHost = () => readFileSync(join(hostCgroupDir(pid, 'pids'), 'pids.max'), 'utf8').trim();

  const u1 = await h.rt(['update', '--pids-limit', '50', id]);
  t.equal(u1.exitCode, 0, describe(u1));
  t.equal(u1.stdout, '');
  t.equal(pidsMaxHost(), '50', 'host cgroup pids.max');
  t.equal(await pidsMaxInside(), '50', 'pids.max seen inside the container');

  const res = join(h.tmp, 'resources.json');
  writeFileSync(res, JSON.stringify({ pids: { limit: 60 } }));
  const u2 = await h.rt(['update', '--resources', res, id]);
  t.equal(u2.exitCode, 0, describe(u2));
  t.equal(pidsMaxHost(), '60', 'update --resources FILE');

  const u3 = await h.rt(['update', '-r', '-', id], { input: JSON.stringify({ pids: { limit: 70 } }) });
  t.equal(u3.exitCode, 0, describe(u3));
  t.equal(pidsMaxHost(), '70', 'update -r - (resources on stdin)');

  const u4 = await h.rt(['update', '--memory', '64M', id]);
  t.equal(u4.exitCode, 0, describe(u4));
  t.equal(readFileSync(join(hostCgroupDir(pid, 'memory'), 'memory.limit_in_bytes'), 'utf8').trim(), String(64 * 1024 * 1024), 'memory limit');

  // The limit is enforced, not just written: 70 pids allowed, so 100 background sleeps cannot all start.
  const fork = await h.rt(['exec', id, 'sh', '-c', 'n=0; while [ $n -lt 100 ]; do sleep 30 </dev/null >/dev/null 2>&1 & n=$((n+1)); done; echo done']);
  t.match(fork.stderr + fork.stdout, /Resource temporarily unavailable|can't fork|fork/i, `forks beyond pids.max fail: ${describe(fork)}`);
});

t.test(title('ps and events --stats'), async (t) => {
  const h = await runtimeHarness(t, 'ps');
  if (!h) return;
  const id = h.id('ps');
  const pid = await started(t, h, id, ['sleep', '300']);

  const js = await h.rt(['ps', '--format', 'json', id]);
  t.equal(js.exitCode, 0, describe(js));
  t.same(JSON.parse(js.stdout), [pid], 'ps --format json lists the init pid');

  const table = await h.rt(['ps', id]);
  t.equal(table.exitCode, 0, describe(table));
  t.match(table.stdout.split('\n')[0], /\bPID\b/, 'ps table header');
  t.match(table.stdout, new RegExp(`^\\S+\\s+${pid}\\s.*sleep 300$`, 'm'), 'ps table row for init');

  const ev = await h.rt(['events', '--stats', id]);
  t.equal(ev.exitCode, 0, describe(ev));
  const lines = ev.stdout.split('\n').filter(Boolean);
  t.equal(lines.length, 1, 'exactly one JSON object');
  const o = JSON.parse(lines[0] ?? '{}') as { type?: string; id?: string; data?: { pids?: { current?: number }; memory?: { usage?: { usage?: number } } } };
  t.equal(o.type, 'stats');
  t.equal(o.id, id);
  t.equal(o.data?.pids?.current, 1, 'one process in the container');
  t.ok((o.data?.memory?.usage?.usage ?? 0) > 0, 'memory usage reported');
});

t.test(title('kill: signal by name, SIG-name and number; --all'), async (t) => {
  const h = await runtimeHarness(t, 'kill');
  if (!h) return;
  const id = h.id('kill');
  const b = await h.bundle(id, { args: ['sh', '-c', 'trap "echo usr1" USR1; echo ready; while :; do sleep 300 & wait; done'] });
  const c = await h.create(id, b.dir);
  t.equal(c.exitCode, 0, describe(c));
  t.equal((await h.rt(['start', id])).exitCode, 0, 'start');
  await waitFor('ready', async () => (await readFile(c.outFile, 'utf8')).includes('ready'));
  let expect = 'ready\n';
  for (const sig of ['USR1', 'SIGUSR1', '10']) {
    const k = await h.rt(['kill', id, sig]);
    t.equal(k.exitCode, 0, `kill ${sig}: ${describe(k)}`);
    expect += 'usr1\n';
    await waitFor(`the trap to run for ${sig}`, async () => (await readFile(c.outFile, 'utf8')) === expect, 5000).catch(() => undefined);
    t.equal(await readFile(c.outFile, 'utf8'), expect, `${sig} delivered`);
  }
  const bad = await h.rt(['kill', id, 'NOSUCHSIG']);
  t.not(bad.exitCode, 0, 'an unknown signal is an error');
  const all = await h.rt(['kill', '--all', id, 'KILL']);
  t.equal(all.exitCode, 0, describe(all));
  await h.waitForStatus(id, 'stopped');
  t.pass('kill --all KILL stopped it');
});

leftoverTest(t, RT.label);
