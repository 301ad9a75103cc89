import t from 'tap';
import { seccompFeature } from '../../../src/features/seccomp/index.js';
import { fromImport, toDocker, toK8s } from '../../../src/features/seccomp/formats.js';
import type { PlanInput } from '../../../src/features/types.js';
import type { Native } from '../../../src/native/index.js';
import type { JsonObject } from '../../../src/oci/json.js';

const feature = seccompFeature({ native: () => ({}) as Native });
const input = (annotations: Record<string, string>): PlanInput => ({ command: 'run', id: 'c1', bundleDir: '/tmp', annotations, fromFlags: {}, spec: {} });

t.test('plan: modes and names', async (t) => {
  t.equal(feature.plan(input({})), undefined, 'nothing asked, nothing planned');
  t.same(feature.plan(input({ 'io.hyperbox.seccomp': 'learn', 'io.hyperbox.seccomp.profile': 'web-1.0_a' })), { mode: 'learn', profile: 'web-1.0_a' });
  t.same(feature.plan(input({ 'io.hyperbox.seccomp': 'audit', 'io.hyperbox.seccomp.profile': 'x' })), { mode: 'audit', profile: 'x' });
  const flag = feature.flags!.find((f) => f.names[0] === 'seccomp')!;
  t.same(flag.toAnnotations('web'), { 'io.hyperbox.seccomp': 'enforce', 'io.hyperbox.seccomp.profile': 'web' });
});

t.test('plan: bad input is refused with a sentence', async (t) => {
  const bad: [Record<string, string>, RegExp][] = [
    [{ 'io.hyperbox.seccomp': 'strict', 'io.hyperbox.seccomp.profile': 'x' }, /bad io.hyperbox.seccomp value "strict": expected learn, enforce or audit/],
    [{ 'io.hyperbox.seccomp': 'enforce' }, /needs a profile name: io.hyperbox.seccomp.profile=NAME/],
    [{ 'io.hyperbox.seccomp.profile': 'x' }, /needs io.hyperbox.seccomp=learn, enforce or audit/],
    [{ 'io.hyperbox.seccomp': 'enforce', 'io.hyperbox.seccomp.profile': '../etc/passwd' }, /bad seccomp profile name/],
    [{ 'io.hyperbox.seccomp': 'enforce', 'io.hyperbox.seccomp.profile': 'a/b' }, /no '\/', no '\.\.'/],
    [{ 'io.hyperbox.seccomp': 'enforce', 'io.hyperbox.seccomp.profile': 'a..b' }, /bad seccomp profile name/],
    [{ 'io.hyperbox.seccomp': 'enforce', 'io.hyperbox.seccomp.profile': '.hidden' }, /bad seccomp profile name/],
    [{ 'io.hyperbox.seccomp': 'learn', 'io.hyperbox.seccomp.profile': 'x', 'io.hyperbox.seccomp.mode': 'y' }, /unknown annotation io.hyperbox.seccomp.mode/],
  ];
  for (const [annotations, message] of bad) t.throws(() => feature.plan(input(annotations)), message, JSON.stringify(annotations));
});

t.test('stages: only learning pays for a createRuntime hook', async (t) => {
  t.same(feature.stages!({ mode: 'learn', profile: 'x' }), ['createRuntime', 'poststop']);
  t.same(feature.stages!({ mode: 'enforce', profile: 'x' }), []);
});

const profile: JsonObject = {
  defaultAction: 'SCMP_ACT_ERRNO',
  defaultErrnoRet: 1,
  architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
  syscalls: [
    { names: ['read', 'write'], action: 'SCMP_ACT_ALLOW' },
    { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 },
  ],
};

t.test('docker format round-trips through import', async (t) => {
  const docker = toDocker(profile);
  t.same(docker.archMap, [{ architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86', 'SCMP_ARCH_X32'] }]);
  t.notOk('architectures' in docker);
  t.same((docker.syscalls as { args: unknown[] }[]).map((r) => r.args), [[], []]);
  const back = fromImport(docker);
  t.same(back.architectures, profile.architectures);
  t.same(back.defaultErrnoRet, 1);
  t.same((back.syscalls as { names: string[] }[]).map((r) => r.names), [['read', 'write'], ['clone3']]);
});

t.test('k8s: a SeccompProfile resource', async (t) => {
  const yaml = toK8s('Web_App', profile);
  t.match(yaml, /^apiVersion: security-profiles-operator\.x-k8s\.io\/v1beta1\nkind: SeccompProfile\nmetadata:\n  name: web-app\n/);
  t.match(yaml, /spec:\n  defaultAction: SCMP_ACT_ERRNO\n  architectures:\n  - SCMP_ARCH_X86_64\n/);
  t.match(yaml, /  - action: SCMP_ACT_ALLOW\n    names:\n    - read\n    - write\n/);
  t.match(yaml, /  - action: SCMP_ACT_ERRNO\n    errnoRet: 38\n    names:\n    - clone3\n/);
  const asJson = { apiVersion: 'security-profiles-operator.x-k8s.io/v1beta1', kind: 'SeccompProfile', metadata: { name: 'x' }, spec: { disabled: false, ...profile } };
  t.same(fromImport(asJson).syscalls, profile.syscalls, 'the JSON form imports');
});

t.test('import: what cannot be taken as-is is refused', async (t) => {
  t.throws(() => fromImport([]), /must be a JSON object/);
  t.throws(() => fromImport({ syscalls: [] }), /not a seccomp profile: defaultAction: Required/);
  t.throws(
    () => fromImport({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['mount'], action: 'SCMP_ACT_ALLOW', includes: { caps: ['CAP_SYS_ADMIN'] } }] }),
    /conditional on capabilities/,
  );
  t.throws(() => fromImport({ ociVersion: '1.0.2', linux: {} }), /has no linux.seccomp/);
  t.same(fromImport({ ociVersion: '1.0.2', linux: { seccomp: profile } }), profile, 'a config.json gives its linux.seccomp');
  t.throws(() => fromImport({ kind: 'SeccompProfile', spec: { baseProfileName: 'runc-v1.1.5', defaultAction: 'SCMP_ACT_ERRNO' } }), /base profile/);
});
