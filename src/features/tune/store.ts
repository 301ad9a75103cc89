/**
 * The tuner's files under $HYPERBOX_STATE/tune (tmpfs: a reboot forgets them,
 * as it forgets the cgroups they describe):
 *
 *   registered/<key>.json  a container to tune, written by its createRuntime hook,
 *                          removed by its poststop (or by the tuner once the cgroup is gone)
 *   state/<key>.json       what the tuner knows of it: limit, bytes given back and,
 *                          while a limit is lowered, the journal to undo it
 *   history/<key>.jsonl    samples for `tune history` and `tune report`; kept after
 *                          the container goes (the last MAX_ENDED of them)
 *   tuner.pid/.lock/.log   the host daemon
 *
 * <key> is the container's root key and id, so two runc roots never collide.
 */
import { readdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { HostDaemon } from '../../oci/daemon.js';
import { rootKey, stateBase } from '../../oci/state.js';
import { writeFileAtomic } from '../../store/atomic.js';
import type { CgroupPaths, Lowered } from './cgroupfs.js';

export interface TuneRegistration extends CgroupPaths {
  key: string;
  containerId: string;
  runcRoot: string;
  /** Tells this container from a later one with the same id. */
  instance: string;
  /** Stall target, µs per second. */
  targetUs: number;
  min: number;
  /** tune.max, or undefined. */
  max?: number;
  /** linux.resources.memory.limit as the caller gave it, or undefined. */
  callerLimit?: number;
  registeredAt: number;
}

export interface TuneState {
  instance: string;
  limit?: number;
  /** Bytes given back so far. */
  given: number;
  /** A limit lowered and not yet put back. */
  lowered?: Lowered;
  /** When a PSI trigger last fired (unix ms). */
  lastTrigger?: number;
  updatedAt: number;
}

export const tuneDir = () => join(stateBase(), 'tune');
export const registeredDir = () => join(tuneDir(), 'registered');
export const tunerStateDir = () => join(tuneDir(), 'state');
export const historyDir = () => join(tuneDir(), 'history');
export const tunerDaemon = () => new HostDaemon(tuneDir(), 'tune', 'tuner');

export function tuneKey(runcRoot: string, id: string): string {
  return `${rootKey(runcRoot)}.${id}`;
}

export const historyPath = (key: string) => join(historyDir(), `${key}.jsonl`);

export function readJson<T>(path: string): T | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

function keysIn(dir: string, ext: string): string[] {
  try {
    return readdirSync(dir)
      .filter((f) => f.endsWith(ext) && !f.startsWith('.'))
      .map((f) => f.slice(0, -ext.length))
      .sort();
  } catch {
    return [];
  }
}

export const registeredKeys = () => keysIn(registeredDir(), '.json');
export const stateKeys = () => keysIn(tunerStateDir(), '.json');
export const historyKeys = () => keysIn(historyDir(), '.jsonl');

export function register(reg: TuneRegistration): void {
  writeFileAtomic(join(registeredDir(), `${reg.key}.json`), JSON.stringify(reg), { mode: 0o600, mkdir: true });
}

/** Identifies one write of a registration (every write is a rename: a new inode). */
export function registrationId(key: string): string | undefined {
  try {
    const st = statSync(join(registeredDir(), `${key}.json`));
    return `${st.ino}:${st.mtimeMs}`;
  } catch {
    return undefined;
  }
}

export function readRegistration(key: string): TuneRegistration | undefined {
  return readJson<TuneRegistration>(join(registeredDir(), `${key}.json`));
}

/** Removes a registration; only the given instance's when one is named. */
export function unregister(key: string, instance?: string): void {
  const path = join(registeredDir(), `${key}.json`);
  if (instance !== undefined && readJson<TuneRegistration>(path)?.instance !== instance) return;
  removeFile(path);
}

export function readTunerState(key: string): TuneState | undefined {
  return readJson<TuneState>(join(tunerStateDir(), `${key}.json`));
}

export function writeTunerState(key: string, state: TuneState): void {
  writeFileAtomic(join(tunerStateDir(), `${key}.json`), JSON.stringify(state), { mode: 0o600, mkdir: true });
}

export function removeTunerState(key: string): void {
  removeFile(join(tunerStateDir(), `${key}.json`));
}

/** Histories of containers that are gone, beyond the newest MAX_ENDED, are removed. */
export const MAX_ENDED = 64;

export function pruneHistories(live: ReadonlySet<string>): void {
  const ended = historyKeys()
    .filter((k) => !live.has(k))
    .map((k) => ({ k, mtime: mtimeOf(historyPath(k)) }))
    .sort((a, b) => b.mtime - a.mtime);
  for (const { k } of ended.slice(MAX_ENDED)) {
    removeFile(historyPath(k));
    removeFile(historyPath(k) + '.1');
  }
}

function mtimeOf(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}

function removeFile(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}
