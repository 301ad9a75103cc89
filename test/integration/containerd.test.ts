// containerd's runc v2 shim driving the runtime under test (`ctr run --runc-binary`): the shim
// calls it as `--root R --log B/log.json --log-format json <cmd>`, execs with
// `exec --process FILE --detach --pid-file P`, and reads the JSON log to report a failed create:
// a different argv shape from Podman's.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { containerdHarness } from '../helpers/containerd.js';
import { describe, leftoverTest, runtimeUnderTest, title, waitFor } from '../helpers/runtime.js';

const RT = runtimeUnderTest();
t.setTimeout(180_000);

t.test(title('ctr run --rm: output and exit code'), async (t) => {
  const c = await containerdHarness(t);
  if (!c) return;
  const id = c.id('rm');
  const r = await c.runContainer(id, ['sh', '-c', 'echo hi; exit 5'], { rm: true });
  t.equal(r.exitCode, 5, `exit code of the container: ${describe(r)}`);
  t.equal(r.stdout, 'hi\n');
  const left = await c.ctr(['containers', 'ls', '-q']);
  t.equal(left.stdout, '', '--rm removed the container');
});

t.test(title('ctr run -d, tasks exec/pause/resume/kill, annotations reach config.json'), async (t) => {
  const c = await containerdHarness(t);
  if (!c) return;
  const id = c.id('det');
  const log = join(c.dir, `${id}.log`);
  const r = await c.runContainer(id, ['sh', '-c', 'trap "echo stopping; exit 0" TERM; echo up; sleep 300 & wait'], {
    detach: true,
    annotations: { 'org.hyperbox.test': 'yes' },
    extra: ['--log-uri', `file://${log}`],
  });
  t.equal(r.exitCode, 0, describe(r));

  const status = async () => {
    const ls = await c.ctr(['tasks', 'ls']);
    return ls.stdout.split('\n').find((l) => l.startsWith(`${id} `))?.trim().split(/\s+/)[2];
  };
  t.equal(await status(), 'RUNNING');
  // The runc shim options are a protobuf (BinaryName, Root); the path is in there verbatim.
  const info = JSON.parse((await c.ctr(['containers', 'info', id])).stdout) as { Runtime?: { Name?: string; Options?: { value?: string } } };
  t.equal(info.Runtime?.Name, 'io.containerd.runc.v2');
  t.ok(Buffer.from(info.Runtime?.Options?.value ?? '', 'base64').toString('latin1').includes(c.runtime), 'the shim was told to use the runtime under test');
  await waitFor('"up" in the task log', async () => (await readFile(log, 'utf8').catch(() => '')).includes('up\n'));

  // The annotation must be in the bundle the runtime was given, not just in containerd's records.
  const bundleConfig = join(c.dir, 'state', 'io.containerd.runtime.v2.task', c.namespace, id, 'config.json');
  const spec = JSON.parse(await readFile(bundleConfig, 'utf8')) as { annotations?: Record<string, string> };
  t.equal(spec.annotations?.['org.hyperbox.test'], 'yes', '--annotation is in the bundle config.json');
  t.ok(existsSync(join(c.runcRoot, c.namespace, id)), 'runtime state under --runc-root');

  const e = await c.tasksExec(id, 'e1', ['sh', '-c', 'echo in-exec; exit 4']);
  t.equal(e.exitCode, 4, describe(e));
  t.equal(e.stdout, 'in-exec\n');

  const pause = await c.ctr(['tasks', 'pause', id]);
  t.equal(pause.exitCode, 0, `pause: ${describe(pause)}`);
  t.equal(await status(), 'PAUSED');
  const resume = await c.ctr(['tasks', 'resume', id]);
  t.equal(resume.exitCode, 0, `resume: ${describe(resume)}`);
  t.equal(await status(), 'RUNNING');

  const k = await c.ctr(['tasks', 'kill', id]);
  t.equal(k.exitCode, 0, `kill (SIGTERM): ${describe(k)}`);
  await waitFor('task to stop', async () => (await status()) === 'STOPPED');
  t.equal(await readFile(log, 'utf8'), 'up\nstopping\n', 'the workload saw SIGTERM');
  const del = await c.ctr(['tasks', 'delete', id]);
  t.equal(del.exitCode, 0, `tasks delete exits with the task's status (0 from the trap): ${describe(del)}`);
  t.equal((await c.ctr(['containers', 'rm', id])).exitCode, 0, 'containers rm');
  t.notOk(existsSync(join(c.runcRoot, c.namespace, id)), 'runtime state removed');
});

t.test(title('a failing create: the shim relays the runtime\'s JSON log error'), async (t) => {
  const c = await containerdHarness(t);
  if (!c) return;
  const id = c.id('fail');
  const r = await c.runContainer(id, ['/no/such/binary'], { rm: true });
  t.not(r.exitCode, 0, 'ctr run fails');
  // The shim reads the error out of the runtime's --log (JSON); a malformed log loses this message.
  t.match(r.stderr, /OCI runtime create failed: .*\/no\/such\/binary.*no such file or directory/, describe(r));
  t.equal((await c.ctr(['tasks', 'ls', '-q'])).stdout, '', 'no task left');
});

leftoverTest(t, RT.label);
