/**
 * The tuner's view of a cgroup and its actuators, against a fake cgroupfs tree whose io acts as
 * the kernel does: memory.reclaim takes file pages (EAGAIN when it cannot take them all),
 * memory.high is set at once and reclaims down to it, v1 memory.limit_in_bytes reclaims first
 * and is set only when usage fits (EBUSY otherwise, the old value kept), values are kept in
 * pages. Writes can be made to block (the kernel reclaiming) or fail. This is where cgroup v2
 * (memory.reclaim, memory.high, memory.max) is tested: this host has no pure-v2 memory cgroup.
 * The parsers are also run on the real kernel's files of this process.
 */
import t, { type Test } from 'tap';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HyperboxError } from '../../../src/errors.js';
import {
  cgroupsOfPid,
  MemoryCgroup,
  NO_LIMIT,
  parseLimit,
  parsePressure,
  parseStat,
  realIo,
  restore,
  type CgroupIo,
  type CgroupPaths,
  type Journal,
  type Lowered,
} from '../../../src/features/tune/cgroupfs.js';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const V1_UNLIMITED = '9223372036854771712';

function errnoError(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: fake kernel`), { code });
}

interface FakeOptions {
  mode: 'v1' | 'v2';
  /** v2: memory.reclaim present ('write-only': reading it fails with EINVAL, as the kernel's does). */
  reclaim?: 'yes' | 'write-only' | 'no';
  anon?: number;
  /** Page cache on the LRU: what reclaim can take. */
  cache?: number;
  shmem?: number;
  /** memory.max (v2) or memory.limit_in_bytes (v1) text. */
  limit?: string;
  high?: string;
  pageSize?: number;
}

/** A cgroup's files in a temp dir and an io that acts on them as the kernel does. */
class FakeKernel {
  readonly paths: CgroupPaths;
  anon: number;
  cache: number;
  shmem: number;
  readonly pageSize: number;
  readonly writes: { file: string; value: string }[] = [];
  /** While set, a write waits for it (the kernel reclaiming). */
  gate: Promise<void> | undefined;
  /** The next write to this file fails with code (after taking effect, when `after`). */
  fail: { file: string; code: string; after?: boolean } | undefined;

  constructor(
    root: string,
    readonly opts: FakeOptions,
  ) {
    this.anon = opts.anon ?? 64 * MiB;
    this.cache = opts.cache ?? 192 * MiB;
    this.shmem = opts.shmem ?? 0;
    this.pageSize = opts.pageSize ?? 4096;
    const v2dir = join(root, 'unified', 'ctr');
    mkdirSync(v2dir, { recursive: true });
    if (opts.mode === 'v2') {
      this.paths = { mode: 'v2', memoryDir: v2dir, pressureDir: v2dir };
      this.put('memory.max', opts.limit ?? 'max');
      this.put('memory.high', opts.high ?? 'max');
      if ((opts.reclaim ?? 'yes') !== 'no') this.put('memory.reclaim', '');
    } else {
      const v1dir = join(root, 'memory', 'ctr');
      mkdirSync(v1dir, { recursive: true });
      this.paths = { mode: 'v1', memoryDir: v1dir, pressureDir: v2dir };
      this.put('memory.limit_in_bytes', opts.limit ?? V1_UNLIMITED);
    }
    writeFileSync(join(v2dir, 'memory.pressure'), 'some avg10=1.50 avg60=0.75 avg300=0.10 total=123456\nfull avg10=0.50 avg60=0.25 avg300=0.05 total=65432\n');
    writeFileSync(join(v2dir, 'io.pressure'), 'some avg10=0.00 avg60=0.00 avg300=0.00 total=987\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=10\n');
    this.update();
  }

  get current(): number {
    return this.anon + this.cache + this.shmem;
  }

  path(file: string): string {
    return join(this.paths.memoryDir, file);
  }

  value(file: string): string {
    try {
      return readFileSync(this.path(file), 'utf8').trim();
    } catch {
      return '(gone)';
    }
  }

  put(file: string, value: string): void {
    writeFileSync(this.path(file), value + '\n');
  }

  /** Rewrites memory.current / usage_in_bytes and memory.stat from the counters. */
  update(): void {
    // A quarter of the page cache is inactive (read once, not since).
    const inactive = Math.floor(this.cache / 4 / 4096) * 4096;
    if (this.opts.mode === 'v2') {
      this.put('memory.current', String(this.current));
      this.put(
        'memory.stat',
        [
          `anon ${this.anon}`,
          `file ${this.cache + this.shmem}`,
          `kernel 0`,
          `shmem ${this.shmem}`,
          `inactive_anon ${this.anon}`,
          `active_anon 0`,
          `inactive_file ${inactive}`,
          `active_file ${this.cache - inactive}`,
          `workingset_refault_anon 3`,
          `workingset_refault_file 40`,
          `pgfault 100`,
        ].join('\n'),
      );
    } else {
      this.put('memory.usage_in_bytes', String(this.current));
      // The non-total keys are this cgroup alone (here: nothing); the tuner reads the hierarchy's total_*.
      this.put(
        'memory.stat',
        [
          'cache 1',
          'rss 1',
          'inactive_file 1',
          'active_file 1',
          'pgpgin 1',
          `total_cache ${this.cache + this.shmem}`,
          `total_rss ${this.anon}`,
          `total_shmem ${this.shmem}`,
          `total_workingset_refault_anon 5`,
          `total_workingset_refault_file 70`,
          `total_pgpgin 9000`,
          `total_inactive_file ${inactive}`,
          `total_active_file ${this.cache - inactive}`,
        ].join('\n'),
      );
    }
  }

  /** Takes up to n bytes of page cache; what was taken. */
  private reclaim(n: number): number {
    const take = Math.max(0, Math.min(n, this.cache));
    this.cache -= take;
    return take;
  }

  private pages(n: number): string {
    return String(Math.floor(n / this.pageSize) * this.pageSize);
  }

  readonly io: CgroupIo = {
    read: (path) => {
      if (basename(path) === 'memory.reclaim' && this.opts.reclaim === 'write-only') throw errnoError('EINVAL');
      return readFileSync(path, 'utf8');
    },
    write: async (path, value) => {
      const file = basename(path);
      this.writes.push({ file, value });
      const v = value.trim();
      // memory.high takes the new value at once, then reclaims (the write blocks meanwhile).
      if (file === 'memory.high') writeFileSync(path, (v === 'max' ? 'max' : this.pages(Number(v))) + '\n');
      if (this.gate) await this.gate;
      const fail = this.fail?.file === file ? this.fail : undefined;
      if (fail) {
        this.fail = undefined;
        if (!fail.after) throw errnoError(fail.code);
      }
      try {
        this.apply(path, file, v);
      } finally {
        this.update();
      }
      if (fail) throw errnoError(fail.code);
    },
  };

  private apply(path: string, file: string, v: string): void {
    if (file === 'memory.reclaim') {
      const n = Number(v);
      if (!Number.isInteger(n) || n <= 0) throw errnoError('EINVAL');
      if (this.reclaim(n) < n) throw errnoError('EAGAIN');
    } else if (file === 'memory.high' || file === 'memory.max') {
      const n = v === 'max' ? Infinity : Number(v);
      if (file === 'memory.max') writeFileSync(path, (v === 'max' ? 'max' : this.pages(n)) + '\n');
      if (n < this.current) this.reclaim(this.current - n);
    } else if (file === 'memory.limit_in_bytes') {
      const n = v === '-1' ? Infinity : Number(v);
      if (n < this.current) {
        const need = this.current - n;
        if (need > this.cache) {
          this.reclaim(need); // it tried, took what it could, and kept the old limit
          throw errnoError('EBUSY');
        }
        this.reclaim(need);
      }
      writeFileSync(path, (n >= 2 ** 62 ? V1_UNLIMITED : this.pages(n)) + '\n');
    } else {
      writeFileSync(path, v + '\n');
    }
  }
}

/** A journal that records what the limit file held at each call. */
function recordingJournal(k: FakeKernel, file: string) {
  const log: ({ begin: Lowered; fileAtBegin: string } | { end: true; fileAtEnd: string })[] = [];
  const journal: Journal = {
    begin: (entry) => log.push({ begin: { ...entry }, fileAtBegin: k.value(file) }),
    end: () => log.push({ end: true, fileAtEnd: k.value(file) }),
  };
  return { log, journal };
}

function tempRoot(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'hbxt-tune-cgfs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function until(what: string, fn: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  return undefined;
}

t.test('parsePressure: the some line', async (t) => {
  const p = parsePressure('some avg10=1.50 avg60=0.75 avg300=0.10 total=123456\nfull avg10=0.50 avg60=0.25 avg300=0.05 total=65432\n');
  t.strictSame(p, { totalUs: 123456, avg10: 1.5, avg60: 0.75 });
  t.strictSame(parsePressure('some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n'), { totalUs: 0, avg10: 0, avg60: 0 }, 'a some line alone (cpu.pressure of old kernels)');
  t.strictSame(parsePressure('full avg10=9.00 avg60=9.00 avg300=9.00 total=999\nsome avg10=2.00 avg60=1.00 avg300=0.00 total=7'), { totalUs: 7, avg10: 2, avg60: 1 }, 'the some line wherever it is');
  for (const bad of ['', 'full avg10=0.00 avg60=0.00 avg300=0.00 total=10\n', 'some avg10=0.00 avg60=0.00\n', 'some total=abc', 'something total=5']) {
    t.throws(() => parsePressure(bad), { name: 'HyperboxError', code: 'E_CGROUP', message: /unexpected pressure file contents/ }, `refused: ${JSON.stringify(bad)}`);
  }
});

t.test('parsePressure reads the real kernel files', async (t) => {
  for (const path of ['/proc/pressure/memory', '/proc/pressure/io', '/sys/fs/cgroup/unified/memory.pressure']) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch {
      t.comment(`SKIP: no ${path}`);
      continue;
    }
    const p = parsePressure(text);
    t.ok(Number.isInteger(p.totalUs) && p.totalUs >= 0, `${path}: total ${p.totalUs}`);
    t.ok(p.avg10 >= 0 && p.avg10 <= 100 && p.avg60 >= 0 && p.avg60 <= 100, `${path}: averages are percents`);
    t.equal(p.totalUs, Number(/^some .*total=(\d+)/m.exec(text)![1]), 'the some total, not the full one');
  }
});

t.test('parseLimit and parseStat', async (t) => {
  t.equal(parseLimit('max\n'), NO_LIMIT, 'v2 max');
  t.equal(parseLimit(V1_UNLIMITED + '\n'), NO_LIMIT, "v1's PAGE_COUNTER_MAX in bytes");
  t.equal(parseLimit(String(2 ** 62)), NO_LIMIT, 'anything that large');
  t.equal(parseLimit('536870912\n'), 512 * MiB);
  t.equal(parseLimit('0'), 0);
  t.equal(NO_LIMIT, Number.MAX_SAFE_INTEGER);
  for (const bad of ['-1', 'abc', 'max max', '1.2.3']) t.throws(() => parseLimit(bad), { code: 'E_CGROUP', message: new RegExp(`unexpected memory limit .*${bad}`) }, `refused: ${bad}`);
  const stat = parseStat('anon 4096\nfile 8192\n\nshmem 0\nbogus\n');
  t.strictSame([...stat], [['anon', 4096], ['file', 8192], ['shmem', 0]], 'key value lines; blank and odd lines skipped');
});

t.test('the actuator follows what the cgroup offers', async (t) => {
  const root = tempRoot(t);
  const k = (name: string, o: FakeOptions) => new FakeKernel(join(root, name), o);
  t.equal(new MemoryCgroup(k('v1', { mode: 'v1' }).paths, k('v1', { mode: 'v1' }).io).actuator, 'limit', 'v1: memory.limit_in_bytes');
  const reclaim = k('rec', { mode: 'v2', reclaim: 'yes' });
  t.equal(new MemoryCgroup(reclaim.paths, reclaim.io).actuator, 'reclaim', 'v2 with memory.reclaim');
  const writeOnly = k('wo', { mode: 'v2', reclaim: 'write-only' });
  t.equal(new MemoryCgroup(writeOnly.paths, writeOnly.io).actuator, 'reclaim', 'v2 with a write-only memory.reclaim (EINVAL on read)');
  const high = k('high', { mode: 'v2', reclaim: 'no' });
  t.equal(new MemoryCgroup(high.paths, high.io).actuator, 'high', 'v2 without memory.reclaim: memory.high');
  t.equal(new MemoryCgroup(high.paths, high.io).limitFile(), join(high.paths.memoryDir, 'memory.max'));
  t.equal(new MemoryCgroup(k('v1b', { mode: 'v1' }).paths).limitFile(), join(root, 'v1b', 'memory', 'ctr', 'memory.limit_in_bytes'));
});

t.test('readMemory and readPressure: v2', async (t) => {
  const root = tempRoot(t);
  const k = new FakeKernel(root, { mode: 'v2', anon: 40 * MiB, cache: 100 * MiB, shmem: 8 * MiB });
  const cg = new MemoryCgroup(k.paths, k.io);
  t.strictSame(cg.readMemory(), { current: 148 * MiB, file: 100 * MiB, inactiveFile: 25 * MiB, unreclaimable: 48 * MiB, refaults: 43, pagesIn: 0, limit: NO_LIMIT }, 'file without shmem; shmem is unreclaimable');
  k.put('memory.max', String(256 * MiB));
  t.equal(cg.readMemory().limit, 256 * MiB, 'memory.max');
  t.strictSame(cg.readPressure('memory'), { totalUs: 123456, avg10: 1.5, avg60: 0.75 });
  t.strictSame(cg.readPressure('io'), { totalUs: 987, avg10: 0, avg60: 0 });
  rmSync(k.path('memory.stat'));
  const err = (() => {
    try {
      cg.readMemory();
    } catch (e) {
      return e as NodeJS.ErrnoException;
    }
  })();
  t.equal(err?.code, 'ENOENT', 'a file that went is ENOENT as it is (the tuner drops the container on it)');
});

t.test('readMemory: v1 reads the total_* keys and the v1 sentinel', async (t) => {
  const root = tempRoot(t);
  const k = new FakeKernel(root, { mode: 'v1', anon: 40 * MiB, cache: 100 * MiB, shmem: 8 * MiB });
  const cg = new MemoryCgroup(k.paths, k.io);
  t.strictSame(cg.readMemory(), { current: 148 * MiB, file: 100 * MiB, inactiveFile: 25 * MiB, unreclaimable: 48 * MiB, refaults: 75, pagesIn: 9000, limit: NO_LIMIT });
  k.put('memory.limit_in_bytes', String(512 * MiB));
  t.equal(cg.readMemory().limit, 512 * MiB);
  t.strictSame(cg.readPressure('memory').totalUs, 123456, 'pressure from the unified cgroup');
});

t.test('readMemory on the real v1 memory cgroup of this process', async (t) => {
  const line = readFileSync('/proc/self/cgroup', 'utf8')
    .split('\n')
    .map((l) => l.split(':'))
    .find((f) => f.length >= 3 && f[1]!.split(',').includes('memory'));
  if (!line) {
    t.comment('SKIP: no v1 memory controller here');
    return;
  }
  const memoryDir = join('/sys/fs/cgroup/memory', line.slice(2).join(':'));
  const cg = new MemoryCgroup({ mode: 'v1', memoryDir, pressureDir: '/sys/fs/cgroup/unified' }, realIo);
  t.equal(cg.actuator, 'limit');
  const m = cg.readMemory();
  t.ok(m.current > 0, `usage ${m.current}`);
  t.ok(m.file >= 0 && m.file <= m.current * 2, `file ${m.file}`);
  t.equal(m.unreclaimable, Math.max(0, m.current - m.file));
  t.ok(Number.isFinite(m.refaults) && Number.isFinite(m.pagesIn) && m.pagesIn > 0, `refaults ${m.refaults}, pages in ${m.pagesIn}`);
  t.ok(m.limit > 0 && m.limit <= NO_LIMIT, `limit ${m.limit}`);
  t.ok(cg.readPressure('memory').totalUs >= 0 && cg.readPressure('io').totalUs >= 0);
});

t.test('reclaimTo with memory.reclaim (v2)', async (t) => {
  const root = tempRoot(t);
  const k = new FakeKernel(root, { mode: 'v2', anon: 64 * MiB, cache: 192 * MiB });
  const cg = new MemoryCgroup(k.paths, k.io);
  const { log, journal } = recordingJournal(k, 'memory.high');
  const target = 200 * MiB + 100; // not page-aligned
  t.strictSame(await cg.reclaimTo(target, journal), { reclaimed: 56 * MiB - 4096, outcome: 'done', after: 200 * MiB + 4096 }, 'the page-aligned difference');
  t.strictSame(k.writes, [{ file: 'memory.reclaim', value: String(56 * MiB - 4096) }], 'one write of the bytes to reclaim');
  t.equal(k.current, 200 * MiB + 4096, 'current is at the target, within a page');
  t.strictSame(log, [], 'nothing lowered, nothing journalled');
  t.equal(k.value('memory.high'), 'max', 'memory.high untouched');
  t.equal(k.value('memory.max'), 'max', 'memory.max untouched');

  t.strictSame(await cg.reclaimTo(300 * MiB, journal), { reclaimed: 0, outcome: 'done', after: 200 * MiB + 4096 }, 'a target above current: nothing to do');
  t.equal(k.writes.length, 1, 'and no write');

  const short = await cg.reclaimTo(10 * MiB, journal);
  t.strictSame(short, { reclaimed: 136 * MiB + 4096, outcome: 'short', after: 64 * MiB }, 'EAGAIN: all the page cache went, the anon stays, short');
  t.equal(k.current, 64 * MiB, 'down to the unreclaimable part');

  k.cache = 32 * MiB;
  k.update();
  k.fail = { file: 'memory.reclaim', code: 'EIO' };
  const err = await rejection(cg.reclaimTo(70 * MiB, journal));
  t.ok(err instanceof HyperboxError, 'another error is thrown');
  t.match(err, { code: 'E_CGROUP', message: new RegExp(`cannot write ${k.path('memory.reclaim')}`) });
  t.equal(((err as Error).cause as NodeJS.ErrnoException).code, 'EIO', 'with the errno as cause');
  k.fail = { file: 'memory.reclaim', code: 'EINTR' };
  t.equal((await cg.reclaimTo(70 * MiB, journal)).outcome, 'short', 'EINTR is short');
});

t.test('reclaimTo with memory.high (v2, no memory.reclaim): lowered, journalled, put back', async (t) => {
  const root = tempRoot(t);
  const k = new FakeKernel(root, { mode: 'v2', reclaim: 'no', anon: 64 * MiB, cache: 192 * MiB });
  const cg = new MemoryCgroup(k.paths, k.io);
  const { log, journal } = recordingJournal(k, 'memory.high');
  const high = k.path('memory.high');
  let release!: () => void;
  k.gate = new Promise((r) => (release = r));
  const p = cg.reclaimTo(100 * MiB + 10, journal);
  await until('the write to memory.high', () => k.writes.length === 1);
  t.strictSame(log, [{ begin: { path: high, original: 'max', lowered: 100 * MiB }, fileAtBegin: 'max' }], 'journalled before the write, with the original text and the page-aligned value');
  t.equal(k.value('memory.high'), String(100 * MiB), 'while the kernel reclaims, memory.high is lowered');
  release();
  k.gate = undefined;
  t.strictSame(await p, { reclaimed: 156 * MiB, outcome: 'done', after: 100 * MiB });
  t.strictSame(k.writes, [{ file: 'memory.high', value: String(100 * MiB) }, { file: 'memory.high', value: 'max' }], 'lowered, then the original written back');
  t.strictSame(log[1], { end: true, fileAtEnd: 'max' }, 'the journal ends once the original is back');
  t.equal(log.length, 2);
  t.equal(k.value('memory.high'), 'max');
  t.equal(k.value('memory.max'), 'max', 'memory.max untouched');

  t.test('a numeric original is put back as it was', async (t) => {
    k.put('memory.high', String(GiB));
    k.cache = 192 * MiB;
    k.update();
    k.writes.length = 0;
    const r = await cg.reclaimTo(200 * MiB, journal);
    t.strictSame(r, { reclaimed: 56 * MiB, outcome: 'done', after: 200 * MiB });
    t.equal(k.value('memory.high'), String(GiB));
    t.strictSame(k.writes.map((w) => w.value), [String(200 * MiB), String(GiB)]);
  });

  t.test('memory.high already at or below the target: nothing lowered', async (t) => {
    k.put('memory.high', String(150 * MiB));
    k.cache = 192 * MiB;
    k.update();
    k.writes.length = 0;
    log.length = 0;
    t.strictSame(await cg.reclaimTo(200 * MiB, journal), { reclaimed: 0, outcome: 'short', after: 256 * MiB });
    t.strictSame(k.writes, [], 'no write');
    t.strictSame(log, [], 'no journal');
  });

  t.test('a value someone else sets while it is lowered is theirs and stays', async (t) => {
    const k2 = new FakeKernel(join(root, 'k2'), { mode: 'v2', reclaim: 'no', anon: 64 * MiB, cache: 192 * MiB });
    const held = new MemoryCgroup(k2.paths, k2.io, 150);
    const r2 = recordingJournal(k2, 'memory.high');
    const p2 = held.reclaimTo(100 * MiB, r2.journal);
    await until('the lowered value', () => k2.writes.length === 1);
    await sleep(20);
    t.equal(k2.value('memory.high'), String(100 * MiB), 'held lowered for holdMs');
    k2.put('memory.high', String(3 * GiB)); // the caller (runc update) sets its own
    await p2;
    t.equal(k2.value('memory.high'), String(3 * GiB), 'not overwritten');
    t.strictSame(k2.writes.map((w) => w.value), [String(100 * MiB)], 'no restore write');
    t.strictSame(r2.log.at(-1), { end: true, fileAtEnd: String(3 * GiB) }, 'the journal still ends');
  });

  t.test('an error during the write: the original is back, the journal ended, then it throws', async (t) => {
    k.put('memory.high', 'max');
    k.cache = 192 * MiB;
    k.update();
    k.writes.length = 0;
    log.length = 0;
    k.fail = { file: 'memory.high', code: 'EIO', after: true };
    const err = await rejection(cg.reclaimTo(100 * MiB, journal));
    t.match(err, { name: 'HyperboxError', code: 'E_CGROUP', message: new RegExp(`cannot write ${high}`) });
    t.equal(k.value('memory.high'), 'max', 'put back');
    t.strictSame(k.writes.map((w) => w.value), [String(100 * MiB), 'max']);
    t.strictSame(log.map((e) => ('end' in e ? 'end' : 'begin')), ['begin', 'end']);
    t.equal((log[1] as { fileAtEnd: string }).fileAtEnd, 'max', 'ended after the restore');
  });
});

t.test('reclaimTo with memory.limit_in_bytes (v1)', async (t) => {
  const root = tempRoot(t);
  const k = new FakeKernel(root, { mode: 'v1', anon: 64 * MiB, cache: 192 * MiB });
  const cg = new MemoryCgroup(k.paths, k.io);
  const limit = k.path('memory.limit_in_bytes');
  const { log, journal } = recordingJournal(k, 'memory.limit_in_bytes');

  t.test('a blocking write: journalled first, the old limit in force until the kernel has reclaimed, then put back', async (t) => {
    let release!: () => void;
    k.gate = new Promise((r) => (release = r));
    const p = cg.reclaimTo(128 * MiB, journal);
    await until('the write', () => k.writes.length === 1);
    t.strictSame(log, [{ begin: { path: limit, original: V1_UNLIMITED, lowered: 128 * MiB }, fileAtBegin: V1_UNLIMITED }], 'the journal holds the lowered value during the write');
    await sleep(30);
    t.equal(log.length, 1, 'no end while the write blocks');
    release();
    k.gate = undefined;
    t.strictSame(await p, { reclaimed: 128 * MiB, outcome: 'done', after: 128 * MiB });
    t.equal(k.value('memory.limit_in_bytes'), V1_UNLIMITED, 'the v1 sentinel is back, byte for byte');
    t.strictSame(k.writes.map((w) => w.value), [String(128 * MiB), V1_UNLIMITED]);
    t.strictSame(log[1], { end: true, fileAtEnd: V1_UNLIMITED });
  });

  t.test('EBUSY: the kernel could not reach it; short, and the limit was never changed', async (t) => {
    k.cache = 100 * MiB;
    k.update();
    k.put('memory.limit_in_bytes', String(GiB));
    k.writes.length = 0;
    log.length = 0;
    const r = await cg.reclaimTo(32 * MiB, journal);
    t.strictSame(r, { reclaimed: 100 * MiB, outcome: 'short', after: 64 * MiB }, 'what it took before giving up counts');
    t.equal(k.value('memory.limit_in_bytes'), String(GiB));
    t.strictSame(k.writes.map((w) => w.value), [String(32 * MiB)], 'nothing to write back');
    t.strictSame(log, [{ begin: { path: limit, original: String(GiB), lowered: 32 * MiB }, fileAtBegin: String(GiB) }, { end: true, fileAtEnd: String(GiB) }]);
  });

  for (const code of ['EAGAIN', 'EINTR']) {
    t.test(`${code} is short too`, async (t) => {
      k.cache = 100 * MiB;
      k.update();
      k.writes.length = 0;
      k.fail = { file: 'memory.limit_in_bytes', code };
      const r = await cg.reclaimTo(100 * MiB, journal);
      t.equal(r.outcome, 'short');
      t.equal(k.value('memory.limit_in_bytes'), String(GiB));
    });
  }

  t.test('another error: put back, journal ended, thrown with the errno', async (t) => {
    k.cache = 100 * MiB;
    k.update();
    k.writes.length = 0;
    log.length = 0;
    k.fail = { file: 'memory.limit_in_bytes', code: 'EINVAL', after: true };
    const err = await rejection(cg.reclaimTo(100 * MiB, journal));
    t.match(err, { name: 'HyperboxError', code: 'E_CGROUP', message: new RegExp(`cannot write ${limit}`) });
    t.equal(k.value('memory.limit_in_bytes'), String(GiB));
    t.strictSame(k.writes.map((w) => w.value), [String(100 * MiB), String(GiB)]);
    t.strictSame(log.map((e) => ('end' in e ? 'end' : 'begin')), ['begin', 'end']);
  });

  t.test('the cgroup goes during the write: the error names it, nothing to put back', async (t) => {
    k.cache = 100 * MiB;
    k.update();
    k.writes.length = 0;
    log.length = 0;
    let release!: () => void;
    k.gate = new Promise((r) => (release = r));
    const p = rejection(cg.reclaimTo(100 * MiB, journal));
    await until('the write', () => k.writes.length === 1);
    rmSync(k.paths.memoryDir, { recursive: true });
    release();
    k.gate = undefined;
    const err = (await p) as HyperboxError;
    t.equal(((err?.cause ?? err) as NodeJS.ErrnoException).code, 'ENOENT', 'ENOENT, as cause');
    t.strictSame(log.map((e) => ('end' in e ? 'end' : 'begin')), ['begin', 'end'], 'journal ended: a gone cgroup has nothing to restore');
  });
});

t.test('restore', async (t) => {
  const root = tempRoot(t);
  const k = new FakeKernel(root, { mode: 'v2', reclaim: 'no' });
  const high = k.path('memory.high');
  const entry: Lowered = { path: high, original: 'max', lowered: 100 * MiB };

  k.put('memory.high', String(100 * MiB));
  t.equal(await restore(k.io, entry), true, 'lowered: put back');
  t.equal(k.value('memory.high'), 'max');
  t.strictSame(k.writes, [{ file: 'memory.high', value: 'max' }]);

  k.writes.length = 0;
  t.equal(await restore(k.io, entry), false, 'already the original: nothing written');
  t.strictSame(k.writes, [], 'no write');

  k.put('memory.high', String(2 * GiB));
  const kept = await restore(k.io, entry);
  t.equal(k.value('memory.high'), String(2 * GiB), "someone else's value stays");
  t.strictSame(k.writes, [], 'no write');
  t.equal(kept, false, 'and the original is not in force');

  t.equal(await restore(k.io, { ...entry, path: join(root, 'gone', 'memory.high') }), false, 'a cgroup that is gone has nothing to restore');
  const enoentOnWrite: CgroupIo = { read: () => String(100 * MiB), write: async () => Promise.reject(errnoError('ENODEV')) };
  t.equal(await restore(enoentOnWrite, entry), false, 'nor one that goes before the write');
  const readFail: CgroupIo = {
    read: () => {
      throw errnoError('EACCES');
    },
    write: async () => {},
  };
  t.match(await rejection(restore(readFail, entry)), { code: 'E_CGROUP', message: new RegExp(high) }, 'an unreadable file throws, naming it');
  const writeFail: CgroupIo = { read: () => String(100 * MiB), write: async () => Promise.reject(errnoError('EPERM')) };
  t.match(await rejection(restore(writeFail, entry)), { code: 'E_CGROUP' }, 'a write that fails otherwise throws');
});

t.test('reclaimTo puts memory.high back on a kernel with 64 KiB pages', async (t) => {
  // arm64 with 64K pages, ppc64le: the kernel keeps limits in pages and reads them back rounded.
  const root = tempRoot(t);
  const k = new FakeKernel(root, { mode: 'v2', reclaim: 'no', anon: 64 * MiB, cache: 192 * MiB, pageSize: 65536 });
  const cg = new MemoryCgroup(k.paths, k.io);
  const { journal } = recordingJournal(k, 'memory.high');
  await cg.reclaimTo(100 * MiB + 3 * 4096, journal);
  t.equal(k.value('memory.high'), 'max', 'memory.high is back at max');
});

t.test('budgetAncestors and budgetHits: the limits a container shares with others', async (t) => {
  const root = tempRoot(t);
  const mk = (dir: string, files: Record<string, string>) => {
    mkdirSync(dir, { recursive: true });
    for (const [f, v] of Object.entries(files)) writeFileSync(join(dir, f), v + '\n');
  };
  const io: CgroupIo = { read: (p) => readFileSync(p, 'utf8'), write: async () => {} };

  t.test('v2: memory.max of the ancestors below the root, memory.events max', async (t) => {
    const top = join(root, 'u');
    const pods = join(top, 'kubepods');
    const pod = join(pods, 'pod1');
    const ctr = join(pod, 'ctr');
    mk(top, { 'memory.max': String(GiB) }); // the root itself is never a budget
    mk(pods, { 'memory.max': 'max', 'memory.events': 'low 0\nhigh 0\nmax 9\noom 0' });
    mk(pod, { 'memory.max': String(2 * GiB), 'memory.events': 'low 0\nhigh 4\nmax 3\noom 0\noom_kill 0' });
    mk(ctr, { 'memory.max': String(GiB), 'memory.events': 'max 100' }); // its own limit is not a shared budget
    const cg = new MemoryCgroup({ mode: 'v2', memoryDir: ctr, pressureDir: ctr, memoryRoot: top }, io);
    t.strictSame(cg.budgetAncestors(), [pod], 'the pod (limited); not kubepods (max), the container itself or the root');
    t.equal(cg.budgetHits([pod]), 3, "the pod's max events");
    writeFileSync(join(pods, 'memory.max'), String(8 * GiB));
    t.strictSame(cg.budgetAncestors(), [pod, pods], 'nearest first');
    t.equal(cg.budgetHits([pod, pods]), 12, 'summed');
    writeFileSync(join(pod, 'memory.events'), 'low 0\nhigh 4\nmax 5\noom 0\n');
    t.equal(cg.budgetHits([pod, pods]), 14, 'a hit counts');
    rmSync(join(pods, 'memory.events'));
    t.equal(cg.budgetHits([pod, pods]), 5, 'a budget that went counts nothing');
    t.strictSame(new MemoryCgroup({ mode: 'v2', memoryDir: ctr, pressureDir: ctr }, io).budgetAncestors(), [], 'no memoryRoot: no budgets');
    t.strictSame(new MemoryCgroup({ mode: 'v2', memoryDir: ctr, pressureDir: ctr, memoryRoot: join(root, 'elsewhere') }, io).budgetAncestors(), [], 'a memoryDir outside memoryRoot: none');
  });

  t.test('v1: memory.limit_in_bytes (the sentinel is no budget), memory.failcnt', async (t) => {
    const top = join(root, 'm');
    const parent = join(top, 'machine.slice');
    const group = join(parent, 'group');
    const ctr = join(group, 'ctr');
    mk(parent, { 'memory.limit_in_bytes': V1_UNLIMITED, 'memory.failcnt': '50' });
    mk(group, { 'memory.limit_in_bytes': String(GiB), 'memory.failcnt': '7' });
    mk(ctr, { 'memory.limit_in_bytes': String(GiB), 'memory.failcnt': '1' });
    const cg = new MemoryCgroup({ mode: 'v1', memoryDir: ctr, pressureDir: join(root, 'u'), memoryRoot: top }, io);
    t.strictSame(cg.budgetAncestors(), [group]);
    t.equal(cg.budgetHits(cg.budgetAncestors()), 7);
    writeFileSync(join(group, 'memory.failcnt'), '8\n');
    t.equal(cg.budgetHits([group]), 8);
  });
});

t.test('cgroupsOfPid', async (t) => {
  const fake = (text: string): CgroupIo => ({
    read: (p) => {
      if (p !== '/proc/42/cgroup') throw errnoError('ENOENT');
      return text;
    },
    write: async () => {},
  });
  const roots = { unified: '/u', memoryV1: '/m' };
  const hybrid = '12:pids:/a\n4:memory:/machine/ctr:x\n1:name=systemd:/a\n0::/machine/ctr-v2\n';
  t.strictSame(cgroupsOfPid(42, roots, fake(hybrid)), { mode: 'v1', memoryDir: '/m/machine/ctr:x', pressureDir: '/u/machine/ctr-v2', memoryRoot: '/m' }, 'hybrid: memory from v1, pressure from v2 (a colon in a path kept)');
  t.strictSame(cgroupsOfPid(42, roots, fake('5:cpu,memory:/k\n0::/k2\n')), { mode: 'v1', memoryDir: '/m/k', pressureDir: '/u/k2', memoryRoot: '/m' }, 'memory co-mounted with another controller');
  t.strictSame(cgroupsOfPid(42, roots, fake('0::/system.slice/ctr.scope\n')), { mode: 'v2', memoryDir: '/u/system.slice/ctr.scope', pressureDir: '/u/system.slice/ctr.scope', memoryRoot: '/u' }, 'pure v2');
  t.strictSame(cgroupsOfPid(42, roots, fake('3:memory-ish:/x\n0::/y\n')), { mode: 'v2', memoryDir: '/u/y', pressureDir: '/u/y', memoryRoot: '/u' }, 'only a controller named exactly memory is v1 memory');
  t.throws(() => cgroupsOfPid(42, roots, fake('4:memory:/a\n0::/\n')), { code: 'E_CGROUP', message: /process 42 has no cgroup v2 of its own/ }, 'the v2 root is not its own');
  t.throws(() => cgroupsOfPid(42, roots, fake('4:memory:/a\n')), { code: 'E_CGROUP', message: /process 42 has no cgroup v2/ }, 'no v2 line');
  t.throws(() => cgroupsOfPid(43, roots, fake('')), { code: 'E_CGROUP', message: /cannot read the cgroups of process 43/ }, 'a process that is gone');
  t.throws(() => cgroupsOfPid(2 ** 30), { code: 'E_CGROUP', message: /cannot read the cgroups of process/ }, 'the real /proc, a pid that does not exist');
});
