import t from 'tap';
import { mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkProfileName, listProfiles, readProfile, removeProfile, seccompStoreDir, writeProfile } from '../../src/store/profiles.js';

process.env.HYPERBOX_STORE = mkdtempSync(join(tmpdir(), 'hbx-store-'));
const meta = { version: 1 as const, name: 'web', source: 'learned' as const, syscalls: { x86_64: { read: 1 } }, unresolved: {}, runs: [], created: 'a', updated: 'b' };

t.test('write, read, list, remove; root-only files', async (t) => {
  writeProfile('web', { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW' }] }, meta);
  t.same(listProfiles(), ['web']);
  const p = readProfile('web');
  t.equal(p.profile.defaultAction, 'SCMP_ACT_ERRNO');
  t.same(p.meta?.syscalls, meta.syscalls);
  t.equal(statSync(join(seccompStoreDir(), 'web.json')).mode & 0o777, 0o600);
  t.equal(statSync(seccompStoreDir()).mode & 0o777, 0o700);
  t.ok(removeProfile('web'));
  t.notOk(removeProfile('web'));
  t.same(readdirSync(seccompStoreDir()).filter((f) => !f.startsWith('.')), []);
});

t.test('missing and corrupt profiles are clear errors', async (t) => {
  t.throws(() => readProfile('nope'), /no seccomp profile named nope in .*: learn it first \(--seccomp-learn nope\)/);
  writeFileSync(join(seccompStoreDir(), 'bad.json'), '{"defaultAction": ');
  t.throws(() => readProfile('bad'), /seccomp profile .*bad\.json is corrupt \(.*\): re-learn it/);
  writeFileSync(join(seccompStoreDir(), 'bad.json'), '{"syscalls": []}');
  t.throws(() => readProfile('bad'), /is corrupt \(defaultAction: Required\)/);
  writeFileSync(join(seccompStoreDir(), 'bad.json'), '{"defaultAction": "SCMP_ACT_ERRNO"}');
  writeFileSync(join(seccompStoreDir(), 'bad.meta.json'), '{"version": 2}');
  t.throws(() => readProfile('bad'), /metadata .*bad\.meta\.json is corrupt/);
});

t.test('names are names, never paths', async (t) => {
  for (const bad of ['', '..', '../x', 'a/b', '/abs', '.x', 'x.meta', 'a'.repeat(129), 'sp ace']) t.throws(() => checkProfileName(bad), /bad seccomp profile name/, bad);
  for (const good of ['web', 'Web-1.2_x', 'a'.repeat(128)]) t.equal(checkProfileName(good), good);
});
