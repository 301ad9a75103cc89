/** The typed face of the addon (build/hyperbox.node); the only module that loads it. */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { HyperboxError } from '../errors.js';

/** The native operations, as an interface so logic can be tested with a recording fake. */
export interface Native {
  /** runc's path, found the way the launcher finds it (never `self`). */
  findRunc(self?: string): string;
  /** $HYPERBOX_CONFIG_DIR or /etc/hyperbox. */
  configDir(): string;
  /** Replaces this process with runc; returns only by throwing. */
  execRunc(path: string, argv: string[]): never;
  /** Starts the detached watcher that cleans up if runc leaves no container behind. */
  spawnRestoreWatcher(launcher: string, runcStatePath: string, stateDir: string, instance: string, env: string[]): void;
  /** Takes an exclusive flock on an open fd, waiting for it; closing the fd releases it. */
  flock(fd: number): void;
}

let loaded: Native | undefined;

/** Loads the addon once; a missing build is a clear error, not a stack trace. */
export function native(): Native {
  if (loaded) return loaded;
  const path = fileURLToPath(new URL('../../../build/hyperbox.node', import.meta.url));
  try {
    loaded = createRequire(import.meta.url)(path) as Native;
  } catch (err) {
    throw new HyperboxError('E_ADDON', `cannot load the hyperbox addon at ${path}; run make`, { cause: err });
  }
  return loaded;
}
