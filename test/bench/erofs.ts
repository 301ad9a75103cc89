/**
 * EROFS rootfs benchmark, side by side in one run (interleaved rounds, the
 * order rotated every round, medians), for two images built here:
 *   small   the busybox rootfs;
 *   large   busybox plus 10,000 files of random bytes, ~300 MB: many of 1-16 KiB, 50 of several MB.
 * Each is an OCI archive (one layer) and the same layer tar on its own.
 *
 *  a. cold: archive to a container that ran `true`, hyperbox's cache emptied
 *     every round: `hyperbox-runc run --image ARCHIVE ID` vs. what a CI script
 *     does (`tar -xf layer.tar -C rootfs`, config.json, `runc run`) vs. tar +
 *     `mkfs.erofs` + mount (+ overlay, as hyperbox does) + `runc run`;
 *  b. warm: the cached image to a container that ran `true`, against `runc
 *     run` of an already extracted tree, and the rootfs alone: mountRootfs
 *     in this process (find the cached image, mount it, overlay), timed with
 *     process.hrtime;
 *  c. the writer: buildErofs(tarLayers([layer.tar])) MB/s against reading the
 *     same file (`cat layer.tar > /dev/null`).
 *
 * The page cache is never dropped: every contender reads warm inputs. Dirty
 * pages are flushed (`sync`, not timed) before every timed step of (a) and (c)
 * so no one pays for another's writeback. Removing trees, images and mounts is
 * not timed. Everything is written to a fresh ext4 on a loop device (scratchFs).
 * Prints markdown; `--readme` rewrites the README's bench:erofs block.
 */
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, cpSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxRootfs, rootfsTar, runcSpecTemplate, type OciSpec } from '../../fixtures/busybox.js';
import { ociImageArchive } from '../../fixtures/oci-image.js';
import { findRunc, which } from '../../fixtures/tools.js';
import { Logger } from '../../src/cli/log.js';
import { buildErofs, tarLayers } from '../../src/image/build.js';
import { mountRootfs, releaseRootfs } from '../../src/features/rootfs/mount.js';
import { native, type Native } from '../../src/native/index.js';
import type { JsonObject } from '../../src/oci/json.js';
import { imageFile, listImages } from '../../src/store/images.js';
import { benchBox, LAUNCHER, type BenchBox } from './harness.js';
import { benchMain, measuredLine, median, ms } from './stats.js';

const ROUNDS = Number(process.env.BENCH_EROFS_ROUNDS ?? 7);
const COLD_LARGE_ROUNDS = Number(process.env.BENCH_EROFS_COLD_ROUNDS ?? 5);
const LARGE_FILES = Number(process.env.BENCH_EROFS_FILES ?? 10_000);
const LARGE_BYTES = Number(process.env.BENCH_EROFS_MB ?? 300) * 1e6;
const BIG_FILES = 50;
const SCRATCH_BYTES = 6 * 1024 ** 3;

interface Image {
  name: string;
  title: string;
  archive: string;
  layer: string;
  layerBytes: number;
  entries: number;
  /** A tree extracted once with tar, and its bundle, for the warm baseline. */
  bundle: string;
}

const progress = (msg: string): void => void process.stderr.write(`erofs bench: ${msg}\n`);
const nsToMs = (ns: bigint): number => Number(ns) / 1e6;
const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`;
const x = (r: number): string => `${r.toFixed(2)}x`;

/** xorshift32: reproducible file sizes. */
function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

/** Regular files, directories and symlinks under dir, as the tar holds them (without the fixture's marker). */
function countEntries(dir: string, top = true): number {
  let n = 0;
  for (const name of readdirSync(dir)) {
    if (top && name === '.hbxt-rootfs') continue;
    n++;
    const p = join(dir, name);
    if (lstatSync(p).isDirectory()) n += countEntries(p, false);
  }
  return n;
}

class Bench {
  readonly box: BenchBox;
  readonly runc: string;
  readonly nat: Native;
  readonly log = new Logger({ log: undefined, logFormat: 'text', debug: false });
  /** Where every tree, image and overlay of the bench is written: a fresh journaled ext4 (see scratchFs). */
  work = '';
  private loop: string | undefined;
  private seq = 0;
  private readonly errLog: string;
  private readonly cwd: string;
  private template!: OciSpec;

  constructor(runc: string) {
    this.runc = runc;
    this.box = benchBox('erofs');
    this.nat = native();
    this.errLog = join(this.box.top, 'stderr.log');
    this.cwd = join(this.box.top, 'cwd'); // no config.json here: `run --image` writes its own bundle
    mkdirSync(this.cwd);
  }

  async init(): Promise<void> {
    this.template = await runcSpecTemplate();
    this.scratchFs();
    this.box.env.HYPERBOX_STORE = join(this.work, 'store');
    this.box.env.HYPERBOX_STATE = join(this.work, 'hbstate');
    // The in-process contenders (mountRootfs, the writer) see the same store and state as the CLI.
    process.env.HYPERBOX_STORE = this.box.env.HYPERBOX_STORE;
    process.env.HYPERBOX_STATE = this.box.env.HYPERBOX_STATE;
  }

  /**
   * The bench writes and removes ~10,000-file trees over and over. On ext4
   * without a journal (as some VM root disks are) every create then scans the
   * inodes deleted in the last minutes (ialloc.c recently_deleted) and tar
   * gets slower round after round, which says nothing about tar. So all of it
   * goes to a fresh ext4 with a journal on a loop device (direct I/O, no
   * double caching), made before anything is timed; BENCH_EROFS_SCRATCH=DIR
   * uses a directory of your own instead.
   */
  private scratchFs(): void {
    const own = process.env.BENCH_EROFS_SCRATCH;
    if (own) {
      this.work = mkdtempSync(join(own, 'hbx-bench-erofs-'));
      return;
    }
    const image = join(this.box.top, 'scratch.ext4');
    closeSync(openSync(image, 'w'));
    truncateSync(image, SCRATCH_BYTES);
    this.exec('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', image]);
    const r = spawnSync('losetup', ['--find', '--show', '--direct-io=on', image], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`losetup ${image} failed: ${r.stderr}`);
    this.loop = r.stdout.trim();
    this.work = join(this.box.top, 'scratch');
    mkdirSync(this.work);
    this.exec('mount', ['-t', 'ext4', this.loop, this.work]);
  }

  /** The filesystem the bench writes to, for the report. */
  scratchLine(): string {
    return this.loop
      ? 'Trees, images and overlays are written to a fresh ext4 (with a journal) on a loop device with direct I/O over a file on the host disk'
      : `Trees, images and overlays are written under ${process.env.BENCH_EROFS_SCRATCH} (BENCH_EROFS_SCRATCH)`;
  }

  nextId(): string {
    return `hbx-bench-erofs-${process.pid}-${this.seq++}`;
  }

  /** Runs a command to completion, stdout and stderr to a file (a pipe could be held open by a helper); throws on failure. */
  exec(bin: string, args: string[], opts: SpawnSyncOptions = {}): void {
    const fd = openSync(this.errLog, 'w');
    let r;
    try {
      r = spawnSync(bin, args, { env: this.box.env, stdio: ['ignore', fd, fd], timeout: 600_000, ...opts });
    } finally {
      closeSync(fd);
    }
    if (r.status !== 0) throw new Error(`${bin} ${args.join(' ')} failed (${r.status ?? r.signal}): ${readFileSync(this.errLog, 'utf8').slice(-800)}`);
  }

  /** Wall time of exec, ms. */
  timed(bin: string, args: string[], opts: SpawnSyncOptions = {}): number {
    const t0 = process.hrtime.bigint();
    this.exec(bin, args, opts);
    return nsToMs(process.hrtime.bigint() - t0);
  }

  sync(): void {
    spawnSync('sync', [], { stdio: 'ignore' });
  }

  /** A bundle whose config.json is `runc spec` with terminal false, args ["true"] and root.path `root`. */
  writeConfig(dir: string, root: string): void {
    const spec = structuredClone(this.template);
    spec.process.terminal = false;
    spec.process.args = ['true'];
    spec.root = { ...spec.root, path: root };
    writeFileSync(join(dir, 'config.json'), JSON.stringify(spec, null, '\t'));
  }

  prune(): void {
    this.exec(LAUNCHER, ['image', 'prune', '--all']);
    if (listImages().length) throw new Error(`image prune --all left ${listImages().length} image(s) in ${this.box.store}`);
  }

  /** `hyperbox-runc run --image ARCHIVE ID`, no bundle: the image's Cmd is `true`. */
  hyperboxRun(img: Image): number {
    return this.timed(LAUNCHER, ['--root', this.box.root, 'run', '--image', img.archive, this.nextId()], { cwd: this.cwd });
  }

  runcRun(bundle: string): number {
    return this.timed(this.runc, ['--root', this.box.root, 'run', '--bundle', bundle, this.nextId()]);
  }

  /** What a CI script does: tar -xf into a fresh dir, config.json, runc run. The rm -rf afterwards is not timed. */
  tarRunc(img: Image): number {
    const dir = join(this.work, `tar-${this.seq}`);
    const t0 = process.hrtime.bigint();
    mkdirSync(join(dir, 'rootfs'), { recursive: true });
    this.exec('tar', ['-xf', img.layer, '-C', join(dir, 'rootfs')]);
    this.writeConfig(dir, 'rootfs');
    this.exec(this.runc, ['--root', this.box.root, 'run', '--bundle', dir, this.nextId()]);
    const t = nsToMs(process.hrtime.bigint() - t0);
    rmSync(dir, { recursive: true, force: true });
    return t;
  }

  /** tar -xf, mkfs.erofs, mount it and an overlay as hyperbox does, runc run; timed to the container's exit (unmount and rm not timed). */
  mkfsRunc(img: Image): { ms: number; imageBytes: number } {
    const dir = join(this.work, `mkfs-${this.seq}`);
    const tree = join(dir, 'tree');
    const image = join(dir, 'image.erofs');
    const m = { lower: join(dir, 'lower'), upper: join(dir, 'upper'), work: join(dir, 'work'), merged: join(dir, 'merged') };
    const t0 = process.hrtime.bigint();
    for (const d of [tree, ...Object.values(m)]) mkdirSync(d, { recursive: true });
    this.exec('tar', ['-xf', img.layer, '-C', tree]);
    this.exec('mkfs.erofs', ['--quiet', image, tree]);
    try {
      this.nat.mountErofs(image, m.lower, false);
      this.nat.mountOverlay(m.lower, m.upper, m.work, m.merged);
      this.writeConfig(dir, m.merged);
      this.exec(this.runc, ['--root', this.box.root, 'run', '--bundle', dir, this.nextId()]);
      return { ms: nsToMs(process.hrtime.bigint() - t0), imageBytes: statSync(image).size };
    } finally {
      for (const t of [m.merged, m.lower]) this.unmount(t);
      rmSync(dir, { recursive: true, force: true });
    }
  }

  unmount(target: string): void {
    try {
      this.nat.unmount(target, false);
    } catch {
      try {
        this.nat.unmount(target, true);
      } catch {
        /* reported by the leftover check in cleanup */
      }
    }
  }

  /** Rootfs ready in this process: mountRootfs (find the cached image by the archive, mount it, overlay). Release not timed. */
  async rootfsReady(img: Image): Promise<number> {
    const stateDir = mkdtempSync(join(this.work, 'ready-'));
    const spec = structuredClone(this.template) as unknown as JsonObject;
    const ctx = { id: this.nextId(), bundleDir: stateDir, runcRoot: this.box.root, stateDir, log: this.log };
    let t: number;
    try {
      const t0 = process.hrtime.bigint();
      await mountRootfs(this.nat, spec, { source: img.archive, readonly: false }, ctx);
      t = nsToMs(process.hrtime.bigint() - t0);
      if (!statSync(join(stateDir, 'rootfs', 'merged', 'bin', 'busybox')).isFile()) throw new Error('mountRootfs: no /bin/busybox in the merged root');
    } finally {
      releaseRootfs(this.nat, stateDir, this.log);
      rmSync(stateDir, { recursive: true, force: true });
    }
    return t;
  }

  /** Only the two mount(2) calls (EROFS file-backed, overlay) on the cached image file. */
  mountOnly(imageFilePath: string): number {
    const dir = mkdtempSync(join(this.work, 'mnt-'));
    const m = { lower: join(dir, 'lower'), upper: join(dir, 'upper'), work: join(dir, 'work'), merged: join(dir, 'merged') };
    for (const d of Object.values(m)) mkdirSync(d);
    try {
      const t0 = process.hrtime.bigint();
      this.nat.mountErofs(imageFilePath, m.lower, false);
      this.nat.mountOverlay(m.lower, m.upper, m.work, m.merged);
      return nsToMs(process.hrtime.bigint() - t0);
    } finally {
      for (const t of [m.merged, m.lower]) this.unmount(t);
      rmSync(dir, { recursive: true, force: true });
    }
  }

  async writer(img: Image): Promise<number> {
    const out = join(this.work, 'writer.erofs');
    try {
      const t0 = process.hrtime.bigint();
      await buildErofs(tarLayers([img.layer]), out);
      return nsToMs(process.hrtime.bigint() - t0);
    } finally {
      rmSync(out, { force: true });
    }
  }

  cat(img: Image): number {
    const devnull = openSync('/dev/null', 'w');
    try {
      return this.timed('cat', [img.layer], { stdio: ['ignore', devnull, 'inherit'] });
    } finally {
      closeSync(devnull);
    }
  }

  /** read(2) of the whole file in 1 MiB chunks, in this process. */
  readInProcess(img: Image): number {
    const buf = Buffer.allocUnsafe(1 << 20);
    const t0 = process.hrtime.bigint();
    const fd = openSync(img.layer, 'r');
    try {
      while (readSync(fd, buf, 0, buf.length, null) > 0);
    } finally {
      closeSync(fd);
    }
    return nsToMs(process.hrtime.bigint() - t0);
  }

  /** Containers (delete -f through the launcher, so hyperbox releases its mounts), then any mount left under top, then top. */
  cleanup(): void {
    const list = spawnSync(this.runc, ['--root', this.box.root, 'list', '-q'], { encoding: 'utf8' });
    for (const id of (list.stdout ?? '').split('\n').filter(Boolean)) {
      spawnSync(LAUNCHER, ['--root', this.box.root, 'delete', '-f', id], { env: this.box.env, stdio: 'ignore' });
    }
    const top = this.box.top + '/';
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[4]?.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
      .filter((p): p is string => !!p && p.startsWith(top))
      .sort((a, b) => b.length - a.length);
    for (const p of mounts) this.unmount(p);
    const left = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.split(' ')[4]?.startsWith(top));
    if (left.length) {
      process.stderr.write(`erofs bench: mounts left under ${top}, not removing it:\n${left.join('\n')}\n`);
      return;
    }
    if (this.loop) spawnSync('losetup', ['-d', this.loop], { stdio: 'ignore' });
    else if (this.work) rmSync(this.work, { recursive: true, force: true });
    this.box.cleanup();
  }
}

/** busybox plus LARGE_FILES files of random bytes (~LARGE_BYTES): 1-16 KiB files and BIG_FILES of several MB. */
async function largeTree(dir: string): Promise<void> {
  cpSync(await busyboxRootfs(), dir, { recursive: true, verbatimSymlinks: true });
  const r = prng(42);
  const small = Array.from({ length: LARGE_FILES - BIG_FILES }, () => 1024 + Math.floor(r() * 15 * 1024));
  const rest = LARGE_BYTES - small.reduce((a, b) => a + b, 0);
  const weights = Array.from({ length: BIG_FILES }, () => 0.5 + r());
  const sum = weights.reduce((a, b) => a + b, 0);
  const big = weights.map((w) => Math.floor((rest * w) / sum));
  const sizes = [...small, ...big];
  for (const [i, size] of sizes.entries()) {
    const sub = join(dir, 'data', `d${String(i % 100).padStart(2, '0')}`);
    if (i < 100) mkdirSync(sub, { recursive: true });
    writeFileSync(join(sub, i >= small.length ? `big-${i}.bin` : `f${i}.dat`), randomBytes(size));
  }
}

async function makeImage(top: string, name: string, title: string, rootfs: string, b: Bench): Promise<Image> {
  const archive = join(top, `${name}.oci.tar`);
  const made = await ociImageArchive(archive, { ref: `localhost/hbx-bench/${name}:1`, cmd: ['true'] }, rootfs);
  const layer = await rootfsTar(rootfs, join(top, `${name}.layer.tar`));
  if (layer.digest !== made.layerDigest) throw new Error(`${name}: the layer tar (${layer.digest}) is not the archive's layer (${made.layerDigest})`);
  const bundle = join(top, `${name}-extracted`);
  mkdirSync(join(bundle, 'rootfs'), { recursive: true });
  b.exec('tar', ['-xf', layer.path, '-C', join(bundle, 'rootfs')]);
  b.writeConfig(bundle, 'rootfs');
  return { name, title, archive, layer: layer.path, layerBytes: layer.size, entries: countEntries(rootfs), bundle };
}

/** Calls each contender once per round, the order rotated every round; the first round is a warm-up and not kept. */
async function interleave<K extends string>(rounds: number, contenders: Record<K, () => number | Promise<number>>, between: () => void): Promise<Record<K, number[]>> {
  const keys = Object.keys(contenders) as K[];
  const out = Object.fromEntries(keys.map((k) => [k, [] as number[]])) as Record<K, number[]>;
  for (let i = -1; i < rounds; i++) {
    const order = keys.map((_, j) => keys[(j + Math.max(i, 0)) % keys.length]!);
    for (const k of order) {
      between();
      const t = await contenders[k]();
      if (i >= 0) out[k].push(t);
    }
  }
  for (const k of keys) progress(`  ${k}: ${out[k].map((t) => t.toFixed(1)).join(' ')} ms`);
  return out;
}

export async function erofsBench(): Promise<string> {
  const runc = findRunc();
  if (!runc) throw new Error('runc is not installed');
  for (const tool of ['tar', 'mkfs.erofs', 'cat', 'sync', ...(process.env.BENCH_EROFS_SCRATCH ? [] : ['mkfs.ext4', 'losetup', 'mount'])]) if (!which(tool)) throw new Error(`${tool} is not installed`);
  const b = new Bench(runc);
  try {
    await b.init();
    const top = b.work;
    const largeDir = join(top, 'large-src');
    progress(`writing ${LARGE_FILES} files (~${LARGE_BYTES / 1e6} MB) and the archives`);
    await largeTree(largeDir);
    const images = [
      await makeImage(top, 'small', 'small: busybox', await busyboxRootfs(), b),
      await makeImage(top, 'large', `large: busybox + ${LARGE_FILES.toLocaleString('en-US')} files`, largeDir, b),
    ];
    rmSync(largeDir, { recursive: true, force: true });

    // a. Cold.
    const cold: string[] = [];
    const facts: string[] = [];
    const verdicts: string[] = [];
    const builds: string[] = [];
    for (const img of images) {
      const rounds = img.name === 'large' ? COLD_LARGE_ROUNDS : ROUNDS;
      progress(`cold, ${img.name}: ${rounds} rounds + 1 warm-up`);
      let mkfsBytes = 0;
      const buildMs: number[] = []; // the first is the warm-up round's
      const r = await interleave(
        rounds,
        {
          tar: () => b.tarRunc(img),
          mkfs: () => {
            const m = b.mkfsRunc(img);
            mkfsBytes = m.imageBytes;
            return m.ms;
          },
          hyperbox: () => {
            b.prune(); // not timed
            b.sync();
            const t = b.hyperboxRun(img);
            const built = listImages();
            if (built.length !== 1) throw new Error(`run --image left ${built.length} images in the cache, not 1`);
            buildMs.push(built[0]!.buildMs);
            return t;
          },
        },
        () => b.sync(),
      );
      const meta = listImages()[0]!;
      facts.push(`| ${img.title} | ${img.entries.toLocaleString('en-US')} | ${mb(img.layerBytes)} | ${mb(meta.bytes)} | ${mb(mkfsBytes)} |`);
      const [tar, mkfs, hbx] = [median(r.tar), median(r.mkfs), median(r.hyperbox)];
      const target = img.name === 'large' ? '≥ 1.5x' : '';
      cold.push(`| ${img.title} | ${rounds} | ${ms(tar)} | ${ms(mkfs)} | ${ms(hbx)} | ${x(tar / hbx)} | ${x(mkfs / hbx)} | ${target} |`);
      builds.push(`${median(buildMs.slice(1)).toFixed(0)} ms of ${hbx.toFixed(0)} (${img.name})`);
      if (img.name === 'large') verdicts.push(`- cold start ≥ 1.5x faster than tar-extract for the ${LARGE_FILES.toLocaleString('en-US')}-file image: **${tar / hbx >= 1.5 ? 'met' : 'not met'}** (${x(tar / hbx)}).`);
    }

    // b. Warm.
    const warm: string[] = [];
    let worstReady = 0;
    for (const img of images) {
      progress(`warm, ${img.name}: ${ROUNDS} rounds + 1 warm-up`);
      b.exec(LAUNCHER, ['image', 'build', img.archive]); // into the cache, if (a) left another image there
      const cached = listImages().find((m) => m.source.location === img.archive);
      if (!cached) throw new Error(`image build ${img.archive}: no image from it in the cache`);
      const r = await interleave(
        ROUNDS,
        {
          runc: () => b.runcRun(img.bundle),
          hyperbox: () => b.hyperboxRun(img),
          ready: () => b.rootfsReady(img),
          mount: () => b.mountOnly(imageFile(cached.id)),
        },
        () => {},
      );
      const [runcMs, hbx, ready, mount] = [median(r.runc), median(r.hyperbox), median(r.ready), median(r.mount)];
      worstReady = Math.max(worstReady, ready);
      warm.push(`| ${img.title} | ${ms(runcMs)} | ${ms(hbx)} | ${x(hbx / runcMs)} (+${(hbx - runcMs).toFixed(1)} ms) | ${ms(ready)} | ${ms(mount)} | < 10 ms |`);
    }
    verdicts.push(`- warm rootfs ready < 10 ms whatever the size: **${worstReady < 10 ? 'met' : 'not met'}** (${ms(worstReady)} at most).`);

    // c. Writer throughput.
    const writer: string[] = [];
    let worstWriter = Infinity;
    for (const img of images) {
      progress(`writer, ${img.name}: ${ROUNDS} rounds + 1 warm-up`);
      const r = await interleave(
        ROUNDS,
        { writer: () => b.writer(img), cat: () => b.cat(img), read: () => b.readInProcess(img) },
        () => b.sync(),
      );
      const rate = (t: number) => img.layerBytes / 1e6 / (t / 1000);
      const [w, c, rd] = [rate(median(r.writer)), rate(median(r.cat)), rate(median(r.read))];
      if (img.name === 'large') worstWriter = Math.min(worstWriter, w / c);
      writer.push(`| ${img.title} | ${mb(img.layerBytes)} | ${c.toFixed(0)} MB/s | ${rd.toFixed(0)} MB/s | ${w.toFixed(0)} MB/s (${ms(median(r.writer))}) | ${x(w / c)} | ${img.name === 'large' ? '≥ 0.5x' : ''} |`);
    }
    verdicts.push(`- writer ≥ 0.5x the speed of reading its input (\`cat\`, large image): **${worstWriter >= 0.5 ? 'met' : 'not met'}** (${x(worstWriter)}).`);

    const tarVersion = spawnSync('tar', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0];
    const runcVersion = spawnSync(runc, ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0];
    const usage = spawnSync('mkfs.erofs', [], { encoding: 'utf8' }); // the version is on the last line of the usage text
    const mkfsVersion = /^mkfs\.erofs \d[^\n]*/m.exec(`${usage.stdout}\n${usage.stderr}`)?.[0] ?? 'mkfs.erofs';
    return [
      measuredLine('test/bench/erofs.ts'),
      `${runcVersion}, ${tarVersion}, ${mkfsVersion}, Node ${process.version}. Contenders run interleaved in one process, the order rotated every round after an untimed warm-up round; medians. ` +
        `The page cache is never dropped (every contender reads warm inputs); dirty pages are flushed with an untimed \`sync\` before every timed step of (a) and (c). ${b.scratchLine()}.`,
      '',
      '| image | entries | layer tar | hyperbox EROFS image | mkfs.erofs image |',
      '|---|---|---|---|---|',
      ...facts,
      '',
      '(a) Cold: image archive to a container that ran `true`. hyperbox-runc: `run --image ARCHIVE ID` with its cache emptied (`image prune --all`, not timed) every round: ' +
        'the Node start, reading the archive and checking the layer digest, building and fsyncing the image, mounting, runc, and the poststop unmount are all counted. ' +
        'tar + runc: `tar -xf layer.tar -C rootfs` into a fresh dir, config.json, `runc run` (the `rm -rf` afterwards not counted). ' +
        'mkfs.erofs: the same tar, `mkfs.erofs image tree`, the EROFS and overlay mounts hyperbox makes, `runc run`, counted to the container\'s exit (unmount and rm not counted).',
      '',
      '| image | rounds | tar + runc | tar + mkfs.erofs + mount + runc | hyperbox-runc run --image (cold) | faster than tar | faster than mkfs.erofs | target vs tar |',
      '|---|---|---|---|---|---|---|---|',
      ...cold,
      '',
      `Of hyperbox-runc's cold time, building the image (streaming the layer out of the archive through its digest check into the writer, then fsync; the image's recorded buildMs, median): ${builds.join(', ')}.`,
      '',
      `(b) Warm: the image cached. \`runc run\` of a tree extracted beforehand is the baseline for the whole run; rootfs ready is mountRootfs in-process (open the archive, find its image in the cache, mount it, overlay), timed with process.hrtime; the mounts alone are the two mount(2) calls. Median of ${ROUNDS} rounds.`,
      '',
      '| image | runc run, extracted tree | hyperbox-runc run --image (warm) | ratio | rootfs ready | EROFS + overlay mounts alone | target (rootfs ready) |',
      '|---|---|---|---|---|---|---|',
      ...warm,
      '',
      `(c) Writer: \`buildErofs(tarLayers([layer.tar]), out)\` in-process (no fsync) against \`cat layer.tar > /dev/null\` (a process start included: it dominates for the small tar) and read(2) of the file in 1 MiB chunks in-process; MB = 10^6 bytes of layer tar. Median of ${ROUNDS} rounds.`,
      '',
      '| image | layer tar | cat | read(2) in-process | buildErofs | writer / cat | target |',
      '|---|---|---|---|---|---|---|',
      ...writer,
      '',
      'Targets:',
      '',
      ...verdicts,
    ].join('\n');
  } finally {
    b.cleanup();
  }
}

await benchMain(import.meta.url, 'erofs', erofsBench);
