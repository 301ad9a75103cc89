/**
 * `hyperbox-runc trace ID | metrics | summary | ls | daemon`. Only the grammar
 * is here (every Node start builds the command tree); the work is in
 * trace-commands.ts.
 */
import type { Command } from 'commander';
import type { Native } from '../../native/index.js';

const work = () => import('./trace-commands.js');

export function traceCommands(deps: { native: () => Native }): (program: Command, setCode: (code: number) => void) => void {
  return (program, setCode) => {
    const cmd = program
      .command('trace')
      .description("a traced container's syscalls, latencies, network and execs, live (see also: trace metrics | summary | ls)")
      .argument('[id]', 'container id')
      .option('--once', 'print one reading and exit')
      .option('--json', 'print readings as JSON (one object per line)')
      .option('--interval <duration>', 'time between readings, e.g. 1s or 500ms', '1s')
      .option('--root <dir>', "runc's --root the container was created with, when ids repeat across roots")
      .action(async (id: string | undefined, opts: { once?: boolean; json?: boolean; interval: string; root?: string }) =>
        setCode(await (await work()).viewCommand(deps.native(), id, opts)),
      );

    cmd
      .command('metrics')
      .description('Prometheus text exposition of every traced container that runs')
      .option('-o, --output <file>', 'write to a file (atomically) instead of stdout')
      .action(async (opts: { output?: string }) => (await work()).metricsCommand(deps.native(), opts.output));

    cmd
      .command('summary')
      .description('the JSON summary written when a traced container was deleted')
      .argument('<id>')
      .action(async (id: string) => (await work()).summaryCommand(id));

    cmd
      .command('ls')
      .description('traced containers that run, and the OTLP exporter')
      .option('--json', 'print JSON')
      .action(async (opts: { json?: boolean }) => (await work()).lsCommand(Boolean(opts.json)));

    cmd
      .command('daemon')
      .description('the OTLP exporter (started on demand by traced containers; exits when nothing is left to send)')
      .action(async () => {
        const { runExporter } = await import('./exporter.js');
        setCode(await runExporter(deps.native()));
      });
  };
}
