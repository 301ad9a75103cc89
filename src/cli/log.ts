/**
 * Our lines in the caller's log, the way runc's logrus writes them: to --log
 * in --log-format (json: level, msg, time), else to stderr; errors also go to
 * stderr bare when a log file is given, as runc does. Warnings and errors
 * only, unless --debug. Never stdout: it belongs to runc.
 */
import { appendFileSync, writeSync } from 'node:fs';

export type Level = 'debug' | 'warning' | 'error';

/** Where and how to log; from runc's global flags. */
export interface LogTarget {
  log: string | undefined;
  logFormat: 'text' | 'json';
  debug: boolean;
}

export class Logger {
  constructor(private readonly target: LogTarget) {}

  debug(msg: string): void {
    if (this.target.debug) this.write('debug', msg);
  }
  warn(msg: string): void {
    this.write('warning', msg);
  }
  error(msg: string): void {
    this.write('error', msg);
    if (this.target.log) writeStderr(msg + '\n');
  }

  private write(level: Level, msg: string): void {
    const time = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
    const line =
      this.target.logFormat === 'json'
        ? JSON.stringify({ level, msg, time }) + '\n'
        : `time=${JSON.stringify(time)} level=${level} msg=${JSON.stringify(msg)}\n`;
    if (this.target.log) {
      try {
        appendFileSync(this.target.log, line, { mode: 0o644 });
        return;
      } catch {
        // an unwritable log must not hide the message
      }
    }
    writeStderr(line);
  }
}

/**
 * Writes to fd 2 synchronously. process.stderr is never touched: wrapping a
 * pipe in a stream sets O_NONBLOCK on it, and that flag is shared with runc
 * and the caller after exec.
 */
export function writeStderr(text: string): void {
  try {
    writeSync(2, text);
  } catch {
    // stderr closed: nothing else to tell
  }
}
