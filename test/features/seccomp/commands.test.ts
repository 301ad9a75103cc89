/** `hyperbox-runc seccomp ...` through the launcher, with the real addon (libseccomp) and a private store. */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const LAUNCHER = resolve('build/hyperbox-runc');
const top = mkdtempSync(join(tmpdir(), 'hbx-sccmd-'));
const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HYPERBOX_STORE: join(top, 'store') };

function hb(args: string[], input?: string) {
  const r = spawnSync(LAUNCHER, ['seccomp', ...args], { env, input, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const web = {
  defaultAction: 'SCMP_ACT_ERRNO',
  defaultErrnoRet: 1,
  architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
  syscalls: [
    { names: ['exit_group', 'read', 'write'], action: 'SCMP_ACT_ALLOW' },
    { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 },
  ],
};

t.test('import, list, show, export in three formats, diff, rm', async (t) => {
  const file = join(top, 'web.json');
  writeFileSync(file, JSON.stringify(web));
  t.same(hb(['import', 'web', file]), { code: 0, stdout: '', stderr: '' });
  const docker = { defaultAction: 'SCMP_ACT_ERRNO', archMap: [{ architecture: 'SCMP_ARCH_X86_64', subArchitectures: [] }], syscalls: [{ names: ['read', 'openat'], action: 'SCMP_ACT_ALLOW', args: [] }] };
  t.equal(hb(['import', 'db', '-'], JSON.stringify(docker)).code, 0, 'a Docker profile from stdin');

  const list = hb(['list']);
  t.equal(list.code, 0);
  t.match(list.stdout, /^NAME +SOURCE +SYSCALLS +RUNS +UPDATED\ndb +imported +2 +0 +\S+\nweb +imported +3 +0 +\S+\n$/);
  t.same(JSON.parse(hb(['list', '--json']).stdout).map((r: { name: string }) => r.name), ['db', 'web']);

  const show = hb(['show', 'web']);
  t.match(show.stdout, /allowed: +3 syscalls\nbpf: +\d+ instructions/);
  t.match(show.stdout, /\n  exit_group\n  read\n  write\n$/);

  t.same(JSON.parse(hb(['export', 'web']).stdout), web, 'oci export is the stored profile');
  const d = JSON.parse(hb(['export', 'web', '--format', 'docker']).stdout);
  t.same(d.archMap, [{ architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86', 'SCMP_ARCH_X32'] }]);
  t.match(hb(['export', 'web', '--format', 'k8s']).stdout, /^apiVersion: security-profiles-operator.x-k8s.io\/v1beta1\nkind: SeccompProfile\n/);
  const outFile = join(top, 'out.json');
  t.equal(hb(['export', 'web', '-o', outFile]).code, 0);
  t.same(JSON.parse(readFileSync(outFile, 'utf8')), web);

  const diff = hb(['diff', 'web', 'db']);
  t.equal(diff.code, 1, 'differ: exit 1');
  t.equal(diff.stdout, '--- web\n+++ db\n- exit_group\n+ openat\n- write\n');
  t.equal(hb(['diff', 'web', 'web']).code, 0);

  t.same(hb(['rm', 'db', 'web']), { code: 0, stdout: '', stderr: '' });
  t.notOk(existsSync(join(top, 'store', 'seccomp', 'web.json')));
  t.equal(hb(['list']).stdout, 'NAME  SOURCE  SYSCALLS  RUNS  UPDATED\n');
});

t.test('bad input: one sentence, non-zero exit, nothing stored', async (t) => {
  const bad = (args: string[], code: number, message: RegExp, input?: string) => {
    const r = hb(args, input);
    t.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
    t.match(r.stderr, message);
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line, no stack trace');
    t.equal(r.stdout, '');
  };
  bad(['import', 'x', '-'], 1, /- is not JSON .*import takes JSON profiles/, 'defaultAction: x');
  bad(['import', 'x', join(top, 'nope.json')], 1, /cannot read .*nope\.json: no such file or directory/);
  bad(['import', 'x', '-'], 1, /- as a seccomp filter cannot be loaded: .*SCMP_ACT_SOMETIMES/, JSON.stringify({ defaultAction: 'SCMP_ACT_SOMETIMES' }));
  bad(['import', 'x', '-'], 1, /conditional on capabilities/, JSON.stringify({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['mount'], action: 'SCMP_ACT_ALLOW', includes: { caps: ['CAP_SYS_ADMIN'] } }] }));
  bad(['import', '../x', '-'], 1, /bad seccomp profile name/, JSON.stringify(web));
  bad(['show', 'ghost'], 1, /no seccomp profile named ghost/);
  bad(['rm', 'ghost'], 1, /no seccomp profile named ghost/);
  bad(['export', 'ghost', '--format', 'yaml'], 2, /unknown export format yaml: expected oci, docker, k8s/);
  t.equal(hb(['import', 'x', '-'], JSON.stringify(web)).code, 0);
  bad(['import', 'x', '-'], 1, /a seccomp profile named x exists; pass --force/, JSON.stringify(web));
  t.equal(hb(['import', '--force', 'x', '-'], JSON.stringify(web)).code, 0);
  t.same(hb(['list', '--json']).stdout.match(/"name"/g)?.length, 1, 'only the good import is stored');
});
