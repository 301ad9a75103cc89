/**
 * Learned seccomp through Podman (--annotation) and containerd (ctr
 * --annotation): learn, then enforce within the engine's own default profile.
 * Engines do not pass HYPERBOX_* to the runtime, so these use the real store
 * (/var/lib/hyperbox) with profile names unique to this run, removed at the end.
 */
import t, { type Test } from 'tap';
import { cpSync, existsSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { busyboxRootfs, rootfsTar } from '../../../fixtures/busybox.js';
import { ociImageArchive } from '../../../fixtures/oci-image.js';
import { containerdHarness } from '../../helpers/containerd.js';
import { podmanHarness } from '../../helpers/podman.js';
import { checkPrerequisites, describe, testTempDir, waitFor } from '../../helpers/runtime.js';
import { FORBIDDEN, installCWorkload, PROBE_ARGS, WORKLOADS } from '../../helpers/seccomp.js';

const LAUNCHER = resolve('build/hyperbox-runc');
const STORE = '/var/lib/hyperbox/seccomp';
const SHELL = WORKLOADS.find((w) => w.name === 'shell')!.args;
const CPROG = ['/bin/syscall_mix', 'work'];

/** A busybox rootfs with the C workload, as a directory. */
async function workloadRootfs(t: Test): Promise<string> {
  const dir = join(await testTempDir(t, 'sc-rootfs'), 'rootfs');
  cpSync(await busyboxRootfs(), dir, { recursive: true, verbatimSymlinks: true });
  await installCWorkload(dir);
  return dir;
}

function profileName(t: Test, tag: string): string {
  const name = `hbxt-${process.pid}-${tag}`;
  t.teardown(() => {
    for (const f of [`${name}.json`, `${name}.meta.json`]) rmSync(join(STORE, f), { force: true });
  });
  return name;
}

const learnAnn = (name: string) => ({ 'io.hyperbox.seccomp': 'learn', 'io.hyperbox.seccomp.profile': name });
const enforceAnn = (name: string) => ({ 'io.hyperbox.seccomp': 'enforce', 'io.hyperbox.seccomp.profile': name });

t.test('Podman: learn with --annotation, enforce within Podman\'s default profile', async (t) => {
  if (!checkPrerequisites(t, { root: true, bpf: true })) return;
  const pm = await podmanHarness(t, { runtime: LAUNCHER, importImage: false });
  if (!pm) return;
  const tar = join(pm.dir, 'sc-rootfs.tar');
  await rootfsTar(await workloadRootfs(t), tar);
  const image = 'localhost/hbxt-seccomp:latest';
  const imp = await pm.podman(['import', '--quiet', tar, image]);
  t.equal(imp.exitCode, 0, describe(imp));
  const caps = ['--cap-add', 'SYS_ADMIN', '--cap-add', 'SYS_PTRACE'];
  const podmanRun = (cmd: string[], annotations: Record<string, string>) => {
    const args = ['run', '--rm', ...pm.runFlags, ...caps];
    for (const [k, v] of Object.entries(annotations)) args.push('--annotation', `${k}=${v}`);
    return pm.podman([...args, image, ...cmd]);
  };

  for (const [tag, cmd] of [['shell', SHELL], ['cprog', CPROG]] as const) {
    const name = profileName(t, `pm-${tag}`);
    const plain = await podmanRun([...cmd], {});
    t.equal(plain.exitCode, 0, describe(plain));
    const learn = await podmanRun([...cmd], learnAnn(name));
    t.equal(learn.exitCode, 0, describe(learn));
    t.equal(learn.stdout, plain.stdout);
    await waitFor(`profile ${name} to be written at cleanup`, () => existsSync(join(STORE, `${name}.json`)), 20_000);
    const enforced = await podmanRun([...cmd], enforceAnn(name));
    t.equal(enforced.exitCode, 0, describe(enforced));
    t.equal(enforced.stdout, plain.stdout, `${tag}: same output under the learned profile`);
    const probePlain = await podmanRun(PROBE_ARGS, {});
    t.equal(probePlain.stdout, FORBIDDEN.map((f) => `${f}=ok\n`).join(''), "Podman's own profile allows the probe calls");
    const probe = await podmanRun(PROBE_ARGS, enforceAnn(name));
    t.equal(probe.stdout, FORBIDDEN.map((f) => `${f}=EPERM\n`).join(''), `${tag}: never-made calls fail with EPERM`);
  }
});

t.test('containerd: learn with ctr --annotation, enforce within containerd\'s default profile (--seccomp)', async (t) => {
  if (!checkPrerequisites(t, { root: true, bpf: true })) return;
  const cd = await containerdHarness(t, { runtime: LAUNCHER, importImage: false });
  if (!cd) return;
  const image = 'docker.io/hbxtest/seccomp:latest';
  const archive = await ociImageArchive(join(cd.dir, 'sc-oci.tar'), { ref: image }, await workloadRootfs(t));
  const imp = await cd.ctr(['images', 'import', archive.path]);
  t.equal(imp.exitCode, 0, describe(imp));
  const ctrRun = (tag: string, cmd: string[], annotations: Record<string, string>) => {
    const id = cd.id(tag);
    const args = ['run', '--rm', ...cd.runtimeFlags, '--seccomp', '--cap-add', 'CAP_SYS_ADMIN', '--cap-add', 'CAP_SYS_PTRACE'];
    for (const [k, v] of Object.entries(annotations)) args.push('--annotation', `${k}=${v}`);
    return cd.ctr([...args, image, id, ...cmd]);
  };
  for (const [tag, cmd] of [['shell', SHELL], ['cprog', CPROG]] as const) {
    const name = profileName(t, `cd-${tag}`);
    const plain = await ctrRun(tag, [...cmd], {});
    t.equal(plain.exitCode, 0, describe(plain));
    const learn = await ctrRun(tag, [...cmd], learnAnn(name));
    t.equal(learn.exitCode, 0, describe(learn));
    t.equal(learn.stdout, plain.stdout);
    await waitFor(`profile ${name} to be written`, () => existsSync(join(STORE, `${name}.json`)), 20_000);
    const enforced = await ctrRun(tag, [...cmd], enforceAnn(name));
    t.equal(enforced.exitCode, 0, describe(enforced));
    t.equal(enforced.stdout, plain.stdout, `${tag}: same output under the learned profile`);
    const probePlain = await ctrRun(tag, PROBE_ARGS, {});
    // containerd's default (like Docker's) refuses keyctl itself; the other three it allows.
    t.equal(probePlain.stdout.replace(/\r/g, ''), 'unshare=ok\nmount=ok\nptrace=ok\nkeyctl=EPERM\n', "what containerd's own profile allows");
    const probe = await ctrRun(tag, PROBE_ARGS, enforceAnn(name));
    t.equal(probe.stdout.replace(/\r/g, ''), FORBIDDEN.map((f) => `${f}=EPERM\n`).join(''), `${tag}: never-made calls fail with EPERM`);
  }
});
