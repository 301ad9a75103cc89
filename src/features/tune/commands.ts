/**
 * `hyperbox-runc tune status [ID] | history ID | report ID | daemon`. Only the
 * grammar is here (every Node start builds the command tree); the work is in
 * tune-commands.ts.
 */
import type { Command } from 'commander';
import type { Native } from '../../native/index.js';

const work = () => import('./tune-commands.js');

export function tuneCommands(deps: { native: () => Native }): (program: Command, setCode: (code: number) => void) => void {
  return (program, setCode) => {
    const cmd = program.command('tune').description('PSI-driven memory tuning: status | history | report | daemon');

    cmd
      .command('status')
      .description('tuned containers: memory stall (avg10/avg60), memory held, the limit and bytes given back')
      .argument('[id]', 'one container, in detail')
      .option('--json', 'print JSON')
      .option('--root <dir>', "runc's --root the container was created with, when ids repeat across roots")
      .action(async (id: string | undefined, opts: { json?: boolean; root?: string }) => (await work()).statusCommand(id, opts));

    cmd
      .command('history')
      .description("a tuned container's samples over time (kept a while after it is deleted)")
      .argument('<id>')
      .option('--json', 'one JSON object per line')
      .option('--root <dir>', "runc's --root the container was created with")
      .action(async (id: string, opts: { json?: boolean; root?: string }) => (await work()).historyCommand(id, opts));

    cmd
      .command('report')
      .description('an SVG plot of pressure and memory over time: hyperbox-runc tune report ID > report.svg')
      .argument('<id>')
      .option('-o, --output <file>', 'write to a file instead of stdout')
      .option('--root <dir>', "runc's --root the container was created with")
      .action(async (id: string, opts: { output?: string; root?: string }) => (await work()).reportCommand(id, opts));

    cmd
      .command('daemon')
      .description('run the host tuner in the foreground (it starts on demand; this is for a systemd unit)')
      .option('--interval <duration>', 'time between two control steps of a container', '1s')
      .option('--window <duration>', 'PSI trigger window (a multiple of 2s without CAP_SYS_RESOURCE)', '2s')
      .option('--persist', 'keep running when no container is registered')
      .option('--log <file>', 'write warnings to this file instead of stderr')
      .action(async (opts: { interval: string; window: string; persist?: boolean; log?: string }) => setCode(await (await work()).daemonCommand(deps.native(), opts)));
  };
}
