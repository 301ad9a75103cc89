/**
 * runc 1.1's command-line grammar, as a table. runc uses urfave/cli v1 over
 * Go's flag package, so: one or two leading dashes mean the same ("-bundle x"
 * is "--bundle x"), a value flag takes "=value" or the next argument, a
 * boolean flag never takes the next argument (only "=true"/"=false"), "--"
 * ends the flags, and urfave moves flags written after positionals in front
 * of them, so flags may follow the container id.
 */

/** A flag as runc declares it: all its names, and whether it takes a value. */
export interface FlagSpec {
  names: readonly string[];
  value: boolean;
}

const v = (...names: string[]): FlagSpec => ({ names, value: true });
const b = (...names: string[]): FlagSpec => ({ names, value: false });
const help = b('help', 'h');

/** runc's global flags (before the subcommand). */
export const GLOBAL_FLAGS: readonly FlagSpec[] = [
  b('debug'),
  v('log'),
  v('log-format'),
  v('root'),
  v('criu'),
  b('systemd-cgroup'),
  v('rootless'),
  help,
  b('version', 'v'),
];

const CONSOLE = v('console-socket');
const PIDFILE = v('pid-file');
const PRESERVE = v('preserve-fds');
const CRIU_COMMON = [v('image-path'), v('work-path'), b('tcp-established'), b('ext-unix-sk'), b('shell-job'), b('file-locks'), v('manage-cgroups-mode'), v('empty-ns'), b('auto-dedup'), b('lazy-pages')];

/** Every runc 1.1 subcommand with its flags (from `runc <cmd> --help`). */
export const COMMAND_FLAGS: Readonly<Record<string, readonly FlagSpec[]>> = {
  checkpoint: [...CRIU_COMMON, v('parent-path'), b('leave-running'), v('status-fd'), v('page-server'), b('pre-dump'), help],
  create: [v('bundle', 'b'), CONSOLE, PIDFILE, b('no-pivot'), b('no-new-keyring'), PRESERVE, help],
  delete: [b('force', 'f'), help],
  events: [v('interval'), b('stats'), help],
  exec: [
    CONSOLE, v('cwd'), v('env', 'e'), b('tty', 't'), v('user', 'u'), v('additional-gids', 'g'), v('process', 'p'),
    b('detach', 'd'), PIDFILE, v('process-label'), v('apparmor'), b('no-new-privs'), v('cap', 'c'), PRESERVE,
    v('cgroup'), b('ignore-paused'), help,
  ],
  kill: [b('all', 'a'), help],
  list: [v('format', 'f'), b('quiet', 'q'), help],
  pause: [help],
  ps: [v('format', 'f'), help],
  restore: [
    ...CRIU_COMMON, CONSOLE, v('bundle', 'b'), b('detach', 'd'), PIDFILE, b('no-subreaper'), b('no-pivot'),
    v('lsm-profile'), v('lsm-mount-context'), help,
  ],
  resume: [help],
  run: [
    v('bundle', 'b'), CONSOLE, b('detach', 'd'), b('keep'), PIDFILE, b('no-subreaper'), b('no-pivot'),
    b('no-new-keyring'), PRESERVE, help,
  ],
  spec: [v('bundle', 'b'), b('rootless'), help],
  start: [help],
  state: [help],
  update: [
    v('resources', 'r'), v('blkio-weight'), v('cpu-period'), v('cpu-quota'), v('cpu-share'), v('cpu-rt-period'),
    v('cpu-rt-runtime'), v('cpuset-cpus'), v('cpuset-mems'), v('kernel-memory'), v('kernel-memory-tcp'), v('memory'),
    v('memory-reservation'), v('memory-swap'), v('pids-limit'), v('l3-cache-schema'), v('mem-bw-schema'), help,
  ],
  features: [help],
};

/** One flag occurrence: its canonical (first) name, its value, and where it stood in argv. */
export interface FlagUse {
  name: string;
  value: string | boolean;
  /** argv indices it occupied (one, or two for "--flag value"). */
  indices: number[];
  /** True when it is one of the extra (hyperbox) flags, not runc's. */
  extra: boolean;
}

/** The caller's global options, with runc's defaults applied. */
export interface GlobalOptions {
  debug: boolean;
  log: string | undefined;
  logFormat: 'text' | 'json';
  root: string;
  version: boolean;
  help: boolean;
}

/** The result of reading an argv the way runc would. */
export interface ParsedArgv {
  argv: readonly string[];
  globals: GlobalOptions;
  globalFlags: FlagUse[];
  command: string | undefined;
  commandIndex: number;
  flags: FlagUse[];
  positionals: string[];
  /** Flag-looking arguments runc does not know (runc would reject them). */
  unknown: { arg: string; index: number }[];
}

const TRUE_WORDS = new Set(['1', 't', 'T', 'TRUE', 'true', 'True']);
const FALSE_WORDS = new Set(['0', 'f', 'F', 'FALSE', 'false', 'False']);

/** Go's strconv.ParseBool, which is what "--flag=value" of a boolean goes through. */
export function parseGoBool(text: string): boolean | undefined {
  if (TRUE_WORDS.has(text)) return true;
  if (FALSE_WORDS.has(text)) return false;
  return undefined;
}

function lookup(table: readonly FlagSpec[], name: string): FlagSpec | undefined {
  return table.find((f) => f.names.includes(name));
}

interface FlagWalk {
  uses: FlagUse[];
  positionals: string[];
  unknown: { arg: string; index: number }[];
  end: number;
}

/**
 * Reads flags from argv[start]; stops at the first positional when
 * `stopAtPositional` (global flags), otherwise keeps reading flags after
 * positionals as urfave's reordering allows.
 */
function walkFlags(argv: readonly string[], start: number, table: readonly FlagSpec[], extra: readonly FlagSpec[], stopAtPositional: boolean): FlagWalk {
  const walk: FlagWalk = { uses: [], positionals: [], unknown: [], end: argv.length };
  for (let i = start; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      if (stopAtPositional) {
        walk.end = i + 1;
        return walk;
      }
      walk.positionals.push(...argv.slice(i + 1));
      return walk;
    }
    if (!arg.startsWith('-') || arg === '-') {
      if (stopAtPositional) {
        walk.end = i;
        return walk;
      }
      walk.positionals.push(arg);
      continue;
    }
    const body = arg.startsWith('--') ? arg.slice(2) : arg.slice(1);
    const eq = body.indexOf('=');
    const name = eq >= 0 ? body.slice(0, eq) : body;
    const inline = eq >= 0 ? body.slice(eq + 1) : undefined;
    const own = lookup(table, name);
    const spec = own ?? lookup(extra, name);
    if (!spec || body.startsWith('-')) {
      walk.unknown.push({ arg, index: i });
      continue;
    }
    const use: FlagUse = { name: spec.names[0]!, value: true, indices: [i], extra: !own };
    if (spec.value) {
      if (inline !== undefined) use.value = inline;
      else if (i + 1 < argv.length) {
        use.value = argv[++i]!;
        use.indices.push(i);
      } else {
        walk.unknown.push({ arg, index: i });
        continue;
      }
    } else if (inline !== undefined) {
      const parsed = parseGoBool(inline);
      if (parsed === undefined) {
        walk.unknown.push({ arg, index: i });
        continue;
      }
      use.value = parsed;
    }
    walk.uses.push(use);
  }
  return walk;
}

/** The last value given for a flag (Go's flag package lets later ones win). */
export function flagValue(uses: readonly FlagUse[], name: string): string | boolean | undefined {
  let found: string | boolean | undefined;
  for (const u of uses) if (u.name === name) found = u.value;
  return found;
}

/**
 * Parses argv (without the program name) as runc would. `extraFlags` are
 * flags hyperbox adds to a subcommand; they are recognised, marked `extra`,
 * and must be removed before the argv reaches runc.
 */
export function parseRuncArgv(argv: readonly string[], extraFlags: Readonly<Record<string, readonly FlagSpec[]>> = {}): ParsedArgv {
  const g = walkFlags(argv, 0, GLOBAL_FLAGS, [], true);
  const str = (name: string): string | undefined => {
    const val = flagValue(g.uses, name);
    return typeof val === 'string' ? val : undefined;
  };
  const bool = (name: string): boolean => flagValue(g.uses, name) === true;
  const globals: GlobalOptions = {
    debug: bool('debug'),
    log: str('log') || undefined,
    logFormat: str('log-format') === 'json' ? 'json' : 'text',
    root: str('root') || '/run/runc',
    version: bool('version'),
    help: bool('help'),
  };
  const commandIndex = g.end < argv.length ? g.end : -1;
  const command = commandIndex >= 0 ? argv[commandIndex] : undefined;
  const parsed: ParsedArgv = { argv, globals, globalFlags: g.uses, command, commandIndex, flags: [], positionals: [], unknown: g.unknown };
  if (command === undefined) return parsed;
  const table = COMMAND_FLAGS[command];
  if (!table) return parsed;
  const sub = walkFlags(argv, commandIndex + 1, table, extraFlags[command] ?? [], false);
  parsed.flags = sub.uses;
  parsed.positionals = sub.positionals;
  parsed.unknown.push(...sub.unknown);
  return parsed;
}

/** argv with the extra (hyperbox) flags taken out: what runc must receive. */
export function argvForRunc(parsed: ParsedArgv): string[] {
  const drop = new Set(parsed.flags.filter((f) => f.extra).flatMap((f) => f.indices));
  return parsed.argv.filter((_, i) => !drop.has(i));
}
