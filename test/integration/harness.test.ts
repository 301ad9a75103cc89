// The test fixtures and helpers themselves: if these are wrong, every integration test built on
// them can pass for the wrong reason.
import { createHash } from 'node:crypto';
import { lstatSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import tarStream from 'tar-stream';
import t from 'tap';
import { buildBusyboxRootfs, rootfsTar, runcSpecTemplate, writeBundle } from '../../fixtures/busybox.js';
import { buildCFixture } from '../../fixtures/cfixture.js';
import { ociImageArchive } from '../../fixtures/oci-image.js';
import { checkPrerequisites, describe, leftoverTest, run, runtimeUnderTest, testTempDir, title, withPrerequisite } from '../helpers/runtime.js';

const RT = runtimeUnderTest();
t.setTimeout(120_000);
const here = dirname(fileURLToPath(import.meta.url));

t.test(title('skipOrFail: skips with the reason, fails under CI'), async (t) => {
  const probe = join(here, '../helpers/skip-probe.js');
  const env = { ...process.env };
  delete env.CI;
  delete env.TAP; // run the probe as a plain script, not as a child of this tap run
  for (const k of Object.keys(env)) if (k.startsWith('TAP_') || k.startsWith('_TAPJS')) delete env[k];

  const local = await run(process.execPath, [probe], { env, extendEnv: false });
  t.equal(local.exitCode, 0, `without CI the missing prerequisite is a skip: ${describe(local)}`);
  t.match(local.stdout, /# SKIP drill-reason: nothing is missing/, 'the reason is printed');

  const ci = await run(process.execPath, [probe], { env: { ...env, CI: 'true' }, extendEnv: false });
  t.not(ci.exitCode, 0, `with CI=true it is a failure: ${describe(ci)}`);
  t.match(ci.stdout, /not ok .*drill-reason/, 'the failure carries the reason');

  const off = await run(process.execPath, [probe], { env: { ...env, CI: 'false' }, extendEnv: false });
  t.equal(off.exitCode, 0, 'CI=false counts as not CI');
});

t.test(title('busybox rootfs: complete, idempotent'), async (t) => {
  if (!checkPrerequisites(t, { busybox: true })) return;
  const tmp = await testTempDir(t, 'fx-rootfs');
  const dir = join(tmp, 'rootfs');
  await buildBusyboxRootfs(dir);
  t.equal(readlinkSync(join(dir, 'bin/sh')), 'busybox', 'bin/sh is an applet link');
  t.ok(statSync(join(dir, 'bin/busybox')).mode & 0o111, 'busybox is executable');
  t.match(readFileSync(join(dir, 'etc/passwd'), 'utf8'), /^root:x:0:0:/m);
  t.match(readFileSync(join(dir, 'etc/group'), 'utf8'), /^root:x:0:/m);
  t.equal(statSync(join(dir, 'tmp')).mode & 0o7777, 0o1777, 'tmp is sticky and world-writable');
  for (const d of ['proc', 'sys', 'dev', 'root']) t.ok(lstatSync(join(dir, d)).isDirectory(), `${d}/ exists`);
  const mtime = statSync(join(dir, 'bin/busybox')).mtimeMs;
  const started = Date.now();
  await buildBusyboxRootfs(dir);
  t.equal(statSync(join(dir, 'bin/busybox')).mtimeMs, mtime, 'a second build reuses the first');
  t.ok(Date.now() - started < 1000, 'and is quick');

  const a = await rootfsTar(dir, join(tmp, 'a.tar'));
  const b = await rootfsTar(dir, join(tmp, 'b.tar'));
  t.equal(a.digest, b.digest, 'rootfs tars are reproducible');
});

t.test(title('writeBundle: runc spec plus the requested changes'), async (t) => {
  if (!checkPrerequisites(t, { runc: true, busybox: true })) return;
  const tmp = await testTempDir(t, 'fx-bundle');
  const b = await writeBundle(join(tmp, 'b'), { args: ['echo', 'x'], annotations: { 'k.example': 'v' }, env: ['A=1'], readonly: true });
  const spec = JSON.parse(await readFile(b.configPath, 'utf8')) as Record<string, any>;
  const template = await runcSpecTemplate();
  t.equal(spec.ociVersion, template.ociVersion);
  t.same(spec.process.args, ['echo', 'x']);
  t.equal(spec.process.terminal, false, 'terminal off by default');
  t.same(spec.process.env, ['A=1']);
  t.same(spec.annotations, { 'k.example': 'v' });
  t.same(spec.root, { path: 'rootfs', readonly: true });
  t.same(spec.linux.namespaces, template.linux?.namespaces, 'the rest is runc spec as is');
  t.equal(readlinkSync(join(b.rootfs, 'bin/sh')), 'busybox');
  const again = await writeBundle(join(tmp, 'b'), { args: ['true'] });
  t.same(JSON.parse(await readFile(again.configPath, 'utf8')).root, { path: 'rootfs', readonly: false }, 'rewritten in place, writable by default');
});

t.test(title('OCI image archive: blobs match their digests'), async (t) => {
  if (!checkPrerequisites(t, { busybox: true })) return;
  const tmp = await testTempDir(t, 'fx-oci');
  const a = await ociImageArchive(join(tmp, 'img.tar'), { ref: 'docker.io/hbxtest/check:v1' });
  const files = new Map<string, Buffer>();
  const ex = tarStream.extract();
  ex.on('entry', (h, stream, next) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: unknown) => chunks.push(c as Buffer));
    stream.on('end', () => {
      files.set(h.name, Buffer.concat(chunks));
      next();
    });
  });
  await new Promise<void>((res, rej) => {
    ex.on('finish', res);
    ex.on('error', rej);
    Readable.from(readFileSync(a.path)).pipe(ex);
  });
  const index = JSON.parse(files.get('index.json')!.toString()) as { manifests: Array<{ digest: string; annotations: Record<string, string> }> };
  t.equal(index.manifests[0]?.digest, a.manifestDigest);
  t.equal(index.manifests[0]?.annotations['io.containerd.image.name'], 'docker.io/hbxtest/check:v1');
  t.equal(index.manifests[0]?.annotations['org.opencontainers.image.ref.name'], 'v1');
  for (const [name, body] of files) {
    if (!name.startsWith('blobs/sha256/')) continue;
    t.equal(createHash('sha256').update(body).digest('hex'), name.slice('blobs/sha256/'.length), `${name} content matches its name`);
  }
  t.ok(files.has(`blobs/sha256/${a.layerDigest.slice(7)}`), 'layer blob present');
});

t.test(title('C fixtures compile once'), async (t) => {
  const first = await withPrerequisite(t, () => buildCFixture('recvtty'));
  if (!first) return;
  t.equal(await buildCFixture('recvtty'), first, 'second call returns the same binary');
  const usage = await run(first, []);
  t.equal(usage.exitCode, 2, 'recvtty without arguments prints usage');
  await t.rejects(buildCFixture('no-such-fixture'), /no such C fixture/);
});

leftoverTest(t, RT.label);
