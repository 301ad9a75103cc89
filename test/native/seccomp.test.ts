/**
 * libseccomp through the addon: syscall names and numbers per ABI, and seccompCompile building
 * an OCI linux.seccomp the way runc 1.1.5 does, with one-sentence rejections.
 */
import t from 'tap';
import { native } from '../../src/native/index.js';

const nat = native();
const ARCHS = ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'];
const compile = (profile: unknown) => nat.seccompCompile(JSON.stringify(profile)).instructions;

/** Every syscall libseccomp knows on x86_64, in number order. */
function x86_64Names(): string[] {
  const names: string[] = [];
  for (let nr = 0; nr < 512; nr++) {
    const name = nat.seccompResolve('x86_64', nr);
    if (name) names.push(name);
  }
  return names;
}

t.test('names and numbers per ABI', async (t) => {
  t.equal(nat.seccompNativeArch(), 'SCMP_ARCH_X86_64');
  t.equal(nat.seccompNumber('getppid', 'x86_64'), 110);
  t.equal(nat.seccompNumber('getppid', 'x86'), 64);
  t.equal(nat.seccompNumber('getppid', 'SCMP_ARCH_X86'), 64, 'OCI spelling');
  t.equal(nat.seccompResolve('x86_64', 110), 'getppid');
  t.equal(nat.seccompResolve('x86', 64), 'getppid');
  t.equal(nat.seccompResolve('SCMP_ARCH_X86_64', 64), 'semget', 'the same number is another call natively');
  t.equal(nat.seccompNumber('getppid', 'x32'), 110, 'x32 numbers come without __X32_SYSCALL_BIT');
  t.equal(nat.seccompResolve('x32', 110), 'getppid');
  t.equal(nat.seccompResolve('x86_64', 100000), undefined, 'no such number');
  t.equal(nat.seccompNumber('no_such_call', 'x86_64'), undefined, 'no such name');
  t.equal(nat.seccompNumber('socketcall', 'x86_64'), undefined, "libseccomp's pseudo numbers are not numbers");
  t.throws(() => nat.seccompResolve('vax', 1), { message: 'unknown architecture "vax"' });

  // On i386 the socket and SysV IPC calls also exist multiplexed (socketcall, ipc): libseccomp
  // names them by pseudo numbers, so only the number-to-name direction is defined there.
  const multiplexed = /^(socket|socketpair|bind|connect|listen|accept4|[gs]etsockopt|getsockname|getpeername|sendto|sendmsg|sendmmsg|recvfrom|recvmsg|recvmmsg|shutdown|sem(get|ctl)|shm(get|ctl|at|dt)|msg(get|snd|rcv|ctl))$/;
  for (const arch of ['x86_64', 'x86', 'x32']) {
    let checked = 0;
    const broken: string[] = [];
    for (let nr = 0; nr < 600; nr++) {
      const name = nat.seccompResolve(arch, nr);
      if (!name) continue;
      checked++;
      const back = nat.seccompNumber(name, arch);
      if (back !== (arch === 'x86' && multiplexed.test(name) ? undefined : nr)) broken.push(`${nr} ${name} -> ${back}`);
    }
    t.same(broken, [], `${arch}: ${checked} numbers round-trip`);
    t.ok(checked > 300);
  }
  t.equal(nat.seccompResolve('x86', 359), 'socket', 'a direct i386 socket call still has its name');
});

t.test('compiles allow-lists with a sane instruction count', async (t) => {
  t.equal(compile({}), 0, 'no default action and no rules: runc installs no filter');
  const small = compile({ defaultAction: 'SCMP_ACT_ERRNO', architectures: ARCHS, syscalls: [{ names: ['read', 'write', 'exit_group'], action: 'SCMP_ACT_ALLOW' }] });
  t.ok(small > 5 && small < 40, `3 calls on 3 ABIs: ${small} instructions`);
  const names = x86_64Names();
  const all = compile({ defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: 38, architectures: ARCHS, syscalls: [{ names, action: 'SCMP_ACT_ALLOW' }] });
  t.ok(all > small && all <= 4096, `all ${names.length} x86_64 calls: ${all} instructions`);
  t.equal(
    compile({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read', 'no_such_call'], action: 'SCMP_ACT_ALLOW' }] }),
    compile({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW' }] }),
    'names libseccomp does not know are ignored, as runc does',
  );
  t.equal(
    compile({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW' }, { names: ['write'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }] }),
    compile({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW' }] }),
    'a rule with the default action (same errno) is skipped rather than refused by libseccomp',
  );
  t.ok(compile({ defaultAction: 'SCMP_ACT_KILL_PROCESS', flags: ['SECCOMP_FILTER_FLAG_LOG', 'SECCOMP_FILTER_FLAG_SPEC_ALLOW'], syscalls: [{ names: ['read'], action: 'SCMP_ACT_LOG' }] }) > 0, 'flags');
  for (const action of ['SCMP_ACT_KILL', 'SCMP_ACT_KILL_THREAD', 'SCMP_ACT_TRAP', 'SCMP_ACT_TRACE', 'SCMP_ACT_NOTIFY'])
    t.ok(compile({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mount'], action }] }) > 0, action);
});

t.test('conditions: repeated indexes, 64-bit values', async (t) => {
  const personality = (values: number[]) =>
    compile({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['personality'], action: 'SCMP_ACT_ALLOW', args: values.map((value) => ({ index: 0, value, op: 'SCMP_CMP_EQ' })) }] });
  t.ok(personality([0, 8, 131072]) > personality([0]), 'three conditions on one argument become three rules');
  const clone = { names: ['clone'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 2114060288, op: 'SCMP_CMP_MASKED_EQ' }, { index: 1, value: 0, valueTwo: 0, op: 'SCMP_CMP_NE' }] };
  t.ok(compile({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [clone] }) > 0, 'two arguments in one rule');
  const big = (value: string) =>
    `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["ioctl"],"action":"SCMP_ACT_ERRNO","args":[{"index":1,"value":${value},"valueTwo":${value},"op":"SCMP_CMP_MASKED_EQ"}]}]}`;
  t.ok(nat.seccompCompile(big('18446744073709551615')).instructions > 0, 'a uint64 literal past 2^53');
  t.ok(nat.seccompCompile(big('"18446744073709551615"')).instructions > 0, 'the same as a string');
  t.throws(() => nat.seccompCompile(big('18446744073709551616')), { message: "the seccomp profile's syscalls[0].args[0].value is not an integer between 0 and 2^64-1", errno: 22 });
  t.throws(() => nat.seccompCompile(big('-1')), /args\[0\]\.value is not an integer/);
});

t.test('rejections are one sentence naming what was rejected', async (t) => {
  const rule = (extra: Record<string, unknown>) => ({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['clone'], action: 'SCMP_ACT_ERRNO', ...extra }] });
  const cases: [unknown, string | RegExp][] = [
    [{ defaultAction: 'SCMP_ACT_FOO' }, 'unknown action "SCMP_ACT_FOO"'],
    [rule({ action: 'SCMP_ACT_FOO' }), 'unknown action "SCMP_ACT_FOO"'],
    [{ defaultAction: 'SCMP_ACT_ERRNO', architectures: ['SCMP_ARCH_FOO'] }, 'unknown architecture "SCMP_ARCH_FOO"'],
    [{ defaultAction: 'SCMP_ACT_ERRNO', architectures: ['SCMP_ARCH_RISCV64'] }, 'unknown architecture "SCMP_ARCH_RISCV64"'],
    [rule({ args: [{ index: 0, value: 1, op: 'SCMP_CMP_FOO' }] }), 'unknown operator "SCMP_CMP_FOO" in the rule for "clone"'],
    [rule({ args: [{ index: 6, value: 1, op: 'SCMP_CMP_EQ' }] }), 'argument index 6 in the rule for "clone" is out of range (0-5)'],
    [rule({ errnoRet: 5000, args: [{ index: 0, value: 1, op: 'SCMP_CMP_EQ' }, { index: 1, value: 2, op: 'SCMP_CMP_EQ' }] }), 'libseccomp rejected the rule for "clone" (action SCMP_ACT_ERRNO, 2 conditions): Invalid argument'],
    [{ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['write'], action: 'SCMP_ACT_NOTIFY' }] }, 'SCMP_ACT_NOTIFY cannot be used for the write syscall'],
    [{ defaultAction: 'SCMP_ACT_NOTIFY', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW' }] }, 'SCMP_ACT_NOTIFY cannot be the default action'],
    [{ defaultAction: 'SCMP_ACT_ERRNO', flags: ['SECCOMP_FILTER_FLAG_FOO'] }, 'unknown seccomp flag "SECCOMP_FILTER_FLAG_FOO"'],
    [{ defaultAction: 'SCMP_ACT_ERRNO', flags: ['SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV'] }, /^the seccomp flag SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV needs libseccomp 2\.6/],
    [{ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: [''], action: 'SCMP_ACT_ALLOW' }] }, 'a rule has an empty syscall name'],
    [{ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: 'read', action: 'SCMP_ACT_ALLOW' }] }, "the seccomp profile's syscalls[0].names must be an array"],
    [[], 'the seccomp profile must be a JSON object (an OCI linux.seccomp)'],
  ];
  for (const [profile, message] of cases) {
    const err = t.throws(() => compile(profile), { message }) as Error & { errno?: number };
    t.type(err?.errno, 'number', `errno for: ${String(message)}`);
  }
  t.throws(() => nat.seccompCompile('{"defaultAction":'), { message: /^the seccomp profile is not valid JSON: / });
});

t.test('a filter past BPF_MAXINSNS (4096) is refused', async (t) => {
  // Two conditions per call on every x86_64 call, for three ABIs: well past the limit.
  const syscalls = x86_64Names().map((name, i) => ({
    names: [name],
    action: 'SCMP_ACT_ALLOW',
    args: [0, 1].map((index) => ({ index, value: i * 7 + index, op: 'SCMP_CMP_EQ' })),
  }));
  t.throws(() => compile({ defaultAction: 'SCMP_ACT_ERRNO', architectures: ARCHS, syscalls }), {
    message: /^the seccomp filter has \d+ BPF instructions, more than the kernel's limit of 4096 \(BPF_MAXINSNS\)$/,
    errno: 7,
  });
});
