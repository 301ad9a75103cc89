/**
 * Seccomp actions as runc applies them, ordered by how much they let through,
 * so two profiles can be combined syscall by syscall without ever allowing
 * more than either one.
 */
import { HyperboxError } from '../../errors.js';
import { RawNumber, type JsonObject, type JsonValue } from '../../oci/json.js';

export const EPERM = 1;
export const ENOSYS = 38;

/** An action with its errno where it has one (ERRNO and TRACE default to EPERM in runc). */
export interface Action {
  /** The spelling to write back, e.g. SCMP_ACT_ERRNO. */
  name: string;
  errno?: number;
}

/** How permissive each action is; higher lets less through. */
const STRICTNESS: Record<string, number> = {
  SCMP_ACT_ALLOW: 0,
  SCMP_ACT_LOG: 1,
  SCMP_ACT_NOTIFY: 2,
  SCMP_ACT_TRACE: 3,
  SCMP_ACT_ERRNO: 4,
  SCMP_ACT_TRAP: 5,
  SCMP_ACT_KILL: 6,
  SCMP_ACT_KILL_THREAD: 6,
  SCMP_ACT_KILL_PROCESS: 7,
};

/** A JSON number from the lossless parser, as a JS number. */
export function numberOf(v: JsonValue | undefined): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (v instanceof RawNumber) return Number(v.literal);
  return undefined;
}

/** Parses an action as it appears in a profile; unknown actions are refused. */
export function actionOf(name: string, errnoRet?: JsonValue): Action {
  if (!(name in STRICTNESS)) {
    throw new HyperboxError('E_SECCOMP', `unknown seccomp action ${JSON.stringify(name)}: expected one of ${Object.keys(STRICTNESS).join(', ')}`);
  }
  if (name === 'SCMP_ACT_ERRNO' || name === 'SCMP_ACT_TRACE') return { name, errno: numberOf(errnoRet) ?? EPERM };
  return { name };
}

const canonical = (a: Action): string => (a.name === 'SCMP_ACT_KILL' ? 'SCMP_ACT_KILL_THREAD' : a.name);

/** Same action and errno (SCMP_ACT_KILL and KILL_THREAD are one action). */
export function sameAction(a: Action, b: Action): boolean {
  return canonical(a) === canonical(b) && a.errno === b.errno;
}

/** Refuses the call (with an errno, a signal or a kill); NOTIFY and LOG may let it through. */
export function isDeny(a: Action): boolean {
  return STRICTNESS[a.name]! >= STRICTNESS.SCMP_ACT_TRACE!;
}

/**
 * The action for a call both profiles see: the stricter one. At equal
 * strictness the caller's wins, so its errno choices (ENOSYS rather than
 * EPERM, say) are kept.
 */
export function stricter(ours: Action, callers: Action): Action {
  return STRICTNESS[ours.name]! > STRICTNESS[callers.name]! ? ours : callers;
}

/** Writes an action into a rule (action + errnoRet) or the profile head (defaultAction + defaultErrnoRet). */
export function writeAction(target: JsonObject, a: Action, head: boolean): void {
  target[head ? 'defaultAction' : 'action'] = a.name;
  if (a.errno !== undefined) target[head ? 'defaultErrnoRet' : 'errnoRet'] = a.errno;
}
