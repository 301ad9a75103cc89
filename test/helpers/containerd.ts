// A private containerd (own root, state, sockets, config; CRI off) whose containers `ctr` runs with
// the runtime under test as the io.containerd.runc.v2 shim's runc binary.
//
// Host paths containerd 1.6 uses regardless of its config, handled at teardown:
// - /run/containerd/s/<hash>: shim sockets (the shim removes its own; the dirs are removed if we
//   created them and they are empty);
// - cgroups: ctr puts containers in /<namespace>/<id>; runc removes <id>, we remove the empty
//   /<namespace> dirs.
import { closeSync, existsSync, openSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa, type Options, type ResultPromise } from 'execa';
import type { Test } from 'tap';
import { ociImageArchive } from '../../fixtures/oci-image.js';
import { findRunc } from '../../fixtures/tools.js';
import {
  checkPrerequisites,
  readMounts,
  registerCgroup,
  registerId,
  run,
  runtimeUnderTest,
  testTempDir,
  uniqueId,
  unmountUnder,
  waitFor,
  type RunResult,
} from './runtime.js';

export const CONTAINERD_IMAGE = 'docker.io/hbxtest/busybox:latest';

export interface CtrRunOptions {
  /** OCI annotations (`ctr run --annotation k=v`, new in ctr 1.6): how hyperbox features are requested. */
  annotations?: Record<string, string>;
  /** containerd container labels (`--label`); not visible to the runtime. */
  labels?: Record<string, string>;
  rm?: boolean;
  detach?: boolean;
  tty?: boolean;
  /** More `ctr run` flags, before the image. */
  extra?: string[];
  exec?: Options;
}

export class ContainerdHarness {
  readonly dir: string;
  readonly address: string;
  readonly namespace: string;
  readonly runtime: string;
  readonly image = CONTAINERD_IMAGE;
  readonly runcRoot: string;
  readonly fifoDir: string;
  readonly logFile: string;
  private daemon: ResultPromise | undefined;
  private readonly createdHostPaths: string[] = [];

  constructor(dir: string, runtime: string, namespace: string) {
    this.dir = dir;
    this.runtime = runtime;
    this.namespace = namespace;
    this.address = join(dir, 'containerd.sock');
    this.runcRoot = join(dir, 'runc');
    this.fifoDir = join(dir, 'fifo');
    this.logFile = join(dir, 'containerd.log');
  }

  async start(): Promise<void> {
    const d = this.dir;
    for (const p of ['/run/containerd', '/run/containerd/s', '/run/containerd/fifo']) if (!existsSync(p)) this.createdHostPaths.push(p);
    registerCgroup(`/${this.namespace}`);
    await mkdir(this.fifoDir, { recursive: true });
    const config = join(d, 'config.toml');
    await writeFile(
      config,
      [
        'version = 2',
        `root = "${d}/root"`,
        `state = "${d}/state"`,
        // CRI would want CNI, a sandbox image and host paths; the other snapshotters only add noise.
        'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]',
        '[grpc]',
        `  address = "${this.address}"`,
        '[ttrpc]',
        `  address = "${this.address}.ttrpc"`,
        '[debug]',
        '  address = ""',
        '[plugins."io.containerd.internal.v1.opt"]',
        `  path = "${d}/opt"`,
        '',
      ].join('\n'),
    );
    const log = openSync(this.logFile, 'a');
    this.daemon = execa('containerd', ['--config', config, '--root', join(d, 'root'), '--state', join(d, 'state'), '--address', this.address], {
      reject: false,
      stdin: 'ignore',
      ...({ stdout: log, stderr: log } as unknown as Options),
      // Killed with the test process if the teardown never runs.
      cleanup: true,
    }) as unknown as ResultPromise;
    closeSync(log);
    try {
      await waitFor(
        'containerd to answer on its socket',
        async () => {
          if (this.daemon?.exitCode !== null) throw new Error(`containerd exited with ${this.daemon?.exitCode}`);
          if (!existsSync(this.address)) return undefined;
          return (await this.ctr(['version'], { timeout: 5000 })).exitCode === 0;
        },
        20_000,
        100,
      );
    } catch (e) {
      const tail = (await readFile(this.logFile, 'utf8').catch(() => '')).split('\n').slice(-20).join('\n');
      throw new Error(`${(e as Error).message}\ncontainerd log:\n${tail}`);
    }
  }

  ctr(args: string[], opts: Options = {}): Promise<RunResult> {
    return run('ctr', ['--address', this.address, '--namespace', this.namespace, ...args], { timeout: 60_000, ...opts });
  }

  /** Build the busybox OCI archive and `ctr images import` it as CONTAINERD_IMAGE. */
  async importBusybox(): Promise<RunResult> {
    const archive = await ociImageArchive(join(this.dir, 'busybox-oci.tar'), { ref: this.image });
    return this.ctr(['images', 'import', archive.path]);
  }

  /** Flags that keep the shim's runtime state and fifos in the temp dir, and pick the runtime. */
  get runtimeFlags(): string[] {
    return ['--runc-binary', this.runtime, '--runc-root', this.runcRoot, '--fifo-dir', this.fifoDir];
  }

  /** `ctr run [flags] IMAGE ID CMD...` with the runtime under test. */
  runContainer(id: string, cmd: string[], o: CtrRunOptions = {}): Promise<RunResult> {
    registerId(id);
    const args = ['run', ...this.runtimeFlags];
    if (o.rm) args.push('--rm');
    if (o.detach) args.push('--detach');
    if (o.tty) args.push('--tty');
    for (const [k, v] of Object.entries(o.annotations ?? {})) args.push('--annotation', `${k}=${v}`);
    for (const [k, v] of Object.entries(o.labels ?? {})) args.push('--label', `${k}=${v}`);
    args.push(...(o.extra ?? []), this.image, id, ...cmd);
    return this.ctr(args, o.exec ?? {});
  }

  /** `ctr tasks exec` with fifos in the temp dir (ctr's default is /run/containerd/fifo). */
  tasksExec(id: string, execId: string, cmd: string[], opts: Options = {}): Promise<RunResult> {
    return this.ctr(['tasks', 'exec', '--fifo-dir', this.fifoDir, '--exec-id', execId, id, ...cmd], opts);
  }

  id(tag: string): string {
    return uniqueId(`ctr-${tag}`);
  }

  /** Never throws: tasks, containers, containerd, shims, mounts, cgroups, host dirs. */
  async cleanup(): Promise<void> {
    try {
      if (this.daemon && this.daemon.exitCode === null) {
        const tasks = await this.ctr(['tasks', 'ls', '-q'], { timeout: 15_000 });
        for (const id of tasks.stdout.split('\n').filter(Boolean)) {
          await this.ctr(['tasks', 'kill', '--signal', 'SIGKILL', id], { timeout: 15_000 });
          await waitFor(`task ${id} to stop`, async () => !(await this.ctr(['tasks', 'ls'])).stdout.includes('RUNNING'), 10_000).catch(() => undefined);
          await this.ctr(['tasks', 'delete', '--force', id], { timeout: 15_000 });
        }
        const ctrs = await this.ctr(['containers', 'ls', '-q'], { timeout: 15_000 });
        for (const id of ctrs.stdout.split('\n').filter(Boolean)) await this.ctr(['containers', 'rm', id], { timeout: 15_000 });
        this.daemon.kill('SIGTERM');
        let timer: NodeJS.Timeout | undefined;
        const stopped = await Promise.race([this.daemon.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 10_000)))]);
        clearTimeout(timer); // a pending timer would keep the test process alive for 10 s
        if (!stopped) this.daemon.kill('SIGKILL');
        await this.daemon;
      }
      // Shims outlive containerd by design; ours are the ones started with our socket address.
      for (const pid of this.shimPids()) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
      // Whatever the shim left in our runc root: the runtime under test first, the real runc after.
      const root = join(this.runcRoot, this.namespace);
      for (const rt of [this.runtime, findRunc()]) {
        if (!rt || !existsSync(root)) continue;
        const left = await run(rt, ['--root', root, 'list', '-q'], { timeout: 10_000 });
        for (const id of left.exitCode === 0 ? left.stdout.split('\n').filter(Boolean) : []) {
          await run(rt, ['--root', root, 'delete', '--force', id], { timeout: 15_000 });
        }
      }
      await unmountUnder(this.dir);
      for (const m of readMounts().filter((m) => m.fsType === 'cgroup' || m.fsType === 'cgroup2')) {
        try {
          rmdirSync(join(m.mountPoint, this.namespace));
        } catch {
          // Absent, or in use by someone else's containers.
        }
      }
      for (const p of [...this.createdHostPaths].reverse()) {
        try {
          rmdirSync(p);
        } catch {
          // Not empty: not only ours.
        }
      }
    } catch (e) {
      console.error(`# containerd cleanup in ${this.dir} failed: ${String(e)}`);
    }
  }

  private shimPids(): number[] {
    const out: number[] = [];
    for (const e of readdirSync('/proc')) {
      if (!/^\d+$/.test(e)) continue;
      try {
        const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8');
        if (cmd.includes('containerd-shim') && cmd.includes(this.address)) out.push(Number(e));
      } catch {
        // Exited.
      }
    }
    return out;
  }
}

/**
 * A running private containerd with CONTAINERD_IMAGE imported (unless importImage is false), torn
 * down with everything it started. Returns undefined after skip-or-fail.
 */
export async function containerdHarness(
  t: Test,
  opts: { runtime?: string; importImage?: boolean; namespace?: string } = {},
): Promise<ContainerdHarness | undefined> {
  if (!checkPrerequisites(t, { root: true, runtime: !opts.runtime, runc: true, busybox: true, commands: ['containerd', 'ctr', 'containerd-shim-runc-v2'] })) {
    return undefined;
  }
  const dir = await testTempDir(t, 'containerd');
  const h = new ContainerdHarness(dir, opts.runtime ?? runtimeUnderTest().path, opts.namespace ?? 'hbxtest');
  t.teardown(() => h.cleanup());
  await h.start();
  if (opts.importImage ?? true) {
    const r = await h.importBusybox();
    if (r.exitCode !== 0) throw new Error(`ctr images import failed: exit ${r.exitCode}\n${r.stderr}`);
  }
  return h;
}
