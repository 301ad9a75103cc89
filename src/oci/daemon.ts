/**
 * A host-wide helper process (`hyperbox-runc <command> daemon`), one per
 * $HYPERBOX_STATE: started on demand by the first hook that needs it, found
 * again through a pid file, and gone once it has nothing to do. The pid file
 * and the decision to start or to exit are both taken under one lock, so a
 * registration made while the daemon decides to exit is never missed.
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Native } from '../native/index.js';
import { withLock } from '../store/lock.js';
import { launcherPath } from './hooks.js';

export class HostDaemon {
  readonly pidFile: string;
  readonly lockFile: string;
  /** Where an on-demand daemon's stdout and stderr go. */
  readonly logFile: string;

  constructor(
    readonly dir: string,
    /** The subcommand: the daemon is `hyperbox-runc <command> daemon`. */
    readonly command: string,
    file: string,
  ) {
    this.pidFile = join(dir, `${file}.pid`);
    this.lockFile = join(dir, `${file}.lock`);
    this.logFile = join(dir, `${file}.log`);
  }

  ensureDir(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  /** The pid of the running daemon, if there is one (a pid file naming another process does not count). */
  pid(): number | undefined {
    let pid: number;
    try {
      pid = Number(readFileSync(this.pidFile, 'utf8').trim());
    } catch {
      return undefined;
    }
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      const at = cmdline.indexOf(this.command);
      return at >= 0 && cmdline[at + 1] === 'daemon' ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  /** Starts the daemon unless one runs; `args` are extra daemon arguments. */
  ensure(nat: Native, args: string[] = []): void {
    this.ensureDir();
    withLock(nat, this.lockFile, () => {
      if (this.pid() !== undefined) return;
      const out = openSync(this.logFile, 'a', 0o600);
      try {
        // Its own session and the log for stdio: runc waits for the hook's pipes to close.
        const child = spawn(launcherPath(), [this.command, 'daemon', ...args], { detached: true, stdio: ['ignore', out, out], env: process.env });
        child.unref();
        if (child.pid === undefined) throw new Error(`cannot start ${launcherPath()} ${this.command} daemon`);
        writeFileSync(this.pidFile, String(child.pid), { mode: 0o600 });
      } finally {
        closeSync(out);
      }
    });
  }

  /** At the daemon's start: the pid of another running daemon, or undefined once this process is the one. */
  claim(nat: Native): number | undefined {
    this.ensureDir();
    return withLock(nat, this.lockFile, () => {
      const pid = this.pid();
      if (pid !== undefined && pid !== process.pid) return pid;
      writeFileSync(this.pidFile, String(process.pid), { mode: 0o600 });
      return undefined;
    });
  }

  /** True (and the pid file gone) when `idle()` still holds under the lock: the daemon may exit. */
  exitIfIdle(nat: Native, idle: () => boolean): boolean {
    return withLock(nat, this.lockFile, () => {
      if (!idle()) return false;
      this.release();
      return true;
    });
  }

  /** Removes the pid file if it names this process. */
  release(): void {
    if (this.pid() !== process.pid) return;
    try {
      unlinkSync(this.pidFile);
    } catch {
      // already gone
    }
  }
}
