// The EROFS writer against the oracle on big inputs (slow: minutes): 100 000 files with a 5000-entry
// directory, and a file larger than 4 GiB (a ~4 GiB tar, its extraction and the image: ~13 GiB of
// disk, all in a temp dir removed at teardown).
import t from 'tap';
import { statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildErofsFromTars } from '../../src/image/build.js';
import { HUGE_SIZE, hugeFileLayers, manyFilesLayers } from '../../fixtures/layers.js';
import { checkImageAgainstOracle, requireErofs, timed } from '../helpers/image-tree.js';
import { checkPrerequisites, skipOrFail, testTempDir } from '../helpers/runtime.js';

const COMMANDS = ['tar', 'getfattr', 'setfattr', 'fsck.erofs', 'mount', 'umount', 'touch'];

t.test('100k small files over 300 dirs and a 5000-entry directory, 2 layers', async (t) => {
  if (!checkPrerequisites(t, { root: true, commands: COMMANDS })) return;
  if (!(await requireErofs(t))) return;
  const work = await testTempDir(t, 'erofs-many');
  const tars = await timed(t, 'fixture many-files', () => manyFilesLayers(join(work, 'layers')));
  const oracle = await checkImageAgainstOracle(t, tars, work, buildErofsFromTars);
  t.ok(oracle.size > 99_000, `the fixture holds ~100k paths (${oracle.size})`);
  t.ok([...oracle.keys()].filter((k) => k.startsWith('/big/')).length >= 5000, 'big/ holds 5000+ entries');
});

t.test('a file of 4 GiB + 4097 bytes', async (t) => {
  if (!checkPrerequisites(t, { root: true, commands: COMMANDS })) return;
  if (!(await requireErofs(t))) return;
  // The tar, the extracted oracle and the image each hold the whole file.
  const need = 14 * 1024 ** 3;
  const fs = await statfs(tmpdir());
  if (fs.bavail * fs.bsize < need) {
    skipOrFail(t, `needs ${need / 1024 ** 3} GiB free in ${tmpdir()} (has ${((fs.bavail * fs.bsize) / 1024 ** 3).toFixed(1)})`);
    return;
  }
  const work = await testTempDir(t, 'erofs-huge');
  const tars = await timed(t, 'fixture huge-4g', () => hugeFileLayers(join(work, 'layers')));
  const oracle = await checkImageAgainstOracle(t, tars, work, buildErofsFromTars);
  t.equal(oracle.get('/big/huge.bin')?.size, String(HUGE_SIZE), 'the fixture file is larger than 4 GiB');
});
