/** Host-wide exclusive locks: a flock on a directory or on a lock file, released when its fd closes. */
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Native } from '../native/index.js';

/** Takes the lock (waiting for it) and returns its release. A lock file is created, root-only, with its directory. */
export function holdLock(nat: Native, path: string, kind: 'dir' | 'file'): () => void {
  mkdirSync(kind === 'dir' ? path : dirname(path), { recursive: true, mode: 0o700 });
  const fd = openSync(path, kind === 'dir' ? 'r' : 'a', 0o600);
  try {
    nat.flock(fd);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  return () => closeSync(fd);
}

/** Runs a synchronous step holding a lock file's lock. */
export function withLock<T>(nat: Native, path: string, fn: () => T): T {
  const release = holdLock(nat, path, 'file');
  try {
    return fn();
  } finally {
    release();
  }
}
