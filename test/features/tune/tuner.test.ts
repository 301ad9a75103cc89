/**
 * The host tuner end to end, in process, against a fake cgroup v2 tree whose io acts as the
 * kernel does (memory.reclaim and memory.high reclaim page cache; memory.pressure / io.pressure
 * totals grow at a stall rate the test sets) and a fake addon whose PSI trigger the test can
 * fire. Checks: probing down with no pressure, backing off when pressure rises, a fired
 * trigger, the crash journal restored first, a cgroup that goes, idle exit under the ceiling,
 * the memory.high actuator always put back, and a shared budget that fills.
 */
import t, { type Test } from 'tap';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir, totalmem } from 'node:os';
import { basename, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../../src/cli/log.js';
import type { CgroupIo, Lowered } from '../../../src/features/tune/cgroupfs.js';
import { readHistory, type TuneSample } from '../../../src/features/tune/history.js';
import { historyPath, readTunerState, register, registeredKeys, tuneKey, unregister, writeTunerState, type TuneRegistration } from '../../../src/features/tune/store.js';
import { Tuner, type TunerOptions } from '../../../src/features/tune/tuner.js';
import type { PressureEvent } from '../../../src/native/index.js';
import { fakeNative } from '../../helpers/fake-native.js';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const PAGE = 4096;
const RUNC_ROOT = '/run/hbxt-runc';

function errnoError(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: fake kernel`), { code });
}

const pageDown = (n: number) => Math.floor(n / PAGE) * PAGE;

interface WriteRecord {
  file: string;
  value: string;
  at: number;
  /** Date.now() of the write, to compare with samples' t. */
  wall: number;
  /** The journal in the tuner's state file when the write came. */
  journal: Lowered | undefined;
}

/** One container's cgroup v2 directory with a kernel that acts on its files. */
class FakeCgroup {
  anon: number;
  cache: number;
  /** Stall the container suffers, µs per second of wall time. */
  private memRate = 0;
  private ioRate = 0;
  private memTotal = 1_000_000;
  private ioTotal = 2_000_000;
  private lastTick = performance.now();
  refaults = 0;
  readonly writes: WriteRecord[] = [];
  /** memory.high as it was at each read of memory.stat (the start and end of every step and reclaim). */
  readonly highAtStatReads: string[] = [];
  /** Returns the journal of the tuner's state file (set by the harness). */
  journalNow: () => Lowered | undefined = () => undefined;

  constructor(
    readonly dir: string,
    o: { anon: number; cache: number; reclaim: boolean; max?: string; high?: string },
  ) {
    this.anon = o.anon;
    this.cache = o.cache;
    mkdirSync(dir, { recursive: true });
    this.put('memory.max', o.max ?? 'max');
    this.put('memory.high', o.high ?? 'max');
    if (o.reclaim) this.put('memory.reclaim', '');
    this.put('cgroup.procs', '4242');
    this.update();
    this.pressureFiles();
  }

  get current(): number {
    return this.anon + this.cache;
  }

  put(file: string, value: string): void {
    writeFileSync(join(this.dir, file), value + '\n');
  }

  value(file: string): string {
    return readFileSync(join(this.dir, file), 'utf8').trim();
  }

  /** From now on the container stalls this many µs per second (memory, io). */
  setStall(memUs: number, ioUs = 0): void {
    this.tick();
    this.memRate = memUs;
    this.ioRate = ioUs;
  }

  private tick(): void {
    const now = performance.now();
    const secs = (now - this.lastTick) / 1000;
    this.memTotal += this.memRate * secs;
    this.ioTotal += this.ioRate * secs;
    this.lastTick = now;
  }

  private pressureFiles(): void {
    this.tick();
    const line = (total: number) => `some avg10=0.00 avg60=0.00 avg300=0.00 total=${Math.round(total)}\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=${Math.round(total / 2)}\n`;
    writeFileSync(join(this.dir, 'memory.pressure'), line(this.memTotal));
    writeFileSync(join(this.dir, 'io.pressure'), line(this.ioTotal));
  }

  update(): void {
    const inactive = pageDown(this.cache / 4);
    this.put('memory.current', String(this.current));
    this.put(
      'memory.stat',
      [`anon ${this.anon}`, `file ${this.cache}`, 'shmem 0', `inactive_file ${inactive}`, `active_file ${this.cache - inactive}`, 'workingset_refault_anon 0', `workingset_refault_file ${this.refaults}`].join('\n'),
    );
  }

  private reclaim(n: number): number {
    const take = Math.max(0, Math.min(pageDown(n), this.cache));
    this.cache -= take;
    return take;
  }

  readonly io: CgroupIo = {
    read: (path) => {
      const file = basename(path);
      if (path.startsWith(this.dir + '/')) {
        if (file === 'memory.pressure' || file === 'io.pressure') this.pressureFiles();
        if (file === 'memory.stat' && existsSync(this.dir)) this.highAtStatReads.push(this.value('memory.high'));
      }
      return readFileSync(path, 'utf8');
    },
    write: async (path, value) => {
      const file = basename(path);
      const v = value.trim();
      if (path.startsWith(this.dir + '/')) this.writes.push({ file, value: v, at: performance.now(), wall: Date.now(), journal: this.journalNow() });
      if (file === 'memory.reclaim') {
        if (!existsSync(path)) throw errnoError('ENOENT');
        const n = Number(v);
        const took = this.reclaim(n);
        this.update();
        if (took < n) throw errnoError('EAGAIN');
      } else if (file === 'memory.high' || file === 'memory.max') {
        writeFileSync(path, (v === 'max' ? 'max' : String(pageDown(Number(v)))) + '\n');
        if (v !== 'max' && Number(v) < this.current) this.reclaim(this.current - Number(v));
        this.update();
      } else {
        writeFileSync(path, v + '\n');
      }
    },
  };
}

/** The fake addon's PSI side: triggers that the test fires, polls that wait as poll() does. */
function fakePsi() {
  const { nat } = fakeNative({ configDir: '/nonexistent' });
  const opened: { path: string; stallUs: number; windowUs: number; fd: number }[] = [];
  const closed: number[] = [];
  let pending: PressureEvent[] = [];
  let wake: (() => void) | undefined;
  let nextFd = 100;
  let failOpen: Error | undefined;
  nat.psiTriggerOpen = (path, stallUs, windowUs) => {
    if (failOpen) throw failOpen;
    const fd = nextFd++;
    opened.push({ path, stallUs, windowUs, fd });
    return fd;
  };
  nat.psiTriggerClose = (fd) => {
    closed.push(fd);
  };
  nat.pollPressure = (fds, timeoutMs) =>
    new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const finish = () => {
        if (timer) clearTimeout(timer);
        wake = undefined;
        const ready = pending.filter((e) => fds.includes(e.fd));
        pending = pending.filter((e) => !fds.includes(e.fd));
        resolve(ready);
      };
      if (pending.some((e) => fds.includes(e.fd))) return finish();
      wake = finish;
      timer = setTimeout(finish, timeoutMs);
    });
  return {
    nat,
    opened,
    closed,
    fire(fd: number, events: number) {
      pending.push({ fd, events });
      wake?.();
    },
    failOpen(err: Error) {
      failOpen = err;
    },
  };
}

interface Harness {
  base: string;
  k: FakeCgroup;
  reg: TuneRegistration;
  key: string;
  psi: ReturnType<typeof fakePsi>;
  warnings: string[];
  tuner(o?: Partial<TunerOptions>): Tuner;
  samples(): TuneSample[];
}

let ids = 0;

async function harness(
  t: Test,
  o: { anon?: number; cache?: number; reclaim?: boolean; max?: string; high?: string; reg?: Partial<TuneRegistration>; dir?: (base: string) => string; registerIt?: boolean } = {},
): Promise<Harness> {
  const base = mkdtempSync(join(tmpdir(), 'hbxt-tuner-'));
  const saved = process.env.HYPERBOX_STATE;
  process.env.HYPERBOX_STATE = join(base, 'state');
  t.teardown(() => {
    if (saved === undefined) delete process.env.HYPERBOX_STATE;
    else process.env.HYPERBOX_STATE = saved;
    rmSync(base, { recursive: true, force: true });
  });
  const dir = o.dir ? o.dir(base) : join(base, 'cgroup', 'ctr');
  const k = new FakeCgroup(dir, { anon: o.anon ?? 32 * MiB, cache: o.cache ?? 224 * MiB, reclaim: o.reclaim ?? true, max: o.max, high: o.high });
  const id = `ctr-${++ids}`;
  const key = tuneKey(RUNC_ROOT, id);
  const reg: TuneRegistration = { mode: 'v2', memoryDir: dir, pressureDir: dir, key, containerId: id, runcRoot: RUNC_ROOT, instance: `inst-${ids}`, targetUs: 5000, min: 0, registeredAt: Date.now(), ...o.reg };
  if (o.registerIt ?? true) register(reg);
  k.journalNow = () => readTunerState(key)?.lowered;
  const psi = fakePsi();
  const warnings: string[] = [];
  const log = { warn: (m: string) => warnings.push(m), error: (m: string) => warnings.push(m), debug: () => {} } as unknown as Logger;
  return {
    base,
    k,
    reg,
    key,
    psi,
    warnings,
    tuner: (opts = {}) => new Tuner(psi.nat, { intervalMs: 50, windowUs: 2_000_000, persist: false, log, io: k.io, control: { floorBytes: 4 * MiB, probeStep: 0.2 }, lifetimeMs: 1500, ...opts }),
    samples: () => readHistory(historyPath(key))?.samples ?? [],
  };
}

async function until(what: string, fn: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** run() with how long it took. */
async function timed(p: Promise<number>): Promise<{ code: number; ms: number }> {
  const start = performance.now();
  const code = await p;
  return { code, ms: performance.now() - start };
}

t.test('no pressure: it probes down and reclaims to the floor', async (t) => {
  const h = await harness(t, { anon: 96 * MiB, cache: 160 * MiB });
  const floor = 96 * MiB + 4 * MiB;
  const r = await timed(h.tuner({ lifetimeMs: 2200 }).run());
  t.equal(r.code, 0);
  t.ok(r.ms >= 2100 && r.ms < 3200, `ran for its lifetime (${Math.round(r.ms)} ms)`);

  t.strictSame(h.psi.opened.map((o) => [o.path, o.stallUs, o.windowUs]), [[join(h.k.dir, 'memory.pressure'), 10_000, 2_000_000]], 'a trigger for the target over one window (0.5% of 2 s)');
  t.strictSame(h.psi.closed, [h.psi.opened[0]!.fd], 'closed at the end');

  const reclaims = h.k.writes.filter((w) => w.file === 'memory.reclaim');
  t.equal(reclaims.length, 5, 'memory.reclaim was written at each probe: 256 MiB * 0.8^4 is 105 MiB, then the floor');
  t.ok(reclaims.every((w) => Number(w.value) > 0 && Number(w.value) % PAGE === 0), 'whole pages each time');
  t.strictSame(h.k.writes.filter((w) => w.file !== 'memory.reclaim'), [], 'nothing else written');
  t.equal(h.k.value('memory.high'), 'max');
  t.equal(h.k.value('memory.max'), 'max');
  t.equal(h.k.current, floor, 'memory.current fell to the floor (anon + floorBytes)');

  const samples = h.samples();
  t.equal(samples[0]?.action, 'start', 'the first sample is the baseline');
  const probes = samples.filter((s) => s.action === 'probe');
  t.equal(probes.length, 5, 'probe samples');
  t.strictSame(
    probes.map((s) => s.limit),
    [1, 2, 3, 4].map((n) => Array.from({ length: n }).reduce((l: number) => Math.round(l * 0.8), 256 * MiB)).concat(floor),
    'each probe takes probeStep (20%) at zero stall, down to the floor',
  );
  const gaps = probes.slice(1).map((s, i) => s.t - probes[i]!.t);
  // (The loop must wake when a reclaim ends, not at its next poll timeout of up to 250 ms.)
  t.ok(Math.max(...gaps) < 150, `a container that reclaims is still stepped at intervalMs = 50 ms (gaps ${gaps.join(', ')} ms)`);
  t.notOk(samples.some((s) => s.action === 'backoff'), 'no backoff');
  t.equal(samples.at(-1)?.action, 'hold', 'then it holds at the floor');
  t.ok(samples.every((s) => s.limit >= floor && s.floor === floor), 'the limit never went under the floor');
  t.ok(samples.every((s) => s.ceiling === totalmem()), 'no limit anywhere: the ceiling is the host memory');
  for (let i = 1; i < probes.length; i++) t.ok(probes[i]!.limit < probes[i - 1]!.limit, `probe ${i} lowered the limit`);
  for (let i = 1; i < samples.length; i++) if (samples[i]!.given < samples[i - 1]!.given) t.fail(`given went down at sample ${i}`);
  t.equal(samples.at(-1)?.given, 256 * MiB - floor, 'given grew to all that was reclaimed');
  t.equal(samples.at(-1)?.current, floor);
  t.equal(readHistory(historyPath(h.key))?.header.containerId, h.reg.containerId);

  const state = readTunerState(h.key);
  t.equal(state?.given, 256 * MiB - floor, 'state: bytes given back');
  t.equal(state?.limit, floor, 'state: the limit');
  t.equal(state?.lowered, undefined, 'state: no journal');
  t.equal(state?.instance, h.reg.instance);
  t.strictSame(registeredKeys(), [h.key], 'a tuner that stops leaves the registration');
  t.strictSame(h.warnings, []);
});

t.test('pressure rises: it backs off, the limit goes up and nothing more is reclaimed', async (t) => {
  const h = await harness(t, { anon: 32 * MiB, cache: 224 * MiB, max: String(GiB) });
  const run = h.tuner({ lifetimeMs: 1500, control: { floorBytes: 4 * MiB, probeStep: 0.05 } }).run();
  await until('a few reclaims', () => h.k.writes.filter((w) => w.file === 'memory.reclaim').length >= 2);
  h.k.setStall(100_000); // 10% of the time stalled: 20x the target
  t.equal(await run, 0);

  const samples = h.samples();
  const first = samples.findIndex((s) => s.action === 'backoff');
  t.ok(first > 0, 'it backed off');
  const before = samples.slice(0, first);
  const after = samples.slice(first);
  t.ok(before.some((s) => s.action === 'probe'), 'probes before');
  t.ok(after.length >= 4, `backoff steps (${after.length})`);
  t.ok(after.every((s) => s.action === 'backoff'), 'every step under pressure is a backoff');
  t.ok(after.every((s) => s.stallUs > 5000), 'with the measured stall over the target');
  t.ok(after[0]!.limit > before.at(-1)!.limit, `the limit went up (${before.at(-1)!.limit} -> ${after[0]!.limit})`);
  for (let i = 1; i < after.length; i++) t.ok(after[i]!.limit >= after[i - 1]!.limit, `backoff ${i}: the limit did not go down`);
  t.equal(after.at(-1)!.limit, GiB, 'up to the ceiling (memory.max)');
  t.ok(after.every((s) => s.limit <= GiB && s.ceiling === GiB), 'never above it');
  t.strictSame(h.k.writes.filter((w) => w.wall >= after[0]!.t), [], 'no reclaim once backing off');
  t.equal(h.k.current, after[0]!.current, 'memory.current stopped falling');
  t.ok(h.k.current < 256 * MiB, 'after it had fallen');
  t.equal(after.at(-1)!.given, readTunerState(h.key)?.given, 'given stopped growing');
  t.equal(new Set(after.map((s) => s.given)).size, 1, 'given is flat while backing off');
});

t.test('a PSI trigger that fires: a backoff step at once, marked triggered', async (t) => {
  // At its floor (tune.min = current), with a long interval: only the trigger can bring a step soon.
  const h = await harness(t, { anon: 32 * MiB, cache: 8 * MiB, max: String(GiB), reg: { min: 40 * MiB } });
  const tuner = h.tuner({ intervalMs: 10_000, lifetimeMs: 5000 });
  const run = timed(tuner.run());
  const steps = () => h.k.highAtStatReads.length; // one memory.stat read per step (nothing is reclaimed here)
  await until('five steps (the interval doubles from 50 ms)', () => steps() >= 5);
  const stepsBefore = steps();
  await sleep(150);
  t.equal(steps(), stepsBefore, 'no step is due soon');
  const fd = h.psi.opened[0]!.fd;
  const firedAt = Date.now();
  h.psi.fire(fd, h.psi.nat.POLLPRI);
  await until('the triggered step', () => readTunerState(h.key)?.lastTrigger !== undefined, 1000);
  const stepDelay = Date.now() - firedAt;
  tuner.stop();
  const r = await run;
  t.equal(r.code, 0);
  t.ok(r.ms < 4000, 'stop() ends the run');
  t.ok(stepDelay < 300, `the step came ${stepDelay} ms after the trigger, not at the interval`);

  const samples = h.samples();
  const trig = samples.filter((s) => s.triggered);
  t.equal(trig.length, 1, 'one triggered step');
  t.equal(trig[0]!.action, 'backoff', 'a backoff');
  t.ok(trig[0]!.t >= firedAt && trig[0]!.t - firedAt < 300, 'right after the trigger');
  t.equal(trig[0]!.stallUs, 0, 'though the measured stall is zero');
  t.equal(trig[0]!.limit, Math.round(40 * MiB * (1 + 0.25 * 1.5 ** 2)), 'as 1.5x over the target: +56%');
  t.ok(samples.filter((s) => !s.triggered && s.action !== 'start').every((s) => s.action === 'hold'), 'the other steps held at the floor');
  t.ok(readTunerState(h.key)!.lastTrigger! >= firedAt, 'state: lastTrigger');
  t.strictSame(h.k.writes, [], 'nothing reclaimed');
  t.strictSame(h.psi.closed, [fd]);
});

t.test('a trigger reporting POLLERR is closed once; a cgroup that went is dropped and unregistered', async (t) => {
  const h = await harness(t, { cache: 8 * MiB, reg: { min: 40 * MiB } });
  const tuner = h.tuner({ intervalMs: 10_000, lifetimeMs: 5000 });
  const run = timed(tuner.run());
  await until('three steps', () => h.k.highAtStatReads.length >= 3);
  const fd = h.psi.opened[0]!.fd;
  rmSync(h.k.dir, { recursive: true });
  const goneAt = performance.now();
  h.psi.fire(fd, h.psi.nat.POLLERR | h.psi.nat.POLLPRI);
  const r = await run;
  t.equal(r.code, 0, 'nothing left to tune: it exits');
  t.ok(performance.now() - goneAt < 1000, `soon after the cgroup went (${Math.round(performance.now() - goneAt)} ms), not at the interval or the lifetime`);
  t.strictSame(h.psi.closed, [fd], 'the trigger closed exactly once');
  t.strictSame(registeredKeys(), [], 'the registration is gone');
  t.equal(readTunerState(h.key), undefined, 'and its state');
  t.ok(h.samples().length >= 3, 'its history was kept');
  t.strictSame(h.warnings, [], 'no warning: a container that goes is not an error');
});

t.test('a cgroup that disappears between steps (no trigger event) is dropped too', async (t) => {
  const h = await harness(t, { cache: 8 * MiB, reg: { min: 40 * MiB } });
  const run = timed(h.tuner({ intervalMs: 100, lifetimeMs: 5000 }).run());
  await until('two steps', () => h.k.highAtStatReads.length >= 2);
  rmSync(h.k.dir, { recursive: true });
  const r = await run;
  t.ok(r.ms < 2000, `it exits soon (${Math.round(r.ms)} ms)`);
  t.strictSame(registeredKeys(), [], 'unregistered');
  t.equal(readTunerState(h.key), undefined);
  t.strictSame(h.psi.closed, [h.psi.opened[0]!.fd]);
});

t.test('a cgroup that goes during a reclaim: dropped, unregistered, and no warning', async (t) => {
  const h = await harness(t, { anon: 32 * MiB, cache: 224 * MiB });
  const io = h.k.io;
  let removed = false;
  const gone: CgroupIo = {
    read: io.read,
    write: async (path, value) => {
      if (basename(path) === 'memory.reclaim' && !removed) {
        removed = true;
        rmSync(h.k.dir, { recursive: true });
        throw errnoError('ENOENT');
      }
      return io.write(path, value);
    },
  };
  const r = await timed(h.tuner({ io: gone, lifetimeMs: 3000 }).run());
  t.ok(removed, 'the cgroup went during the write');
  t.ok(r.ms < 2000, 'it exits soon');
  t.strictSame(registeredKeys(), [], 'unregistered');
  t.equal(readTunerState(h.key), undefined, 'no state left');
  t.strictSame(h.warnings, [], 'no warning for a container that went', {
  });
});

t.test('a journal left by a killed tuner is put back before anything else; one whose value was changed since is left alone', async (t) => {
  const h = await harness(t, { anon: 32 * MiB, cache: 224 * MiB });
  const lowered = 100 * MiB;
  // This container's own journal: memory.high lowered, then the tuner was killed.
  h.k.put('memory.high', String(lowered));
  writeTunerState(h.key, { instance: h.reg.instance, given: 5 * MiB, limit: 120 * MiB, updatedAt: Date.now(), lowered: { path: join(h.k.dir, 'memory.high'), original: 'max', lowered } });
  // Another container's: since then its caller set memory.high itself.
  const other = join(h.base, 'cgroup', 'other');
  mkdirSync(other, { recursive: true });
  writeFileSync(join(other, 'memory.high'), `${3 * GiB}\n`);
  const otherKey = tuneKey(RUNC_ROOT, 'other');
  writeTunerState(otherKey, { instance: 'x', given: 0, updatedAt: Date.now(), lowered: { path: join(other, 'memory.high'), original: String(2 * GiB), lowered } });
  // A third whose cgroup is gone altogether.
  const goneKey = tuneKey(RUNC_ROOT, 'gone');
  writeTunerState(goneKey, { instance: 'y', given: 0, updatedAt: Date.now(), lowered: { path: join(h.base, 'cgroup', 'gone', 'memory.high'), original: 'max', lowered } });

  const otherWrites: string[] = [];
  const io: CgroupIo = {
    read: h.k.io.read,
    write: async (path, value) => {
      if (!path.startsWith(h.k.dir + '/')) otherWrites.push(`${path}=${value}`);
      return h.k.io.write(path, value);
    },
  };
  t.equal(await h.tuner({ io, lifetimeMs: 600 }).run(), 0);

  t.strictSame(h.k.writes[0] && { file: h.k.writes[0].file, value: h.k.writes[0].value }, { file: 'memory.high', value: 'max' }, 'the first write put memory.high back');
  t.equal(h.k.value('memory.high'), 'max', 'and it stays there');
  t.ok(h.k.writes.slice(1).every((w) => w.file === 'memory.reclaim'), 'then tuning went on with memory.reclaim');
  t.ok(h.k.writes.length > 1, 'tuning went on');
  t.equal(readFileSync(join(other, 'memory.high'), 'utf8').trim(), String(3 * GiB), "the other caller's value stays");
  t.strictSame(otherWrites, [], 'nothing written outside the tuned cgroup');
  for (const key of [h.key, otherKey, goneKey]) t.equal(readTunerState(key)?.lowered, undefined, `${key}: journal cleared`);
  t.equal(readTunerState(h.key)!.given >= 5 * MiB, true, 'the resumed state kept what was given before');
  t.ok(
    h.warnings.some((w) => /put back 1 limit/.test(w)),
    `the warning counts what was put back: ${JSON.stringify(h.warnings)}`,
  );
  t.ok(h.warnings.some((w) => /put back \d+ limit/.test(w)), 'a warning says limits were put back');
});

t.test('idle exit and the ceiling min(tune.max, memory.max, caller limit)', async (t) => {
  const cases: { name: string; max?: number; memoryMax: string; callerLimit?: number; ceiling: number }[] = [
    { name: 'the caller limit is lowest', max: 200 * MiB, memoryMax: String(300 * MiB), callerLimit: 160 * MiB, ceiling: 160 * MiB },
    { name: 'tune.max is lowest', max: 150 * MiB, memoryMax: String(300 * MiB), callerLimit: 400 * MiB, ceiling: 150 * MiB },
    { name: 'memory.max is lowest', max: 500 * MiB, memoryMax: String(180 * MiB), ceiling: 180 * MiB },
  ];
  for (const c of cases) {
    t.test(c.name, async (t) => {
      const h = await harness(t, { anon: 60 * MiB, cache: 40 * MiB, max: c.memoryMax, reg: { max: c.max, callerLimit: c.callerLimit } });
      h.k.setStall(200_000); // stalled from the start: backoff after backoff
      const run = timed(h.tuner({ lifetimeMs: 5000 }).run());
      await until('the limit at the ceiling', () => readTunerState(h.key)?.limit === c.ceiling);
      await sleep(150);
      unregister(h.key, h.reg.instance);
      const unregisteredAt = performance.now();
      const r = await run;
      t.equal(r.code, 0);
      const lag = performance.now() - unregisteredAt;
      t.ok(lag < 700, `run() returned ${Math.round(lag)} ms after the registration went`);
      t.ok(r.ms < 4000, 'well before its lifetime');
      const samples = h.samples();
      t.ok(samples.length >= 4, `${samples.length} samples`);
      t.ok(samples.every((s) => s.ceiling === c.ceiling), `the ceiling is ${c.ceiling}`);
      t.ok(samples.every((s) => s.limit <= c.ceiling), 'the limit never above it');
      t.equal(samples.at(-1)!.limit, c.ceiling, 'and reaches it');
      t.equal(readTunerState(h.key), undefined, 'state removed with the registration');
      t.strictSame(h.psi.closed, [h.psi.opened[0]!.fd], 'trigger closed');
      t.strictSame(h.k.writes, [], 'nothing reclaimed');
    });
  }
  t.test('nothing registered at all: run() returns at once', async (t) => {
    const h = await harness(t, { registerIt: false });
    const r = await timed(h.tuner({ lifetimeMs: 5000 }).run());
    t.equal(r.code, 0);
    t.ok(r.ms < 300, `returned in ${Math.round(r.ms)} ms`);
    t.strictSame(h.psi.opened, []);
  });
});

t.test('the memory.high actuator (no memory.reclaim): lowered under a journal, back to its original after every step', async (t) => {
  const h = await harness(t, { anon: 96 * MiB, cache: 160 * MiB, reclaim: false, high: String(GiB) });
  h.psi.failOpen(Object.assign(new Error('cannot set a PSI trigger: Invalid argument'), { errno: 22 }));
  const floor = 100 * MiB;
  t.equal(await h.tuner({ lifetimeMs: 2200, holdMs: 20 }).run(), 0);

  const lowers = h.k.writes.filter((w) => w.value !== String(GiB));
  const restores = h.k.writes.filter((w) => w.value === String(GiB));
  t.equal(lowers.length, 5, 'memory.high was lowered at each probe');
  t.ok(h.k.writes.every((w) => w.file === 'memory.high'), 'only memory.high was written');
  t.strictSame(
    h.k.writes.map((w) => (w.value === String(GiB) ? 'restore' : 'lower')),
    lowers.map(() => ['lower', 'restore']).flat(),
    'each lowering followed by its restore, never two lowerings in a row',
  );
  t.equal(restores.length, lowers.length);
  for (const w of lowers) {
    t.strictSame(w.journal, { path: join(h.k.dir, 'memory.high'), original: String(GiB), lowered: Number(w.value) }, `lowered to ${w.value} under a journal naming the original`);
  }
  t.ok(restores.every((w) => w.journal !== undefined), 'the journal holds until the original is back');
  t.ok(h.k.highAtStatReads.length > lowers.length * 2, 'memory.stat read at every step and reclaim');
  t.strictSame([...new Set(h.k.highAtStatReads)], [String(GiB)], 'memory.high was at its original at every step');
  t.equal(h.k.value('memory.high'), String(GiB), 'and is at the end');
  t.equal(readTunerState(h.key)?.lowered, undefined, 'journal cleared');
  t.equal(h.k.current, floor, 'the container went down to the floor all the same');
  t.equal(readTunerState(h.key)?.given, 256 * MiB - floor);
  t.equal(h.samples().filter((s) => s.action === 'probe').length, 5, 'probe samples');
  t.equal(h.samples().at(-1)?.action, 'hold');
  t.equal(h.warnings.length, 1, 'one warning');
  t.match(h.warnings[0], new RegExp(`container ${h.reg.containerId}: no PSI trigger .*Invalid argument.*read every 50 ms`), 'no trigger: it says so and polls');
});

t.test('a shared budget that fills: inactive page cache reclaimed at once, no backoff', async (t) => {
  let pod = '';
  const h = await harness(t, {
    anon: 32 * MiB,
    cache: 224 * MiB,
    dir: (base) => {
      pod = join(base, 'cg', 'pod');
      mkdirSync(pod, { recursive: true });
      writeFileSync(join(pod, 'memory.max'), `${512 * MiB}\n`);
      writeFileSync(join(pod, 'memory.events'), 'low 0\nhigh 0\nmax 0\noom 0\n');
      return join(pod, 'ctr');
    },
  });
  h.reg.memoryRoot = join(h.base, 'cg');
  register(h.reg);
  h.k.setStall(200_000); // other containers fill the pod: this one stalls
  let hits = 0;
  const timer = setInterval(() => writeFileSync(join(pod, 'memory.events'), `low 0\nhigh 0\nmax ${++hits}\noom 0\n`), 20);
  t.teardown(() => clearInterval(timer));
  t.equal(await h.tuner({ lifetimeMs: 1200 }).run(), 0);
  clearInterval(timer);

  const samples = h.samples();
  t.ok(samples.length >= 4, `${samples.length} samples`);
  const steps = samples.slice(1);
  t.notOk(steps.some((s) => s.action === 'backoff'), 'no backoff though the stall is 40x the target');
  t.ok(steps.some((s) => s.action === 'probe'), 'it took memory');
  const first = h.k.writes.find((w) => w.file === 'memory.reclaim');
  t.equal(first?.value, String(pageDown(224 * MiB / 4)), 'the first reclaim is the inactive page cache, all at once');
  t.ok(h.k.current < 256 * MiB - 56 * MiB + 1, 'memory went down');
});
