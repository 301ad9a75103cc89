/** Finding runc and becoming it. */
import { HyperboxError, reasonOf } from '../errors.js';
import type { Native } from '../native/index.js';

/** runc's path: the launcher's answer when it started us, else the same lookup through the addon. */
export function runcPath(nat: Native): string {
  const fromLauncher = process.env.HYPERBOX_LAUNCHER_RUNC;
  if (fromLauncher) return fromLauncher;
  try {
    return nat.findRunc(process.env.HYPERBOX_LAUNCHER_EXE);
  } catch (err) {
    throw new HyperboxError('E_RUNC', reasonOf(err), { cause: err });
  }
}

/** Replaces this process with `runc argv...` (argv without a program name). */
export function execRunc(nat: Native, runc: string, argv: readonly string[]): never {
  try {
    return nat.execRunc(runc, [runc, ...argv]);
  } catch (err) {
    throw new HyperboxError('E_RUNC', `cannot execute ${runc}: ${reasonOf(err)}`, { cause: err });
  }
}
