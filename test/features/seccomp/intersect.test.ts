import t from 'tap';
import { auditVariant, intersectProfiles } from '../../../src/features/seccomp/intersect.js';
import { actionOf, sameAction, stricter, type Action } from '../../../src/features/seccomp/actions.js';
import type { JsonObject } from '../../../src/oci/json.js';

/** What an unconditional profile does with a syscall name, as runc + libseccomp would apply it. */
function decide(profile: JsonObject, name: string): Action {
  const def = actionOf(String(profile.defaultAction), profile.defaultErrnoRet);
  for (const rule of (profile.syscalls as JsonObject[]) ?? []) {
    const a = actionOf(String(rule.action), rule.errnoRet);
    if (sameAction(a, def)) continue;
    if ((rule.names as string[]).includes(name) && !(Array.isArray(rule.args) && rule.args.length)) return a;
  }
  return def;
}

const podmanLike: JsonObject = {
  defaultAction: 'SCMP_ACT_ERRNO',
  defaultErrnoRet: 38,
  architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86'],
  flags: ['SECCOMP_FILTER_FLAG_SPEC_ALLOW'],
  syscalls: [
    { names: ['read', 'write', 'openat', 'socket', 'exit_group'], action: 'SCMP_ACT_ALLOW' },
    { names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 0, op: 'SCMP_CMP_EQ' }] },
    { names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 8, op: 'SCMP_CMP_EQ' }] },
    { names: ['mount', 'keyctl'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 },
  ],
};

const learned: JsonObject = {
  defaultAction: 'SCMP_ACT_ERRNO',
  defaultErrnoRet: 1,
  architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
  syscalls: [
    { names: ['exit', 'exit_group', 'personality', 'read', 'write'], action: 'SCMP_ACT_ALLOW' },
    { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 },
  ],
};

t.test('within an allow-list caller: allows only what both allow, keeps its conditions, errnos and flags', async (t) => {
  const r = intersectProfiles(learned, podmanLike);
  t.equal(r.defaultAction, 'SCMP_ACT_ERRNO');
  t.equal(r.defaultErrnoRet, 38, "the caller's default errno is kept");
  t.same(r.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86']);
  t.same(r.flags, ['SECCOMP_FILTER_FLAG_SPEC_ALLOW']);
  t.same(decide(r, 'read'), { name: 'SCMP_ACT_ALLOW' });
  t.same(decide(r, 'exit_group'), { name: 'SCMP_ACT_ALLOW' });
  t.same(decide(r, 'exit'), { name: 'SCMP_ACT_ERRNO', errno: 38 }, 'the caller never allowed exit');
  t.same(decide(r, 'openat'), { name: 'SCMP_ACT_ERRNO', errno: 1 }, 'allowed by the caller, not learned: EPERM');
  t.same(decide(r, 'socket'), { name: 'SCMP_ACT_ERRNO', errno: 1 });
  t.same(decide(r, 'mount'), { name: 'SCMP_ACT_ERRNO', errno: 1 });
  t.same(decide(r, 'clone3'), { name: 'SCMP_ACT_ERRNO', errno: 38 });
  const personality = (r.syscalls as JsonObject[]).filter((x) => (x.names as string[]).includes('personality'));
  t.equal(personality.length, 2, 'both conditional rules survive');
  t.ok(personality.every((x) => x.action === 'SCMP_ACT_ALLOW' && Array.isArray(x.args) && x.args.length === 1));
});

t.test('within an allow-by-default caller: its refusals stay, the rest is the learned list', async (t) => {
  const caller: JsonObject = { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['ptrace'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 }] };
  const ours: JsonObject = { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read', 'ptrace'], action: 'SCMP_ACT_ALLOW' }] };
  const r = intersectProfiles(ours, caller);
  t.same(decide(r, 'read'), { name: 'SCMP_ACT_ALLOW' });
  t.same(decide(r, 'ptrace'), { name: 'SCMP_ACT_ERRNO', errno: 13 }, "the caller's errno for what it refuses");
  t.same(decide(r, 'write'), { name: 'SCMP_ACT_ERRNO', errno: 1 });
  t.notOk(r.architectures, 'a caller without architectures means native only');
});

t.test('refuses what libseccomp cannot express rather than allowing more', async (t) => {
  const caller: JsonObject = {
    defaultAction: 'SCMP_ACT_ALLOW',
    syscalls: [{ names: ['socket'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 16, op: 'SCMP_CMP_EQ' }] }],
  };
  const ours: JsonObject = { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['socket'], action: 'SCMP_ACT_ALLOW' }] };
  t.throws(() => intersectProfiles(ours, caller), /cannot intersect the profiles for syscall socket/);
  const both: JsonObject = { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['socket'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 2, op: 'SCMP_CMP_EQ' }] }] };
  const callerCond: JsonObject = { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['socket'], action: 'SCMP_ACT_ALLOW', args: [{ index: 1, value: 1, op: 'SCMP_CMP_EQ' }] }] };
  t.throws(() => intersectProfiles(both, callerCond), /both put argument conditions on it/);
  t.throws(() => intersectProfiles({ defaultAction: 'SCMP_ACT_NOPE' }, caller), /unknown seccomp action "SCMP_ACT_NOPE"/);
});

t.test('audit: what the learned profile lacks is logged, what the caller refuses stays refused', async (t) => {
  const r = intersectProfiles(auditVariant(learned), podmanLike);
  t.same(decide(r, 'read'), { name: 'SCMP_ACT_ALLOW' });
  t.same(decide(r, 'openat'), { name: 'SCMP_ACT_LOG' });
  t.same(decide(r, 'mount'), { name: 'SCMP_ACT_ERRNO', errno: 1 });
  t.same(decide(r, 'exit'), { name: 'SCMP_ACT_ERRNO', errno: 38 });
  const alone = auditVariant(learned);
  t.equal(alone.defaultAction, 'SCMP_ACT_LOG');
  t.notOk('defaultErrnoRet' in alone);
});

t.test('never broader than either profile, for random unconditional profiles', async (t) => {
  const names = ['read', 'write', 'open', 'close', 'mmap', 'ptrace', 'mount', 'clone3'];
  const actions: JsonObject[] = [
    { action: 'SCMP_ACT_ALLOW' },
    { action: 'SCMP_ACT_LOG' },
    { action: 'SCMP_ACT_ERRNO', errnoRet: 1 },
    { action: 'SCMP_ACT_ERRNO', errnoRet: 38 },
    { action: 'SCMP_ACT_KILL_PROCESS' },
    { action: 'SCMP_ACT_TRAP' },
  ];
  let seed = 7;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
  const randomProfile = (): JsonObject => {
    const def = actions[rand(actions.length)]!;
    const syscalls: JsonObject[] = [];
    for (const name of names) if (rand(3)) syscalls.push({ names: [name], ...actions[rand(actions.length)]! });
    return { defaultAction: def.action!, ...(def.errnoRet ? { defaultErrnoRet: def.errnoRet } : {}), syscalls };
  };
  let checked = 0;
  for (let i = 0; i < 300; i++) {
    const a = randomProfile();
    const b = randomProfile();
    const r = intersectProfiles(a, b);
    for (const name of [...names, 'unlisted']) {
      const want = stricter(decide(a, name), decide(b, name));
      const got = decide(r, name);
      if (!sameAction(got, want)) t.fail(`${name}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)} for ${JSON.stringify([a, b])}`);
      checked++;
    }
  }
  t.equal(checked, 300 * 9);
  const self = intersectProfiles(learned, learned);
  for (const name of ['read', 'exit', 'clone3', 'openat']) t.same(decide(self, name), decide(learned, name), `a profile within itself is itself (${name})`);
});
