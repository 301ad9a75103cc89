import t from 'tap';
import { argvForRunc, flagValue, parseGoBool, parseRuncArgv, type FlagSpec } from '../../src/cli/grammar.js';

// Each row: argv, then what runc would read from it.
const cases: { argv: string[]; command?: string; bundle?: string; id?: string; root?: string; log?: string; json?: boolean; debug?: boolean; unknown?: string[]; flags?: Record<string, string | boolean> }[] = [
  { argv: ['create', '--bundle', 'x', 'c1'], command: 'create', bundle: 'x', id: 'c1' },
  { argv: ['create', '--bundle=x', 'c1'], command: 'create', bundle: 'x', id: 'c1' },
  { argv: ['create', '-b', 'x', 'c1'], command: 'create', bundle: 'x', id: 'c1' },
  { argv: ['create', '-b=x', 'c1'], command: 'create', bundle: 'x', id: 'c1' },
  { argv: ['create', '-bundle', 'x', 'c1'], command: 'create', bundle: 'x', id: 'c1' },
  { argv: ['create', '-bundle=x', 'c1'], command: 'create', bundle: 'x', id: 'c1' },
  { argv: ['create', 'c1', '--bundle', 'x'], command: 'create', bundle: 'x', id: 'c1' },
  { argv: ['create', 'c1', '-b', 'x', '--pid-file', '/p'], command: 'create', bundle: 'x', id: 'c1', flags: { 'pid-file': '/p' } },
  { argv: ['create', 'c1'], command: 'create', id: 'c1' },
  { argv: ['create', '-b', 'a', '-b', 'b', 'c1'], command: 'create', bundle: 'b', id: 'c1' },
  { argv: ['create', '--bundle', '-weird', 'c1'], command: 'create', bundle: '-weird', id: 'c1' },
  { argv: ['create', '--no-pivot', 'c1'], command: 'create', id: 'c1', flags: { 'no-pivot': true } },
  { argv: ['create', '--no-pivot=false', 'c1'], command: 'create', id: 'c1', flags: { 'no-pivot': false } },
  { argv: ['create', '--no-pivot=maybe', 'c1'], command: 'create', id: 'c1', unknown: ['--no-pivot=maybe'] },
  { argv: ['create', '--preserve-fds', '2', 'c1'], command: 'create', id: 'c1', flags: { 'preserve-fds': '2' } },
  { argv: ['create', '--', '-c1'], command: 'create', id: '-c1' },
  { argv: ['create', '--frobnicate', 'c1'], command: 'create', id: 'c1', unknown: ['--frobnicate'] },
  { argv: ['create', '---bundle', 'x', 'c1'], command: 'create', unknown: ['---bundle'] },
  { argv: ['run', '-d', 'c1'], command: 'run', id: 'c1', flags: { detach: true } },
  { argv: ['run', 'c1', '--detach', '--keep'], command: 'run', id: 'c1', flags: { detach: true, keep: true } },
  { argv: ['run', '-no-subreaper', 'c1'], command: 'run', id: 'c1', flags: { 'no-subreaper': true } },
  { argv: ['restore', '--image-path', '/i', 'c1', '-no-subreaper', '-detach'], command: 'restore', id: 'c1', flags: { 'image-path': '/i', 'no-subreaper': true, detach: true } },
  { argv: ['--root', '/r', 'state', 'c1'], command: 'state', root: '/r', id: 'c1' },
  { argv: ['--root=/r', 'state', 'c1'], command: 'state', root: '/r', id: 'c1' },
  { argv: ['-root', '/r', 'state', 'c1'], command: 'state', root: '/r', id: 'c1' },
  { argv: ['state', 'c1'], command: 'state', root: '/run/runc', id: 'c1' },
  { argv: ['--log', '/l', '--log-format', 'json', 'delete', '-f', 'c1'], command: 'delete', log: '/l', json: true, id: 'c1', flags: { force: true } },
  { argv: ['--log=/l', '--log-format=json', '--debug', 'kill', 'c1', 'KILL'], command: 'kill', log: '/l', json: true, debug: true, id: 'c1' },
  { argv: ['-debug', '--systemd-cgroup', '--rootless', 'false', 'ps', '--format', 'json', 'c1'], command: 'ps', debug: true, id: 'c1', flags: { format: 'json' } },
  { argv: ['--criu', '/usr/sbin/criu', 'checkpoint', '--image-path', '/i', '--leave-running', 'c1'], command: 'checkpoint', id: 'c1', flags: { 'leave-running': true } },
  { argv: ['exec', '-t', '-e', 'A=1', '--env=B=2', '-u', '0:0', 'c1', 'sh', '-c', 'x'], command: 'exec', id: 'c1', flags: { tty: true, env: 'B=2', user: '0:0' } },
  { argv: ['update', '--memory', '1000', '-r', '-', 'c1'], command: 'update', id: 'c1', flags: { memory: '1000', resources: '-' } },
  { argv: ['events', '--stats', '--interval=1s', 'c1'], command: 'events', id: 'c1', flags: { stats: true, interval: '1s' } },
  { argv: ['list', '-q', '-f', 'json'], command: 'list', flags: { quiet: true, format: 'json' } },
  { argv: ['spec', '--rootless', '-b', '/bundle'], command: 'spec', bundle: '/bundle', flags: { rootless: true } },
  { argv: ['--', 'state', 'c1'], command: 'state', id: 'c1' },
  { argv: ['--version'], command: undefined },
  { argv: [], command: undefined },
];

for (const c of cases) {
  t.test(c.argv.join(' ') || '(empty)', async (t) => {
    const p = parseRuncArgv(c.argv);
    t.equal(p.command, c.command, 'command');
    if (c.id !== undefined) t.equal(p.positionals[0], c.id, 'container id');
    if (c.bundle !== undefined) t.equal(flagValue(p.flags, 'bundle'), c.bundle, 'bundle');
    else if (c.command === 'create') t.equal(flagValue(p.flags, 'bundle'), undefined, 'no bundle flag: runc uses cwd');
    if (c.root !== undefined) t.equal(p.globals.root, c.root, 'root');
    if (c.log !== undefined) t.equal(p.globals.log, c.log, 'log');
    if (c.json !== undefined) t.equal(p.globals.logFormat, c.json ? 'json' : 'text', 'log format');
    if (c.debug !== undefined) t.equal(p.globals.debug, c.debug, 'debug');
    t.same(p.unknown.map((u) => u.arg), c.unknown ?? [], 'unknown flags');
    for (const [name, value] of Object.entries(c.flags ?? {})) t.equal(flagValue(p.flags, name), value, `--${name}`);
    t.same(argvForRunc(p), c.argv, 'runc gets the argv unchanged');
  });
}

t.test('extra (hyperbox) flags are recognised and removed before runc', async (t) => {
  const extra: Record<string, FlagSpec[]> = { run: [{ names: ['seccomp-learn'], value: true }, { names: ['fast'], value: false }] };
  const p = parseRuncArgv(['--root', '/r', 'run', '--seccomp-learn', 'web', '-b', 'x', 'c1', '--fast'], extra);
  t.equal(flagValue(p.flags, 'seccomp-learn'), 'web');
  t.equal(flagValue(p.flags, 'fast'), true);
  t.same(p.unknown, []);
  t.same(argvForRunc(p), ['--root', '/r', 'run', '-b', 'x', 'c1']);
  const other = parseRuncArgv(['create', '--seccomp-learn', 'web', 'c1'], extra);
  t.same(other.unknown.map((u) => u.arg), ['--seccomp-learn'], 'extra flags belong to their own subcommand only');
});

t.test('Go boolean words', async (t) => {
  for (const w of ['1', 't', 'T', 'true', 'TRUE', 'True']) t.equal(parseGoBool(w), true, w);
  for (const w of ['0', 'f', 'F', 'false', 'FALSE', 'False']) t.equal(parseGoBool(w), false, w);
  for (const w of ['yes', 'no', '', 'tRuE']) t.equal(parseGoBool(w), undefined, w);
});

t.test('a value flag at the very end is an unknown use, not a crash', async (t) => {
  const p = parseRuncArgv(['create', 'c1', '--bundle']);
  t.same(p.unknown.map((u) => u.arg), ['--bundle']);
  t.equal(p.positionals[0], 'c1');
});
