/**
 * EROFS rootfs with real runc and the real kernel: `run --image app.tar ID` with no bundle,
 * the second run only mounting, an overlay whose writes die with the container, a read-only
 * root that is the EROFS mount itself, `spec --image`, the image's config filling the process,
 * nothing left mounted after delete, a failed create or a killed hyperbox-runc, concurrent
 * builds of one image building it once, and bad requests refused before runc runs.
 */
import t, { type Test } from 'tap';
import { execa } from 'execa';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { cp, mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { busyboxRootfs } from '../../../fixtures/busybox.js';
import { ociImageArchive } from '../../../fixtures/oci-image.js';
import { findRunc } from '../../../fixtures/tools.js';
import { checkPrerequisites, describe, readMounts, run, RuntimeHarness, sleep, testTempDir, waitFor } from '../../helpers/runtime.js';

const LAUNCHER = resolve('build/hyperbox-runc');

async function setup(t: Test, tag: string) {
  if (!checkPrerequisites(t, { root: true, runc: true, busybox: true })) return undefined;
  const tmp = await testTempDir(t, tag);
  const h = new RuntimeHarness({ path: LAUNCHER, label: 'hyperbox-runc', explicit: true }, findRunc()!, tmp);
  const state = join(tmp, 'hbstate');
  const store = join(tmp, 'store');
  const env = { HYPERBOX_STATE: state, HYPERBOX_STORE: store };
  t.teardown(() => h.cleanup());
  // An app image: busybox plus a marker, a working dir and an entrypoint that shows where it runs.
  const rootfs = join(tmp, 'app-rootfs');
  await cp(await busyboxRootfs(), rootfs, { recursive: true, verbatimSymlinks: true });
  await mkdir(join(rootfs, 'srv', 'app'), { recursive: true });
  await writeFile(join(rootfs, 'srv', 'app', 'marker'), 'from-the-image\n');
  await writeFile(join(rootfs, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1234:4321:app:/srv/app:/bin/sh\n');
  const archive = join(tmp, 'app.tar');
  await ociImageArchive(archive, { ref: 'localhost/hbxt/app:1', cmd: ['sh', '-c', 'echo "cwd=$(pwd) uid=$(id -u) marker=$(cat /srv/app/marker) greeting=$GREETING"'], env: ['PATH=/bin:/usr/bin', 'GREETING=hello'] }, rootfs);
  const hb = (args: string[], opts: { cwd?: string } = {}) => run(LAUNCHER, args, { env, timeout: 120_000, ...opts });
  const ours = () => readMounts().filter((m) => m.mountPoint.startsWith(tmp));
  const images = () => (existsSync(join(store, 'erofs', 'images')) ? readdirSync(join(store, 'erofs', 'images')).filter((f) => f.endsWith('.erofs')) : []);
  const stateDirs = () => (existsSync(state) ? readdirSync(state).filter((k) => /^[0-9a-f]{16}$/.test(k)).flatMap((k) => readdirSync(join(state, k))) : []);
  return { h, tmp, env, state, store, archive, rootfs, hb, ours, images, stateDirs };
}

t.test('run --image app.tar ID: built once, mounted after, nothing left', async (t) => {
  const s = await setup(t, 'rf-run');
  if (!s) return;
  const cwd = join(s.tmp, 'empty');
  await mkdir(cwd);
  const first = await s.h.rt(['run', '--image', s.archive, s.h.id('rf')], { env: s.env, cwd, timeout: 120_000 });
  t.equal(first.exitCode, 0, describe(first));
  t.match(first.stdout, /marker=from-the-image/, 'the container ran from the image');
  t.match(first.stdout, /greeting=hello/, "the image's Env was added");
  t.equal(s.images().length, 1, 'one image in the cache');
  const image = join(s.store, 'erofs', 'images', s.images()[0]!);
  const fsck = await execa('fsck.erofs', [image], { reject: false });
  t.equal(fsck.exitCode, 0, `fsck.erofs accepts the image: ${fsck.stderr}`);
  const built = statSync(image);

  // The second run writes, and its write does not reach the image or the next container.
  const second = await s.h.rt(['run', '--image', s.archive, s.h.id('rf')], { env: s.env, cwd, timeout: 60_000 });
  t.equal(second.exitCode, 0, describe(second));
  t.equal(statSync(image).mtimeMs, built.mtimeMs, 'the second run did not rebuild the image');
  t.equal(statSync(image).ino, built.ino, 'same image file');
  t.same(readdirSync(cwd), [], 'no config.json was written into the working directory');
  t.same(s.ours(), [], 'no mounts left');
  t.same(s.stateDirs(), [], 'no state left');
  t.same(existsSync(join(s.state, 'bundles')) ? readdirSync(join(s.state, 'bundles')) : [], [], 'the generated bundle is gone');
});

t.test('an overlay over the image: writes land in the container, never in the image', async (t) => {
  const s = await setup(t, 'rf-ovl');
  if (!s) return;
  const b = await s.h.bundle('b', { args: ['sh', '-c', 'ls /srv/app; echo x > /srv/app/written && rm /srv/app/marker && ls /srv/app && grep " / " /proc/self/mountinfo'] });
  writeFileSync(b.configPath, JSON.stringify({ ...b.spec, root: { path: 'does-not-matter', readonly: false } }));
  const before = readFileSync(b.configPath);
  const r = await s.h.rt(['run', '--image', s.archive, '--bundle', b.dir, s.h.id('rf')], { env: s.env, timeout: 120_000 });
  t.equal(r.exitCode, 0, describe(r));
  t.equal(r.stdout.split('\n')[0], 'marker', 'the image as built');
  t.equal(r.stdout.split('\n')[1], 'written', 'the write and the removal are visible inside');
  t.match(r.stdout, / - overlay /, 'the root is the overlay');
  t.ok(readFileSync(b.configPath).equals(before), 'config.json is put back byte for byte');
  const again = await s.h.rt(['run', '--image', s.archive, '--bundle', b.dir, s.h.id('rf')], { env: s.env, timeout: 60_000 });
  t.equal(again.exitCode, 0, describe(again));
  t.equal(again.stdout.split('\n')[0], 'marker', 'the next container starts from the image again');
  t.same(s.ours(), [], 'no mounts left');
});

t.test('a named image with root.readonly: the EROFS mount itself is the root', async (t) => {
  const s = await setup(t, 'rf-ro');
  if (!s) return;
  const built = await s.hb(['image', 'build', s.archive, '--name', 'app-ro', '--json']);
  t.equal(built.exitCode, 0, describe(built));
  t.equal(JSON.parse(built.stdout).built, true);
  const b = await s.h.bundle('b', { args: ['sh', '-c', 'grep " / " /proc/self/mountinfo; touch /x 2>&1; cat /srv/app/marker'], readonly: true, annotations: { 'io.hyperbox.rootfs.image': 'app-ro' } });
  const r = await s.h.rt(['run', '--bundle', b.dir, s.h.id('rf')], { env: s.env, timeout: 60_000 });
  t.equal(r.exitCode, 0, describe(r));
  t.match(r.stdout, / - erofs /, 'the root is the EROFS mount');
  t.match(r.stdout, /Read-only file system/, 'writes fail');
  t.match(r.stdout, /from-the-image/);
  t.same(s.ours(), [], 'no mounts left');
  const ls = await s.hb(['image', 'ls']);
  t.match(ls.stdout, /app-ro/, 'image ls names it');
  t.match(ls.stdout, /localhost\/hbxt\/app:1/, "and the archive's own name");
});

t.test('spec --image writes a bundle the image fills; the user is resolved inside the image', async (t) => {
  const s = await setup(t, 'rf-spec');
  if (!s) return;
  const dir = join(s.tmp, 'specced');
  await mkdir(dir);
  const r = await s.hb(['spec', '--image', s.archive, '--bundle', dir]);
  t.equal(r.exitCode, 0, describe(r));
  const spec = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  t.match(spec.annotations['io.hyperbox.rootfs.image'], /^sha256:[0-9a-f]{64}$/);
  t.same(spec.process.args.slice(0, 2), ['sh', '-c'], "the image's Cmd");
  t.ok(spec.process.env.includes('GREETING=hello'));
  t.equal(spec.root.readonly, false);
  spec.process.terminal = false;
  spec.process.cwd = '/srv/app';
  // The image's User is applied at create (a name needs the image's /etc/passwd).
  writeFileSync(join(dir, 'config.json'), JSON.stringify(spec));
  const cfg = join(s.store, 'erofs', 'images', `${spec.annotations['io.hyperbox.rootfs.image'].slice(7)}.json`);
  const meta = JSON.parse(readFileSync(cfg, 'utf8'));
  meta.config.user = 'app';
  writeFileSync(cfg, JSON.stringify(meta));
  const ran = await s.h.rt(['run', '--bundle', dir, s.h.id('rf')], { env: s.env, timeout: 60_000 });
  t.equal(ran.exitCode, 0, describe(ran));
  t.match(ran.stdout, /cwd=\/srv\/app uid=1234 marker=from-the-image/);
});

t.test('a failed create and a killed hyperbox-runc leave no mount once gc has run', async (t) => {
  const s = await setup(t, 'rf-fail');
  if (!s) return;
  await s.hb(['image', 'build', s.archive, '--name', 'app']);
  // runc refuses the process (a relative cwd): the restore watcher releases the mounts.
  const bad = await s.h.bundle('bad', { args: ['true'], cwd: 'relative', annotations: { 'io.hyperbox.rootfs.image': 'app' } });
  const r = await s.h.rt(['run', '--bundle', bad.dir, s.h.id('rf')], { env: s.env, timeout: 60_000 });
  t.not(r.exitCode, 0, 'runc refused it');
  await waitFor('mounts and state of the failed create to go', () => s.ours().length === 0 && s.stateDirs().length === 0, 10_000);
  t.pass('the restore watcher unmounted and removed the state');

  // hyperbox-runc killed after mounting (runc here never returns): gc takes everything down.
  const hang = join(s.tmp, 'hang-runc');
  writeFileSync(hang, '#!/bin/sh\nexec sleep 600\n', { mode: 0o755 });
  const b = await s.h.bundle('b', { args: ['true'], annotations: { 'io.hyperbox.rootfs.image': 'app' } });
  const p = s.h.spawn(['create', '--bundle', b.dir, s.h.id('rf')], { env: { ...s.env, HYPERBOX_RUNC: hang } });
  await waitFor('the rootfs to be mounted', () => s.ours().length === 2, 20_000);
  p.kill('SIGKILL');
  await sleep(200);
  const gc = await s.hb(['--root', s.h.root, 'gc']);
  t.equal(gc.exitCode, 0, describe(gc));
  await waitFor('gc to unmount', () => s.ours().length === 0, 10_000);
  t.same(s.stateDirs(), [], 'no state left');
  t.equal(readFileSync(b.configPath, 'utf8'), JSON.stringify(b.spec, null, '\t'), 'config.json put back');
  t.same((await execa('losetup', ['-a'])).stdout.split('\n').filter((l) => l.includes(s.store)), [], 'no loop device');
});

t.test('two builds of one image at once build it once', async (t) => {
  const s = await setup(t, 'rf-conc');
  if (!s) return;
  const [a, b] = await Promise.all([s.hb(['image', 'build', s.archive, '--json']), s.hb(['image', 'build', s.archive, '--json'])]);
  t.equal(a.exitCode, 0, describe(a));
  t.equal(b.exitCode, 0, describe(b));
  const builds = [JSON.parse(a.stdout).built, JSON.parse(b.stdout).built].filter(Boolean);
  t.equal(builds.length, 1, 'exactly one of them built it');
  t.equal(s.images().length, 1);
  t.same(readdirSync(join(s.store, 'erofs', 'tmp')), [], 'no partial build left');
  const rm = await s.hb(['image', 'rm', 'localhost/hbxt/app:1']);
  t.equal(rm.exitCode, 0, describe(rm));
  t.equal(s.images().length, 0, 'rm of its last name removes it');
});

t.test('bad requests: one line, exit 1, config.json and the cache untouched', async (t) => {
  const s = await setup(t, 'rf-bad');
  if (!s) return;
  const corrupt = join(s.tmp, 'corrupt.tar');
  const good = readFileSync(s.archive);
  writeFileSync(corrupt, good.subarray(0, Math.floor(good.length / 2)));
  const cases: [string, Record<string, string>, string[], RegExp][] = [
    ['a path as image name', { 'io.hyperbox.rootfs.image': '/etc' }, [], /bad image name \\?"\/etc\\?"/],
    ['../ in a name', { 'io.hyperbox.rootfs.image': '../x' }, [], /bad image name/],
    ['an unknown image', { 'io.hyperbox.rootfs.image': 'nope' }, [], /no image \\?"nope\\?" in the cache/],
    ['a source path by annotation', { 'io.hyperbox.rootfs.source': s.archive }, [], /cannot come from an annotation/],
    ['an unknown rootfs key', { 'io.hyperbox.rootfs.size': '1' }, [], /unknown annotation io\.hyperbox\.rootfs\.size/],
    ['a missing archive', {}, ['--image', join(s.tmp, 'missing.tar')], /no such file or directory/],
    ['a truncated archive', {}, ['--image', corrupt], /corrupt|truncated|ends/i],
  ];
  for (const [what, annotations, flags, message] of cases) {
    const b = await s.h.bundle(`b-${what.replace(/\W+/g, '-')}`, { args: ['true'], annotations });
    const before = readFileSync(b.configPath);
    const r = await s.h.rt(['run', ...flags, '--bundle', b.dir, s.h.id('rf')], { env: s.env, timeout: 60_000 });
    t.equal(r.exitCode, 1, `${what}: exit 1`);
    t.match(r.stderr, message, `${what}: ${r.stderr.trim()}`);
    t.equal(r.stderr.trim().split('\n').length, 1, `${what}: one line`);
    t.notMatch(r.stderr, /\n\s+at /, `${what}: no stack trace`);
    t.ok(readFileSync(b.configPath).equals(before), `${what}: config.json untouched`);
  }
  t.same(s.images(), [], 'nothing in the cache');
  const tmpDir = join(s.store, 'erofs', 'tmp');
  t.same(existsSync(tmpDir) ? readdirSync(tmpDir) : [], [], 'no partial build left');
  t.same(s.ours(), [], 'no mounts');
  t.same(s.stateDirs(), [], 'no state');
});
