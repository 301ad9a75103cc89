import t from 'tap';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../../src/store/atomic.js';

t.test('replaces the file with the given mode and leaves no temp file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hbx-atomic-'));
  const path = join(dir, 'config.json');
  writeFileSync(path, 'old');
  writeFileAtomic(path, 'new', { mode: 0o640 });
  t.equal(readFileSync(path, 'utf8'), 'new');
  t.equal(statSync(path).mode & 0o777, 0o640);
  t.same(readdirSync(dir), ['config.json']);
});

t.test('a failed rename leaves what was there and no temp file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hbx-atomic-'));
  // Renaming a file over a non-empty directory fails (EISDIR): the cleanup path must run.
  const path = join(dir, 'target');
  mkdirSync(path);
  writeFileSync(join(path, 'inside'), 'x');
  t.throws(() => writeFileAtomic(path, 'new', { mode: 0o644 }), /EISDIR|ENOTEMPTY|EEXIST/);
  t.same(readdirSync(dir), ['target']);
  t.equal(readFileSync(join(path, 'inside'), 'utf8'), 'x');
});
