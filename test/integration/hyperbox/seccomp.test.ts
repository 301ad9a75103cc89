/**
 * Learned seccomp with real runc and the real kernel: each workload runs once
 * learning, then under the learned profile with the same output and exit
 * status, while syscalls it never made fail with EPERM. Bad requests are
 * refused before runc runs, with config.json and the host left as they were.
 */
import t, { type Test } from 'tap';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { findRunc } from '../../../fixtures/tools.js';
import { checkPrerequisites, describe, RuntimeHarness, testTempDir, waitFor, type RunResult } from '../../helpers/runtime.js';
import { allowedIn, FORBIDDEN, installCWorkload, PROBE_ARGS, storedProfile, WORKLOADS, workloadBundle, type Workload } from '../../helpers/seccomp.js';

const LAUNCHER = resolve('build/hyperbox-runc');

async function setup(t: Test, tag: string) {
  if (!checkPrerequisites(t, { root: true, runc: true, busybox: true, bpf: true })) return undefined;
  const tmp = await testTempDir(t, tag);
  const h = new RuntimeHarness({ path: LAUNCHER, label: 'hyperbox-runc', explicit: true }, findRunc()!, tmp);
  t.teardown(() => h.cleanup());
  const store = join(tmp, 'store');
  const state = join(tmp, 'hbstate');
  const pin = `/sys/fs/bpf/hbxt-${process.pid}-${tag}`;
  const env = { HYPERBOX_STATE: state, HYPERBOX_STORE: store, HYPERBOX_BPF_PIN: pin };
  // Root-key dirs hold container dirs; files beside them (recorder.lock) are locks.
  const dirsIn = (d: string) => readdirSync(d, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => join(d, e.name));
  const stateDirs = (): string[] => (existsSync(state) ? dirsIn(state).flatMap(dirsIn) : []);
  let n = 0;
  /** `run` of a workload bundle with extra runc/hyperbox flags. */
  const runWorkload = async (w: Pick<Workload, 'args' | 'hostNetwork'>, flags: string[], annotations: Record<string, string> = {}): Promise<RunResult & { id: string }> => {
    const b = await h.bundle(`b${n++}`, workloadBundle(w, annotations));
    await installCWorkload(b.rootfs);
    const id = h.id(tag);
    const r = await h.rt(['run', ...flags, '--bundle', b.dir, id], { env, timeout: 60_000 });
    return { ...r, id };
  };
  return { h, env, store, pin, tmp, stateDirs, runWorkload };
}

for (const w of WORKLOADS) {
  t.test(`${w.name}: learn, then enforce with the same result; what it never called fails with EPERM`, async (t) => {
    const s = await setup(t, `sc-${w.name}`);
    if (!s) return;
    const name = `wl-${w.name}`;
    const plain = await s.runWorkload(w, []);
    t.equal(plain.exitCode, 0, `plain runc: ${describe(plain)}`);
    const probePlain = await s.runWorkload({ args: PROBE_ARGS }, []);
    t.equal(probePlain.stdout, FORBIDDEN.map((f) => `${f}=ok\n`).join(''), 'without a profile the probe calls succeed (CAP_SYS_ADMIN given)');

    const learn = await s.runWorkload(w, ['--seccomp-learn', name]);
    t.equal(learn.exitCode, 0, describe(learn));
    t.equal(learn.stdout, plain.stdout, 'learning changes nothing the workload sees');
    const allowed = allowedIn(s.store, name);
    t.ok(allowed.includes('execve') && allowed.includes('exit_group'), 'the profile has the workload calls');
    for (const setup of ['pivot_root', 'mount', 'umount2', 'sethostname']) t.notOk(allowed.includes(setup), `runc's rootfs setup (${setup}) is not learned`);
    t.same(s.stateDirs(), [], 'no state left');
    t.notOk(existsSync(s.pin), 'the recorder is detached once nothing is learning');

    const enforced = await s.runWorkload(w, ['--seccomp', name]);
    t.equal(enforced.exitCode, 0, describe(enforced));
    t.equal(enforced.stdout, plain.stdout, 'same output under the learned profile');
    t.equal(enforced.stderr, plain.stderr);

    const probe = await s.runWorkload({ args: PROBE_ARGS }, ['--seccomp', name]);
    t.equal(probe.exitCode, 0, describe(probe));
    t.equal(probe.stdout, FORBIDDEN.map((f) => `${f}=EPERM\n`).join(''), 'never-made calls fail with EPERM');
    t.same(s.stateDirs(), []);
  });
}

t.test('the C workload: its unusual calls are learned by name, and learning again merges runs', async (t) => {
  const s = await setup(t, 'sc-merge');
  if (!s) return;
  const first = await s.runWorkload({ args: ['/bin/syscall_mix', 'work'] }, ['--seccomp-learn', 'merged']);
  t.equal(first.exitCode, 0, describe(first));
  const allowed = allowedIn(s.store, 'merged');
  for (const call of ['getrandom', 'memfd_create', 'uname', 'clock_nanosleep', 'statx', 'eventfd2', 'timerfd_create', 'timerfd_settime', 'sched_getaffinity', 'prlimit64']) {
    t.ok(allowed.includes(call), `${call} learned`);
  }
  t.notOk(allowed.includes('clone3'), 'a single-threaded program never calls clone3');
  t.same(storedProfile(s.store, 'merged')!.syscalls[1], { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 }, 'so clone3 gets ENOSYS');

  const second = await s.runWorkload({ args: ['/bin/syscall_mix', 'threads', '4'] }, [], { 'io.hyperbox.seccomp': 'learn', 'io.hyperbox.seccomp.profile': 'merged' });
  t.equal(second.exitCode, 0, describe(second));
  const merged = allowedIn(s.store, 'merged');
  t.ok(merged.includes('clone3') && merged.includes('getrandom'), 'union of both runs');
  const meta = JSON.parse(readFileSync(join(s.store, 'seccomp', 'merged.meta.json'), 'utf8'));
  t.equal(meta.runs.length, 2);
  t.same(meta.runs.map((r: { command: string[] }) => r.command[1]), ['work', 'threads']);
  t.match(meta.runs[0], { kernel: /^\d+\.\d+/, arch: 'SCMP_ARCH_X86_64', runc: /^\d+\.\d+/, containerId: first.id });
  t.ok(meta.syscalls.x86_64.getrandom >= 1, 'counts kept per architecture');

});

t.test('runc exec into a learning container is learned too', async (t) => {
  const s = await setup(t, 'sc-exec');
  if (!s) return;
  const waitLoop = ['sh', '-c', 'while [ ! -e /tmp/stop ]; do sleep 0.05; done; echo stopped'];
  const execArgs = ['/bin/syscall_mix', 'work'];
  const cycle = async (flags: string[]) => {
    const b = await s.h.bundle(`exec-${flags[0]}`, workloadBundle({ args: waitLoop }));
    await installCWorkload(b.rootfs);
    const id = s.h.id('sc-exec');
    const c = await s.h.create(id, b.dir, flags, { env: s.env });
    t.equal(c.exitCode, 0, describe(c));
    t.equal((await s.h.rt(['start', id], { env: s.env })).exitCode, 0);
    const ex = await s.h.rt(['exec', id, ...execArgs], { env: s.env });
    const stop = await s.h.rt(['exec', id, 'touch', '/tmp/stop'], { env: s.env });
    t.equal(stop.exitCode, 0, describe(stop));
    await s.h.waitForStatus(id, 'stopped');
    const del = await s.h.rt(['delete', id], { env: s.env });
    t.equal(del.exitCode, 0, describe(del));
    return { ex, out: readFileSync(c.outFile, 'utf8') };
  };
  const learn = await cycle(['--seccomp-learn', 'exec']);
  t.equal(learn.ex.exitCode, 0, describe(learn.ex));
  t.ok(allowedIn(s.store, 'exec').includes('memfd_create'), 'the exec-ed process was learned');
  const enforced = await cycle(['--seccomp', 'exec']);
  t.equal(enforced.ex.exitCode, 0, describe(enforced.ex));
  t.equal(enforced.ex.stdout, learn.ex.stdout, 'the exec-ed process works under the profile');
  t.equal(enforced.out, 'stopped\n');
  await waitFor('state to be released', () => s.stateDirs().length === 0);
});

t.test('audit logs instead of refusing; the caller profile still bounds it', async (t) => {
  const s = await setup(t, 'sc-audit');
  if (!s) return;
  const learn = await s.runWorkload({ args: ['/bin/syscall_mix', 'probe'] }, ['--seccomp-learn', 'small']);
  t.equal(learn.exitCode, 0, describe(learn));
  const audit = await s.runWorkload({ args: ['/bin/syscall_mix', 'probe', 'keyctl', 'ptrace'] }, ['--seccomp-audit', 'small']);
  t.equal(audit.stdout, 'keyctl=ok\nptrace=ok\n', describe(audit));
  const enforce = await s.runWorkload({ args: ['/bin/syscall_mix', 'probe', 'keyctl', 'ptrace'] }, ['--seccomp', 'small']);
  t.equal(enforce.stdout, 'keyctl=EPERM\nptrace=EPERM\n', describe(enforce));
});

t.test("within the caller's own profile: never broader, the caller's errno kept", async (t) => {
  const s = await setup(t, 'sc-caller');
  if (!s) return;
  t.equal((await s.runWorkload({ args: ['/bin/syscall_mix', 'probe', 'getppid', 'keyctl'] }, ['--seccomp-learn', 'withcaller'])).exitCode, 0);
  t.ok(allowedIn(s.store, 'withcaller').includes('keyctl'));
  // The caller refuses keyctl with EACCES and allows everything else: the result must still refuse keyctl.
  const callerProfile = { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['keyctl'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 }] };
  const b = await s.h.bundle('caller', {
    ...workloadBundle({ args: ['/bin/syscall_mix', 'probe', 'getppid', 'keyctl', 'ptrace'] }),
    edit: (spec) => {
      workloadBundle({ args: [] }).edit!(spec);
      (spec.linux as Record<string, unknown>).seccomp = callerProfile;
    },
  });
  await installCWorkload(b.rootfs);
  const before = readFileSync(b.configPath, 'utf8');
  const r = await s.h.rt(['run', '--seccomp', 'withcaller', '--bundle', b.dir, s.h.id('sc-caller')], { env: s.env });
  t.equal(r.stdout, 'getppid=ok\nkeyctl=EACCES\nptrace=EPERM\n', describe(r));
  t.equal(readFileSync(b.configPath, 'utf8'), before, 'config.json back as it was');
});

t.test('bad input: a clear error, create refused, config.json and host untouched', async (t) => {
  const s = await setup(t, 'sc-bad');
  if (!s) return;
  mkdirSync(join(s.store, 'seccomp'), { recursive: true, mode: 0o700 });
  writeFileSync(join(s.store, 'seccomp', 'corrupt.json'), '{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [');
  writeFileSync(
    join(s.store, 'seccomp', 'unloadable.json'),
    JSON.stringify({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW', args: [{ index: 9, value: 1, op: 'SCMP_CMP_EQ' }] }] }),
  );
  writeFileSync(join(s.store, 'seccomp', 'badaction.json'), JSON.stringify({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read'], action: 'SCMP_ACT_MAYBE' }] }));
  const cases: [string[], Record<string, string>, RegExp][] = [
    [[], { 'io.hyperbox.seccomp': 'strict', 'io.hyperbox.seccomp.profile': 'x' }, /bad io\.hyperbox\.seccomp value "strict": expected learn, enforce or audit/],
    [['--seccomp', '../../etc/shadow'], {}, /bad seccomp profile name "\.\.\/\.\.\/etc\/shadow"/],
    [[], { 'io.hyperbox.seccomp': 'enforce', 'io.hyperbox.seccomp.profile': 'a/b' }, /bad seccomp profile name "a\/b"/],
    [['--seccomp', 'missing'], {}, /no seccomp profile named missing in .*: learn it first/],
    [['--seccomp', 'corrupt'], {}, /seccomp profile .*corrupt\.json is corrupt .*: re-learn it/],
    [['--seccomp', 'unloadable'], {}, /seccomp profile unloadable cannot be loaded: argument index 9 in the rule for "read" is out of range/],
    [['--seccomp', 'badaction'], {}, /seccomp profile badaction cannot be loaded: .*SCMP_ACT_MAYBE/],
  ];
  let n = 0;
  for (const [flags, annotations, message] of cases) {
    const b = await s.h.bundle(`bad${n++}`, workloadBundle({ args: ['true'] }, annotations));
    const before = readFileSync(b.configPath, 'utf8');
    const id = s.h.id('sc-bad');
    const r = await s.h.rt(['run', ...flags, '--bundle', b.dir, id], { env: s.env });
    t.equal(r.exitCode, 1, `${message}: ${describe(r)}`);
    t.match(r.stderr.replace(/\\"/g, '"'), message, 'the sentence (runc-style log line, quotes escaped)');
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line, no stack trace');
    t.equal(readFileSync(b.configPath, 'utf8'), before, 'config.json untouched');
    t.equal((await s.h.rt(['state', id])).exitCode, 1, 'no container created');
  }
  t.same(s.stateDirs(), []);
});
