/**
 * A tuned container's history: one sample per control step worth keeping,
 * appended as JSON lines by the tuner and read back by `tune history` and
 * `tune report`.
 */
import { appendFileSync, closeSync, mkdirSync, openSync, readFileSync, readSync, renameSync, statSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';

/** What the tuner saw and did at one moment. */
export interface TuneSample {
  /** Unix time, ms. */
  t: number;
  /** memory.pressure `some` over the last period, µs of stall per second. */
  memUs: number;
  /** io.pressure `some` over the last period, µs per second (what counted was only the refaults' share of it). */
  ioUs: number;
  /** The stall the control loop acted on, µs per second. */
  stallUs: number;
  /** Memory charged to the container, bytes. */
  current: number;
  /** The tuner's limit: the size it steers the container to, bytes. */
  limit: number;
  /** The lowest the limit may go now (unreclaimable memory plus the floor, or tune.min), bytes. */
  floor: number;
  /** The highest: tune.max, the caller's own limit or the host's memory, bytes. */
  ceiling: number;
  /** Bytes given back since the container was registered. */
  given: number;
  /** What the step did. */
  action: 'start' | 'probe' | 'backoff' | 'hold';
  /** True when a PSI trigger fired for this step. */
  triggered?: boolean;
}

/** The fixed facts of one container's history (first line of the file). */
export interface HistoryHeader {
  containerId: string;
  /** The stall target, µs per second. */
  targetUs: number;
  startedAt: number;
}

/** Past this size the file is rotated once (the previous half is kept as .1). */
const MAX_BYTES = 4 * 1024 * 1024;

export function appendSamples(path: string, header: HistoryHeader, samples: TuneSample[]): void {
  if (samples.length === 0) return;
  let size = -1;
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  try {
    size = statSync(path).size;
  } catch {
    // a new history
  }
  if (size > MAX_BYTES) {
    renameSync(path, path + '.1');
    size = -1;
  }
  const head = size < 0 ? JSON.stringify({ header }) + '\n' : '';
  appendFileSync(path, head + samples.map((s) => JSON.stringify(s)).join('\n') + '\n', { mode: 0o600 });
}

function parseLines(text: string): { header?: HistoryHeader; samples: TuneSample[] } {
  let header: HistoryHeader | undefined;
  const samples: TuneSample[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      continue; // a line cut short by a crash
    }
    if (v && typeof v === 'object' && 'header' in v) header = (v as { header: HistoryHeader }).header;
    else if (v && typeof v === 'object' && typeof (v as TuneSample).t === 'number') samples.push(v as TuneSample);
  }
  return { header, samples };
}

/** The whole history (the rotated part first); undefined when there is none. */
export function readHistory(path: string): { header: HistoryHeader; samples: TuneSample[] } | undefined {
  const parts: string[] = [];
  for (const p of [path + '.1', path]) {
    try {
      parts.push(readFileSync(p, 'utf8'));
    } catch {
      // absent
    }
  }
  if (parts.length === 0) return undefined;
  const older = parseLines(parts.length > 1 ? parts[0]! : '');
  const newer = parseLines(parts.at(-1)!);
  const header = newer.header ?? older.header;
  if (!header) return undefined;
  return { header, samples: [...older.samples, ...newer.samples] };
}

/** The header alone (the file's first line), without reading the samples. */
export function readHistoryHeader(path: string): HistoryHeader | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return undefined;
  }
  try {
    const buf = Buffer.alloc(4096);
    const n = readSync(fd, buf, 0, buf.length, 0);
    const line = buf.subarray(0, n).toString('utf8').split('\n')[0]!;
    return (JSON.parse(line) as { header?: HistoryHeader }).header;
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

export function removeHistory(path: string): void {
  for (const p of [path, path + '.1']) {
    try {
      unlinkSync(p);
    } catch {
      // absent
    }
  }
}
