/**
 * The syscall recorder against the real kernel: the prctl gate, exact per-ABI counts, untracked
 * tasks left alone, one object shared by separate processes, and nothing left attached or pinned
 * once the last cgroup is untracked.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { buildCFixture } from '../../fixtures/cfixture.js';
import { TEMP_PREFIX } from '../../fixtures/tmp.js';
import { native, type RecorderSnapshot } from '../../src/native/index.js';
import { bpfSandbox } from '../helpers/bpf.js';

const ADDON = resolve('build/hyperbox.node');
const LEARN = 1;
const GETPPID_X86_64 = 110;
const GETPPID_I386 = 64;
/** What a fresh entry holds besides its counts. */
const NO_TELEMETRY = {
  net: { rxBytes: 0n, rxPackets: 0n, txBytes: 0n, txPackets: 0n },
  execs: { total: 0n, recent: [] },
  latencyDropped: 0n,
};

/** Why this machine cannot run the recorder, or undefined when it can. */
const sandbox = bpfSandbox(t, 'rec');
const PIN = sandbox.pin;
const { ready, makeCgroup } = sandbox;

function loop(bin: string, args: string[]): number {
  const r = spawnSync(bin, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`syscall_loop ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return Number(r.stdout.trim());
}

function count(s: RecorderSnapshot | undefined, arch: string, nr: number): bigint {
  return s?.counts.find((c) => c.arch === arch && c.nr === nr)?.count ?? 0n;
}

function linkId(): number | undefined {
  const r = spawnSync('bpftool', ['-j', 'link', 'show', 'pinned', `${PIN}/link`], { encoding: 'utf8' });
  return r.status === 0 ? (JSON.parse(r.stdout) as { id: number }).id : undefined;
}

function linkListed(id: number): boolean {
  const r = spawnSync('bpftool', ['-j', 'link', 'list'], { encoding: 'utf8' });
  return (JSON.parse(r.stdout || '[]') as { id: number }[]).some((l) => l.id === id);
}

t.test('recording: gated by prctl(PR_GET_PDEATHSIG), exact per ABI, only the tracked cgroup', async (t) => {
  if (!ready(t)) return;
  const bin = await buildCFixture('syscall_loop', ['-static']);
  const nat = native();
  const { dir, id } = makeCgroup('a');

  t.equal(nat.recorderRead(PIN, id), undefined, 'nothing pinned yet');
  t.same(nat.recorderTracked(PIN), [], 'no ids without a pin');
  nat.recorderTrack(PIN, id, LEARN);
  t.ok(existsSync(`${PIN}/link`) && existsSync(`${PIN}/tracked`), 'link and map pinned');
  t.same(nat.recorderRead(PIN, id), { flags: LEARN, armed: false, counts: [], overflow: 0n, ...NO_TELEMETRY }, 'a zeroed entry');

  loop(bin, ['300', '--join', dir, '--before', '200']);
  t.same(nat.recorderRead(PIN, id), { flags: LEARN, armed: false, counts: [], overflow: 0n, ...NO_TELEMETRY }, 'nothing counted before the prctl');

  loop(bin, ['1000', '--join', dir, '--before', '500', '--arm', '--int80', '7']);
  const s = nat.recorderRead(PIN, id);
  t.equal(s?.armed, true, 'armed by the prctl');
  t.equal(count(s, 'x86_64', GETPPID_X86_64), 1000n, 'getppid counted exactly: the 500 before the prctl are not');
  t.equal(count(s, 'x86', GETPPID_I386), 7n, 'int $0x80 calls counted under x86');
  t.equal(count(s, 'x86_64', GETPPID_I386), 0n, 'and not mixed into x86_64 (64 there is semget)');
  t.equal(count(s, 'x86_64', 157), 0n, 'the arming prctl itself is not counted');
  t.ok(count(s, 'x86_64', 231) >= 1n, 'exit_group seen');
  t.equal(s?.overflow, 0n, 'no overflow');

  loop(bin, ['5000']);
  t.equal(count(nat.recorderRead(PIN, id), 'x86_64', GETPPID_X86_64), 1000n, 'an untracked process is not recorded');

  nat.recorderTrack(PIN, id, 2);
  const again = nat.recorderRead(PIN, id);
  t.equal(again?.flags, LEARN | 2, 'tracking again ORs the flags');
  t.equal(count(again, 'x86_64', GETPPID_X86_64), 1000n, 'and keeps the counts');

  const names = s!.counts.filter((c) => c.arch === 'x86_64').map((c) => nat.seccompResolve('x86_64', c.nr));
  t.ok(names.includes('getppid') && names.includes('exit_group'), 'counts resolve to names');
  t.equal(nat.recorderUntrack(PIN, id), 0, 'untracked: nothing left');
});

t.test('one object for every process; the last untrack detaches and unpins it', async (t) => {
  if (!ready(t)) return;
  const nat = native();
  const a = makeCgroup('b');
  const b = makeCgroup('c');
  nat.recorderTrack(PIN, a.id, LEARN);
  const link = linkId();
  t.ok(link, 'the link is pinned');

  const child = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(ADDON)}).recorderTrack(${JSON.stringify(PIN)}, ${b.id}n, 1)`], { encoding: 'utf8' });
  t.equal(child.status, 0, child.stderr);
  t.same([...nat.recorderTracked(PIN)].sort(), [a.id, b.id].sort(), 'both cgroups in the one map');
  t.equal(linkId(), link, 'the second process reused the pinned link');

  t.equal(nat.recorderUntrack(PIN, b.id), nat.recorderTracked(PIN).length, 'untrack returns how many remain');
  t.ok(existsSync(`${PIN}/link`), 'still attached while a cgroup is tracked');
  for (const id of nat.recorderTracked(PIN)) nat.recorderUntrack(PIN, id);
  t.notOk(existsSync(PIN), 'pin dir removed with the last cgroup');
  t.notOk(linkListed(link!), 'bpftool no longer lists the link');
  t.equal(nat.recorderUntrack(PIN, a.id), 0, 'untracking again is harmless');
  t.equal(nat.recorderRead(PIN, a.id), undefined, 'nothing to read');
  t.same(nat.recorderTracked(PIN), [], 'nothing tracked');
});

t.test('a half-pinned recorder is cleaned and loaded again', async (t) => {
  if (!ready(t)) return;
  const nat = native();
  const { id } = makeCgroup('d');
  nat.recorderTrack(PIN, id, LEARN);
  const old = linkId();
  unlinkSync(`${PIN}/link`); // the map and set_flags stay pinned, the program is gone
  t.notOk(linkListed(old!), 'unpinning the only reference detached it');
  nat.recorderTrack(PIN, id, LEARN);
  const fresh = linkId();
  t.ok(fresh && fresh !== old, 'a new link');
  t.same(nat.recorderRead(PIN, id), { flags: LEARN, armed: false, counts: [], overflow: 0n, ...NO_TELEMETRY }, 'a fresh entry');
  t.equal(nat.recorderUntrack(PIN, id), 0, 'untracked');
  t.notOk(existsSync(PIN), 'and unpinned');
});

t.test('errors are one sentence with an errno, and leave nothing behind', async (t) => {
  if (!ready(t)) return;
  const nat = native();
  const { id } = makeCgroup('e');
  const deep = `${PIN}-missing-parent/pins`;
  const before = (JSON.parse(spawnSync('bpftool', ['-j', 'link', 'list'], { encoding: 'utf8' }).stdout) as unknown[]).length;
  t.throws(() => nat.recorderTrack(deep, id, LEARN), { message: `cannot create the pin directory ${deep}: No such file or directory`, errno: 2 });
  const after = (JSON.parse(spawnSync('bpftool', ['-j', 'link', 'list'], { encoding: 'utf8' }).stdout) as unknown[]).length;
  t.equal(after, before, 'the program attached for the failed call was detached');
  t.throws(() => nat.recorderTrack(PIN, -1n, LEARN), { message: 'cgroupId must be a bigint' });
  const fake = mkdtempSync(join(tmpdir(), `${TEMP_PREFIX}recorder-`));
  t.teardown(() => rmSync(fake, { recursive: true, force: true }));
  writeFileSync(join(fake, 'tracked'), 'not a map');
  t.throws(() => nat.recorderRead(fake, id), { message: new RegExp(`^cannot open the syscall recorder pinned at ${fake}/tracked: `), errno: Number });
});
