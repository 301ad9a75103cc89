/**
 * The seccomp profile store: <store>/seccomp/NAME.json is the profile exactly
 * as config.json's linux.seccomp takes it, NAME.meta.json what was learned
 * and how. Root-only, written atomically, changed under one flock.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { profileMetaSchema, type ProfileMeta } from '../../config-schema/seccomp-profile.js';
import { seccompSchema } from '../../config-schema/oci.js';
import { HyperboxError, reasonOf } from '../errors.js';
import type { Native } from '../native/index.js';
import { isJsonObject, parseJson, stringifyJson, type JsonObject } from '../oci/json.js';
import { writeFileAtomic } from './atomic.js';
import { withLock } from './lock.js';
import { checkProfileName, isStoreName } from './names.js';

export { checkProfileName };

/** $HYPERBOX_STORE or /var/lib/hyperbox. */
export function storeBase(): string {
  return process.env.HYPERBOX_STORE || '/var/lib/hyperbox';
}

/** Where seccomp profiles live. */
export function seccompStoreDir(): string {
  return join(storeBase(), 'seccomp');
}

function paths(name: string): { profile: string; meta: string } {
  const dir = seccompStoreDir();
  return { profile: join(dir, `${checkProfileName(name)}.json`), meta: join(dir, `${name}.meta.json`) };
}

/** A stored profile: the OCI object, and what is known about how it was made. */
export interface StoredProfile {
  name: string;
  profile: JsonObject;
  meta: ProfileMeta | undefined;
}

/** Whether a profile of this name is stored. */
export function profileExists(name: string): boolean {
  return existsSync(paths(name).profile);
}

/** Reads a profile; a missing, unreadable or corrupt one is a clear error naming the file. */
export function readProfile(name: string): StoredProfile {
  const p = paths(name);
  let text: string;
  try {
    text = readFileSync(p.profile, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new HyperboxError('E_PROFILE_MISSING', `no seccomp profile named ${name} in ${seccompStoreDir()}: learn it first (--seccomp-learn ${name}) or import one`);
    }
    throw new HyperboxError('E_PROFILE', `cannot read seccomp profile ${p.profile}: ${reasonOf(err)}`, { cause: err });
  }
  let profile: JsonObject;
  try {
    const parsed = parseJson(text);
    if (!isJsonObject(parsed)) throw new Error('it is not a JSON object');
    const checked = seccompSchema.safeParse(parsed);
    if (!checked.success) throw new Error(`${checked.error.issues[0]!.path.join('.') || 'profile'}: ${checked.error.issues[0]!.message}`);
    profile = parsed;
  } catch (err) {
    throw new HyperboxError('E_PROFILE_CORRUPT', `seccomp profile ${p.profile} is corrupt (${reasonOf(err)}): re-learn it, import it again or remove it`, { cause: err });
  }
  return { name, profile, meta: readMeta(p.meta) };
}

function readMeta(path: string): ProfileMeta | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined; // a profile written by hand has no provenance; that is fine
  }
  try {
    return profileMetaSchema.parse(JSON.parse(text));
  } catch (err) {
    throw new HyperboxError('E_PROFILE_CORRUPT', `seccomp profile metadata ${path} is corrupt (${reasonOf(err)}): re-learn the profile or remove it`, { cause: err });
  }
}

/** Writes a profile and its metadata (root-only, each file atomic; the profile last, so a reader never sees it ahead of what made it). */
export function writeProfile(name: string, profile: JsonObject, meta: ProfileMeta): void {
  const p = paths(name);
  mkdirSync(seccompStoreDir(), { recursive: true, mode: 0o700 });
  writeFileAtomic(p.meta, JSON.stringify(meta, null, 2) + '\n', { mode: 0o600 });
  writeFileAtomic(p.profile, stringifyJson(profile, { indent: '  ', trailingNewline: true }), { mode: 0o600 });
}

/** Removes a profile; false when there was none. */
export function removeProfile(name: string): boolean {
  const p = paths(name);
  if (!existsSync(p.profile)) return false;
  unlinkSync(p.profile);
  try {
    unlinkSync(p.meta);
  } catch {
    // no metadata: nothing more to remove
  }
  return true;
}

/** Names of the stored profiles, sorted. */
export function listProfiles(): string[] {
  let entries: string[];
  try {
    entries = readdirSync(seccompStoreDir());
  } catch {
    return [];
  }
  return entries
    .filter((f) => f.endsWith('.json') && !f.endsWith('.meta.json') && !f.startsWith('.'))
    .map((f) => f.slice(0, -'.json'.length))
    .filter(isStoreName)
    .sort();
}

/** Runs a step holding the store's lock, so two learning containers merging into one profile never lose a run. */
export function withStoreLock<T>(nat: Native, fn: () => T): T {
  return withLock(nat, join(seccompStoreDir(), '.lock'), fn);
}
