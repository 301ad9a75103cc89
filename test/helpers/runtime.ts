// Shared plumbing for integration tests that drive an OCI runtime binary: which binary is under
// test, prerequisite handling, unique ids, private state roots and cleanup that always runs.
import { closeSync, existsSync, openSync, readFileSync, readdirSync, realpathSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { execa, type Options, type ResultPromise } from 'execa';
import type { Test } from 'tap';
import { findBusybox, writeBundle, type Bundle, type BundleOptions } from '../../fixtures/busybox.js';
import { TEMP_PREFIX } from '../../fixtures/tmp.js';
import { findRunc, MissingPrerequisite, which } from '../../fixtures/tools.js';

export { MissingPrerequisite };

export interface RuntimeUnderTest {
  /** Absolute path of the binary every test drives. */
  path: string;
  /** 'runc' or 'hyperbox-runc' (or the basename of anything else), for test titles. */
  label: string;
  /** True when chosen with HYPERBOX_TEST_RUNTIME: then a missing binary is always a failure. */
  explicit: boolean;
}

let cachedRuntime: RuntimeUnderTest | undefined;

/** The runtime binary from HYPERBOX_TEST_RUNTIME, else the real runc. */
export function runtimeUnderTest(): RuntimeUnderTest {
  if (cachedRuntime) return cachedRuntime;
  const env = process.env.HYPERBOX_TEST_RUNTIME;
  const path = env ? resolve(env) : (findRunc() ?? '');
  let label = path ? basename(path) : 'runc';
  const runc = findRunc();
  try {
    if (runc && path && realpathSync(path) === realpathSync(runc)) label = 'runc';
  } catch {
    // A missing binary keeps its basename as label; the prerequisite check reports it.
  }
  if (label.includes('hyperbox')) label = 'hyperbox-runc';
  cachedRuntime = { path, label, explicit: Boolean(env) };
  return cachedRuntime;
}

/** CI=true (or any value but "" / "0" / "false") turns missing prerequisites into failures. */
export function inCI(): boolean {
  const ci = process.env.CI;
  return ci !== undefined && ci !== '' && ci !== '0' && ci.toLowerCase() !== 'false';
}

/**
 * A prerequisite is missing: fail in CI (a green CI run must mean the tests ran), skip with the
 * reason elsewhere. Call it before any assertion in the test and return right after.
 */
export function skipOrFail(t: Test, reason: string): void {
  if (inCI()) {
    t.fail(`prerequisite missing (CI=${process.env.CI}): ${reason}`);
    return;
  }
  t.comment(`SKIP: ${reason}`);
  try {
    t.plan(0, reason);
  } catch {
    // Already planned or asserted: a skipped assertion still carries the reason into the output.
    t.pass(reason, { skip: reason });
  }
}

export function requireRoot(t: Test): boolean {
  const uid = process.getuid?.();
  if (uid !== 0) {
    skipOrFail(t, `needs root (running as uid ${uid})`);
    return false;
  }
  return true;
}

export interface Prerequisites {
  root?: boolean;
  /** Commands that must resolve in PATH (or the sbin fallbacks). */
  commands?: string[];
  /** The runtime under test must exist and be executable. */
  runtime?: boolean;
  /** The real runc (fixtures use `runc spec`; cleanup falls back to it). */
  runc?: boolean;
  busybox?: boolean;
  /** BPF with BTF and a cgroup v2 hierarchy (the syscall recorder). */
  bpf?: boolean;
}

/** Checks prerequisites; on the first missing one calls skipOrFail (or fails) and returns false. */
export function checkPrerequisites(t: Test, p: Prerequisites): boolean {
  if (p.root && !requireRoot(t)) return false;
  if (p.runtime) {
    const rt = runtimeUnderTest();
    if (!rt.path || !which(rt.path)) {
      const why = rt.explicit
        ? `HYPERBOX_TEST_RUNTIME=${process.env.HYPERBOX_TEST_RUNTIME} is not an executable file`
        : 'no runc binary found and HYPERBOX_TEST_RUNTIME not set';
      // Asking for a specific runtime and not having it is a broken setup, not a missing tool.
      if (rt.explicit) t.fail(why);
      else skipOrFail(t, why);
      return false;
    }
  }
  if (p.runc && !findRunc()) {
    skipOrFail(t, 'the real runc is needed (runc spec, cleanup) and was not found (apt-get install runc)');
    return false;
  }
  if (p.busybox) {
    try {
      findBusybox();
    } catch (e) {
      skipOrFail(t, (e as Error).message);
      return false;
    }
  }
  if (p.bpf) {
    const missing = !existsSync('/sys/kernel/btf/vmlinux')
      ? 'kernel BTF (/sys/kernel/btf/vmlinux)'
      : !existsSync('/proc/sys/net/core/bpf_jit_enable')
        ? 'the BPF syscall'
        : !readFileSync('/proc/self/cgroup', 'utf8').includes('0::')
          ? 'a cgroup v2 hierarchy'
          : undefined;
    if (missing) {
      skipOrFail(t, `this kernel lacks ${missing}, which the syscall recorder needs`);
      return false;
    }
  }
  for (const c of p.commands ?? []) {
    if (!which(c)) {
      skipOrFail(t, `command not found: ${c}`);
      return false;
    }
  }
  return true;
}

/** Runs `fn`; a MissingPrerequisite thrown by a fixture becomes skip-or-fail, anything else propagates. */
export async function withPrerequisite<T>(t: Test, fn: () => Promise<T>): Promise<T | undefined> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof MissingPrerequisite) {
      skipOrFail(t, e.message);
      return undefined;
    }
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// What a test file made, so the last test of the file can prove nothing is left behind.

const registry = {
  ids: new Set<string>(),
  paths: new Set<string>(),
  /** cgroup paths relative to a hierarchy root, e.g. "/hbxtest/ID" for containerd containers. */
  cgroups: new Set<string>(),
};

export function registerId(id: string): void {
  registry.ids.add(id);
}
export function registerPath(p: string): void {
  registry.paths.add(p);
}
export function registerCgroup(rel: string): void {
  registry.cgroups.add(rel);
}

let idCounter = 0;
const runTag = `${process.pid.toString(36)}${randomBytes(2).toString('hex')}`;

/** A container id unique to this run; registered for the leftover check. */
export function uniqueId(tag: string): string {
  const id = `hbxt-${tag}-${runTag}-${++idCounter}`;
  registerId(id);
  return id;
}

export interface MountEntry {
  mountPoint: string;
  fsType: string;
  source: string;
}

export function readMounts(): MountEntry[] {
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [pre, post = ''] = line.split(' - ');
      const f = pre!.split(' ');
      const g = post.split(' ');
      return { mountPoint: unescape(f[4] ?? ''), fsType: g[0] ?? '', source: unescape(g[1] ?? '') };
    });
}

function under(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
}

/** Unmount (lazily, deepest first) everything below `dir`; returns what had to be unmounted. */
export async function unmountUnder(dir: string): Promise<string[]> {
  const found = readMounts()
    .map((m) => m.mountPoint)
    .filter((mp) => under(mp, dir))
    .sort((a, b) => b.length - a.length);
  for (const mp of found) {
    await execa('umount', ['-l', mp], { reject: false });
  }
  return found;
}

/** A fresh temp dir for this test, removed (after unmounting anything left in it) at teardown. */
export async function testTempDir(t: Test, tag: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `${TEMP_PREFIX}${tag}-`));
  registerPath(dir);
  t.teardown(async () => {
    await unmountUnder(dir);
    await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  });
  return dir;
}

function cgroupMounts(): Array<{ mountPoint: string; v2: boolean; controllers: string[] }> {
  return readMounts()
    .filter((m) => m.fsType === 'cgroup' || m.fsType === 'cgroup2')
    .map((m) => ({ mountPoint: m.mountPoint, v2: m.fsType === 'cgroup2', controllers: basename(m.mountPoint).split(',') }));
}

function pidsWhose(pred: (cgroup: string, cmdline: string) => boolean): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      // Zombies are not leftovers of ours: reaping them is their parent's (often pid 1's) job.
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      if (stat[stat.lastIndexOf(')') + 2] === 'Z') continue;
      const cg = readFileSync(`/proc/${e}/cgroup`, 'utf8');
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (pred(cg, cmd)) out.push(Number(e));
    } catch {
      // Exited while we looked.
    }
  }
  return out;
}

export interface Leftovers {
  mounts: string[];
  cgroupDirs: string[];
  processes: string[];
  paths: string[];
}

/** Everything made by this test process (ids, temp paths, cgroups) that still exists. */
export function findLeftovers(): Leftovers {
  const ids = [...registry.ids];
  const paths = [...registry.paths];
  const mounts = readMounts()
    .filter((m) => paths.some((p) => under(m.mountPoint, p)) || ids.some((id) => m.mountPoint.includes(id)))
    .map((m) => `${m.mountPoint} (${m.fsType})`);

  const cgroupDirs: string[] = [];
  const rels = new Set<string>([...registry.cgroups, ...ids.map((id) => `/${id}`)]);
  // runc without cgroupsPath nests the container under its caller's cgroup in each hierarchy.
  const self = readFileSync('/proc/self/cgroup', 'utf8').split('\n').filter(Boolean);
  for (const { mountPoint, v2, controllers } of cgroupMounts()) {
    const mine = self.find((l) => {
      const ctl = (l.split(':')[1] ?? '').split(',').map((c) => c.replace(/^name=/, ''));
      return v2 ? ctl.join() === '' : controllers.every((c) => ctl.includes(c));
    });
    const selfPath = mine ? mine.split(':').slice(2).join(':') : '/';
    for (const rel of rels) {
      for (const base of new Set(['/', selfPath])) {
        const d = join(mountPoint, base, rel);
        if (existsSync(d)) cgroupDirs.push(d);
      }
    }
  }

  const seg = (cg: string, id: string) => cg.includes(`/${id}\n`) || cg.includes(`/${id}/`) || cg.endsWith(`/${id}`);
  const processes = pidsWhose((cg, cmd) => ids.some((id) => seg(cg, id) || cmd.includes(id)) || paths.some((p) => cmd.includes(p))).map((pid) => {
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
    } catch {
      /* gone */
    }
    return `${pid}: ${cmd}`;
  });

  return { mounts, cgroupDirs, processes, paths: paths.filter((p) => existsSync(p)) };
}

/**
 * The last test of a file: containers, mounts, cgroups, processes and temp dirs made by the
 * earlier tests are all gone (their teardowns have run by now).
 */
export function leftoverTest(t: Test, label: string): void {
  t.test(`[${label}] nothing left behind (mounts, cgroups, processes, temp dirs)`, async (t) => {
    // Process exit (container init reaped by its parent) can lag the runtime's return slightly.
    let left = findLeftovers();
    for (let i = 0; i < 20 && left.processes.length + left.cgroupDirs.length > 0; i++) {
      await sleep(100);
      left = findLeftovers();
    }
    t.same(left.mounts, [], 'no mounts left');
    t.same(left.cgroupDirs, [], 'no cgroup dirs left');
    t.same(left.processes, [], 'no processes left');
    t.same(left.paths, [], 'no temp dirs left');
  });
}

// ---------------------------------------------------------------------------------------------

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `fn` until it returns a value other than undefined/false, or throws after timeoutMs. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 10_000, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v as T;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(intervalMs);
  }
}

/** Resolves once `stream` has produced output matching `re` (accumulated), with the text so far. */
export function waitForOutput(stream: NodeJS.ReadableStream | null | undefined, re: RegExp, timeoutMs = 10_000): Promise<string> {
  return new Promise((res, rej) => {
    if (!stream) return rej(new Error('no stream to wait on'));
    let buf = '';
    const onData = (d: Buffer | string) => {
      buf += d.toString();
      if (re.test(buf)) done(() => res(buf));
    };
    const onEnd = () => done(() => rej(new Error(`stream ended before ${re} appeared; got ${JSON.stringify(buf)}`)));
    const timer = setTimeout(() => done(() => rej(new Error(`timed out waiting for ${re}; got ${JSON.stringify(buf)}`))), timeoutMs);
    const done = (f: () => void) => {
      clearTimeout(timer);
      stream.off('data', onData);
      stream.off('end', onEnd);
      f();
    };
    stream.on('data', onData);
    stream.on('end', onEnd);
  });
}

export interface RunResult {
  exitCode: number | undefined;
  signal: string | undefined;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  command: string;
}

function toResult(r: { exitCode?: number; signal?: string; stdout?: unknown; stderr?: unknown; timedOut?: boolean; command?: string }): RunResult {
  const s = (v: unknown) => (typeof v === 'string' ? v : v === undefined ? '' : String(v));
  return { exitCode: r.exitCode, signal: r.signal, stdout: s(r.stdout), stderr: s(r.stderr), timedOut: Boolean(r.timedOut), command: r.command ?? '' };
}

/** Compact description of a result for assertion messages. */
export function describe(r: RunResult): string {
  return `\`${r.command}\` -> exit ${r.exitCode}${r.signal ? ` signal ${r.signal}` : ''}${r.timedOut ? ' (TIMED OUT)' : ''}\nstdout: ${JSON.stringify(r.stdout)}\nstderr: ${JSON.stringify(r.stderr)}`;
}

const DEFAULT_TIMEOUT = 30_000;

/** Run a command to completion without throwing on non-zero exit; stdin is /dev/null unless given. */
export async function run(file: string, args: string[], opts: Options = {}): Promise<RunResult> {
  const p = execa(file, args, {
    reject: false,
    ...(opts.input !== undefined || opts.inputFile !== undefined || opts.stdio !== undefined ? {} : { stdin: 'ignore' }),
    timeout: DEFAULT_TIMEOUT,
    forceKillAfterDelay: 2000,
    stripFinalNewline: false,
    ...opts,
  } as Options) as unknown as ResultPromise;
  return settle(p, (typeof opts.timeout === 'number' ? opts.timeout : DEFAULT_TIMEOUT) + 5000);
}

/**
 * The result of a subprocess, at the latest after `ms`. execa waits for stdout/stderr to close
 * even after its own timeout killed the process, and a container that inherited them keeps them
 * open as long as it lives: a runtime bug would hang the test until tap kills the whole file.
 * Past `ms` the process is killed and its pipes are destroyed, and the result says timedOut.
 */
export async function settle(p: ResultPromise, ms = DEFAULT_TIMEOUT): Promise<RunResult> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), ms)));
  const first = await Promise.race([p.then((r) => r, (e: unknown) => e), late]);
  clearTimeout(timer);
  if (first !== 'late') return toResult(first as Parameters<typeof toResult>[0]);
  if (p.exitCode === null) p.kill('SIGKILL');
  for (const s of [p.stdin, p.stdout, p.stderr, ...(p.stdio ?? []).slice(3)]) (s as NodeJS.ReadableStream & { destroy?: () => void } | null)?.destroy?.();
  const r = toResult((await p.then((x) => x, (e: unknown) => e)) as Parameters<typeof toResult>[0]);
  r.timedOut = true;
  r.stderr += `\n[test harness: gave up waiting after ${ms} ms; pipes were still held open]`;
  return r;
}

export interface OciState {
  ociVersion: string;
  id: string;
  pid: number;
  status: 'creating' | 'created' | 'running' | 'paused' | 'stopped';
  bundle: string;
  rootfs?: string;
  created?: string;
  annotations?: Record<string, string>;
  [k: string]: unknown;
}

/**
 * One test's view of the runtime under test: a private --root for its state (never the host's
 * /run/runc), a temp dir for bundles, and a teardown that deletes every container in that root,
 * kills background commands and removes the temp dir, whether the test passed or not.
 */
export class RuntimeHarness {
  readonly bin: string;
  readonly label: string;
  readonly runc: string;
  readonly tmp: string;
  readonly root: string;
  private readonly background = new Set<ResultPromise>();

  constructor(rt: RuntimeUnderTest, runc: string, tmp: string) {
    this.bin = rt.path;
    this.label = rt.label;
    this.runc = runc;
    this.tmp = tmp;
    this.root = join(tmp, 'state');
  }

  id(tag: string): string {
    return uniqueId(tag);
  }

  /** A busybox bundle in <tmp>/<name>. */
  bundle(name: string, opts: BundleOptions): Promise<Bundle> {
    return writeBundle(join(this.tmp, name), opts);
  }

  /** The runtime under test with exactly these arguments (no --root added). */
  exec(args: string[], opts: Options = {}): Promise<RunResult> {
    return run(this.bin, args, opts);
  }

  /** The runtime under test with this test's private --root in front. */
  rt(args: string[], opts: Options = {}): Promise<RunResult> {
    return run(this.bin, ['--root', this.root, ...args], opts);
  }

  /**
   * A long-running runtime command (e.g. `run` in the foreground); killed at teardown if still
   * running. stdout/stderr are pipes; the result never rejects.
   */
  spawn(args: string[], opts: Options = {}): ResultPromise {
    const p = execa(this.bin, ['--root', this.root, ...args], {
      reject: false,
      ...(opts.input !== undefined || opts.stdio !== undefined ? {} : { stdin: 'ignore' }),
      timeout: DEFAULT_TIMEOUT,
      forceKillAfterDelay: 2000,
      stripFinalNewline: false,
      ...opts,
    } as Options) as unknown as ResultPromise;
    this.background.add(p);
    return p;
  }

  track(p: ResultPromise): ResultPromise {
    this.background.add(p);
    return p;
  }

  /**
   * `create` with the container's stdio on files: the container inherits runc's stdout/stderr,
   * and a pipe would keep the command "running" for the container's whole life.
   */
  async create(id: string, bundleDir: string, extra: string[] = [], opts: Options = {}): Promise<RunResult & { outFile: string; errFile: string }> {
    const outFile = join(this.tmp, `${id}.stdout`);
    const errFile = join(this.tmp, `${id}.stderr`);
    const r = await this.rtToFiles(['create', ...extra, '--bundle', bundleDir, id], outFile, errFile, opts);
    return { ...r, outFile, errFile };
  }

  /**
   * The runtime under test with stdout/stderr on files, for commands that leave a container
   * holding them (create, run --detach). Real fds, not execa's {file}: execa would pump a pipe
   * into the file and wait for the container to close it. stdout/stderr of the result are the
   * files' contents when the command returned.
   */
  async rtToFiles(args: string[], outFile: string, errFile: string, opts: Options = {}): Promise<RunResult> {
    const outFd = openSync(outFile, 'a');
    const errFd = errFile === outFile ? outFd : openSync(errFile, 'a');
    let r: RunResult;
    try {
      // execa passes integer fds straight to the child; its types only admit them inside `stdio`.
      r = await this.rt(args, { ...({ stdout: outFd, stderr: errFd } as unknown as Options), ...opts });
    } finally {
      closeSync(outFd);
      if (errFd !== outFd) closeSync(errFd);
    }
    r.stdout = await readFile(outFile, 'utf8').catch(() => '');
    r.stderr = errFile === outFile ? '' : await readFile(errFile, 'utf8').catch(() => '');
    return r;
  }

  /** Parsed `state` of the runtime under test, or undefined when it fails. */
  async state(id: string, opts: Options = {}): Promise<OciState | undefined> {
    const r = await this.rt(['state', id], opts);
    if (r.exitCode !== 0) return undefined;
    return JSON.parse(r.stdout) as OciState;
  }

  /**
   * `start` returns once runc has released the init, which then execs the workload: until that
   * happens /proc/PID still shows `runc init`. Waits until the init runs `args`.
   */
  async waitForExec(pid: number, args: string[], timeoutMs = 10_000): Promise<void> {
    const want = args.map((a) => `${a}\0`).join('');
    await waitFor(`pid ${pid} to exec ${JSON.stringify(args)}`, () => readFileSync(`/proc/${pid}/cmdline`, 'utf8') === want, timeoutMs, 20);
  }

  async waitForStatus(id: string, status: OciState['status'], timeoutMs = 10_000): Promise<OciState> {
    return waitFor(`${id} to be ${status}`, async () => {
      const s = await this.state(id);
      return s?.status === status ? s : undefined;
    }, timeoutMs);
  }

  /** Never throws: a cleanup failure must not hide the test's own result or skip later steps. */
  async cleanup(): Promise<void> {
    try {
      await this.cleanupSteps();
    } catch (e) {
      console.error(`# cleanup of ${this.root} failed: ${String(e)}`);
    }
  }

  private async cleanupSteps(): Promise<void> {
    // Kill first, wait last: their pipes may be held by containers that only the deletes below end.
    for (const p of this.background) {
      if (p.exitCode === null && p.pid !== undefined) p.kill('SIGKILL');
    }
    // Whatever the runtime under test can delete itself...
    const listed = await run(this.runc, ['--root', this.root, 'list', '-q'], { timeout: 10_000 });
    const ids = listed.exitCode === 0 ? listed.stdout.split('\n').filter(Boolean) : [];
    for (const id of ids) await this.rt(['delete', '-f', id], { timeout: 15_000 });
    // ...and the real runc whatever is left, so one runtime bug does not leak containers.
    const again = await run(this.runc, ['--root', this.root, 'list', '-q'], { timeout: 10_000 });
    for (const id of again.exitCode === 0 ? again.stdout.split('\n').filter(Boolean) : []) {
      await run(this.runc, ['--root', this.root, 'delete', '-f', id], { timeout: 15_000 });
    }
    for (const p of this.background) await settle(p, 5000);
  }
}

/**
 * Prerequisites (root, runtime, runc, busybox) plus a harness whose teardown is registered on `t`.
 * Returns undefined after skip-or-fail.
 */
export async function runtimeHarness(t: Test, tag = 'rt'): Promise<RuntimeHarness | undefined> {
  if (!checkPrerequisites(t, { root: true, runtime: true, runc: true, busybox: true })) return undefined;
  const tmp = await testTempDir(t, tag);
  const h = new RuntimeHarness(runtimeUnderTest(), findRunc()!, tmp);
  // Registered after testTempDir's teardown, so it runs first (teardowns run last-in, first-out).
  t.teardown(() => h.cleanup());
  return h;
}

/** Title prefix so every test name says which runtime it ran against. */
export function title(name: string): string {
  return `[${runtimeUnderTest().label}] ${name}`;
}
