/**
 * The recorder's telemetry against the real kernel: syscall latency histograms, sys_exit attached
 * only while someone times syscalls, untrack by flags, the exec log, cgroup_skb byte counters,
 * and nothing left attached or pinned once the last cgroup is untracked.
 */
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, rmdirSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { buildCFixture } from '../../fixtures/cfixture.js';
import { native, RECORDER_FLAGS, type RecorderSnapshot, type SyscallLatency } from '../../src/native/index.js';
import { bpfSandbox } from '../helpers/bpf.js';

const { learn: LEARN, syscalls: SYSCALLS, net: NET, exec: EXEC } = RECORDER_FLAGS;
const GETPPID = 110;
const NANOSLEEP = 35;
const MS = 1_000_000;

const sandbox = bpfSandbox(t, 'tel');
const PIN = sandbox.pin;
const { ready, makeCgroup } = sandbox;

function fixture(): Promise<string> {
  return buildCFixture('telemetry');
}

function run(bin: string, args: string[]): string {
  const r = spawnSync(bin, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`telemetry ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/** For steps that need this process's event loop meanwhile (the TCP server). */
function runAsync(bin: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn(bin, args);
    let out = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    c.on('error', reject);
    c.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`telemetry ${args.join(' ')} failed (${code}): ${err}`))));
  });
}

/** The pids a fixture run printed for one kind of step, in order. */
function pids(out: string, kind: string): number[] {
  return out
    .split('\n')
    .filter((l) => l.startsWith(`${kind} `))
    .map((l) => Number(l.slice(kind.length + 1)));
}

function count(s: RecorderSnapshot | undefined, nr: number): bigint {
  return s?.counts.find((c) => c.arch === 'x86_64' && c.nr === nr)?.count ?? 0n;
}

function latencyOf(l: SyscallLatency[], nr: number): SyscallLatency | undefined {
  return l.find((x) => x.arch === 'x86_64' && x.nr === nr);
}

/** [low, high) in ns of bucket i, from the formula in SyscallLatency. */
function bucketBounds(i: number): [number, number] {
  if (i === 0) return [0, 2];
  const k = i >> 1;
  const low = 2 ** k + (i & 1) * 2 ** (k - 1);
  return [low, i === 63 ? Infinity : low + 2 ** (k - 1)];
}

function medianBucket(l: SyscallLatency): number {
  let seen = 0n;
  for (let i = 0; i < l.buckets.length; i++) {
    seen += l.buckets[i]!;
    if (seen * 2n >= l.count) return i;
  }
  return -1;
}

function linkId(path: string): number | undefined {
  const r = spawnSync('bpftool', ['-j', 'link', 'show', 'pinned', path], { encoding: 'utf8' });
  return r.status === 0 ? (JSON.parse(r.stdout) as { id: number }).id : undefined;
}

function linkListed(id: number): boolean {
  const r = spawnSync('bpftool', ['-j', 'link', 'list'], { encoding: 'utf8' });
  return (JSON.parse(r.stdout || '[]') as { id: number }[]).some((l) => l.id === id);
}

/** Programs attached to the cgroup itself (not inherited). */
function cgroupProgs(dir: string): { attach_type: string; name: string }[] {
  const r = spawnSync('bpftool', ['-j', 'cgroup', 'show', dir], { encoding: 'utf8' });
  return r.status === 0 ? (JSON.parse(r.stdout.trim() || '[]') as { attach_type: string; name: string }[]) : [];
}

function latencyRecords(): number {
  const r = spawnSync('bpftool', ['-j', 'map', 'dump', 'pinned', `${PIN}/latency`], { encoding: 'utf8' });
  return (JSON.parse(r.stdout.trim() || '[]') as unknown[]).length;
}

function now(): bigint {
  return BigInt(Date.now()) * BigInt(MS);
}

t.test('latency: exact counts, one histogram per syscall, nanosleep(2 ms) around 2 ms', async (t) => {
  if (!ready(t)) return;
  const bin = await fixture();
  const nat = native();
  const { dir, id } = makeCgroup('lat');
  nat.recorderTrack(PIN, id, SYSCALLS);
  t.same(nat.recorderLatency(PIN, id), [], 'no records yet');

  const N = 1000;
  const M = 20;
  run(bin, ['--join', dir, '--getppid', '50', '--arm', '--getppid', String(N), '--sleep', String(M)]);
  const s = nat.recorderRead(PIN, id);
  t.equal(s?.armed, true, 'armed by the prctl');
  t.equal(count(s, GETPPID), BigInt(N), 'SYSCALLS alone counts: exactly the calls after the prctl');
  t.equal(count(s, NANOSLEEP), BigInt(M), 'nanosleep counted');
  t.equal(s?.latencyDropped, 0n, 'nothing dropped');

  const lat = nat.recorderLatency(PIN, id);
  const g = latencyOf(lat, GETPPID);
  t.equal(g?.count, BigInt(N), 'getppid timed exactly N times');
  t.equal(g?.buckets.length, 64, '64 buckets');
  t.equal(g?.buckets.reduce((a, b) => a + b, 0n), g?.count, 'the buckets add up to the count');
  const sl = latencyOf(lat, NANOSLEEP)!;
  t.equal(sl?.count, BigInt(M), 'nanosleep timed M times');
  t.ok(sl.sumNs >= BigInt(M * 2 * MS), `sumNs ${sl.sumNs} >= M * 2 ms`);
  const [low, high] = bucketBounds(medianBucket(sl));
  t.ok(high > 2 * MS && low < 4 * MS, `median bucket [${low}, ${high}) ns covers ~2 ms`);
  t.notOk(latencyOf(lat, 231), 'exit_group never returns, so it has no record');
  t.notOk(latencyOf(lat, 157), 'the arming prctl is not timed');
  t.ok(lat.every((l) => l.arch === 'x86_64' && l.count > 0n), 'only calls that returned, all native');

  t.equal(nat.recorderUntrack(PIN, id), 0, 'untracked');
  t.same(nat.recorderLatency(PIN, id), [], 'nothing to read');
  t.notOk(existsSync(PIN), 'everything unpinned');
});

t.test('sys_exit is attached only while some entry has SYSCALLS', async (t) => {
  if (!ready(t)) return;
  const bin = await fixture();
  const nat = native();
  const a = makeCgroup('learn');
  const b = makeCgroup('sys');
  nat.recorderTrack(PIN, a.id, LEARN);
  t.ok(existsSync(`${PIN}/sys_exit`), 'the sys_exit program is pinned at load');
  t.notOk(existsSync(`${PIN}/link_exit`), 'but learn-only tracking does not attach it');

  nat.recorderTrack(PIN, b.id, SYSCALLS);
  const exit = linkId(`${PIN}/link_exit`);
  t.ok(exit, 'tracking SYSCALLS attaches it');
  nat.recorderTrack(PIN, a.id, SYSCALLS);
  t.equal(linkId(`${PIN}/link_exit`), exit, 'a second SYSCALLS entry reuses the link');
  t.equal(nat.recorderUntrack(PIN, a.id, SYSCALLS), 2, 'both still tracked');
  t.equal(linkId(`${PIN}/link_exit`), exit, 'still attached for the other entry');

  run(bin, ['--join', b.dir, '--arm', '--getppid', '10']);
  t.ok(latencyRecords() > 0, 'b has latency records');
  t.equal(nat.recorderUntrack(PIN, b.id), 1, 'the learn entry stays');
  t.equal(latencyRecords(), 0, "b's latency records went with its entry");
  t.notOk(existsSync(`${PIN}/link_exit`), 'the last SYSCALLS entry gone: link_exit unpinned');
  t.notOk(linkListed(exit!), 'and detached');
  t.equal(nat.recorderRead(PIN, a.id)?.flags, LEARN, 'the learn entry is untouched');
  t.ok(existsSync(`${PIN}/link`), 'sys_enter still attached');

  t.equal(nat.recorderUntrack(PIN, a.id), 0, 'untracked');
  t.notOk(existsSync(PIN), 'everything unpinned');
});

t.test('untrack by flags: the other feature keeps counting', async (t) => {
  if (!ready(t)) return;
  const bin = await fixture();
  const nat = native();
  const { dir, id } = makeCgroup('flags');
  nat.recorderTrack(PIN, id, LEARN | SYSCALLS);
  run(bin, ['--join', dir, '--arm', '--getppid', '500']);
  t.equal(count(nat.recorderRead(PIN, id), GETPPID), 500n, 'counted once for both features');
  t.equal(latencyOf(nat.recorderLatency(PIN, id), GETPPID)?.count, 500n, 'and timed');

  t.equal(nat.recorderUntrack(PIN, id, SYSCALLS), 1, 'clearing SYSCALLS keeps the entry');
  const s = nat.recorderRead(PIN, id);
  t.equal(s?.flags, LEARN, 'LEARN left');
  t.equal(s?.armed, true, 'still armed');
  t.equal(count(s, GETPPID), 500n, 'counts intact');
  t.notOk(existsSync(`${PIN}/link_exit`), 'sys_exit detached');

  run(bin, ['--join', dir, '--getppid', '300']);
  t.equal(count(nat.recorderRead(PIN, id), GETPPID), 800n, 'learning goes on');
  t.equal(latencyOf(nat.recorderLatency(PIN, id), GETPPID)?.count, 500n, 'timing does not');

  t.equal(nat.recorderUntrack(PIN, id, EXEC), 1, 'clearing a flag it does not have changes nothing');
  t.equal(nat.recorderRead(PIN, id)?.flags, LEARN, 'still LEARN');
  t.equal(nat.recorderUntrack(PIN, id, LEARN), 0, 'clearing the last flag removes the entry');
  t.notOk(existsSync(PIN), 'and with it everything');
});

t.test('exec log: filenames and pids oldest first, only armed tracked cgroups with EXEC, a ring of 64', async (t) => {
  if (!ready(t)) return;
  const bin = await fixture();
  const nat = native();
  const a = makeCgroup('exec');
  const learnOnly = makeCgroup('exec-learn');
  const untracked = makeCgroup('exec-none');
  nat.recorderTrack(PIN, a.id, EXEC);
  nat.recorderTrack(PIN, learnOnly.id, LEARN);

  run(bin, ['--join', a.dir, '--spawn', '2', '/bin/true']);
  t.equal(nat.recorderRead(PIN, a.id)?.execs.total, 0n, 'not armed yet: nothing logged');

  const before = now();
  const out = run(bin, ['--join', a.dir, '--arm', '--spawn', '3', '/bin/true', '--pidns', '/bin/true', '--exec', '/bin/echo', 'done']);
  const after = now();
  const s = nat.recorderRead(PIN, a.id)!;
  t.equal(s.armed, true, 'armed with EXEC alone');
  t.same(s.counts, [], 'EXEC alone counts no syscalls');
  t.equal(s.execs.total, 5n, 'five execs');
  t.same(s.execs.recent.map((e) => e.filename), ['/bin/true', '/bin/true', '/bin/true', '/bin/true', '/bin/echo'], 'filenames, oldest first');
  const spawned = pids(out, 'spawn');
  const [inNs] = pids(out, 'pidns');
  const [self] = pids(out, 'exec');
  t.same(s.execs.recent.map((e) => e.pid), [...spawned, inNs, self], 'host pids');
  t.equal(s.execs.recent[3]!.nsPid, 1, 'the child in a new pid namespace is its pid 1');
  t.same([0, 1, 2, 4].map((i) => s.execs.recent[i]!.nsPid), [...spawned, self], 'elsewhere (the host namespace) nsPid is the host pid');
  const times = s.execs.recent.map((e) => e.timeUnixNano);
  const slack = BigInt(5 * MS);
  t.ok(times.every((x) => x >= before - slack && x <= after + slack), `times within the test's window [${before}, ${after}]: ${times.join(', ')}`);
  t.ok(times.every((x, i) => i === 0 || x >= times[i - 1]!), 'in order');

  run(bin, ['--join', untracked.dir, '--arm', '--spawn', '2', '/bin/true']);
  run(bin, ['--join', learnOnly.dir, '--arm', '--spawn', '2', '/bin/true']);
  t.equal(nat.recorderRead(PIN, a.id)?.execs.total, 5n, 'execs of an untracked cgroup are not logged');
  t.equal(nat.recorderRead(PIN, learnOnly.id)?.execs.total, 0n, 'nor those of an entry without EXEC');

  const many = pids(run(bin, ['--join', a.dir, '--spawn', '70', '/bin/true']), 'spawn');
  const full = nat.recorderRead(PIN, a.id)!;
  t.equal(full.execs.total, 75n, 'the total counts every exec');
  t.equal(full.execs.recent.length, 64, 'the ring keeps 64');
  t.same(full.execs.recent.map((e) => e.pid), many.slice(-64), 'the last 64, oldest first');

  nat.recorderUntrack(PIN, learnOnly.id);
  t.equal(nat.recorderUntrack(PIN, a.id), 0, 'untracked');
  t.notOk(existsSync(PIN), 'everything unpinned');
});

t.test('net: cgroup_skb counts one side of a loopback transfer, sub-cgroups included', async (t) => {
  if (!ready(t)) return;
  const bin = await fixture();
  const nat = native();
  const a = makeCgroup('net');
  const sub = makeCgroup('sub', a.dir);
  const other = makeCgroup('net-none');

  const received: number[] = [];
  const server = createServer((sock) => {
    let n = 0;
    sock.on('data', (d: Buffer) => (n += d.length));
    sock.on('end', () => {
      received.push(n);
      sock.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const port = String((server.address() as AddressInfo).port);

  nat.recorderTrack(PIN, a.id, NET);
  t.throws(() => nat.recorderNetAttach(PIN, other.id, other.dir), {
    message: `cannot count the network traffic of cgroup ${other.id}: it is not tracked by the syscall recorder under ${PIN}`,
  });
  t.throws(() => nat.recorderNetAttach(PIN, a.id, other.dir), {
    message: `cannot count the network traffic of cgroup ${a.id}: ${other.dir} is cgroup ${other.id}, not that one`,
  });
  nat.recorderNetAttach(PIN, a.id, a.dir);
  const ingress = linkId(`${PIN}/net-${a.id}-ingress`);
  const egress = linkId(`${PIN}/net-${a.id}-egress`);
  t.ok(ingress && egress, 'both links pinned');
  nat.recorderNetAttach(PIN, a.id, a.dir);
  t.same([linkId(`${PIN}/net-${a.id}-ingress`), linkId(`${PIN}/net-${a.id}-egress`)], [ingress, egress], 'attaching again changes nothing');
  t.same(cgroupProgs(a.dir) .map((p) => p.attach_type) .sort(), ['cgroup_inet_egress', 'cgroup_inet_ingress'], 'one program per direction on the cgroup');

  const K = 100_000;
  await runAsync(bin, ['--join', other.dir, '--send', port, String(K)]);
  t.same(nat.recorderRead(PIN, a.id)?.net, { rxBytes: 0n, rxPackets: 0n, txBytes: 0n, txPackets: 0n }, 'traffic of an untracked cgroup is not counted');

  await runAsync(bin, ['--join', a.dir, '--send', port, String(K)]);
  const n = nat.recorderRead(PIN, a.id)!.net;
  t.ok(n.txPackets > 0n, `tx packets: ${n.txPackets}`);
  t.ok(n.txBytes >= BigInt(K) && n.txBytes <= BigInt(K) + n.txPackets * 128n, `tx bytes ${n.txBytes}: the K bytes sent plus headers`);
  t.ok(n.rxPackets > 0n, `rx packets (ACKs, SYN-ACK, FIN): ${n.rxPackets}`);
  t.ok(n.rxBytes <= n.rxPackets * 128n, `rx bytes ${n.rxBytes}: headers only, the server side is not counted`);

  const K2 = 30_000;
  await runAsync(bin, ['--join', sub.dir, '--send', port, String(K2)]);
  const m = nat.recorderRead(PIN, a.id)!.net;
  t.ok(m.txBytes - n.txBytes >= BigInt(K2), `a sub-cgroup's traffic counts for the tracked ancestor (+${m.txBytes - n.txBytes})`);
  t.same(received, [K, K, K2], 'the server got every byte');

  nat.recorderTrack(PIN, a.id, LEARN);
  t.equal(nat.recorderUntrack(PIN, a.id, NET), 1, 'clearing NET keeps the entry');
  t.notOk(existsSync(`${PIN}/net-${a.id}-ingress`) || existsSync(`${PIN}/net-${a.id}-egress`), 'but unpins its links');
  t.notOk(linkListed(ingress!) || linkListed(egress!), 'detached');
  t.same(cgroupProgs(a.dir), [], 'nothing left on the cgroup');
  t.equal(nat.recorderRead(PIN, a.id)?.net.txBytes, m.txBytes, 'the counters stay readable');

  nat.recorderTrack(PIN, a.id, NET);
  nat.recorderNetAttach(PIN, a.id, a.dir);
  const again = linkId(`${PIN}/net-${a.id}-egress`);
  t.ok(again, 'attached again');
  t.equal(nat.recorderUntrack(PIN, a.id), 0, 'untracked');
  t.notOk(linkListed(again!), 'the last untrack detaches the links');
  t.same(cgroupProgs(a.dir), [], 'nothing left on the cgroup');
  t.notOk(existsSync(PIN), 'everything unpinned');
});

t.test('net links of a removed cgroup are dropped without error', async (t) => {
  if (!ready(t)) return;
  const nat = native();
  const keep = makeCgroup('keep');
  const gone = makeCgroup('gone');
  nat.recorderTrack(PIN, keep.id, LEARN);
  nat.recorderTrack(PIN, gone.id, NET);
  nat.recorderNetAttach(PIN, gone.id, gone.dir);
  rmdirSync(gone.dir);
  t.equal(nat.recorderUntrack(PIN, gone.id), 1, 'untracked');
  t.notOk(existsSync(`${PIN}/net-${gone.id}-ingress`) || existsSync(`${PIN}/net-${gone.id}-egress`), 'its pins are gone');
  t.equal(nat.recorderUntrack(PIN, keep.id), 0, 'untracked');
  t.notOk(existsSync(PIN), 'everything unpinned');
});
