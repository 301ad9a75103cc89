// Podman driving the runtime under test, with everything Podman would normally keep on the host
// (storage, runroot, tmp dir, events, locks, network config) in one temp dir.
//
// What cannot be moved and is handled instead:
// - Podman (as root) passes no --root to the OCI runtime, so runtime state goes to /run/runc, as
//   in production; containers are removed at teardown and /run/runc is removed if we created it.
//   (--runtime-flag root=X is not an option: Podman 4.3 drops it on `delete --force`.)
// - `podman import` writes /var/lib/containers/cache/blob-info-cache-v1.boltdb; removed at
//   teardown when it did not exist before.
// - cgroups: every container gets --cgroup-parent /<unique>, which (with conmon's sub-cgroup) is
//   removed at teardown in every hierarchy.
import { existsSync, readdirSync, rmdirSync, rmSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Options } from 'execa';
import type { Test } from 'tap';
import { busyboxRootfsTar } from '../../fixtures/busybox.js';
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
  type RunResult,
} from './runtime.js';

export const PODMAN_IMAGE = 'localhost/hbxtest-busybox:latest';

export interface PodmanRunOptions {
  /** `--annotation k=v` for each entry (how hyperbox features are requested through Podman). */
  annotations?: Record<string, string>;
  detach?: boolean;
  rm?: boolean;
  name?: string;
  tty?: boolean;
  /** More `podman run` flags, before the image. */
  extra?: string[];
  /** Options for the podman process itself (input, timeout...). */
  exec?: Options;
}

export class PodmanHarness {
  readonly dir: string;
  readonly runtime: string;
  readonly image = PODMAN_IMAGE;
  readonly cgroupParent: string;
  readonly globalArgs: string[];
  /** Flags every container needs on this machine (see MACHINE.md). */
  readonly runFlags: string[];
  readonly env: Record<string, string>;
  private readonly createdHostPaths: string[] = [];

  constructor(dir: string, runtime: string, tag: string) {
    this.dir = dir;
    this.runtime = runtime;
    this.cgroupParent = `/${tag}`;
    this.globalArgs = [
      '--root', join(dir, 'storage'),
      '--runroot', join(dir, 'runroot'),
      '--storage-driver', 'vfs',
      '--cgroup-manager=cgroupfs',
      '--events-backend=file',
      '--tmpdir', join(dir, 'tmp'),
      '--runtime', runtime,
    ];
    this.runFlags = [
      '--network', 'none',
      '--ulimit', 'nofile=1024:1024',
      '--ulimit', 'nproc=1024:1024',
      '--cgroup-parent', this.cgroupParent,
    ];
    // Podman's own config files would otherwise come from /etc and /usr/share; these pin what the
    // flags cannot (locks, events file, network backend) into the temp dir. Passed to conmon and
    // so to `podman container cleanup` too.
    this.env = {
      CONTAINERS_CONF: join(dir, 'containers.conf'),
      CONTAINERS_STORAGE_CONF: join(dir, 'storage.conf'),
      CONTAINERS_REGISTRIES_CONF: join(dir, 'registries.conf'),
    };
  }

  async init(): Promise<void> {
    const d = this.dir;
    await mkdir(join(d, 'tmp'), { recursive: true });
    await writeFile(
      this.env.CONTAINERS_CONF!,
      [
        '[containers]',
        'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]',
        '[engine]',
        'cgroup_manager = "cgroupfs"',
        'events_logger = "file"',
        `events_logfile_path = "${d}/events.log"`,
        `tmp_dir = "${d}/tmp"`,
        `volume_path = "${d}/volumes"`,
        `static_dir = "${d}/storage/libpod"`,
        `image_copy_tmp_dir = "${d}/tmp"`,
        // shm locks live in /dev/shm/libpod_lock, shared with the host's Podman.
        'lock_type = "file"',
        '[network]',
        // netavark keeps run state in /run/containers/networks; with --network none CNI touches nothing.
        'network_backend = "cni"',
        `network_config_dir = "${d}/networks"`,
        '',
      ].join('\n'),
    );
    await writeFile(this.env.CONTAINERS_STORAGE_CONF!, `[storage]\ndriver = "vfs"\ngraphroot = "${d}/storage"\nrunroot = "${d}/runroot"\n`);
    await writeFile(this.env.CONTAINERS_REGISTRIES_CONF!, 'unqualified-search-registries = []\n');
    for (const p of ['/run/runc', '/var/lib/containers', '/var/lib/containers/cache', '/var/lib/containers/cache/blob-info-cache-v1.boltdb']) {
      if (!existsSync(p)) this.createdHostPaths.push(p);
    }
    registerCgroup(this.cgroupParent);
  }

  podman(args: string[], opts: Options = {}): Promise<RunResult> {
    return run('podman', [...this.globalArgs, ...args], { timeout: 60_000, ...opts, env: { ...this.env, ...(opts.env ?? {}) } });
  }

  /** `podman import` of the busybox rootfs as PODMAN_IMAGE. */
  async importBusybox(): Promise<RunResult> {
    const tar = join(this.dir, 'rootfs.tar');
    await busyboxRootfsTar(tar);
    return this.podman(['import', '--quiet', tar, this.image]);
  }

  /** `podman run` with the machine's required flags, the options, the image and `cmd`. */
  run(cmd: string[], o: PodmanRunOptions = {}): Promise<RunResult> {
    const args = ['run', ...this.runFlags];
    if (o.rm) args.push('--rm');
    if (o.detach) args.push('--detach');
    if (o.tty) args.push('--tty');
    if (o.name) {
      registerId(o.name);
      args.push('--name', o.name);
    }
    for (const [k, v] of Object.entries(o.annotations ?? {})) args.push('--annotation', `${k}=${v}`);
    args.push(...(o.extra ?? []), this.image, ...cmd);
    return this.podman(args, o.exec ?? {});
  }

  /** A container name unique to this run (registered for the leftover check). */
  name(tag: string): string {
    return uniqueId(`pm-${tag}`);
  }

  /** Never throws; removes containers, conmon, mounts, cgroups and host paths Podman created. */
  async cleanup(): Promise<void> {
    try {
      await this.podman(['rm', '--all', '--force', '--time', '0'], { timeout: 60_000 });
      // Containers Podman lost track of (it forgets a container whose runtime delete failed) still
      // have runtime state in /run/runc. Ours are the ones whose bundle is in our storage; the
      // runtime under test deletes them if it can, the real runc otherwise.
      const runc = findRunc();
      for (const rt of [this.runtime, runc]) {
        if (!rt) continue;
        const listed = await run(rt, ['list', '--format', 'json'], { timeout: 15_000 });
        let states: Array<{ id: string; bundle: string }> = [];
        try {
          states = (JSON.parse(listed.stdout || 'null') as typeof states | null) ?? [];
        } catch {
          // A broken runtime's list output: the real runc gets its turn next.
        }
        for (const c of states.filter((c) => c.bundle.startsWith(`${this.dir}/`))) {
          await run(rt, ['delete', '--force', c.id], { timeout: 15_000 });
        }
      }
      await unmountUnder(this.dir);
      this.removeCgroups();
      for (const p of [...this.createdHostPaths].reverse()) {
        try {
          if (p.endsWith('.boltdb')) rmSync(p, { force: true });
          else rmdirSync(p); // only if empty: never anything that is not ours
        } catch {
          // Not empty or gone: someone else uses it.
        }
      }
    } catch (e) {
      console.error(`# podman cleanup in ${this.dir} failed: ${String(e)}`);
    }
  }

  private removeCgroups(): void {
    for (const m of readMounts().filter((m) => m.fsType === 'cgroup' || m.fsType === 'cgroup2')) {
      const top = join(m.mountPoint, this.cgroupParent);
      if (!existsSync(top)) continue;
      const rmTree = (d: string) => {
        for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) rmTree(join(d, e.name));
        try {
          rmdirSync(d);
        } catch {
          // Still has processes: the leftover check reports it.
        }
      };
      rmTree(top);
    }
  }
}

/**
 * A Podman with private storage that runs containers with the runtime under test (or `runtime`).
 * With importImage (default), PODMAN_IMAGE is imported. Returns undefined after skip-or-fail.
 */
export async function podmanHarness(t: Test, opts: { runtime?: string; importImage?: boolean } = {}): Promise<PodmanHarness | undefined> {
  if (!checkPrerequisites(t, { root: true, runtime: !opts.runtime, runc: true, busybox: true, commands: ['podman', 'conmon'] })) return undefined;
  const dir = await testTempDir(t, 'podman');
  const h = new PodmanHarness(dir, opts.runtime ?? runtimeUnderTest().path, uniqueId('pmcg'));
  await h.init();
  t.teardown(() => h.cleanup());
  if (opts.importImage ?? true) {
    const r = await h.importBusybox();
    if (r.exitCode !== 0) throw new Error(`podman import failed: exit ${r.exitCode}\n${r.stderr}`);
  }
  return h;
}
