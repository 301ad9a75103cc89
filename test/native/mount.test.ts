/**
 * The addon's mount primitives against the real kernel: an EROFS image mounted file-backed and
 * through an autoclearing loop device, an overlay on top of it, unmounting (not mounted, busy,
 * lazy), option paths overlay cannot carry, and a corrupt image that leaves nothing behind.
 */
import t, { type Test } from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants as osConstants } from 'node:os';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { processTempDir } from '../../fixtures/tmp.js';
import { which } from '../../fixtures/tools.js';
import { native } from '../../src/native/index.js';
import { requireRoot, skipOrFail } from '../helpers/runtime.js';

const { EBUSY, EINVAL, ENOENT } = osConstants.errno;
const HELLO = 'hello from erofs\n';
const INNER = 'inner file\n';

const nat = native();
const mkfs = which('mkfs.erofs');
const root = processTempDir('mount');
const image = mkfs ? buildImage() : '';

function buildImage(): string {
  const src = join(root, 'src');
  mkdirSync(join(src, 'dir'), { recursive: true });
  writeFileSync(join(src, 'hello.txt'), HELLO);
  writeFileSync(join(src, 'dir', 'inner.txt'), INNER);
  symlinkSync('hello.txt', join(src, 'link'));
  const out = join(root, 'image.erofs');
  // realpath: the kernel reports the backing file by its resolved path.
  const r = spawnSync(mkfs!, [out, src], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mkfs.erofs failed (${r.status}): ${r.stderr}`);
  return realpathSync(out);
}

function ready(t: Test): boolean {
  if (!requireRoot(t)) return false;
  if (!mkfs) {
    skipOrFail(t, 'mkfs.erofs (erofs-utils) is not installed');
    return false;
  }
  return true;
}

let dirs = 0;
function newDir(name: string): string {
  const d = join(root, `${name}-${++dirs}`);
  mkdirSync(d);
  return d;
}

/** Mount points (field 5) of this process's mount namespace. */
function mountPoints(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' ')[4]!);
}

function mountLine(target: string): string[] | undefined {
  for (const l of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = l.split(' ');
    if (f[4] === target) return f;
  }
  return undefined;
}

/** Loop devices whose backing file is path. */
function loopsBackedBy(path: string): string[] {
  return readdirSync('/sys/block')
    .filter((d) => /^loop\d+$/.test(d))
    .filter((d) => nat.loopBackingFile(`/dev/${d}`) === path)
    .map((d) => `/dev/${d}`);
}

/** Polls until cond holds (true) or ~2 s passed (false): loop autoclear completes after umount returns. */
async function eventually(cond: () => boolean): Promise<boolean> {
  for (let i = 0; i < 40; i++) {
    if (cond()) return true;
    await sleep(50);
  }
  return cond();
}

/** Unmounts (lazily, newest first) whatever the test mounted, and detaches loops left on its images. */
function cleanup(t: Test, images: string[] = [image]): string[] {
  const targets: string[] = [];
  t.teardown(() => {
    for (const target of [...targets].reverse()) {
      try {
        while (nat.unmount(target, true));
      } catch {
        // Reported by the test; the rest still gets cleaned up.
      }
    }
    for (const img of images) for (const dev of loopsBackedBy(img)) nat.loopDetach(dev);
  });
  return targets;
}

function errnoOf(fn: () => unknown): number | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { errno?: number }).errno;
  }
  return undefined;
}

t.test('file-backed mount: no loop device, content reads back, read-only', async (t) => {
  if (!ready(t)) return;
  const mounted = cleanup(t);
  const mnt = newDir('file');
  mounted.push(mnt);
  t.equal(nat.mountErofs(image, mnt, false), null, 'file-backed: no loop device');
  const line = mountLine(mnt);
  t.equal(line?.[line.indexOf('-') + 1], 'erofs', 'mountinfo lists an erofs mount');
  t.equal(line?.[line.indexOf('-') + 2], image, 'whose source is the image file');
  t.match(line?.[5], /^ro(,|$)/, 'mounted read-only');
  t.notMatch(line?.[5] ?? '', /nodev|nosuid/, 'and only read-only (no nodev/nosuid on a rootfs)');
  t.same(loopsBackedBy(image), [], 'no loop device holds the image');

  t.equal(readFileSync(join(mnt, 'hello.txt'), 'utf8'), HELLO, 'file content');
  t.equal(readFileSync(join(mnt, 'dir', 'inner.txt'), 'utf8'), INNER, 'file in a directory');
  t.ok(lstatSync(join(mnt, 'link')).isSymbolicLink(), 'symlink kept');
  t.equal(readlinkSync(join(mnt, 'link')), 'hello.txt', 'symlink target');
  t.equal(readFileSync(join(mnt, 'link'), 'utf8'), HELLO, 'read through the symlink');

  t.throws(() => writeFileSync(join(mnt, 'hello.txt'), 'x'), { code: 'EROFS' }, 'overwriting fails with EROFS');
  t.throws(() => writeFileSync(join(mnt, 'new.txt'), 'x'), { code: 'EROFS' }, 'creating fails with EROFS');
  t.throws(() => mkdirSync(join(mnt, 'd')), { code: 'EROFS' }, 'mkdir fails with EROFS');

  t.equal(nat.unmount(mnt, false), true, 'unmounted');
  t.notOk(mountPoints().includes(mnt), 'gone from mountinfo');
  t.equal(nat.unmount(mnt, false), false, 'a second unmount: not a mount point any more');
});

t.test('forceLoop: a read-only loop device that detaches itself after unmount', async (t) => {
  if (!ready(t)) return;
  const mounted = cleanup(t);
  const mnt = newDir('loop');
  mounted.push(mnt);
  const dev = nat.mountErofs(image, mnt, true);
  t.match(dev, /^\/dev\/loop\d+$/, `a loop device: ${dev}`);
  if (!dev) return;
  t.equal(nat.loopBackingFile(dev), image, 'loopBackingFile names the image');
  const n = dev.slice('/dev/loop'.length);
  t.equal(readFileSync(`/sys/block/loop${n}/ro`, 'utf8').trim(), '1', 'the device is read-only');
  t.equal(readFileSync(`/sys/block/loop${n}/loop/autoclear`, 'utf8').trim(), '1', 'and autoclears');
  t.equal(readFileSync(`/sys/block/loop${n}/queue/logical_block_size`, 'utf8').trim(), '4096', 'with 4096-byte blocks');
  t.equal(readFileSync(`/sys/block/loop${n}/loop/dio`, 'utf8').trim(), '0', 'without direct I/O');
  const line = mountLine(mnt);
  t.equal(line?.[line.indexOf('-') + 2], dev, 'mountinfo: erofs mounted from the loop device');
  t.equal(readFileSync(join(mnt, 'hello.txt'), 'utf8'), HELLO, 'file content');
  t.equal(readlinkSync(join(mnt, 'link')), 'hello.txt', 'symlink target');
  t.throws(() => writeFileSync(join(mnt, 'x'), 'x'), { code: 'EROFS' }, 'read-only');

  t.equal(nat.unmount(mnt, false), true, 'unmounted');
  t.ok(await eventually(() => nat.loopBackingFile(dev) === null), 'the loop device detached itself (no backing file)');
  t.same(loopsBackedBy(image), [], 'no loop device holds the image');
  t.doesNotThrow(() => nat.loopDetach(dev), 'loopDetach of a free device is not an error');
});

t.test('overlay over the erofs mount: writes land in upper, the lower is unchanged', async (t) => {
  if (!ready(t)) return;
  const mounted = cleanup(t);
  const lower = newDir('lower');
  const upper = newDir('upper');
  const work = newDir('work');
  const merged = newDir('merged');
  mounted.push(lower);
  t.equal(nat.mountErofs(image, lower, false), null, 'erofs mounted');
  mounted.push(merged);
  nat.mountOverlay(lower, upper, work, merged);
  const line = mountLine(merged);
  t.equal(line?.[line.indexOf('-') + 1], 'overlay', 'mountinfo lists the overlay');
  t.match(line?.at(-1), `lowerdir=${lower}`, 'with the lower dir');

  t.equal(readFileSync(join(merged, 'hello.txt'), 'utf8'), HELLO, 'lower content visible');
  t.equal(readlinkSync(join(merged, 'link')), 'hello.txt', 'lower symlink visible');
  writeFileSync(join(merged, 'new.txt'), 'new\n');
  writeFileSync(join(merged, 'hello.txt'), 'changed\n');
  mkdirSync(join(merged, 'dir', 'sub'));
  t.equal(readFileSync(join(merged, 'hello.txt'), 'utf8'), 'changed\n', 'the change is visible in the merged view');
  t.equal(readFileSync(join(upper, 'new.txt'), 'utf8'), 'new\n', 'a new file lands in upper');
  t.equal(readFileSync(join(upper, 'hello.txt'), 'utf8'), 'changed\n', 'a changed file is copied up');
  t.ok(existsSync(join(upper, 'dir', 'sub')), 'a new directory lands in upper');
  t.equal(readFileSync(join(lower, 'hello.txt'), 'utf8'), HELLO, 'the lower file is unchanged');
  t.notOk(existsSync(join(lower, 'new.txt')), 'nothing new in the lower');

  t.equal(nat.unmount(merged, false), true, 'overlay unmounted');
  t.equal(nat.unmount(lower, false), true, 'erofs unmounted');
  t.equal(readFileSync(join(upper, 'hello.txt'), 'utf8'), 'changed\n', 'upper keeps the change');
});

t.test('unmount of what is not mounted returns false', async (t) => {
  if (!ready(t)) return;
  const dir = newDir('plain');
  t.equal(nat.unmount(dir, false), false, 'a plain directory');
  t.equal(nat.unmount(dir, true), false, 'a plain directory, detach');
  t.equal(nat.unmount(join(root, 'does-not-exist'), false), false, 'a missing path');
});

t.test('a busy mount: EBUSY, then a lazy unmount succeeds', async (t) => {
  if (!ready(t)) return;
  const mounted = cleanup(t);
  const mnt = newDir('busy');
  mounted.push(mnt);
  t.equal(nat.mountErofs(image, mnt, false), null, 'mounted');
  let child: ChildProcess | undefined;
  t.teardown(() => {
    child?.kill('SIGKILL');
  });
  // cwd inside the mount and an open file on it: the mount is in use.
  child = spawn('sh', ['-c', 'exec 3<hello.txt; echo ready; exec sleep 60'], { cwd: mnt, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child!.once('error', reject);
    child!.stdout!.once('data', () => resolve());
  });

  t.throws(() => nat.unmount(mnt, false), { errno: EBUSY, message: `umount2 ${mnt}: ` }, 'EBUSY; the message names the syscall and the path');
  t.ok(mountPoints().includes(mnt), 'still mounted');
  t.equal(nat.unmount(mnt, true), true, 'detach succeeds');
  t.notOk(mountPoints().includes(mnt), 'gone from mountinfo');
  t.equal(readFileSync(`/proc/${child.pid}/cwd/hello.txt`, 'utf8'), HELLO, 'the holder still reads the detached tree');
});

t.test('overlay option paths with , : or \\ are refused', async (t) => {
  if (!ready(t)) return;
  const mounted = cleanup(t);
  const lower = newDir('ovl-lower');
  const upper = newDir('ovl-upper');
  const work = newDir('ovl-work');
  const merged = newDir('ovl-merged');
  mounted.push(merged);
  for (const bad of [',', ':', '\\']) {
    const odd = join(root, `odd${bad}dir-${++dirs}`);
    mkdirSync(odd);
    t.throws(() => nat.mountOverlay(odd, upper, work, merged), { errno: EINVAL, message: /mount overlay on .*contains/ }, `lower with '${bad}'`);
    t.throws(() => nat.mountOverlay(lower, odd, work, merged), { errno: EINVAL, message: `the path ${odd} contains` }, `upper with '${bad}'`);
    t.throws(() => nat.mountOverlay(lower, upper, odd, merged), { errno: EINVAL, message: `the path ${odd} contains` }, `work with '${bad}'`);
  }
  t.notOk(mountPoints().includes(merged), 'nothing mounted');
  t.equal(errnoOf(() => nat.mountOverlay(lower, upper, work, join(root, 'no-such-target'))), ENOENT, 'a real mount error carries its errno');
});

t.test('a corrupt image throws and leaves no mount and no loop device', async (t) => {
  if (!ready(t)) return;
  const bad = join(root, 'corrupt.erofs');
  writeFileSync(bad, randomBytes(1 << 20));
  const badPath = realpathSync(bad);
  const mounted = cleanup(t, [image, badPath]);
  const mnt = newDir('corrupt');
  mounted.push(mnt);

  t.throws(() => nat.mountErofs(badPath, mnt, false), { errno: Number, message: `mount erofs ${badPath} on ${mnt}: ` }, 'file-backed: an errno, and the message names the syscall and paths');
  t.notOk(mountPoints().includes(mnt), 'file-backed: no mount');

  t.throws(() => nat.mountErofs(badPath, mnt, true), { errno: Number, message: /^mount erofs \/dev\/loop\d+ \(.*\) on / }, 'forceLoop: an errno, and the message names the device');
  t.notOk(mountPoints().includes(mnt), 'forceLoop: no mount');
  t.ok(await eventually(() => loopsBackedBy(badPath).length === 0), 'forceLoop: no loop device left attached');

  t.equal(errnoOf(() => nat.mountErofs(join(root, 'missing.erofs'), mnt, true)), ENOENT, 'a missing image: ENOENT');
  t.equal(errnoOf(() => nat.mountErofs(image, join(root, 'missing-dir'), true)), ENOENT, 'a missing target: ENOENT');
  t.ok(await eventually(() => loopsBackedBy(image).length === 0), 'and no loop device left on the good image');
});
