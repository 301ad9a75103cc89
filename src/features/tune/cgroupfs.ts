/**
 * A tuned container's memory as the cgroup filesystem shows it, and the
 * actuators that make the kernel reclaim from it:
 *
 *   v2, memory.reclaim (5.19+)  write the bytes to reclaim; nothing is left changed
 *   v2, no memory.reclaim       memory.high lowered (the write reclaims), then put back
 *   v1 (hybrid hosts)           memory.limit_in_bytes lowered (the write reclaims,
 *                               may block, or fail with EBUSY), then put back
 *
 * A lowered value is journalled before it is written and cleared once the
 * original is back, so a tuner killed in between can undo it when it starts
 * again. Pressure always comes from the unified (v2) cgroup, which hybrid
 * hosts have too.
 *
 * All file access goes through `CgroupIo`, so tests can stand in a fake
 * cgroupfs tree, or writes that block or fail as the kernel's do.
 */
import { promises as fsp, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { HyperboxError, reasonOf } from '../../errors.js';

export type CgroupMode = 'v1' | 'v2';
export type Actuator = 'reclaim' | 'high' | 'limit';

/** Where a container's memory is: its memory cgroup and the v2 cgroup holding its pressure files. */
export interface CgroupPaths {
  mode: CgroupMode;
  memoryDir: string;
  pressureDir: string;
  /** The memory hierarchy's mount point: ancestors up to (not including) it are looked at for shared budgets. */
  memoryRoot?: string;
}

export interface CgroupIo {
  read(path: string): string;
  /** Resolves when the kernel has taken the value (for limits: after reclaiming); rejects with the errno code. */
  write(path: string, value: string): Promise<void>;
}

export const realIo: CgroupIo = {
  read: (path) => readFileSync(path, 'utf8'),
  // On libuv's pool: a v1 limit write may block for as long as reclaim takes.
  write: (path, value) => fsp.writeFile(path, value),
};

/** "max" and v1's PAGE_COUNTER_MAX-in-bytes both mean no limit. */
export const NO_LIMIT = Number.MAX_SAFE_INTEGER;
const V1_UNLIMITED = 2 ** 62;
const PAGE = 4096;

/** One reading of the container's memory. */
export interface MemoryReading {
  /** Bytes charged. */
  current: number;
  /** Page cache on the LRU lists (what reclaim can take without swap). */
  file: number;
  /** The part of `file` on the inactive list. */
  inactiveFile: number;
  /** current minus file: anon, shmem, kernel memory; with no swap, not reclaimable. */
  unreclaimable: number;
  /** Cumulative refaults (pages) and pages charged in (v1 only; refaults + cache growth otherwise). */
  refaults: number;
  pagesIn: number;
  /** The hard limit in force (memory.max / memory.limit_in_bytes), NO_LIMIT when none. */
  limit: number;
}

/** A pressure file's `some` line: cumulative stall (µs) and averages (percent). */
export interface PressureReading {
  totalUs: number;
  avg10: number;
  avg60: number;
}

export function parsePressure(text: string): PressureReading {
  const line = text.split('\n').find((l) => l.startsWith('some '));
  const field = (name: string) => Number(new RegExp(`\\b${name}=([0-9.]+)`).exec(line ?? '')?.[1]);
  const totalUs = field('total');
  if (!line || !Number.isFinite(totalUs)) throw new HyperboxError('E_CGROUP', `unexpected pressure file contents: ${JSON.stringify(text.slice(0, 80))}`);
  return { totalUs, avg10: field('avg10') || 0, avg60: field('avg60') || 0 };
}

export function parseStat(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const sp = line.indexOf(' ');
    if (sp > 0) out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return out;
}

/** A limit file's value in bytes; "max" and v1's huge sentinel are NO_LIMIT. */
export function parseLimit(text: string): number {
  const v = text.trim();
  if (v === 'max') return NO_LIMIT;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new HyperboxError('E_CGROUP', `unexpected memory limit ${JSON.stringify(v)}`);
  return n >= V1_UNLIMITED ? NO_LIMIT : n;
}

const pageAlign = (n: number) => Math.max(PAGE, Math.floor(n / PAGE) * PAGE);

/** What one reclaim did. */
export interface ReclaimResult {
  /**
   * Bytes the container's charge went down by: a lower bound of what was given back, as the
   * container may grow meanwhile (v1 counts pages out by folio, not by page, so that is no measure).
   */
  reclaimed: number;
  /** 'short': the kernel could not reach the target (EBUSY / EAGAIN); the rest is not reclaimable now. */
  outcome: 'done' | 'short';
  /** The container's charge afterwards. */
  after: number;
}

/** A limit lowered and not yet put back: the journal entry that survives a crash. */
export interface Lowered {
  path: string;
  /** The exact text read before lowering, written back to restore. */
  original: string;
  /** What was written (bytes), so a restore never overwrites a limit someone else set meanwhile. */
  lowered: number;
}

export interface Journal {
  begin(entry: Lowered): void;
  end(): void;
}

export class MemoryCgroup {
  readonly actuator: Actuator;

  constructor(
    readonly paths: CgroupPaths,
    private readonly io: CgroupIo = realIo,
    /** Keep a lowered limit this long before putting it back (tests: a window to kill the tuner in). */
    private readonly holdMs = 0,
  ) {
    if (paths.mode === 'v1') this.actuator = 'limit';
    else this.actuator = this.exists(join(paths.memoryDir, 'memory.reclaim')) ? 'reclaim' : 'high';
  }

  private exists(path: string): boolean {
    try {
      this.io.read(path);
      return true;
    } catch (err) {
      // memory.reclaim is write-only: reading it fails with EINVAL, which still says it is there.
      return (err as NodeJS.ErrnoException).code !== 'ENOENT';
    }
  }

  private file(name: string): string {
    return join(this.paths.memoryDir, name);
  }

  /** The file holding the hard limit a caller sets (linux.resources.memory.limit). */
  limitFile(): string {
    return this.file(this.paths.mode === 'v1' ? 'memory.limit_in_bytes' : 'memory.max');
  }

  readMemory(): MemoryReading {
    const v1 = this.paths.mode === 'v1';
    const stat = parseStat(this.io.read(this.file('memory.stat')));
    const get = (k: string) => stat.get(v1 ? `total_${k}` : k) ?? 0;
    const current = Number(this.io.read(this.file(v1 ? 'memory.usage_in_bytes' : 'memory.current')).trim());
    const file = v1 ? get('inactive_file') + get('active_file') : get('file') - get('shmem');
    const refaults = get('workingset_refault_file') + get('workingset_refault_anon');
    return {
      current,
      file,
      inactiveFile: get('inactive_file'),
      unreclaimable: Math.max(0, current - file),
      refaults,
      pagesIn: v1 ? get('pgpgin') : 0,
      limit: parseLimit(this.io.read(this.limitFile())),
    };
  }

  /**
   * The ancestors whose own limit bounds this container (a shared budget),
   * from the nearest up, stopping below the hierarchy's root.
   */
  budgetAncestors(): string[] {
    const out: string[] = [];
    const top = this.paths.memoryRoot;
    if (top === undefined) return out;
    let dir = this.paths.memoryDir;
    for (;;) {
      const parent = dirname(dir);
      if (parent === dir || !parent.startsWith(top + '/')) break;
      dir = parent;
      try {
        if (parseLimit(this.io.read(join(dir, this.paths.mode === 'v1' ? 'memory.limit_in_bytes' : 'memory.max'))) < NO_LIMIT) out.push(dir);
      } catch {
        break; // above the container's hierarchy
      }
    }
    return out;
  }

  /** How often those budgets have been hit so far (v1 memory.failcnt, v2 memory.events max). */
  budgetHits(ancestors: readonly string[]): number {
    let n = 0;
    for (const dir of ancestors) {
      try {
        if (this.paths.mode === 'v1') n += Number(this.io.read(join(dir, 'memory.failcnt')).trim()) || 0;
        else n += parseStat(this.io.read(join(dir, 'memory.events'))).get('max') ?? 0;
      } catch {
        // gone: no longer a budget
      }
    }
    return n;
  }

  readPressure(kind: 'memory' | 'io'): PressureReading {
    return parsePressure(this.io.read(join(this.paths.pressureDir, `${kind}.pressure`)));
  }

  /**
   * Makes the kernel reclaim until the container holds about `target` bytes.
   * With a lowering actuator the original value is back before this returns,
   * whatever happened in between (an error included).
   */
  async reclaimTo(target: number, journal: Journal): Promise<ReclaimResult> {
    const before = this.readMemory().current;
    if (before <= target) return { reclaimed: 0, outcome: 'done', after: before };
    let outcome: ReclaimResult['outcome'] = 'done';
    if (this.actuator === 'reclaim') {
      try {
        await this.io.write(this.file('memory.reclaim'), String(pageAlign(before - target)));
      } catch (err) {
        if (!isShort(err)) throw cgroupError(this.file('memory.reclaim'), err);
        outcome = 'short';
      }
    } else {
      const path = this.actuator === 'high' ? this.file('memory.high') : this.limitFile();
      outcome = await this.lowerThenRestore(path, pageAlign(target), journal);
    }
    const after = this.readMemory().current;
    return { reclaimed: Math.max(0, before - after), outcome, after };
  }

  private async lowerThenRestore(path: string, lowered: number, journal: Journal): Promise<ReclaimResult['outcome']> {
    const original = this.io.read(path).trim();
    // Never lower what is already at or below the target: there is nothing to give back through it.
    if (parseLimit(original) <= lowered) return 'short';
    journal.begin({ path, original, lowered });
    let outcome: ReclaimResult['outcome'] = 'done';
    try {
      await this.io.write(path, String(lowered));
    } catch (err) {
      // EBUSY: the kernel gave up reclaiming (v1 sets nothing then); EINTR likewise.
      if (!isShort(err)) {
        await restore(this.io, { path, original, lowered });
        journal.end();
        throw cgroupError(path, err);
      }
      outcome = 'short';
    }
    if (this.holdMs > 0) await new Promise((r) => setTimeout(r, this.holdMs));
    await restore(this.io, { path, original, lowered });
    journal.end();
    return outcome;
  }
}

function isShort(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'EBUSY' || code === 'EAGAIN' || code === 'EINTR';
}

function cgroupError(path: string, err: unknown): HyperboxError {
  return new HyperboxError('E_CGROUP', `cannot write ${path}: ${reasonOf(err)}`, { cause: err });
}

/** The kernel rounds a limit down to its page size, which may be up to 64 KiB. */
const MAX_PAGE = 65536;

/**
 * Puts a lowered value back, unless something else has changed it since
 * (then that value is the caller's and stays). True when this call wrote the
 * original back; false when there was nothing to do (already back, changed by
 * someone else, or the cgroup is gone).
 */
export async function restore(io: CgroupIo, entry: Lowered): Promise<boolean> {
  const gone = (err: unknown) => ['ENOENT', 'ENODEV'].includes((err as NodeJS.ErrnoException).code ?? '');
  let now: string;
  try {
    now = io.read(entry.path).trim();
  } catch (err) {
    if (gone(err)) return false;
    throw new HyperboxError('E_CGROUP', `cannot read ${entry.path}: ${reasonOf(err)}`, { cause: err });
  }
  if (now === entry.original) return false;
  const value = parseLimit(now);
  if (value > entry.lowered || value <= entry.lowered - MAX_PAGE) return false;
  try {
    await io.write(entry.path, entry.original);
  } catch (err) {
    if (gone(err)) return false;
    throw cgroupError(entry.path, err);
  }
  return true;
}

/** The container's memory and pressure cgroups, from its init process. */
export function cgroupsOfPid(pid: number, roots: { unified: string; memoryV1: string } = { unified: '/sys/fs/cgroup/unified', memoryV1: '/sys/fs/cgroup/memory' }, io: CgroupIo = realIo): CgroupPaths {
  let text: string;
  try {
    text = io.read(`/proc/${pid}/cgroup`);
  } catch (err) {
    throw new HyperboxError('E_CGROUP', `cannot read the cgroups of process ${pid}: ${reasonOf(err)}`, { cause: err });
  }
  const lines = text.split('\n');
  const v2 = lines.find((l) => l.startsWith('0::'))?.slice(3);
  const v1 = lines.map((l) => l.split(':')).find((f) => f.length >= 3 && f[1]!.split(',').includes('memory'))?.slice(2).join(':');
  if (v2 === undefined || v2 === '/') throw new HyperboxError('E_CGROUP', `container process ${pid} has no cgroup v2 of its own, where its pressure (PSI) is read`);
  const pressureDir = join(roots.unified, v2);
  if (v1 !== undefined) return { mode: 'v1', memoryDir: join(roots.memoryV1, v1), pressureDir, memoryRoot: roots.memoryV1 };
  return { mode: 'v2', memoryDir: pressureDir, pressureDir, memoryRoot: roots.unified };
}
