// runc's command line grammar as callers actually use it. runc parses with Go's flag package
// (urfave/cli v1): "-flag" and "--flag", "=value" or a separate value, flags before or after the
// container id. A wrapper with its own parser must accept every one of these forms.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { describe, leftoverTest, run, runtimeHarness, runtimeUnderTest, title } from '../helpers/runtime.js';

const RT = runtimeUnderTest();
t.setTimeout(120_000);

t.test(title('create: every spelling of --bundle, and flags after the container id'), async (t) => {
  const h = await runtimeHarness(t, 'flags');
  if (!h) return;
  const forms: Array<{ name: string; args: (id: string, b: string) => string[]; cwd?: (b: string) => string; bundle?: (b: string) => string }> = [
    { name: '--bundle DIR', args: (id, b) => ['create', '--bundle', b, id] },
    { name: '--bundle=DIR', args: (id, b) => ['create', `--bundle=${b}`, id] },
    { name: '-b DIR', args: (id, b) => ['create', '-b', b, id] },
    { name: '-b=DIR', args: (id, b) => ['create', `-b=${b}`, id] },
    { name: '-bundle DIR', args: (id, b) => ['create', '-bundle', b, id] },
    { name: 'ID --bundle DIR', args: (id, b) => ['create', id, '--bundle', b] },
    { name: 'ID -b DIR --pid-file=FILE', args: (id, b) => ['create', id, '-b', b, `--pid-file=${join(b, 'init.pid')}`] },
    { name: 'no --bundle: the current directory', args: (id) => ['create', id], cwd: (b) => b },
    { name: 'relative --bundle resolved against the cwd', args: (id) => ['create', '--bundle', 'shared', id], cwd: () => h.tmp },
  ];
  // One bundle for all forms (containers are deleted before the next one): copying a rootfs per
  // form would dominate the run time.
  const b = await h.bundle('shared', { args: ['sleep', '300'] });
  for (const f of forms) {
    const id = h.id('form');
    const cwd = f.cwd?.(b.dir);
    const r = await h.rtToFiles(f.args(id, b.dir), join(h.tmp, `${id}.out`), join(h.tmp, `${id}.err`), cwd ? { cwd } : {});
    t.equal(r.exitCode, 0, `${f.name}: ${describe(r)}`);
    const st = await h.state(id);
    t.equal(st?.status, 'created', `${f.name}: created`);
    t.equal(st?.bundle, b.dir, `${f.name}: state.bundle is the absolute bundle path`);
    if (f.name.includes('--pid-file')) t.equal(Number(readFileSync(join(b.dir, 'init.pid'), 'utf8')), st?.pid, `${f.name}: pid file written`);
    const d = await h.rt(['delete', '-f', id]);
    t.equal(d.exitCode, 0, `${f.name}: delete -f`);
  }
});

t.test(title('run: -d with -b, --detach with --bundle='), async (t) => {
  const h = await runtimeHarness(t, 'runflags');
  if (!h) return;
  for (const args of [(id: string, b: string) => ['run', '-d', '-b', b, id], (id: string, b: string) => ['run', id, `--bundle=${b}`, '--detach']]) {
    const id = h.id('runf');
    const b = await h.bundle(id, { args: ['sleep', '300'] });
    const argv = args(id, b.dir);
    const r = await h.rtToFiles(argv, join(h.tmp, `${id}.out`), join(h.tmp, `${id}.err`));
    t.equal(r.exitCode, 0, describe(r));
    t.equal((await h.state(id))?.status, 'running', `${argv.join(' ')}: running`);
    t.equal((await h.rt(['delete', '--force', id])).exitCode, 0, 'delete --force');
  }
});

t.test(title('global flags: --root=X, -root X, --log=F --log-format=json, --debug'), async (t) => {
  const h = await runtimeHarness(t, 'global');
  if (!h) return;
  const id = h.id('global');
  const b = await h.bundle(id, { args: ['sleep', '300'] });
  t.equal((await h.create(id, b.dir)).exitCode, 0, 'create');

  for (const g of [['--root', h.root], [`--root=${h.root}`], ['-root', h.root], [`-root=${h.root}`], ['--debug', '--root', h.root]]) {
    const r = await h.exec([...g, 'list', '-q']);
    t.equal(r.exitCode, 0, `${g.join(' ')}: ${describe(r)}`);
    t.equal(r.stdout, `${id}\n`, `${g.join(' ')}: list sees the container in that root`);
  }

  const log = join(h.tmp, 'global.log');
  const missing = h.id('missing');
  const r = await h.exec([`--root=${h.root}`, `--log=${log}`, '--log-format=json', 'state', missing]);
  t.not(r.exitCode, 0, 'state of a missing container fails');
  const lines = readFileSync(log, 'utf8').split('\n').filter(Boolean);
  t.ok(lines.length > 0 && lines.every((l) => /^\{.*"level":"error".*\}$/.test(l)), `--log=F --log-format=json wrote JSON error lines: ${JSON.stringify(lines)}`);

  // An unknown global flag is rejected the way runc rejects it.
  const bad = await h.exec(['--no-such-flag', '--root', h.root, 'list']);
  const badRef = await run(h.runc, ['--no-such-flag', '--root', h.root, 'list']);
  t.not(bad.exitCode, 0, 'unknown global flag fails');
  t.equal(bad.exitCode, badRef.exitCode, 'same exit status as runc');
  t.equal(bad.stdout, badRef.stdout, 'same stdout as runc');
});

t.test(title('exec: everything after the command belongs to the command'), async (t) => {
  const h = await runtimeHarness(t, 'execargs');
  if (!h) return;
  const id = h.id('execargs');
  const b = await h.bundle(id, { args: ['sleep', '300'] });
  t.equal((await h.create(id, b.dir)).exitCode, 0, 'create');
  t.equal((await h.rt(['start', id])).exitCode, 0, 'start');
  const r = await h.rt(['exec', id, 'echo', '--env', 'FOO', '-b', 'x', '--bundle=y']);
  t.equal(r.exitCode, 0, describe(r));
  t.equal(r.stdout, '--env FOO -b x --bundle=y\n', 'runtime-looking flags after the command are passed through');
  // (urfave/cli refuses "-e" and "--env" in one command line, so each spelling gets its own exec.)
  const r2 = await h.rt(['exec', '-e', 'A=1', '-e', 'B=2', id, 'sh', '-c', 'echo $A$B']);
  t.equal(r2.stdout, '12\n', `-e X -e Y: ${describe(r2)}`);
  const r3 = await h.rt(['exec', '--env=A=3', '--env', 'B=4', id, 'sh', '-c', 'echo $A$B']);
  t.equal(r3.stdout, '34\n', `--env=X --env Y: ${describe(r3)}`);
});

leftoverTest(t, RT.label);
