/** hyperbox's own subcommands (hook, gc, doctor, and those the features add), through commander. */
import { Command, CommanderError } from 'commander';
import { HyperboxError, reasonOf } from '../errors.js';
import type { ParsedArgv } from './grammar.js';
import type { Logger } from './log.js';
import { writeStderr } from './log.js';
import type { MainDeps } from './main.js';

/** Builds the command tree; `run` collects the exit code of whichever action ran. */
function program(deps: MainDeps, log: Logger, setCode: (code: number) => void): Command {
  const root = new Command('hyperbox-runc')
    .exitOverride()
    .configureOutput({ writeErr: (s) => writeStderr(s), outputError: () => {} })
    .showSuggestionAfterError(true);

  root
    .command('hook')
    .description('run by runc at createRuntime, poststart and poststop (OCI state on stdin)')
    .argument('<stage>', 'createRuntime, poststart or poststop')
    .requiredOption('--state-dir <dir>', "the container's hyperbox state directory")
    .action(async (stage: string, opts: { stateDir: string }) => {
      const { runHook } = await import('./hook.js');
      setCode(await runHook(deps.native(), stage, opts.stateDir, deps.features, log));
    });

  root
    .command('gc')
    .description('release hyperbox state (config.json, mounts, BPF, tuner) of containers runc no longer knows')
    .option('--state-dir <dir>', 'only this container state directory')
    .option('--instance <nonce>', 'with --state-dir: only if it still belongs to this create')
    .action(async (opts: { stateDir?: string; instance?: string }) => {
      const { gc } = await import('./gc.js');
      setCode(await gc(deps.native(), deps.features, log, opts.stateDir ? { stateDir: opts.stateDir, instance: opts.instance } : undefined));
    });

  root
    .command('doctor')
    .description('report which kernel features the capabilities need are present, and what falls back')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const { doctor } = await import('./doctor.js');
      const { runcPath } = await import('./runtime.js');
      let runc: string | undefined;
      let why: string | undefined;
      try {
        runc = runcPath(deps.native());
      } catch (err) {
        why = reasonOf(err);
      }
      setCode(await doctor(deps.features, runc, why, Boolean(opts.json)));
    });

  for (const feature of deps.features) for (const add of feature.commands ?? []) add(root, setCode);
  return root;
}

/** Runs an own subcommand; commander's usage errors become one line and exit 2. */
export async function runOwnCommand(parsed: ParsedArgv, deps: MainDeps, log: Logger): Promise<number> {
  let code = 0;
  const root = program(deps, log, (c) => (code = c));
  try {
    await root.parseAsync(parsed.argv.slice(parsed.commandIndex), { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return 0; // --help, --version
      throw new HyperboxError('E_USAGE', err.message.replace(/^error: /, ''));
    }
    throw err;
  }
  return code;
}
