// Podman (through conmon) driving the runtime under test: how most users will meet hyperbox-runc.
// Podman calls the runtime with its own argv shapes (--root absent, --pid-file, --console-socket,
// kill/delete with an almost empty environment), so this catches what the direct tests cannot.
import { existsSync } from 'node:fs';
import t from 'tap';
import { podmanHarness } from '../helpers/podman.js';
import { describe, leftoverTest, runtimeUnderTest, title } from '../helpers/runtime.js';

const RT = runtimeUnderTest();
t.setTimeout(180_000);

t.test(title('podman run --rm: output and exit code'), async (t) => {
  const pm = await podmanHarness(t);
  if (!pm) return;
  const r = await pm.run(['sh', '-c', 'echo hello; echo oops >&2; exit 3'], { rm: true });
  t.equal(r.exitCode, 3, `exit code of the container: ${describe(r)}`);
  t.equal(r.stdout, 'hello\n');
  t.match(r.stderr, /^oops\n/, 'container stderr on podman stderr');
  const ps = await pm.podman(['ps', '-aq']);
  t.equal(ps.stdout, '', '--rm removed the container');
});

t.test(title('podman run of a missing binary: exit 127 and the runtime\'s error'), async (t) => {
  const pm = await podmanHarness(t);
  if (!pm) return;
  const r = await pm.run(['/no/such/binary'], { rm: true });
  // Podman maps the runtime's "no such file" create error (read from its JSON log) to 127.
  t.equal(r.exitCode, 127, describe(r));
  t.match(r.stderr, /\/no\/such\/binary.*no such file or directory/);
  t.equal((await pm.podman(['ps', '-aq'])).stdout, '', 'no container left');
});

t.test(title('podman run -d, exec, pause, logs, stop, rm'), async (t) => {
  const pm = await podmanHarness(t);
  if (!pm) return;
  const name = pm.name('det');
  const r = await pm.run(['sh', '-c', 'trap "echo stopping; exit 0" TERM; echo up; sleep 300 & wait'], {
    detach: true,
    name,
    annotations: { 'org.hyperbox.test': 'yes' },
  });
  t.equal(r.exitCode, 0, describe(r));
  const cid = r.stdout.trim();
  t.match(cid, /^[0-9a-f]{64}$/, 'prints the container id');

  const status = async () => (await pm.podman(['inspect', '--format', '{{.State.Status}}', name])).stdout.trim();
  t.equal(await status(), 'running');
  const ociRuntime = await pm.podman(['inspect', '--format', '{{.OCIRuntime}}', name]);
  t.equal(ociRuntime.stdout.trim(), pm.runtime, 'Podman ran it with the runtime under test');
  const ann = await pm.podman(['inspect', '--format', '{{index .Config.Annotations "org.hyperbox.test"}}', name]);
  t.equal(ann.stdout.trim(), 'yes', '--annotation reached the container config');
  t.ok(existsSync(`/run/runc/${cid}`), 'the runtime keeps its state in its default root, as Podman does not pass --root');

  const e = await pm.podman(['exec', name, 'sh', '-c', 'echo in-exec; exit 4']);
  t.equal(e.exitCode, 4, describe(e));
  t.equal(e.stdout, 'in-exec\n');

  const p = await pm.podman(['pause', name]);
  t.equal(p.exitCode, 0, describe(p));
  t.equal(await status(), 'paused');
  const u = await pm.podman(['unpause', name]);
  t.equal(u.exitCode, 0, describe(u));
  t.equal(await status(), 'running');

  const started = Date.now();
  const s = await pm.podman(['stop', '--time', '10', name]);
  t.equal(s.exitCode, 0, describe(s));
  t.ok(Date.now() - started < 8000, 'stopped by SIGTERM (the trap), not by the SIGKILL after the timeout');
  t.equal(await status(), 'exited');
  const code = await pm.podman(['inspect', '--format', '{{.State.ExitCode}}', name]);
  t.equal(code.stdout.trim(), '0', 'exit code from the trap');
  const logs = await pm.podman(['logs', name]);
  t.equal(logs.stdout, 'up\nstopping\n', 'podman logs has the output');

  const rm = await pm.podman(['rm', name]);
  t.equal(rm.exitCode, 0, describe(rm));
  t.equal((await pm.podman(['ps', '-aq'])).stdout, '', 'no containers left');
  t.notOk(existsSync(`/run/runc/${cid}`), 'runtime state removed');
});

t.test(title('podman run -t: a pty through conmon\'s console socket'), async (t) => {
  const pm = await podmanHarness(t);
  if (!pm) return;
  const r = await pm.run(['sh', '-c', 'tty; exit 5'], { rm: true, tty: true });
  t.equal(r.exitCode, 5, describe(r));
  t.match(r.stdout, /^\/dev\/pts\/\d+\r\n$/, 'the container has a pty (\\r\\n from the line discipline)');
});

leftoverTest(t, RT.label);
