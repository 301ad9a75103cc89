import t from 'tap';
import { learnedProfile, mergeCounts, namedCounts, RUNTIME_FLOOR } from '../../../src/features/seccomp/profile.js';

const names: Record<string, Record<number, string>> = { x86_64: { 0: 'read', 1: 'write', 435: 'clone3', 110: 'getppid' }, x86: { 3: 'read', 64: 'getppid' } };
const resolve = (arch: string, nr: number) => names[arch]?.[nr];

t.test('numbers become names per architecture; unknown numbers are kept apart', async (t) => {
  const n = namedCounts(
    [
      { arch: 'x86_64', nr: 0, count: 10n },
      { arch: 'x86_64', nr: 110, count: 2n },
      { arch: 'x86', nr: 64, count: 1n },
      { arch: 'x86_64', nr: 999, count: 4n },
    ],
    resolve,
  );
  t.same(n.syscalls, { x86_64: { read: 10, getppid: 2 }, x86: { getppid: 1 } });
  t.same(n.unresolved, { x86_64: { '999': 4 } });
});

t.test('runs merge by union, counts add up', async (t) => {
  const merged = mergeCounts({ x86_64: { read: 1, write: 2 } }, { x86_64: { write: 3, close: 1 }, x86: { read: 1 } });
  t.same(merged, { x86_64: { close: 1, read: 1, write: 5 }, x86: { read: 1 } });
  t.same(Object.keys(merged.x86_64!), ['close', 'read', 'write'], 'sorted');
});

t.test('the OCI profile: EPERM default, native + compat archs, one sorted ALLOW rule, clone3 ENOSYS', async (t) => {
  const p = learnedProfile({ syscalls: { x86_64: { write: 1, read: 1 }, x86: { getppid: 1 } } }, 'SCMP_ARCH_X86_64');
  t.equal(p.defaultAction, 'SCMP_ACT_ERRNO');
  t.equal(p.defaultErrnoRet, 1);
  t.same(p.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
  const rules = p.syscalls as { names: string[]; action: string; errnoRet?: number }[];
  t.same(rules[0]!.names, [...new Set(['getppid', 'read', 'write', ...RUNTIME_FLOOR])].sort());
  t.equal(rules[0]!.action, 'SCMP_ACT_ALLOW');
  t.same(rules[1], { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 });
  const withClone3 = learnedProfile({ syscalls: { x86_64: { clone3: 1 } } }, 'SCMP_ARCH_X86_64');
  t.equal((withClone3.syscalls as unknown[]).length, 1, 'a learned clone3 is simply allowed');
});
