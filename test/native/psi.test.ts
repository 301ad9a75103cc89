/**
 * The addon's PSI triggers against the real kernel: a trigger on a fresh cgroup v2 directory
 * (close-on-exec, the window rules of a process with or without CAP_SYS_RESOURCE), a poll that
 * times out on an idle cgroup without blocking the event loop, a poll that fires when a process
 * in the cgroup refaults its way through a file larger than its v1 memory limit, POLLERR once the
 * cgroup is removed, and the errors for missing files and bad arguments.
 */
import t, { type Test } from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { constants as fsConstants, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { processTempDir } from '../../fixtures/tmp.js';
import { native } from '../../src/native/index.js';
import { requireRoot, skipOrFail } from '../helpers/runtime.js';

const { EINVAL, ENOENT } = osConstants.errno;
const UNIFIED = '/sys/fs/cgroup/unified';
const MEMORY_V1 = '/sys/fs/cgroup/memory';
const WINDOW = 2_000_000;
const CAP_SYS_RESOURCE = 24;

const nat = native();
const tmp = processTempDir('psi');
const made: string[] = [];

t.teardown(() => {
  // Children have exited by now (each test waits for its own); an empty cgroup can go.
  for (const dir of [...made].reverse()) {
    try {
      if (existsSync(dir)) rmdirSync(dir);
    } catch (err) {
      console.error(`cannot remove ${dir}: ${(err as Error).message}`);
    }
  }
});

function ready(t: Test, needV1 = false): boolean {
  if (!requireRoot(t)) return false;
  if (!existsSync('/proc/pressure/memory')) {
    skipOrFail(t, 'this kernel has no PSI (/proc/pressure/memory)');
    return false;
  }
  if (!existsSync(join(UNIFIED, 'cgroup.procs'))) {
    skipOrFail(t, `no cgroup2 hierarchy at ${UNIFIED}`);
    return false;
  }
  if (needV1 && !existsSync(join(MEMORY_V1, 'memory.limit_in_bytes'))) {
    skipOrFail(t, `no cgroup v1 memory controller at ${MEMORY_V1} (the test limits the stressed process through it)`);
    return false;
  }
  return true;
}

let n = 0;
/** A new cgroup (unified, and the v1 memory one with the same name when asked), removed at the end. */
function makeCgroup(tag: string, v1 = false): { name: string; unified: string; memory: string } {
  const name = `hbxt-psi-${process.pid}-${tag}-${++n}`;
  const unified = join(UNIFIED, name);
  const memory = join(MEMORY_V1, name);
  mkdirSync(unified);
  made.push(unified);
  if (v1) {
    mkdirSync(memory);
    made.push(memory);
  }
  return { name, unified, memory };
}

function thrown(fn: () => unknown): { errno?: number; message: string } | undefined {
  try {
    fn();
  } catch (err) {
    return err as { errno?: number; message: string };
  }
  return undefined;
}

/** The `some` total (µs) of a pressure file. */
function someTotal(path: string): number {
  return Number(/^some .*total=(\d+)/m.exec(readFileSync(path, 'utf8'))![1]);
}

function hasCap(cap: number): boolean {
  const eff = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]!;
  return ((BigInt(`0x${eff}`) >> BigInt(cap)) & 1n) === 1n;
}

/** Runs sh -c script in the cgroups; resolves with its exit code. */
function runIn(cg: { unified: string; memory: string }, v1: boolean, script: string): { exited: Promise<number | null> } {
  const join1 = `echo $$ > ${cg.unified}/cgroup.procs` + (v1 ? ` && echo $$ > ${cg.memory}/cgroup.procs` : '');
  const child = spawn('sh', ['-c', `${join1} && ${script}`], { stdio: ['ignore', 'ignore', 'inherit'] });
  return { exited: new Promise((resolve) => child.on('exit', (code) => resolve(code))) };
}

t.test('a trigger on a fresh cgroup: a close-on-exec descriptor on its memory.pressure', async (t) => {
  if (!ready(t)) return;
  const cg = makeCgroup('open');
  const path = join(cg.unified, 'memory.pressure');
  const fd = nat.psiTriggerOpen(path, 10_000, WINDOW);
  t.teardown(() => nat.psiTriggerClose(fd));
  t.ok(Number.isInteger(fd) && fd > 2, `a descriptor (${fd})`);
  t.equal(readlinkSync(`/proc/self/fd/${fd}`), path, 'on the pressure file');
  const flags = parseInt(/^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!, 8);
  t.equal(flags & 3, fsConstants.O_RDWR, 'opened read-write (a trigger is written, then polled)');
  t.ok(flags & 0o2000000, 'close-on-exec');
  t.ok(flags & fsConstants.O_NONBLOCK, 'non-blocking');
  t.equal(someTotal(path), 0, 'a fresh cgroup has no stall');
  const io = nat.psiTriggerOpen(join(cg.unified, 'io.pressure'), 10_000, WINDOW);
  t.ok(io !== fd, 'io.pressure takes one too');
  nat.psiTriggerClose(io);
  t.notOk(existsSync(`/proc/self/fd/${io}`) && readlinkSync(`/proc/self/fd/${io}`) === join(cg.unified, 'io.pressure'), 'psiTriggerClose closed it');
});

t.test('the kernel window rules: 2 s multiples without CAP_SYS_RESOURCE, 500 ms to 10 s with it', async (t) => {
  if (!ready(t)) return;
  const cg = makeCgroup('window');
  const path = join(cg.unified, 'memory.pressure');
  if (hasCap(CAP_SYS_RESOURCE)) {
    const fd = nat.psiTriggerOpen(path, 5000, 500_000);
    t.ok(fd > 2, 'CAP_SYS_RESOURCE: a 500 ms window is taken');
    nat.psiTriggerClose(fd);
  } else {
    const err = thrown(() => nat.psiTriggerOpen(path, 5000, 500_000));
    t.equal(err?.errno, EINVAL, 'no CAP_SYS_RESOURCE: a 500 ms window is refused with EINVAL');
    t.match(err?.message, /^cannot set a PSI trigger \(some 5000 500000\) on .*memory\.pressure: Invalid argument$/, `a clear message: ${err?.message}`);
    const four = nat.psiTriggerOpen(path, 5000, 4_000_000);
    t.ok(four > 2, 'a 4 s window is taken');
    nat.psiTriggerClose(four);
  }
  const long = thrown(() => nat.psiTriggerOpen(path, 5000, 12_000_000));
  t.equal(long?.errno, EINVAL, 'over 10 s: EINVAL from the kernel');
  t.match(long?.message, /some 5000 12000000/);
});

t.test('pollPressure: [] at the timeout on an idle cgroup, and the event loop runs meanwhile', async (t) => {
  if (!ready(t)) return;
  const cg = makeCgroup('idle');
  const fd = nat.psiTriggerOpen(join(cg.unified, 'memory.pressure'), 5000, WINDOW);
  t.teardown(() => nat.psiTriggerClose(fd));
  let ticks = 0;
  const timer = setInterval(() => ticks++, 20);
  const start = Date.now();
  const events = await nat.pollPressure([fd], 600);
  const took = Date.now() - start;
  clearInterval(timer);
  t.strictSame(events, [], 'no event');
  t.ok(took >= 580 && took < 1500, `returned at the timeout (${took} ms)`);
  t.ok(ticks >= 15, `timers ran during the poll (${ticks} ticks): it waits on a worker thread`);
  const zero = Date.now();
  t.strictSame(await nat.pollPressure([fd], 0), [], 'a zero timeout returns at once');
  t.ok(Date.now() - zero < 200);
  t.strictSame(await nat.pollPressure([], 50), [], 'no descriptors: a sleep');
});

t.test('pollPressure fires (POLLPRI) when a process in the cgroup stalls on memory', async (t) => {
  if (!ready(t, true)) return;
  const cg = makeCgroup('stress', true);
  writeFileSync(join(cg.memory, 'memory.limit_in_bytes'), String(32 * 1024 * 1024));
  const file = join(tmp, 'stress.bin');
  // O_DIRECT: its pages are not left cached (and charged) by the writer.
  const dd = spawnSync('dd', ['if=/dev/zero', `of=${file}`, 'bs=1M', 'count=96', 'oflag=direct'], { encoding: 'utf8' });
  t.equal(dd.status, 0, `96 MiB written with oflag=direct ${dd.stderr.trim().split('\n').at(-1)}`);
  t.teardown(() => rmSync(file, { force: true }));
  const pressure = join(cg.unified, 'memory.pressure');
  const fd = nat.psiTriggerOpen(pressure, 5000, WINDOW);
  t.teardown(() => nat.psiTriggerClose(fd));

  t.test('control: a process that only sleeps there stalls nothing', async (t) => {
    const idle = runIn(cg, true, 'sleep 1');
    const events = await nat.pollPressure([fd], 1500);
    t.equal(await idle.exited, 0);
    t.strictSame(events, [], 'no event');
    t.equal(someTotal(pressure), 0, 'no stall counted');
  });

  t.test('a 32 MiB cgroup reading a 96 MiB file eight times', async (t) => {
    const start = Date.now();
    const stress = runIn(cg, true, `for i in 1 2 3 4 5 6 7 8; do cat ${file} > /dev/null; done`);
    const events = await nat.pollPressure([fd], 8000);
    const took = Date.now() - start;
    t.equal(await stress.exited, 0, 'the reader finished');
    t.equal(events.length, 1, `one descriptor ready after ${took} ms`);
    t.equal(events[0]?.fd, fd);
    t.ok((events[0]?.events ?? 0) & nat.POLLPRI, `POLLPRI (events ${events[0]?.events})`);
    t.notOk((events[0]?.events ?? 0) & nat.POLLERR, 'not POLLERR');
    t.ok(took < 8000, 'before the timeout');
    const total = someTotal(pressure);
    t.ok(total >= 5000, `the cgroup stalled ${total} µs (the trigger asked for 5000 within 2 s)`);
    const failcnt = Number(readFileSync(join(cg.memory, 'memory.failcnt'), 'utf8'));
    t.ok(failcnt > 0, `it hit its v1 limit (${failcnt} times)`);
  });
});

t.test('POLLERR once the cgroup is removed', async (t) => {
  if (!ready(t)) return;
  const cg = makeCgroup('gone');
  const fd = nat.psiTriggerOpen(join(cg.unified, 'memory.pressure'), 5000, WINDOW);
  t.teardown(() => nat.psiTriggerClose(fd));
  rmdirSync(cg.unified);
  const start = Date.now();
  const events = await nat.pollPressure([fd], 2000);
  t.equal(events.length, 1);
  t.equal(events[0]?.fd, fd);
  t.ok((events[0]?.events ?? 0) & nat.POLLERR, `POLLERR (events ${events[0]?.events})`);
  t.ok(Date.now() - start < 1000, 'at once');
});

t.test('errors', async (t) => {
  if (!ready(t)) return;
  const cg = makeCgroup('errors');
  const path = join(cg.unified, 'memory.pressure');
  const missing = thrown(() => nat.psiTriggerOpen(join(cg.unified, 'nope.pressure'), 5000, WINDOW));
  t.equal(missing?.errno, ENOENT, 'a missing file: ENOENT');
  t.match(missing?.message, /^open .*nope\.pressure: No such file or directory$/);
  t.equal(thrown(() => nat.psiTriggerOpen(join(UNIFIED, 'hbxt-no-such-cgroup', 'memory.pressure'), 5000, WINDOW))?.errno, ENOENT, 'a missing cgroup: ENOENT');
  const bad: [string, () => unknown][] = [
    ['no arguments', () => (nat.psiTriggerOpen as unknown as () => number)()],
    ['a number for the path', () => nat.psiTriggerOpen(5 as unknown as string, 5000, WINDOW)],
    ['a string for the stall', () => nat.psiTriggerOpen(path, '5000' as unknown as number, WINDOW)],
    ['an empty path', () => nat.psiTriggerOpen('', 5000, WINDOW)],
    ['a NUL in the path', () => nat.psiTriggerOpen(`${path}\0x`, 5000, WINDOW)],
    ['a zero stall', () => nat.psiTriggerOpen(path, 0, WINDOW)],
    ['a negative stall', () => nat.psiTriggerOpen(path, -5, WINDOW)],
    ['a NaN stall', () => nat.psiTriggerOpen(path, NaN, WINDOW)],
    ['a stall as long as the window', () => nat.psiTriggerOpen(path, WINDOW, WINDOW)],
    ['a zero window', () => nat.psiTriggerOpen(path, 5000, 0)],
    ['a huge window', () => nat.psiTriggerOpen(path, 5000, 5e9)],
    ['psiTriggerClose of a string', () => nat.psiTriggerClose('3' as unknown as number)],
    ['pollPressure without an array', () => nat.pollPressure('3' as unknown as number[], 10)],
    ['pollPressure with a string fd', () => nat.pollPressure(['3'] as unknown as number[], 10)],
    ['pollPressure without a timeout', () => (nat.pollPressure as unknown as (fds: number[]) => unknown)([])],
  ];
  for (const [what, fn] of bad) {
    const err = thrown(fn);
    t.equal(err?.errno, EINVAL, `${what}: thrown at once, errno EINVAL (${JSON.stringify(err?.message)})`);
  }
  t.match(thrown(() => nat.psiTriggerOpen(path, WINDOW, WINDOW))?.message, /stall must be above 0 and below the window/, 'the message says what is wrong');
  // Nothing half-made: the refused calls (the kernel's refusals included) left no descriptor open on the file.
  t.equal(thrown(() => nat.psiTriggerOpen(path, 5000, 500_001))?.errno, EINVAL, 'a window the kernel refuses');
  const open = readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === path;
    } catch {
      return false;
    }
  });
  t.strictSame(open, [], 'no descriptor left open on the pressure file');
});
