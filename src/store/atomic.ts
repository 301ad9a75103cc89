/** Atomic file replacement: a reader sees the old bytes or the new, never half. */
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync, fchownSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

export interface AtomicWriteOptions {
  mode: number;
  uid?: number;
  gid?: number;
  /** Create the directory (0700) when it is missing. */
  mkdir?: boolean;
}

/** Tells apart temp files of one process written within the same millisecond. */
let sequence = 0;

/** Writes data to a temp file beside `path` (same filesystem), fsyncs it and renames it over `path`. */
export function writeFileAtomic(path: string, data: string | Uint8Array, options: AtomicWriteOptions): void {
  if (options.mkdir) mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = join(dirname(path), `.${basename(path)}.hyperbox-${process.pid}-${Date.now().toString(36)}-${(sequence++).toString(36)}`);
  const fd = openSync(tmp, 'wx', options.mode);
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    if (options.uid !== undefined && options.gid !== undefined) fchownSync(fd, options.uid, options.gid);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    unlinkSync(tmp);
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(tmp, path);
  } catch (err) {
    unlinkSync(tmp);
    throw err;
  }
}
