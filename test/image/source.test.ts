import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { appendFileSync, linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { HyperboxError } from '../../src/errors.js';
import { layersKey, openSource, parseLocation } from '../../src/image/source.js';
import { scanTarFile } from '../../src/image/tar.js';
import type { ImageSource, LayerEntry, LayerHandle } from '../../src/image/types.js';
import { busyboxRootfs, findBusybox, rootfsTar } from '../../fixtures/busybox.js';
import { buildImage, ociImageArchive, tarOf, type FixtureImage } from '../../fixtures/oci-image.js';
import { findRunc } from '../../fixtures/tools.js';
import { podmanHarness } from '../helpers/podman.js';
import { checkPrerequisites, skipOrFail } from '../helpers/runtime.js';

function tempDir(t: Test, tag: string): string {
  const dir = mkdtempSync(join(tmpdir(), `hbxt-${tag}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

interface Got {
  entry: LayerEntry;
  data: string;
}

async function read(layer: LayerHandle): Promise<Map<string, Got>> {
  const out = new Map<string, Got>();
  for await (const se of layer.open()) {
    const parts: Buffer[] = [];
    for await (const c of se.body) parts.push(c);
    out.set(se.entry.path, { entry: se.entry, data: Buffer.concat(parts).toString('latin1') });
  }
  return out;
}

async function rejectsWith(t: Test, p: Promise<unknown>, re: RegExp, msg: string, code?: string): Promise<void> {
  try {
    await p;
    t.fail(`${msg}: no error`);
  } catch (e) {
    t.ok(e instanceof HyperboxError, `${msg}: a HyperboxError`);
    t.match((e as Error).message, re, msg);
    t.notMatch((e as Error).message, /\n|    at /, `${msg}: one sentence, no stack`);
    if (code) t.equal((e as HyperboxError).code, code, `${msg}: ${code}`);
  }
}

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A small layer: its files, bodies named after the layer so that tests can find them. */
function layer(n: number, extra: Parameters<typeof tarOf>[0] = []): Promise<Buffer> {
  return tarOf([
    { name: './', type: 'directory' },
    { name: 'etc/', type: 'directory' },
    { name: `etc/layer-${n}`, body: `PAYLOAD of layer ${n}\n` },
    ...extra,
  ]);
}

/** Flips one byte of `file` at `offset`. */
function flip(file: string, offset: number): void {
  const b = readFileSync(file);
  b[offset]! ^= 0x55;
  writeFileSync(file, b);
}

// ---------------------------------------------------------------------------------------------

t.test('locations: PATH, PATH:TAG, paths with colons', async (t) => {
  const dir = tempDir(t, 'loc');
  writeFileSync(join(dir, 'x.tar'), '');
  writeFileSync(join(dir, 'odd:name'), '');
  t.same(parseLocation(join(dir, 'x.tar')), { path: join(dir, 'x.tar') });
  t.same(parseLocation(`${join(dir, 'x.tar')}:v1`), { path: join(dir, 'x.tar'), tag: 'v1' });
  t.same(parseLocation(`${join(dir, 'x.tar')}:localhost:5000/app:v1`), { path: join(dir, 'x.tar'), tag: 'localhost:5000/app:v1' });
  t.same(parseLocation(join(dir, 'odd:name')), { path: join(dir, 'odd:name') }, 'an existing path is never split');
  t.same(parseLocation(`${join(dir, 'odd:name')}:t`), { path: join(dir, 'odd:name'), tag: 't' });
  t.throws(() => parseLocation(join(dir, 'missing.tar:v1')), /missing\.tar:v1 does not exist/);
});

t.test('the shared OCI archive fixture (busybox): kind, names, config, key, entries', async (t) => {
  if (!checkPrerequisites(t, { busybox: true })) return;
  const dir = tempDir(t, 'ociarch');
  const arch = await ociImageArchive(join(dir, 'img.tar'), { ref: 'docker.io/hbxtest/busybox:1.0', cmd: ['sh', '-c', 'echo hi'], env: ['A=1'] });
  const src = await openSource(arch.path);
  t.equal(src.kind, 'oci-archive');
  t.equal(src.location, arch.path);
  t.same(src.names, ['docker.io/hbxtest/busybox:1.0'], 'the bare tag beside the full reference is not a name of its own');
  t.same(src.config, { cmd: ['sh', '-c', 'echo hi'], env: ['A=1'], workingDir: '/' });
  t.equal(src.key, layersKey([arch.layerDigest]));
  t.equal(src.layers.length, 1);
  t.equal(src.layers[0]!.digest, arch.layerDigest);
  const got = await read(src.layers[0]!);
  t.match(got.get('bin/busybox')?.entry, { kind: 'file', size: statSync(findBusybox()).size, mode: 0o755 });
  t.ok(got.get('bin/busybox')?.data === readFileSync(findBusybox()).toString('latin1'), 'busybox byte-exact');
  t.match(got.get('bin/sh')?.entry, { kind: 'symlink', linkTarget: 'busybox' });
  t.match(got.get('tmp')?.entry, { kind: 'dir', mode: 0o1777 });

  for (const tag of ['1.0', 'busybox:1.0', 'docker.io/hbxtest/busybox:1.0']) {
    t.equal((await openSource(`${arch.path}:${tag}`)).key, src.key, `tag ${tag}`);
  }
  await rejectsWith(t, openSource(`${arch.path}:2.0`), /img\.tar has no image tagged "2\.0" \(it has: docker\.io\/hbxtest\/busybox:1\.0\)/, 'unknown tag');
});

t.test('OCI layout directory, multi-layer order, whiteouts passed through', async (t) => {
  const dir = tempDir(t, 'layout');
  const layers = [await layer(1), await layer(2, [{ name: 'etc/.wh.layer-1' }]), await layer(3, [{ name: 'etc/.wh..wh..opq' }])];
  const out = join(dir, 'layout');
  const built = await buildImage(out, 'oci-layout', [{ refs: ['localhost/multi:1'], layers: layers.map((tar) => ({ tar })), config: { Cmd: ['run'], User: 'app' } }]);
  const src = await openSource(out);
  t.equal(src.kind, 'oci-layout');
  t.same(src.config, { cmd: ['run'], user: 'app' });
  const digests = built.images[0]!.layers.map((l) => l.digest);
  t.same(src.layers.map((l) => l.digest), digests, 'bottom layer first');
  t.equal(src.key, layersKey(digests));
  for (const [i, l] of src.layers.entries()) {
    const got = await read(l);
    t.equal(got.get(`etc/layer-${i + 1}`)?.data, `PAYLOAD of layer ${i + 1}\n`, `layer ${i + 1} in place ${i}`);
  }
  t.ok((await read(src.layers[1]!)).has('etc/.wh.layer-1'), 'whiteout entry');
  t.ok((await read(src.layers[2]!)).has('etc/.wh..wh..opq'), 'opaque whiteout entry');
});

t.test('an archive with both index.json and manifest.json (docker save since 25) is read as OCI', async (t) => {
  const dir = tempDir(t, 'both');
  const layout = join(dir, 'layout');
  const built = await buildImage(layout, 'oci-layout', [{ refs: ['docker.io/library/app:1'], layers: [{ tar: await layer(1) }] }]);
  const img = built.images[0]!;
  const files = ['oci-layout', 'index.json', ...readdirSync(join(layout, 'blobs/sha256')).map((f) => `blobs/sha256/${f}`)];
  const dockerManifest = [{ Config: `blobs/sha256/${img.configDigest.slice(7)}`, RepoTags: ['app:1'], Layers: img.layers.map((l) => l.blob) }];
  const path = join(dir, 'both.tar');
  writeFileSync(path, await tarOf([...files.map((name) => ({ name, body: readFileSync(join(layout, name)) })), { name: 'manifest.json', body: JSON.stringify(dockerManifest) }]));
  const src = await openSource(path);
  t.equal(src.kind, 'oci-archive');
  t.same(src.names, ['docker.io/library/app:1']);
  t.equal(src.key, layersKey([img.layers[0]!.digest]));
  t.equal((await read(src.layers[0]!)).get('etc/layer-1')?.data, 'PAYLOAD of layer 1\n');
});

t.test('Docker archive: RepoTags, config, diff_id key, tags', async (t) => {
  const dir = tempDir(t, 'docker');
  const path = join(dir, 'docker.tar');
  const images: FixtureImage[] = [
    {
      refs: ['localhost/app:v1', 'localhost/app:latest'],
      layers: [{ tar: await layer(1) }, { tar: await layer(2), gzip: true }],
      config: { Entrypoint: ['/bin/app'], Cmd: ['--serve'], Env: ['PATH=/bin'], WorkingDir: '/srv', User: '1000:1000' },
    },
    { refs: ['localhost/other:v2'], layers: [{ tar: await layer(9) }] },
  ];
  const built = await buildImage(path, 'docker-archive', images);
  await rejectsWith(t, openSource(path), /docker\.tar holds several images \(localhost\/app:v1, localhost\/app:latest, localhost\/other:v2\): name one as .*docker\.tar:TAG/, 'no tag, two images');
  await rejectsWith(t, openSource(`${path}:v3`), /has no image tagged "v3" \(it has: localhost\/app:v1, localhost\/app:latest, localhost\/other:v2\)/, 'unknown tag');

  const src = await openSource(`${path}:v1`);
  t.equal(src.kind, 'docker-archive');
  t.same(src.names, ['localhost/app:v1', 'localhost/app:latest']);
  t.same(src.config, { entrypoint: ['/bin/app'], cmd: ['--serve'], env: ['PATH=/bin'], workingDir: '/srv', user: '1000:1000' });
  const diffIds = built.images[0]!.layers.map((l) => l.diffId);
  t.equal(src.key, layersKey(diffIds));
  t.same(src.layers.map((l) => l.digest), diffIds);
  t.equal((await read(src.layers[0]!)).get('etc/layer-1')?.data, 'PAYLOAD of layer 1\n');
  t.equal((await read(src.layers[1]!)).get('etc/layer-2')?.data, 'PAYLOAD of layer 2\n', 'gzip layer, checked against its uncompressed diff_id');

  const other = await openSource(`${path}:localhost/other:v2`);
  t.same(other.names, ['localhost/other:v2']);
  t.equal((await read(other.layers[0]!)).get('etc/layer-9')?.data, 'PAYLOAD of layer 9\n');

  // A changed layer member fails its diff_id.
  const member = (await scanTarFile(path, path)).find((m) => m.name === built.images[1]!.layers[0]!.blob)!;
  const at = readFileSync(path).indexOf('PAYLOAD of layer 9', member.offset);
  flip(path, at);
  const again = await openSource(`${path}:v2`);
  await rejectsWith(t, read(again.layers[0]!), /layer sha256:[0-9a-f]{12} of .*docker\.tar does not match its digest \(sha256:[0-9a-f]{12} expected, sha256:[0-9a-f]{12} found\): the image is corrupt or was altered/, 'flipped byte in a docker layer', 'E_IMAGE_DIGEST');
});

t.test('OCI archive: gzip layers, several images and tags, platforms, nested index', async (t) => {
  const dir = tempDir(t, 'tags');
  const path = join(dir, 'multi.tar');
  const arch = (await import('../../src/image/source.js')).goArch();
  await buildImage(path, 'oci-archive', [
    { refs: ['localhost/a:v1'], layers: [{ tar: await layer(1), gzip: true }] },
    { refs: ['localhost/b:v2'], layers: [{ tar: await layer(2) }], nested: [{ os: 'linux', architecture: 'mips64' }] },
  ]);
  await rejectsWith(t, openSource(path), /multi\.tar holds several images \(localhost\/a:v1, localhost\/b:v2\): name one as .*multi\.tar:TAG/, 'no tag');
  await rejectsWith(t, openSource(`${path}:v9`), /multi\.tar has no image tagged "v9" \(it has: localhost\/a:v1, localhost\/b:v2\)/, 'unknown tag');
  const a = await openSource(`${path}:v1`);
  t.same(a.names, ['localhost/a:v1']);
  t.equal((await read(a.layers[0]!)).get('etc/layer-1')?.data, 'PAYLOAD of layer 1\n', 'gzip layer');
  const b = await openSource(`${path}:b:v2`);
  t.same(b.names, ['localhost/b:v2'], 'names of the index entry, through a nested index');
  t.equal((await read(b.layers[0]!)).get('etc/layer-2')?.data, 'PAYLOAD of layer 2\n', 'own platform chosen in the nested index');

  // One image for several platforms in a flat index.
  const flat = join(dir, 'flat.tar');
  await buildImage(flat, 'oci-archive', [
    { refs: ['localhost/m:1'], platform: { os: 'linux', architecture: 'mips64' }, layers: [{ tar: await layer(5) }] },
    { refs: ['localhost/m:1'], layers: [{ tar: await layer(6) }] },
  ]);
  t.ok((await read((await openSource(flat)).layers[0]!)).has('etc/layer-6'), 'this platform picked');
  const foreign = join(dir, 'foreign.tar');
  await buildImage(foreign, 'oci-archive', [
    { refs: ['localhost/m:1'], platform: { os: 'linux', architecture: 'mips64' }, layers: [{ tar: await layer(5) }] },
    { refs: ['localhost/m:1'], platform: { os: 'linux', architecture: 's390x' }, layers: [{ tar: await layer(6) }] },
  ]);
  await rejectsWith(t, openSource(foreign), new RegExp(`foreign\\.tar has no image for linux/${arch} \\(it has: linux/mips64, linux/s390x\\)`), 'no image for this platform');
});

t.test('corrupt layers are digest mismatches, whatever byte changed', async (t) => {
  const dir = tempDir(t, 'corrupt');
  const out = join(dir, 'layout');
  const built = await buildImage(out, 'oci-layout', [{ refs: ['x:1'], layers: [{ tar: await layer(1) }, { tar: await layer(2), gzip: true }] }]);
  const [l1, l2] = built.images[0]!.layers;
  const blob1 = join(out, l1!.blob);
  const original = readFileSync(blob1);
  const re = /layer sha256:[0-9a-f]{12} of .*layout does not match its digest \(sha256:[0-9a-f]{12} expected, sha256:[0-9a-f]{12} found\): the image is corrupt or was altered/;

  flip(blob1, original.indexOf('PAYLOAD'));
  await rejectsWith(t, read((await openSource(out)).layers[0]!), re, 'a byte of file data', 'E_IMAGE_DIGEST');
  writeFileSync(blob1, original);
  flip(blob1, 512 + 3); // the name in a header: the tar is unreadable, the digest says why
  await rejectsWith(t, read((await openSource(out)).layers[0]!), re, 'a byte of a header', 'E_IMAGE_DIGEST');
  writeFileSync(blob1, original);
  flip(join(out, l2!.blob), 30); // inside the deflate stream
  await rejectsWith(t, read((await openSource(out)).layers[1]!), re, 'a byte of gzip data', 'E_IMAGE_DIGEST');

  appendFileSync(blob1, 'x');
  await rejectsWith(t, openSource(out), new RegExp(`layer sha256:[0-9a-f]{12} of .*layout is ${original.length + 1} bytes where its descriptor says ${original.length}`), 'a longer blob', 'E_IMAGE_DIGEST');
  rmSync(blob1);
  await rejectsWith(t, openSource(out), /layer sha256:[0-9a-f]{12} of .*layout is missing \(no blobs\/sha256\/[0-9a-f]{64}\)/, 'a missing blob');

  // Inside an archive: same check on the member's byte range.
  const path = join(dir, 'img.tar');
  const b2 = await buildImage(path, 'oci-archive', [{ layers: [{ tar: await layer(1) }] }]);
  const m = (await scanTarFile(path, path)).find((x) => x.name === b2.images[0]!.layers[0]!.blob)!;
  flip(path, readFileSync(path).indexOf('PAYLOAD', m.offset));
  await rejectsWith(t, read((await openSource(path)).layers[0]!), /layer sha256:[0-9a-f]{12} of .*img\.tar does not match its digest/, 'a byte of a layer in an archive', 'E_IMAGE_DIGEST');
});

t.test('corrupt manifests, configs and archives', async (t) => {
  const dir = tempDir(t, 'meta');
  const out = join(dir, 'layout');
  const built = await buildImage(out, 'oci-layout', [{ layers: [{ tar: await layer(1) }], config: { Cmd: ['a'] } }]);
  const img = built.images[0]!;
  const manifest = join(out, 'blobs/sha256', img.manifestDigest!.slice(7));
  const mtext = readFileSync(manifest, 'utf8');
  writeFileSync(manifest, mtext.replace('"schemaVersion":2', '"schemaVersion":3'));
  await rejectsWith(t, openSource(out), /manifest sha256:[0-9a-f]{12} of .*layout does not match its digest/, 'manifest changed', 'E_IMAGE_DIGEST');
  writeFileSync(manifest, mtext);
  const config = join(out, 'blobs/sha256', img.configDigest.slice(7));
  writeFileSync(config, readFileSync(config, 'utf8').replace('"Cmd":["a"]', '"Cmd":["b"]'));
  await rejectsWith(t, openSource(out), /config sha256:[0-9a-f]{12} of .*layout does not match its digest/, 'config changed', 'E_IMAGE_DIGEST');

  const path = join(dir, 'img.tar');
  await buildImage(path, 'oci-archive', [{ layers: [{ tar: await layer(1) }] }]);
  const whole = readFileSync(path);
  truncateSync(path, Math.floor(whole.length / 2));
  await rejectsWith(t, openSource(path), /img\.tar ends in the middle of .*: the archive is truncated/, 'truncated archive');
  writeFileSync(path, whole);
  const members = await scanTarFile(path, path);
  flip(path, members[2]!.offset - 512 + 5); // the third member's header
  await rejectsWith(t, openSource(path), new RegExp(`img\\.tar has a corrupt header after member "${members[1]!.name}" \\(bad checksum\\)`), 'corrupt header');
  writeFileSync(join(dir, 'junk'), 'not an image at all\n'.repeat(100));
  await rejectsWith(t, openSource(join(dir, 'junk')), /junk is not an image: not a directory, and not an OCI, Docker or rootfs tar archive/, 'junk file');
});

t.test('unsupported compression', async (t) => {
  const dir = tempDir(t, 'zstd');
  const out = join(dir, 'layout');
  await buildImage(out, 'oci-layout', [{ layers: [{ tar: await layer(1), mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd' }] }]);
  await rejectsWith(t, openSource(out), /layer sha256:[0-9a-f]{12} of .*layout is compressed with zstd, which is not supported/, 'zstd media type');
  writeFileSync(join(dir, 'rootfs.tar.zst'), Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(600)]));
  await rejectsWith(t, openSource(join(dir, 'rootfs.tar.zst')), /rootfs\.tar\.zst is compressed with zstd, which is not supported/, 'zstd file');
  const docker = join(dir, 'docker.tar');
  await buildImage(docker, 'docker-archive', [{ refs: ['a:1'], layers: [{ tar: await layer(1) }] }]);
  writeFileSync(`${docker}.gz`, gzipSync(readFileSync(docker)));
  await rejectsWith(t, openSource(`${docker}.gz`), /docker\.tar\.gz is a compressed image archive, which cannot be read in place: decompress it \(gunzip\)/, 'gzip docker archive');
});

t.test('rootfs tars: key after reading, or known up front when gzip', async (t) => {
  const dir = tempDir(t, 'rootfs');
  const tar = await layer(1, [{ name: 'manifest.json', body: '{"not": "docker"}' }]);
  const path = join(dir, 'rootfs.tar');
  writeFileSync(path, tar);
  const src = await openSource(path);
  t.equal(src.kind, 'rootfs-tar');
  t.equal(src.key, undefined, 'no key before reading');
  t.same(src.names, []);
  t.same(src.config, {});
  t.throws(() => src.keyAfterRead!(), /known only once the whole tar has been read/);
  const got = await read(src.layers[0]!);
  t.equal(got.get('etc/layer-1')?.data, 'PAYLOAD of layer 1\n');
  t.ok(got.has('manifest.json'), 'a manifest.json that is not Docker\'s is just a file');
  t.equal(src.keyAfterRead!(), sha256(tar));
  await rejectsWith(t, openSource(`${path}:v1`), /rootfs\.tar is a rootfs tar, which has no tags: drop ":v1"/, 'tag on a rootfs tar');

  const gz = join(dir, 'rootfs.tar.gz');
  writeFileSync(gz, gzipSync(tar));
  const z = await openSource(gz);
  t.equal(z.kind, 'rootfs-tar');
  t.equal(z.key, sha256(readFileSync(gz)), 'gzip: key known after the scan');
  t.equal((await read(z.layers[0]!)).get('etc/layer-1')?.data, 'PAYLOAD of layer 1\n');
  t.equal(z.keyAfterRead!(), z.key);

  writeFileSync(path, tar.subarray(0, 1200));
  await rejectsWith(t, openSource(path), /rootfs\.tar ends in the middle of/, 'truncated rootfs tar');
});

t.test('a directory: .dockerignore, hard links, kinds, tree key', async (t) => {
  const dir = tempDir(t, 'dirsrc');
  const root = join(dir, 'ctx');
  for (const d of ['src', 'secret', 'logs', 'build/out', 'pub']) mkdirSync(join(root, d), { recursive: true });
  writeFileSync(join(root, 'src/a.txt'), 'aaaa');
  writeFileSync(join(root, 'secret/key'), 'k');
  linkSync(join(root, 'secret/key'), join(root, 'pub/key')); // its first path is excluded
  writeFileSync(join(root, 'logs/x.log'), 'x');
  writeFileSync(join(root, 'logs/keep.log'), 'keep');
  writeFileSync(join(root, 'build/out/o'), 'o');
  writeFileSync(join(root, 'build/tmp'), 't');
  writeFileSync(join(root, 'Dockerfile'), 'FROM scratch\n');
  writeFileSync(join(root, 'h1'), 'hard');
  linkSync(join(root, 'h1'), join(root, 'h2'));
  linkSync(join(root, 'h1'), join(root, 'src/h3'));
  symlinkSync('src/a.txt', join(root, 'sym'));
  const ignore = 'secret\n**/*.log\n!logs/keep.log\nbuild\n!build/out/o\n# a comment\n';
  writeFileSync(join(root, '.dockerignore'), ignore);
  const server = createServer();
  await new Promise<void>((res) => server.listen(join(root, 'sock'), res));
  t.teardown(() => new Promise<void>((res) => server.close(() => res())));

  const src = await openSource(root);
  t.equal(src.kind, 'directory');
  t.same(src.names, []);
  t.same(src.config, {});
  const got = await read(src.layers[0]!);
  t.same(
    [...got.keys()],
    ['', '.dockerignore', 'Dockerfile', 'build', 'build/out', 'build/out/o', 'h1', 'h2', 'logs', 'logs/keep.log', 'pub', 'pub/key', 'sock', 'src', 'src/a.txt', 'src/h3', 'sym'],
    'excluded files absent, exceptions and their parents present, sorted walk',
  );
  const rootSt = statSync(root);
  t.match(got.get('')!.entry, { kind: 'dir', mode: rootSt.mode & 0o7777, uid: rootSt.uid, gid: rootSt.gid, mtimeSec: Math.floor(rootSt.mtimeMs / 1000) });
  t.match(got.get('h1')!.entry, { kind: 'file', size: 4 });
  t.equal(got.get('h1')!.data, 'hard');
  t.match(got.get('h2')!.entry, { kind: 'hardlink', linkTarget: 'h1', size: 0 });
  t.match(got.get('src/h3')!.entry, { kind: 'hardlink', linkTarget: 'h1' });
  t.match(got.get('pub/key')!.entry, { kind: 'file', size: 1 }, 'the first kept path of a hard-link group is the file');
  t.match(got.get('sym')!.entry, { kind: 'symlink', linkTarget: 'src/a.txt' });
  t.match(got.get('sock')!.entry, { kind: 'socket' });
  t.equal(got.get('src/a.txt')!.data, 'aaaa');

  const key = src.key!;
  t.match(key, /^sha256:[0-9a-f]{64}$/);
  t.equal((await openSource(root)).key, key, 'same key when nothing changed');
  writeFileSync(join(root, 'src/a.txt'), 'bbbb'); // same size: only mtime/ctime tell
  const key2 = (await openSource(root)).key;
  t.not(key2, key, 'key changes when a file is written');
  writeFileSync(join(root, 'logs/x.log'), 'changed');
  t.equal((await openSource(root)).key, key2, 'excluded files do not count');
  writeFileSync(join(root, '.dockerignore'), `${ignore}Dockerfile\n`);
  const key3 = (await openSource(root)).key;
  t.not(key3, key2, '.dockerignore counts');
  t.notOk((await read((await openSource(root)).layers[0]!)).has('Dockerfile'), 'an excluded Dockerfile is left out');

  const late = await openSource(root);
  appendFileSync(join(root, 'src/a.txt'), 'more');
  await rejectsWith(t, read(late.layers[0]!), /src\/a\.txt changed while the image was being built \(it was 4 bytes and is now 8\)/, 'file written after the walk');
  await rejectsWith(t, openSource(`${root}:v1`), /is a plain directory, which has no tags/, 'tag on a directory');
});

t.test('real podman save archives (oci-archive and docker-archive)', async (t) => {
  if (!checkPrerequisites(t, { busybox: true })) return;
  const runc = findRunc();
  if (!runc) {
    skipOrFail(t, 'no runc: the podman harness needs one for its cleanup');
    return;
  }
  const pm = await podmanHarness(t, { runtime: runc, importImage: false });
  if (!pm) return;
  const imported = await pm.importBusybox();
  if (imported.exitCode !== 0) {
    skipOrFail(t, `podman import does not work here: ${imported.stderr.trim().split('\n').pop()}`);
    return;
  }
  const expected = new Map<string, LayerEntry['kind']>();
  const ref = await rootfsTar(await busyboxRootfs(), join(pm.dir, 'ref.tar'));
  for (const [p, g] of await read((await openSource(ref.path)).layers[0]!)) expected.set(p, g.entry.kind);

  const sources: ImageSource[] = [];
  for (const format of ['oci-archive', 'docker-archive'] as const) {
    const out = join(pm.dir, `${format}.tar`);
    const saved = await pm.podman(['save', '--format', format, '-o', out, pm.image]);
    if (saved.exitCode !== 0) {
      skipOrFail(t, `podman save --format ${format} does not work here: ${saved.stderr.trim().split('\n').pop()}`);
      return;
    }
    const src = await openSource(out);
    t.equal(src.kind, format);
    t.ok(src.names.includes(pm.image), `${format}: named ${pm.image} (${src.names.join(', ')})`);
    t.equal((await openSource(`${out}:latest`)).key, src.key, `${format}: by tag`);
    const got = await read(src.layers[0]!);
    t.same(new Map([...got].map(([p, g]) => [p, g.entry.kind])), expected, `${format}: the busybox rootfs`);
    t.equal(got.get('bin/busybox')?.data, readFileSync(findBusybox()).toString('latin1'), `${format}: busybox byte-exact`);
    sources.push(src);
  }
  t.equal(sources[0]!.layers.length, sources[1]!.layers.length);
});
