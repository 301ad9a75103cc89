/**
 * Parses argv with runc's grammar and dispatches. The only place that prints
 * an error and picks an exit code; everything below returns or throws a
 * HyperboxError.
 */
import { HyperboxError, reasonOf } from '../errors.js';
import type { AnyFeature } from '../features/types.js';
import type { Native } from '../native/index.js';
import { argvForRunc, parseRuncArgv, type FlagSpec } from './grammar.js';
import { Logger } from './log.js';

/** hyperbox's own subcommands (the launcher sends these to Node too). */
export const OWN_COMMANDS = ['hook', 'gc', 'doctor', 'seccomp', 'image', 'tune', 'trace'];

/** What main needs from outside, so tests can run it in-process with fakes. */
export interface MainDeps {
  features: readonly AnyFeature[];
  native: () => Native;
}

function extraFlags(features: readonly AnyFeature[]): Record<string, FlagSpec[]> {
  const out: Record<string, FlagSpec[]> = {};
  for (const flag of features.flatMap((f) => f.flags ?? [])) {
    for (const command of flag.commands) (out[command] ??= []).push({ names: flag.names, value: flag.value });
  }
  return out;
}

/** Runs one invocation; resolves to the exit code (create/run/pass-through never resolve: they exec runc). */
export async function main(argv: readonly string[], deps: MainDeps): Promise<number> {
  const parsed = parseRuncArgv(argv, extraFlags(deps.features));
  const log = new Logger(parsed.globals);
  try {
    const command = parsed.command;
    if (command === 'create' || command === 'run') {
      const { createOrRun } = await import('./create.js');
      return await createOrRun(parsed, deps.features, deps.native(), log);
    }
    if (command !== undefined && OWN_COMMANDS.includes(command)) {
      const { runOwnCommand } = await import('./commands.js');
      return await runOwnCommand(parsed, deps, log);
    }
    if (command === 'spec' && parsed.flags.some((f) => f.extra)) {
      const { specCommand } = await import('./spec.js');
      return await specCommand(parsed, deps.features, deps.native());
    }
    // Everything else is runc's.
    const { execRunc, runcPath } = await import('./runtime.js');
    const nat = deps.native();
    return execRunc(nat, runcPath(nat), argvForRunc(parsed));
  } catch (err) {
    log.error(`hyperbox-runc: ${reasonOf(err)}`);
    if (parsed.globals.debug && err instanceof Error && err.stack) log.debug(err.stack);
    return err instanceof HyperboxError && err.code === 'E_USAGE' ? 2 : 1;
  }
}
