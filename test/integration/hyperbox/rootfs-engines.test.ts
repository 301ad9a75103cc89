/**
 * EROFS rootfs through Podman (--rootfs EMPTY_DIR --annotation) and containerd
 * (ctr run --rootfs EMPTY_DIR --annotation): io.hyperbox.rootfs.image=NAME
 * replaces the engine's (empty) root with an overlay over the cached image;
 * the container sees the image, can write, and everything is unmounted at
 * poststop. Engines do not pass HYPERBOX_* to the runtime, so these use the
 * real cache (/var/lib/hyperbox/erofs) and state (/run/hyperbox); the image,
 * named for this run, is removed at the end.
 */
import t, { type Test } from 'tap';
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { cp, mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { busyboxRootfs } from '../../../fixtures/busybox.js';
import { ociImageArchive } from '../../../fixtures/oci-image.js';
import { containerdHarness } from '../../helpers/containerd.js';
import { podmanHarness } from '../../helpers/podman.js';
import { checkPrerequisites, describe, readMounts, registerId, run, skipOrFail, testTempDir, waitFor, type RunResult } from '../../helpers/runtime.js';

const LAUNCHER = resolve('build/hyperbox-runc');
const STATE = '/run/hyperbox';
const IMAGES = '/var/lib/hyperbox/erofs/images';
const LOCKS = '/var/lib/hyperbox/erofs/locks';
const ANNOTATION = 'io.hyperbox.rootfs.image';
/** The cache name this run gives its image. */
const NAME = `hbxt-rootfs-${process.pid}`;
/**
 * The archive's own reference. Its tag is NAME: an OCI archive's names (the full reference and
 * org.opencontainers.image.ref.name, which is the bare tag) join the cache's names, and a common
 * tag ("latest") would take that name from whatever image on this machine has it.
 */
const REF = `localhost/hbxt-rootfs:${NAME}`;
const MARKER = `hbxt-marker-${process.pid}-${randomBytes(6).toString('hex')}`;
const SCRIPT = 'cat /srv/marker; grep " / " /proc/self/mountinfo; echo w > /tmp/w && cat /tmp/w';

/** The image this run built: its ID, or undefined when the build was skipped or failed. */
let imageId: string | undefined;
/** Container ids given to the engines, for the leftover checks and the last-resort cleanup. */
const ids = new Set<string>();

const hb = (args: string[]): Promise<RunResult> => run(LAUNCHER, args, { timeout: 120_000 });
const imageFile = (id: string) => join(IMAGES, `${id.slice('sha256:'.length)}.erofs`);

/** Mounts under /run/hyperbox of the container `id` (its state is /run/hyperbox/<root key>/<id>). */
function mountsOf(id: string): string[] {
  return readMounts()
    .map((m) => m.mountPoint)
    .filter((mp) => mp.startsWith(`${STATE}/`) && mp.split('/').includes(id));
}

/** The file a /dev/loopN is attached to, if any. */
function loopBackingFile(dev: string): string | undefined {
  try {
    return readFileSync(`/sys/block/${dev.slice('/dev/'.length)}/loop/backing_file`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** EROFS mounts of our image file: file-backed, or through a loop device (older kernels). */
function erofsMountsOfImage(id: string): string[] {
  return readMounts()
    .filter((m) => m.fsType === 'erofs' && (m.source === imageFile(id) || (m.source.startsWith('/dev/loop') && loopBackingFile(m.source) === imageFile(id))))
    .map((m) => m.mountPoint);
}

/** Container state dirs /run/hyperbox/<root key>/<id> still there. */
function stateDirsOf(id: string): string[] {
  if (!existsSync(STATE)) return [];
  return readdirSync(STATE)
    .filter((k) => /^[0-9a-f]{16}$/.test(k))
    .map((k) => join(STATE, k, id))
    .filter((d) => existsSync(d));
}

/** Our image's `image ls --json` record. */
async function listed(t: Test): Promise<{ id: string; names: string[]; mounted: boolean } | undefined> {
  const ls = await hb(['image', 'ls', '--json']);
  t.equal(ls.exitCode, 0, describe(ls));
  return (JSON.parse(ls.stdout || '[]') as Array<{ id: string; names: string[]; mounted: boolean }>).find((m) => m.id === imageId);
}

/** Every path under `dir` (relative, sorted), symlinks as "path -> target". */
function tree(dir: string, rel = ''): string[] {
  return readdirSync(join(dir, rel), { withFileTypes: true })
    .flatMap((e) => {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isSymbolicLink()) return [`${p} -> ${readlinkSync(join(dir, p))}`];
      return e.isDirectory() ? [p, ...tree(dir, p)] : [p];
    })
    .sort();
}

/**
 * What every engine's container must have printed, and left behind (nothing). `engineFiles`:
 * what the engine itself writes into its --rootfs dir (never a mount target runc creates).
 */
async function checkRun(t: Test, r: RunResult, id: string, emptyDir: string, engineFiles: string[] = []) {
  t.equal(r.exitCode, 0, describe(r));
  const lines = r.stdout.replace(/\r/g, '').split('\n');
  t.equal(lines[0], MARKER, "the image's /srv/marker is the container's");
  const root = lines.find((l) => l.includes(' - ') && l.split(' ')[4] === '/') ?? '';
  t.match(root, / - overlay overlay /, `the root is an overlay: ${root}`);
  // The overlay's upper dir is in this container's hyperbox state.
  t.match(root, new RegExp(`upperdir=${STATE}/[0-9a-f]{16}/${id}/rootfs/upper[,\\s]`), "upper is in the container's state under /run/hyperbox");
  t.match(root, new RegExp(`workdir=${STATE}/[0-9a-f]{16}/${id}/rootfs/work(,|\\s|$)`), "work is in the container's state under /run/hyperbox");
  t.equal(lines.at(-2), 'w', 'a write to the root works');

  // Poststop (at the engine's delete) unmounts; the engine's --rm may finish it just after.
  await waitFor(`the rootfs mounts of ${id} to go`, () => mountsOf(id).length === 0 && erofsMountsOfImage(imageId!).length === 0, 20_000).catch(() => undefined);
  t.same(mountsOf(id), [], `no mount under ${STATE} of the container is left`);
  t.same(erofsMountsOfImage(imageId!), [], 'no EROFS mount of the image file is left');
  await waitFor(`the state of ${id} to go`, () => stateDirsOf(id).length === 0, 10_000).catch(() => undefined);
  t.same(stateDirsOf(id), [], "the container's hyperbox state is gone");
  const loops = await execa('losetup', ['-j', imageFile(imageId!)], { reject: false });
  t.equal(loops.stdout.trim(), '', 'no loop device on the image file');
  t.same(tree(emptyDir), engineFiles, `the engine's --rootfs dir holds nothing from runc or hyperbox${engineFiles.length ? ` (only the engine's own ${engineFiles.join(', ')})` : ''}`);
  t.equal((await listed(t))?.mounted, false, '`image ls` does not mark the image mounted');
}

/** An empty dir for the engine's --rootfs. */
async function emptyRootfs(t: Test, tag: string): Promise<string> {
  const dir = join(await testTempDir(t, tag), 'empty-rootfs');
  await mkdir(dir);
  return dir;
}

function kernelSupport(t: Test): boolean {
  const fs = readFileSync('/proc/filesystems', 'utf8');
  for (const name of ['erofs', 'overlay']) {
    if (!new RegExp(`\\t${name}$`, 'm').test(fs)) {
      skipOrFail(t, `this kernel lacks ${name} (not in /proc/filesystems; modprobe ${name}?)`);
      return false;
    }
  }
  return true;
}

t.teardown(async () => {
  // Last resort after a failed test: the engines' cleanups delete their containers, which
  // releases the mounts; anything still mounted is detached so the image can go.
  for (const id of ids) for (const mp of mountsOf(id).sort((a, b) => b.length - a.length)) await execa('umount', ['-l', mp], { reject: false });
  if (!imageId) return;
  if (existsSync(imageFile(imageId))) {
    const rm = await hb(['image', 'rm', imageId]);
    if (rm.exitCode !== 0) console.error(`# image rm ${imageId} failed: ${describe(rm)}`);
  }
  // The image's build lock (hyperbox keeps one per image key, also after image rm). The key is
  // this run's alone (the marker is random): nobody else can hold it.
  if (!existsSync(imageFile(imageId))) rmSync(join(LOCKS, `${imageId.slice('sha256:'.length)}.lock`), { force: true });
});

t.test(`image build ARCHIVE --name ${NAME}: an image with a marker in the real cache`, async (t) => {
  if (!checkPrerequisites(t, { root: true, busybox: true }) || !kernelSupport(t)) return;
  const tmp = await testTempDir(t, 'rfe-image');
  const rootfs = join(tmp, 'rootfs');
  await cp(await busyboxRootfs(), rootfs, { recursive: true, verbatimSymlinks: true });
  await mkdir(join(rootfs, 'srv'));
  await writeFile(join(rootfs, 'srv', 'marker'), `${MARKER}\n`);
  const archive = await ociImageArchive(join(tmp, 'app-oci.tar'), { ref: REF, cmd: ['sh'] }, rootfs);
  const built = await hb(['image', 'build', archive.path, '--name', NAME, '--json']);
  t.equal(built.exitCode, 0, describe(built));
  if (built.exitCode !== 0) return;
  const meta = JSON.parse(built.stdout) as { id: string; names: string[]; built: boolean };
  imageId = meta.id;
  t.match(meta.id, /^sha256:[0-9a-f]{64}$/);
  t.equal(meta.built, true, 'built now (the marker makes it new)');
  t.same([...meta.names].sort(), [NAME, REF].sort(), "named NAME and the archive's reference");
  t.ok(existsSync(imageFile(meta.id)), `the image is in ${IMAGES}`);
  t.equal((await listed(t))?.mounted, false, 'not mounted yet');
});

t.test('Podman: --rootfs EMPTY --annotation io.hyperbox.rootfs.image runs from the image, leaves nothing mounted', async (t) => {
  if (!checkPrerequisites(t, { root: true }) || !kernelSupport(t)) return;
  if (!imageId) return void t.fail('no image (its build failed above)');
  const pm = await podmanHarness(t, { runtime: LAUNCHER, importImage: false });
  if (!pm) return;
  const empty = await emptyRootfs(t, 'rfe-pm');
  // `podman run --rm` prints nothing that names the container; create --rm prints the full id
  // the runtime is given, and start --attach is the rest of `run --rm`.
  const name = pm.name('rootfs');
  // Podman 4.3 reads --annotation as CSV: fine unquoted, NAME has no comma.
  const created = await pm.podman(['create', '--rm', '--name', name, ...pm.runFlags, '--annotation', `${ANNOTATION}=${NAME}`, '--rootfs', empty, '/bin/sh', '-c', SCRIPT]);
  t.equal(created.exitCode, 0, describe(created));
  if (created.exitCode !== 0) return;
  const id = created.stdout.trim();
  t.match(id, /^[0-9a-f]{64}$/, 'the full container id');
  registerId(id);
  ids.add(id);
  const r = await pm.podman(['start', '--attach', name]);
  await waitFor('the container to be removed', async () => (await pm.podman(['container', 'exists', name])).exitCode === 1, 20_000).catch(() => undefined);
  // Podman itself (libpod mountStorage, before the runtime is called) adds an /etc/mtab symlink to
  // a --rootfs that lacks one; hyperbox has replaced root.path by then, so the container never
  // sees it. Everything else (/etc/hosts, /etc/hostname, /run/.containerenv mount targets, /proc,
  // /dev...) runc creates in the overlay, never here.
  await checkRun(t, r, id, empty, ['etc', 'etc/mtab -> /proc/mounts']);
});

t.test('containerd: ctr run --rootfs EMPTY --annotation io.hyperbox.rootfs.image runs from the image, leaves nothing mounted', async (t) => {
  if (!checkPrerequisites(t, { root: true }) || !kernelSupport(t)) return;
  if (!imageId) return void t.fail('no image (its build failed above)');
  const cd = await containerdHarness(t, { runtime: LAUNCHER, importImage: false });
  if (!cd) return;
  const empty = await emptyRootfs(t, 'rfe-cd');
  const id = cd.id('rootfs');
  ids.add(id);
  // With --rootfs, ctr takes the rootfs dir where the image would be.
  const r = await cd.ctr(['run', '--rm', ...cd.runtimeFlags, '--annotation', `${ANNOTATION}=${NAME}`, '--rootfs', empty, id, '/bin/sh', '-c', SCRIPT]);
  await checkRun(t, r, id, empty);

  // A running container holds the image: `image ls` says so and `image rm` by ID refuses; the
  // task's delete after a SIGKILL releases it.
  const bg = cd.id('rootfs-bg');
  ids.add(bg);
  const started = await cd.ctr(['run', '--detach', ...cd.runtimeFlags, '--annotation', `${ANNOTATION}=${NAME}`, '--rootfs', empty, bg, '/bin/sleep', '600']);
  t.equal(started.exitCode, 0, describe(started));
  t.equal(mountsOf(bg).length, 2, `the EROFS image and the overlay are mounted under ${STATE}`);
  t.equal(erofsMountsOfImage(imageId!).length, 1, 'one EROFS mount of the image file');
  t.equal((await listed(t))?.mounted, true, '`image ls` marks the image mounted');
  const busy = await hb(['image', 'rm', imageId!]);
  t.equal(busy.exitCode, 1, describe(busy));
  t.match(busy.stderr, /is mounted by a container/, 'image rm refuses a mounted image');
  t.ok(existsSync(imageFile(imageId!)), 'the image is still there');
  const killed = await cd.ctr(['tasks', 'kill', '--signal', 'SIGKILL', bg]);
  t.equal(killed.exitCode, 0, describe(killed));
  await waitFor(`task ${bg} to stop`, async () => /\bSTOPPED\b/.test((await cd.ctr(['tasks', 'ls'])).stdout), 20_000);
  const del = await cd.ctr(['tasks', 'delete', bg]);
  t.equal(del.exitCode, 0, describe(del));
  const rmc = await cd.ctr(['containers', 'rm', bg]);
  t.equal(rmc.exitCode, 0, describe(rmc));
  t.same(mountsOf(bg), [], 'the task delete released the mounts');
  t.same(erofsMountsOfImage(imageId!), [], 'no EROFS mount of the image file is left');
  t.same(stateDirsOf(bg), [], "the container's hyperbox state is gone");
  t.same(tree(empty), [], 'the --rootfs dir is still empty');
  t.equal((await listed(t))?.mounted, false, '`image ls` no longer marks it mounted');
});

t.test(`image rm ${NAME}: the image goes with its last name`, async (t) => {
  if (!checkPrerequisites(t, { root: true }) || !kernelSupport(t)) return;
  if (!imageId) return void t.fail('no image (its build failed above)');
  for (const id of ids) t.same(mountsOf(id), [], `nothing of ${id} mounted`);
  const before = await listed(t);
  t.equal(before?.mounted, false, 'not mounted');
  // The archive's reference first (untagged: NAME remains), then NAME, the last, with the image.
  const rm = await hb(['image', 'rm', REF, NAME]);
  t.equal(rm.exitCode, 0, describe(rm));
  t.equal(rm.stdout, `untagged ${REF}\nremoved ${imageId}\n`);
  t.notOk(existsSync(imageFile(imageId)), 'the image file is gone');
  t.notOk(existsSync(imageFile(imageId).replace(/\.erofs$/, '.json')), 'and its record');
  t.notOk(await listed(t), '`image ls` no longer lists it');
  const again = await hb(['image', 'rm', NAME]);
  t.equal(again.exitCode, 1, `a second rm fails: ${again.stderr.trim()}`);
});
