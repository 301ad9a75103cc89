/**
 * hyperbox's per-container state: <base>/<root key>/<id>/ where the root key
 * is derived from runc's --root, so the same id under two roots (containerd
 * namespaces each have their own) never collides.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { planRecordSchema, type PlanRecord } from '../../config-schema/plan.js';
import { HyperboxError, reasonOf } from '../errors.js';
import { writeFileAtomic } from '../store/atomic.js';

/** $HYPERBOX_STATE or /run/hyperbox (tmpfs, like runc's own state). */
export function stateBase(): string {
  return process.env.HYPERBOX_STATE || '/run/hyperbox';
}

/** runc's rule for container ids; anything else never becomes a path. */
export function isValidContainerId(id: string): boolean {
  return /^[\w+.-]+$/.test(id) && id !== '.' && id !== '..';
}

/**
 * 64-bit FNV-1a of a string, as 16 hex digits. The key only has to be stable
 * and distinct for the few runc roots of one host, and node:crypto would add
 * ~4 ms to every create that goes through Node.
 */
export function rootKey(runcRoot: string): string {
  let h = 0xcbf29ce484222325n;
  for (const byte of Buffer.from(resolve(runcRoot))) h = ((h ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
  return h.toString(16).padStart(16, '0');
}

/** The directory for one container's hyperbox state. */
export function containerStateDir(runcRoot: string, id: string): string {
  return join(stateBase(), rootKey(runcRoot), id);
}

/** Whether runc still has state for the container (runc 1.1 keeps <root>/<id>/state.json). */
export function runcStatePath(runcRoot: string, id: string): string {
  return join(resolve(runcRoot), id, 'state.json');
}

export const PLAN_FILE = 'plan.json';
export const ORIGINAL_CONFIG = 'config.original.json';
export const WRITTEN_CONFIG = 'config.written.json';

/** Creates the state dir (root-only) and records the plan in it. */
export function writeContainerState(dir: string, plan: PlanRecord, original: Buffer, written: Buffer | undefined): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileAtomic(join(dir, ORIGINAL_CONFIG), original, { mode: 0o600 });
  if (written) writeFileAtomic(join(dir, WRITTEN_CONFIG), written, { mode: 0o600 });
  writeFileAtomic(join(dir, PLAN_FILE), JSON.stringify(plan, null, 2) + '\n', { mode: 0o600 });
}

/** Reads a container's plan; a missing or damaged one is a clear error. */
export function readPlan(dir: string): PlanRecord {
  let text: string;
  try {
    text = readFileSync(join(dir, PLAN_FILE), 'utf8');
  } catch (err) {
    throw new HyperboxError('E_STATE', `no hyperbox state in ${dir}: ${reasonOf(err)}`, { cause: err });
  }
  try {
    return planRecordSchema.parse(JSON.parse(text));
  } catch (err) {
    throw new HyperboxError('E_STATE', `damaged hyperbox state ${join(dir, PLAN_FILE)}; remove the directory`, { cause: err });
  }
}

/** Every container state dir under the base (those with a plan, and stray ones without). */
export function listContainerStateDirs(): string[] {
  const base = stateBase();
  if (!existsSync(base)) return [];
  const dirs: string[] = [];
  for (const key of readdirSync(base, { withFileTypes: true })) {
    if (!key.isDirectory()) continue;
    for (const id of readdirSync(join(base, key.name), { withFileTypes: true })) {
      if (id.isDirectory()) dirs.push(join(base, key.name, id.name));
    }
  }
  return dirs;
}

/** Removes a container's state dir, and its root-key dir once empty. */
export function removeContainerState(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  const parent = resolve(dir, '..');
  try {
    if (readdirSync(parent).length === 0) rmSync(parent, { recursive: true, force: true });
  } catch {
    // another container may have just been created under the same root
  }
}
