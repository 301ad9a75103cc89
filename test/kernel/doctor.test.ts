import t from 'tap';
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { cgroupMode } from '../../src/kernel/probes.js';

t.test('cgroup mode agrees with the filesystem types stat reports', async (t) => {
  const top = spawnSync('stat', ['-f', '-c', '%T', '/sys/fs/cgroup'], { encoding: 'utf8' }).stdout.trim();
  const unified = spawnSync('stat', ['-f', '-c', '%T', '/sys/fs/cgroup/unified'], { encoding: 'utf8' }).stdout.trim();
  const expected = top === 'cgroup2fs' ? 'unified' : top === 'tmpfs' && unified === 'cgroup2fs' ? 'hybrid' : 'legacy';
  t.equal(cgroupMode(), expected);
});

t.test('hyperbox-runc doctor reports every check, in a table and as JSON', async (t) => {
  const env = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' };
  const json = spawnSync(resolve('build/hyperbox-runc'), ['doctor', '--json'], { encoding: 'utf8', env });
  t.equal(json.status, 0, json.stderr);
  const lines = JSON.parse(json.stdout) as { check: string; ok: boolean; detail: string }[];
  const checks = lines.map((l) => l.check);
  for (const c of ['runc', 'crun', 'kernel', 'cgroups', 'PSI', 'BPF syscall', 'BTF', 'tracefs', 'bpffs', 'EROFS', 'EROFS file-backed mounts', 'loop devices', 'overlayfs', 'seccomp']) {
    t.ok(checks.includes(c), `checks ${c}`);
  }
  t.match(lines.find((l) => l.check === 'runc')!.detail, /runc version \d/);
  t.equal(lines.find((l) => l.check === 'cgroups')!.detail.split(' ')[0], cgroupMode());
  const table = spawnSync(resolve('build/hyperbox-runc'), ['doctor'], { encoding: 'utf8', env });
  t.equal(table.status, 0);
  t.equal(table.stdout.trim().split('\n').length, lines.length, 'one row per check');
  t.equal(table.stderr, '');
});

t.test('a missing runc makes doctor say so and exit 1', async (t) => {
  const r = spawnSync(resolve('build/hyperbox-runc'), ['doctor'], { encoding: 'utf8', env: { HYPERBOX_RUNC: '/nonexistent' } });
  // The launcher itself refuses an explicit runc that does not exist: one line, exit 1.
  t.equal(r.status, 1);
  t.match(r.stderr, /HYPERBOX_RUNC=\/nonexistent is not an executable runc/);
});
