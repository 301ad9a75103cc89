/**
 * hyperbox's per-container state: <base>/<root key>/<id>/ where the root key
 * is derived from runc's --root, so the same id under two roots (containerd
 * namespaces each have their own) never collides.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { planRecordSchema, type PlanRecord } from '../../config-schema/plan.js';
import { HyperboxError, reasonOf } from '../errors.js';
import type { Native } from '../native/index.js';
import { writeFileAtomic } from '../store/atomic.js';
import { holdLock } from '../store/lock.js';

/** $HYPERBOX_STATE or /run/hyperbox (tmpfs, like runc's own state). */
export function stateBase(): string {
  return process.env.HYPERBOX_STATE || '/run/hyperbox';
}

/** Where `run --image X ID` without a config.json gets a bundle; removed with the container. */
export function generatedBundlesDir(): string {
  return join(stateBase(), 'bundles');
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

/** A fresh nonce for one create (not a secret: it only tells incarnations of an id apart). */
export function newInstance(): string {
  return `${process.pid.toString(36)}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
}

/**
 * Takes the lock of the runc root a container state dir belongs to (a flock
 * on the root-key dir, which is never removed) and returns its release. Only
 * short steps run under it: checking, claiming and creating state dirs.
 */
export function lockRoot(nat: Native, stateDir: string): () => void {
  return holdLock(nat, dirname(stateDir), 'dir');
}

const RELEASING = '.releasing-';

/**
 * Claims a container's state for release, under the root lock: renames it out
 * of the way, so a new container may reuse the id at once while the release
 * (which may be slow) goes on. `expected` narrows what is claimed: a create's
 * instance, or null for "only if it still has no readable plan". Returns the
 * claimed dir, or undefined when there is nothing (matching) to claim.
 */
export function claimState(stateDir: string, expected?: string | null): string | undefined {
  if (!existsSync(stateDir)) return undefined;
  let planned: string | undefined;
  try {
    planned = readPlan(stateDir).instance;
  } catch {
    planned = undefined; // no readable plan: a create that never finished
  }
  if (expected !== undefined && (planned ?? null) !== expected) return undefined;
  const claimed = join(dirname(stateDir), `${RELEASING}${basename(stateDir)}-${planned ?? newInstance()}`);
  renameSync(stateDir, claimed);
  return claimed;
}

/** Whether a dir is a claimed one, and how long ago it was claimed (ms). */
export function claimedAge(dir: string): number | undefined {
  if (!basename(dir).startsWith(RELEASING)) return undefined;
  try {
    return Date.now() - statSync(dir).ctimeMs;
  } catch {
    return undefined;
  }
}

/** Every container state dir under the base, claimed ones included. */
export function listContainerStateDirs(): string[] {
  const base = stateBase();
  if (!existsSync(base)) return [];
  const dirs: string[] = [];
  for (const key of readdirSync(base, { withFileTypes: true })) {
    // Root keys only (trace/ and bundles/ live beside them).
    if (!key.isDirectory() || !/^[0-9a-f]{16}$/.test(key.name)) continue;
    for (const id of readdirSync(join(base, key.name), { withFileTypes: true })) {
      if (id.isDirectory()) dirs.push(join(base, key.name, id.name));
    }
  }
  return dirs;
}

/** Removes a (claimed) container state dir. The root-key dir stays: it is the lock. */
export function removeContainerState(dir: string): boolean {
  // Never recurse through a mount (a rootfs overlay whose unmount failed): its files are not state.
  const mounted = mountsUnder(dir);
  if (mounted.length) return false;
  rmSync(dir, { recursive: true, force: true });
  return true;
}

/** Mount points at or below `dir`, from /proc/self/mountinfo (octal escapes decoded). */
export function mountsUnder(dir: string): string[] {
  let info: string;
  try {
    info = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const line of info.split('\n')) {
    const point = line.split(' ')[4];
    if (!point) continue;
    const path = point.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (path === dir || path.startsWith(dir + '/')) out.push(path);
  }
  return out;
}

/** A feature's own record in a container state dir (what one hook leaves for the next); undefined when absent or unreadable. */
export function readFeatureState<T>(stateDir: string, file: string): T | undefined {
  try {
    return JSON.parse(readFileSync(join(stateDir, file), 'utf8')) as T;
  } catch {
    return undefined;
  }
}

export function writeFeatureState(stateDir: string, file: string, value: unknown): void {
  writeFileAtomic(join(stateDir, file), JSON.stringify(value), { mode: 0o600 });
}
