/** `hyperbox-runc image ls | build | rm | prune`: the EROFS image cache. */
import type { Command } from 'commander';
import type { Native } from '../../native/index.js';
import { reasonOf } from '../../errors.js';
import { writeStderr } from '../../cli/log.js';
import { formatBytes, formatTable, writeStdout } from '../../cli/output.js';

export function imageCommands(deps: { native: () => Native }): (program: Command, setCode: (code: number) => void) => void {
  return (program, setCode) => {
    const cmd = program.command('image').description('the EROFS image cache (see: image ls | build | rm | prune)');

    cmd
      .command('ls')
      .description('cached images: ID, names, size, files, where from')
      .option('--json', 'print JSON')
      .action(async (opts: { json?: boolean }) => {
        const { listImages, mountedImages } = await import('../../store/images.js');
        const images = listImages();
        const mounted = mountedImages(deps.native());
        if (opts.json) return writeStdout(JSON.stringify(images.map((m) => ({ ...m, mounted: mounted.has(m.id) })), null, 2) + '\n');
        const rows = images.map((m) => [m.id.slice(7, 19), m.names.join(',') || '<none>', formatBytes(m.bytes), String(m.inodes), m.createdAt.slice(0, 19).replace('T', ' '), mounted.has(m.id) ? 'yes' : '', `${m.source.kind} ${m.source.location}`]);
        writeStdout(formatTable([['ID', 'NAMES', 'SIZE', 'FILES', 'CREATED', 'MOUNTED', 'SOURCE'], ...rows]));
      });

    cmd
      .command('build')
      .description('build (or find) the image for an OCI/Docker archive, OCI layout, rootfs tar or directory (a .dockerignore in it is honoured)')
      .argument('<source>', 'PATH[:TAG]')
      .option('--name <name...>', 'names to give the image (io.hyperbox.rootfs.image=NAME uses them)')
      .option('--json', 'print the image record as JSON')
      .action(async (source: string, opts: { name?: string[]; json?: boolean }) => {
        const { absoluteSource } = await import('./index.js');
        const { ensureImage } = await import('../../store/images.js');
        const started = Date.now();
        const { meta, built } = await ensureImage(deps.native(), absoluteSource(source), opts.name ?? []);
        if (opts.json) return writeStdout(JSON.stringify({ ...meta, built }, null, 2) + '\n');
        const what = built ? `built in ${Date.now() - started} ms` : 'already in the cache';
        writeStdout(`${meta.id} ${meta.names.join(',') || '<no name>'} (${formatBytes(meta.bytes)}, ${meta.inodes} files, ${what})\n`);
        for (const w of meta.warnings ?? []) writeStderr(`hyperbox-runc: warning: ${w}\n`);
      });

    cmd
      .command('rm')
      .description('remove a name; the image goes with its last name, or when given by ID (never while mounted)')
      .argument('<ref...>', 'image names or IDs')
      .action(async (refs: string[]) => {
        const { removeImage } = await import('../../store/images.js');
        for (const ref of refs) {
          try {
            const r = removeImage(deps.native(), ref);
            writeStdout(r.removed === 'image' ? `removed ${r.meta.id}\n` : `untagged ${ref}\n`);
          } catch (err) {
            writeStderr(`hyperbox-runc: ${reasonOf(err)}\n`);
            setCode(1);
          }
        }
      });

    cmd
      .command('prune')
      .description('remove images without a name (with --all: every image not mounted) and builds a crash left behind')
      .option('--all', 'remove every image that no container has mounted')
      .action(async (opts: { all?: boolean }) => {
        const { pruneImages } = await import('../../store/images.js');
        const r = pruneImages(deps.native(), Boolean(opts.all));
        for (const m of r.images) writeStdout(`removed ${m.id} ${m.names.join(',')}\n`);
        writeStdout(`${r.images.length} image(s), ${formatBytes(r.bytes)} freed${r.partial ? `, ${r.partial} partial build(s) removed` : ''}\n`);
      });
  };
}
