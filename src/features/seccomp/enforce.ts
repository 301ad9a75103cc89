/**
 * Enforce and audit: the stored profile, within the caller's own, compiled
 * with libseccomp before runc sees it. Loaded only by a container that enforces.
 */
import { seccompSchema } from '../../../config-schema/oci.js';
import { HyperboxError, reasonOf } from '../../errors.js';
import { seccompActions } from '../../kernel/probes.js';
import type { Native } from '../../native/index.js';
import { isJsonObject, stringifyJson, type JsonObject } from '../../oci/json.js';
import { readProfile } from '../../store/profiles.js';
import type { ModifyContext } from '../types.js';
import type { SeccompOptions } from './index.js';
import { auditVariant, intersectProfiles } from './intersect.js';

/** Compiles a profile with libseccomp, as runc will; a profile that cannot load fails here, before runc runs. */
export function compileProfile(nat: Native, profile: JsonObject, what: string): number {
  try {
    return nat.seccompCompile(stringifyJson(profile)).instructions;
  } catch (err) {
    throw new HyperboxError('E_SECCOMP', `${what} cannot be loaded: ${reasonOf(err)}`, { cause: err });
  }
}

/** The profile to inject: the stored one (audit: logging instead of refusing), within the caller's own. */
export function enforcedProfile(nat: Native, options: SeccompOptions, callers: JsonObject | undefined): JsonObject {
  const stored = readProfile(options.profile).profile;
  const ours = options.mode === 'audit' ? auditVariant(stored) : stored;
  const result = callers ? intersectProfiles(ours, callers) : ours;
  compileProfile(nat, result, `seccomp profile ${options.profile}${callers ? " combined with the caller's profile" : ''}`);
  return result;
}

/** modify for enforce and audit: replaces linux.seccomp with the profile to enforce. */
export function injectProfile(nat: Native, spec: JsonObject, options: SeccompOptions, ctx: ModifyContext): void {
  if (options.mode === 'audit' && !seccompActions().includes('log')) {
    throw new HyperboxError('E_SECCOMP', 'io.hyperbox.seccomp=audit needs the kernel seccomp action "log", which it lacks: use enforce');
  }
  const linux = isJsonObject(spec.linux) ? spec.linux : (spec.linux = {});
  let callers: JsonObject | undefined;
  if (linux.seccomp !== undefined) {
    const checked = seccompSchema.safeParse(linux.seccomp);
    if (!checked.success || !isJsonObject(linux.seccomp)) {
      throw new HyperboxError('E_CONFIG', `config.json linux.seccomp is not a valid seccomp profile (${checked.success ? 'not an object' : checked.error.issues[0]!.message})`);
    }
    callers = linux.seccomp;
  }
  linux.seccomp = enforcedProfile(nat, options, callers);
  ctx.log.debug(`hyperbox-runc: ${ctx.id}: seccomp profile ${options.profile} (${options.mode})${callers ? " within the caller's profile" : ''}`);
}
