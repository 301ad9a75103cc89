/** Names that annotations and commands use for things in the store: names, never paths. */
import { HyperboxError } from '../errors.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** Whether a string is a valid store name (used to list the store, too). */
export function isStoreName(name: string): boolean {
  return NAME.test(name) && !name.includes('..');
}

/** Profile names are names, never paths: a slash, `..` or a leading dot is refused. */
export function checkProfileName(name: string): string {
  if (!isStoreName(name) || name.endsWith('.meta')) {
    throw new HyperboxError(
      'E_PROFILE_NAME',
      `bad seccomp profile name ${JSON.stringify(name)}: use letters, digits, '.', '_' and '-' (no '/', no '..', at most 128 characters)`,
    );
  }
  return name;
}
