/**
 * PSI-driven memory tuning with real runc, real cgroups (v1 memory, v2 pressure on this
 * hybrid host) and real memory pressure: cold page cache given back while the stall stays
 * under the target (beside an untuned twin that keeps its cache), a working set that grows
 * getting room back within one trigger window, a tuner killed while a limit is lowered
 * leaving it so only until the next tuner starts, and bad requests refused before runc runs.
 *
 * Data files are written with O_DIRECT so that their pages are charged to the container
 * that reads them, not to the test.
 */
import t, { type Test } from 'tap';
import { execa } from 'execa';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { findRunc } from '../../../fixtures/tools.js';
import { checkPrerequisites, describe, run, RuntimeHarness, sleep, testTempDir, waitFor } from '../../helpers/runtime.js';

const LAUNCHER = resolve('build/hyperbox-runc');
const MiB = 1024 * 1024;
/** The default target: 0.5% of the time stalled. */
const TARGET_US = 5000;

async function setup(t: Test, tag: string) {
  if (!checkPrerequisites(t, { root: true, runc: true, busybox: true })) return undefined;
  if (!existsSync('/proc/pressure/memory')) {
    t.fail('this kernel has no PSI (/proc/pressure/memory), which tuning needs');
    return undefined;
  }
  const tmp = await testTempDir(t, tag);
  const h = new RuntimeHarness({ path: LAUNCHER, label: 'hyperbox-runc', explicit: true }, findRunc()!, tmp);
  const state = join(tmp, 'hbstate');
  const env = { HYPERBOX_STATE: state };
  const tunerPid = (): number | undefined => {
    try {
      const pid = Number(readFileSync(join(state, 'tune', 'tuner.pid'), 'utf8'));
      process.kill(pid, 0);
      return pid;
    } catch {
      return undefined;
    }
  };
  t.teardown(async () => {
    await h.cleanup();
    const pid = tunerPid();
    if (pid) process.kill(pid, 'SIGKILL');
  });
  const hb = (args: string[], extraEnv: Record<string, string> = {}) => run(LAUNCHER, args, { env: { ...env, ...extraEnv }, timeout: 30_000 });

  /** A directory of files of the given sizes (MiB), none of their pages cached. */
  const data = async (name: string, files: Record<string, number>) => {
    const dir = join(tmp, name);
    await mkdir(dir, { recursive: true });
    for (const [file, mib] of Object.entries(files)) {
      await execa('dd', ['if=/dev/zero', `of=${join(dir, file)}`, 'bs=1M', `count=${mib}`, 'oflag=direct', 'status=none']);
    }
    return dir;
  };

  /** `run -d` of a busybox shell script with dataDir at /data. */
  const start = async (id: string, script: string, dataDir: string, opts: { annotations?: Record<string, string>; flags?: string[]; memoryLimit?: number } = {}) => {
    const b = await h.bundle(`b-${id}`, {
      args: ['sh', '-c', script],
      annotations: opts.annotations ?? {},
      edit: (spec) => {
        (spec.mounts as unknown[]).push({ destination: '/data', type: 'bind', source: dataDir, options: ['rbind', 'ro'] });
        if (opts.memoryLimit !== undefined) {
          const linux = spec.linux as Record<string, any>;
          linux.resources = { ...(linux.resources ?? {}), memory: { limit: opts.memoryLimit } };
        }
      },
    });
    const r = await h.rtToFiles(['run', '-d', ...(opts.flags ?? []), '--bundle', b.dir, id], join(tmp, `${id}.out`), join(tmp, `${id}.err`), { env, timeout: 60_000 });
    const st = r.exitCode === 0 ? await h.state(id, { env }) : undefined;
    return { r, b, pid: st?.pid ?? 0 };
  };

  /** The container's v1 memory cgroup and v2 cgroup (pressure). */
  const cgroups = (pid: number) => {
    const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n');
    const memory = lines.find((l) => /^\d+:memory:/.test(l))!.split(':')[2]!;
    const unified = lines.find((l) => l.startsWith('0::'))!.slice(3);
    return { memory: join('/sys/fs/cgroup/memory', memory), unified: join('/sys/fs/cgroup/unified', unified) };
  };
  const usage = (cg: { memory: string }) => Number(readFileSync(join(cg.memory, 'memory.usage_in_bytes'), 'utf8'));
  const limitOf = (cg: { memory: string }) => Number(readFileSync(join(cg.memory, 'memory.limit_in_bytes'), 'utf8'));
  const stallTotal = (cg: { unified: string }) => Number(/^some .*total=(\d+)/m.exec(readFileSync(join(cg.unified, 'memory.pressure'), 'utf8'))![1]);
  const status = async (id: string) => {
    const r = await hb(['tune', 'status', id, '--json']);
    return r.exitCode === 0 ? JSON.parse(r.stdout) : undefined;
  };
  const history = async (id: string): Promise<any[]> => {
    const r = await hb(['tune', 'history', id, '--json']);
    return r.exitCode === 0 ? r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
  };
  const registered = () => {
    const dir = join(state, 'tune', 'registered');
    return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json')) : [];
  };
  return { h, tmp, env, state, hb, data, start, cgroups, usage, limitOf, stallTotal, status, history, registered, tunerPid };
}

/** Reads the cold file once (then marks /cold-done in its rootfs) and the hot one over and over. */
const coldThenHot = 'cat /data/cold > /dev/null; touch /cold-done; while :; do cat /data/hot > /dev/null; sleep 0.05; done';

t.test('cold page cache is given back with the stall under the target, while an untuned twin keeps its own', async (t) => {
  const s = await setup(t, 'tn-cold');
  if (!s) return;
  const tunedData = await s.data('tuned', { cold: 256, hot: 24 });
  const plainData = await s.data('plain', { cold: 256, hot: 24 });
  const caller = 1024 * MiB;
  const tuned = await s.start('tn-cold-tuned', coldThenHot, tunedData, { flags: ['--tune', 'memory'], memoryLimit: caller });
  t.equal(tuned.r.exitCode, 0, describe(tuned.r));
  const plain = await s.start('tn-cold-plain', coldThenHot, plainData, { memoryLimit: caller });
  t.equal(plain.r.exitCode, 0, describe(plain.r));
  if (!tuned.pid || !plain.pid) return;
  const tcg = s.cgroups(tuned.pid);
  const pcg = s.cgroups(plain.pid);
  t.equal(s.registered().length, 1, 'only the tuned container is registered');
  t.ok(s.tunerPid(), 'the first registration started the tuner');

  // Both read their cold file once: the untuned one holds it from then on.
  await waitFor('both to have read their cold file', () => existsSync(join(tuned.b.rootfs, 'cold-done')) && existsSync(join(plain.b.rootfs, 'cold-done')), 30_000);
  const stall0 = s.stallTotal(tcg);
  const t0 = Date.now();
  const small = await waitFor('the tuned container to give back its cold cache', () => (s.usage(tcg) < 96 * MiB ? s.usage(tcg) : undefined), 60_000, 200);
  await sleep(3000);
  const stallRate = ((s.stallTotal(tcg) - stall0) / (Date.now() - t0)) * 1000;
  t.ok(s.usage(tcg) < 96 * MiB, `the tuned container holds ${(s.usage(tcg) / MiB).toFixed(0)} MiB (was ${(small / MiB).toFixed(0)} MiB when first under 96), not its 280 MiB`);
  t.ok(s.usage(pcg) > 256 * MiB, `the untuned twin still holds ${(s.usage(pcg) / MiB).toFixed(0)} MiB`);
  t.ok(stallRate < TARGET_US, `its memory stall meanwhile: ${stallRate.toFixed(0)} us/s, under the ${TARGET_US} us/s target`);

  const st = await s.status('tn-cold-tuned');
  t.ok(st, 'tune status ID answers');
  // A lower bound: the charge falls by less than was reclaimed while the container reads on.
  t.ok(st.given >= 32 * MiB, `status counts at least ${(st.given / MiB).toFixed(0)} MiB given back`);
  t.equal(st.actuator, 'limit', 'cgroup v1: the limit is lowered and put back');
  t.equal(st.hardLimit, caller, 'the hard limit in force is the caller’s');
  t.equal(s.limitOf(tcg), caller, 'memory.limit_in_bytes is the caller’s between steps');
  t.equal(s.limitOf(pcg), caller, 'the untuned twin’s limit was never touched');

  const list = await s.hb(['tune', 'status']);
  t.match(list.stdout, /^ID +STALL AVG10 +AVG60 +IO AVG10 +MEMORY +LIMIT +GIVEN BACK +TARGET\ntn-cold-tuned +\d/, 'tune status lists it');

  for (const id of ['tn-cold-tuned', 'tn-cold-plain']) t.equal((await s.h.rt(['delete', '-f', id], { env: s.env })).exitCode, 0, `delete ${id}`);
  t.same(s.registered(), [], 'poststop unregistered it');
  await waitFor('the tuner to exit with nothing registered', () => s.tunerPid() === undefined, 10_000);
  const h = await s.history('tn-cold-tuned');
  t.ok(h.filter((x) => x.action === 'probe').length >= 3, `the history shows the probes (${h.length} samples)`);
  t.ok(h.every((x) => x.limit <= caller), 'and never a limit above the caller’s');
  const report = await s.hb(['tune', 'report', 'tn-cold-tuned']);
  t.equal(report.exitCode, 0, describe(report));
  t.match(report.stdout, /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"[\s\S]*<\/svg>\n?$/, 'the report of a deleted container is still an SVG');
  t.notMatch(report.stdout, /NaN|undefined/, 'with no NaN in it');
});

t.test('a working set that grows gets room back within one trigger window', async (t) => {
  const s = await setup(t, 'tn-grow');
  if (!s) return;
  const dir = await s.data('grow', { small: 16, big: 160 });
  const c = await s.start('tn-grow', 'while :; do if [ -e /data/go ]; then cat /data/big > /dev/null; else cat /data/small > /dev/null; sleep 0.05; fi; done', dir, {
    annotations: { 'io.hyperbox.tune': 'memory' },
  });
  t.equal(c.r.exitCode, 0, describe(c.r));
  if (!c.pid) return;
  const cg = s.cgroups(c.pid);
  await waitFor('the tuner to hold the container small', async () => ((await s.status('tn-grow'))?.limit ?? Infinity) < 64 * MiB, 20_000, 250);
  // The bind mount shows a file the host adds: the workload switches to the big set now.
  await execa('touch', [join(dir, 'go')]);
  const go = Date.now();
  await waitFor('the working set to be read', () => s.usage(cg) > 100 * MiB || undefined, 20_000, 20);
  const backoff = await waitFor('a backoff after the switch', async () => (await s.history('tn-grow')).find((x) => x.t >= go && x.action === 'backoff'), 15_000, 100);
  const window = 2000;
  t.ok(backoff.t - go <= window + 1500, `the tuner backed off ${backoff.t - go} ms after the working set grew (window ${window} ms, interval 1000 ms)`);
  const roomy = await waitFor('the limit to make room for the 160 MiB set', async () => {
    const st = await s.status('tn-grow');
    return st && st.limit > 160 * MiB ? st : undefined;
  }, 15_000, 250);
  t.ok(roomy.limit > 160 * MiB, `the limit rose to ${(roomy.limit / MiB).toFixed(0)} MiB`);
  await sleep(4000);
  t.ok(s.usage(cg) > 150 * MiB, `the container keeps its working set: ${(s.usage(cg) / MiB).toFixed(0)} MiB`);
});

t.test('a tuner killed while a limit is lowered: the next tuner puts the caller’s limit back first', async (t) => {
  const s = await setup(t, 'tn-kill');
  if (!s) return;
  const dir = await s.data('kill', { cold: 192, hot: 16 });
  // A tuner that holds each lowered limit 4 s: a window in which to kill it.
  const holding = execa(LAUNCHER, ['tune', 'daemon', '--persist'], { env: { ...s.env, HYPERBOX_TUNE_HOLD_MS: '4000' }, detached: true, stdio: 'ignore', reject: false });
  await waitFor('the holding tuner to run', () => s.tunerPid() === holding.pid || undefined, 10_000);
  const caller = 512 * MiB;
  const c = await s.start('tn-kill', coldThenHot, dir, { flags: ['--tune', 'memory'], memoryLimit: caller });
  t.equal(c.r.exitCode, 0, describe(c.r));
  if (!c.pid) return;
  const cg = s.cgroups(c.pid);
  const stateFile = () => {
    const d = join(s.state, 'tune', 'state');
    const f = existsSync(d) ? readdirSync(d).find((x) => x.endsWith('.json') && !x.startsWith('.')) : undefined;
    return f ? JSON.parse(readFileSync(join(d, f), 'utf8')) : undefined;
  };
  const lowered = await waitFor('a lowered limit', () => {
    const st = stateFile();
    return st?.lowered && s.limitOf(cg) === st.lowered.lowered ? st.lowered : undefined;
  }, 30_000, 50);
  holding.kill('SIGKILL');
  await holding;
  t.ok(s.limitOf(cg) < caller, `killed with memory.limit_in_bytes lowered to ${(s.limitOf(cg) / MiB).toFixed(0)} MiB`);
  t.equal(lowered.original, String(caller), 'the journal holds the caller’s limit');

  // The next tuner (a systemd restart, or the next registration) starts by putting it back.
  const next = await s.hb(['tune', 'daemon'], { HYPERBOX_TUNE_LIFETIME_MS: '1500' });
  t.equal(next.exitCode, 0, describe(next));
  t.match(next.stderr, /put back 1 limit/, 'it says what it restored');
  t.equal(s.limitOf(cg), caller, 'memory.limit_in_bytes is the caller’s again');
  t.notOk(stateFile()?.lowered, 'and the journal is cleared');
});

t.test('bad tuning requests are refused before runc runs, config.json and the host untouched', async (t) => {
  const s = await setup(t, 'tn-bad');
  if (!s) return;
  const dir = await s.data('bad', {});
  const cases: [Record<string, string>, RegExp, number?][] = [
    [{ 'io.hyperbox.tune': 'cpu' }, /bad io\.hyperbox\.tune value \\"cpu\\": the one resource that can be tuned is memory/],
    [{ 'io.hyperbox.tune': 'memory', 'io.hyperbox.tune.pressure': 'lots' }, /bad io\.hyperbox\.tune\.pressure value \\"lots\\"/],
    [{ 'io.hyperbox.tune': 'memory', 'io.hyperbox.tune.pressure': '80%' }, /from 0\.01% to 50%/],
    [{ 'io.hyperbox.tune': 'memory', 'io.hyperbox.tune.min': '10' }, /bad io\.hyperbox\.tune\.min value \\"10\\": expected a size of at least 1M/],
    [{ 'io.hyperbox.tune': 'memory', 'io.hyperbox.tune.min': '1G', 'io.hyperbox.tune.max': '512M' }, /the bounds are empty/],
    [{ 'io.hyperbox.tune': 'memory', 'io.hyperbox.tune.nope': '1' }, /unknown annotation io\.hyperbox\.tune\.nope/],
    [{ 'io.hyperbox.tune.pressure': '1%' }, /io\.hyperbox\.tune\.pressure needs io\.hyperbox\.tune=memory beside it/],
    [{ 'io.hyperbox.tune': 'memory', 'io.hyperbox.tune.min': '1G' }, /is above the container's own memory limit/, 256 * MiB],
  ];
  let n = 0;
  for (const [annotations, re, memoryLimit] of cases) {
    const id = `tn-bad-${n++}`;
    const c = await s.start(id, 'true', dir, { annotations, ...(memoryLimit ? { memoryLimit } : {}) });
    const before = JSON.stringify(c.b.spec);
    t.not(c.r.exitCode, 0, `${JSON.stringify(annotations)} is refused`);
    const lines = c.r.stderr.split('\n').filter(Boolean);
    t.equal(lines.length, 1, `one line: ${c.r.stderr.trim()}`);
    t.match(lines[0], /^time="[^"]+" level=error msg="hyperbox-runc: /);
    t.match(lines[0], re);
    t.equal(JSON.stringify(JSON.parse(await readFile(c.b.configPath, 'utf8'))), before, 'config.json is as it was');
    t.equal((await s.h.state(id, { env: s.env })) ?? undefined, undefined, 'runc has no such container');
  }
  t.same(s.registered(), [], 'nothing registered');
  t.equal(s.tunerPid(), undefined, 'no tuner started');
});
