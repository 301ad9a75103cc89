/**
 * `hyperbox-runc seccomp list | show | diff | export | import | rm`: the
 * profile store from the command line. Only the grammar is here (every Node
 * start builds the command tree); the work is in profile-commands.ts.
 */
import type { Command } from 'commander';
import { HyperboxError } from '../../errors.js';
import type { Native } from '../../native/index.js';

export const EXPORT_FORMATS = ['oci', 'docker', 'k8s'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

const work = () => import('./profile-commands.js');

/** Adds the `seccomp` command tree. */
export function seccompCommands(deps: { native: () => Native }): (program: Command, setCode: (code: number) => void) => void {
  return (program, setCode) => {
    const cmd = program.command('seccomp').description('learned and imported seccomp profiles (in $HYPERBOX_STORE/seccomp, default /var/lib/hyperbox/seccomp)');

    cmd
      .command('list')
      .description('list stored profiles')
      .option('--json', 'print JSON')
      .action(async (opts: { json?: boolean }) => (await work()).listCommand(Boolean(opts.json)));

    cmd
      .command('show')
      .description("a profile's allowed syscalls, what was learned and from which runs")
      .argument('<name>')
      .option('--json', 'print the profile and its metadata as JSON')
      .action(async (name: string, opts: { json?: boolean }) => (await work()).showCommand(deps.native(), name, Boolean(opts.json)));

    cmd
      .command('diff')
      .description('syscalls allowed by one profile and not the other (exit 1 when they differ)')
      .argument('<a>')
      .argument('<b>')
      .action(async (a: string, b: string) => setCode((await work()).diffCommand(a, b)));

    cmd
      .command('export')
      .description('write a profile as OCI linux.seccomp, Docker/Podman seccomp.json, or a Kubernetes SeccompProfile')
      .argument('<name>')
      .option('--format <format>', EXPORT_FORMATS.join(', '), 'oci')
      .option('-o, --output <file>', 'write to a file instead of stdout')
      .action(async (name: string, opts: { format: string; output?: string }) => {
        if (!(EXPORT_FORMATS as readonly string[]).includes(opts.format)) {
          throw new HyperboxError('E_USAGE', `unknown export format ${opts.format}: expected ${EXPORT_FORMATS.join(', ')}`);
        }
        (await work()).exportCommand(name, opts.format as ExportFormat, opts.output);
      });

    cmd
      .command('import')
      .description('store a profile (OCI, a config.json, Docker/Podman seccomp.json, or SeccompProfile JSON; - for stdin)')
      .argument('<name>')
      .argument('<file>')
      .option('--force', 'replace a stored profile of the same name')
      .action(async (name: string, file: string, opts: { force?: boolean }) => (await work()).importCommand(deps.native(), name, file, Boolean(opts.force)));

    cmd
      .command('rm')
      .description('remove profiles')
      .argument('<names...>')
      .action(async (names: string[]) => (await work()).rmCommand(deps.native(), names));
  };
}
