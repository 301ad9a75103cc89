// The EROFS writer against the oracle: for each layer case, the image built from the tars must pass
// fsck.erofs and, mounted, hold exactly what `tar -x` of the layers (whiteouts applied) gives.
// The 100k-file and >4 GiB cases are in writer-large.test.ts.
import t from 'tap';
import { join } from 'node:path';
import { buildErofsFromTars } from '../../src/image/build.js';
import { layerCases } from '../../fixtures/layers.js';
import { checkImageAgainstOracle, requireErofs, timed } from '../helpers/image-tree.js';
import { checkPrerequisites, testTempDir } from '../helpers/runtime.js';

/** Root (owners, devices, mount), GNU tar and the attr and erofs-utils tools. */
const COMMANDS = ['tar', 'getfattr', 'setfattr', 'fsck.erofs', 'mount', 'umount', 'mknod', 'mkfifo', 'touch'];

for (const c of layerCases) {
  t.test(`${c.name}: ${c.title}`, async (t) => {
    if (!checkPrerequisites(t, { root: true, commands: COMMANDS })) return;
    if (!(await requireErofs(t))) return;
    const work = await testTempDir(t, `erofs-${c.name}`);
    const tars = await timed(t, `fixture ${c.name}`, () => c.build(join(work, 'layers')));
    await checkImageAgainstOracle(t, tars, work, buildErofsFromTars);
  });
}
