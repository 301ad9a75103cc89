/**
 * Profile formats in and out: OCI linux.seccomp (what the store keeps),
 * Docker/Podman seccomp.json, and the Security Profiles Operator's
 * SeccompProfile resource for Kubernetes.
 */
import { seccompSchema } from '../../../config-schema/oci.js';
import { HyperboxError } from '../../errors.js';
import { isJsonObject, type JsonObject, type JsonValue } from '../../oci/json.js';

function rules(profile: JsonObject): JsonObject[] {
  return (Array.isArray(profile.syscalls) ? profile.syscalls : []).filter(isJsonObject);
}

/** Docker's and Podman's seccomp.json: architectures become one archMap entry (native first). */
export function toDocker(profile: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(profile)) if (k !== 'architectures' && k !== 'syscalls') out[k] = v;
  const archs = Array.isArray(profile.architectures) ? profile.architectures : [];
  if (archs.length) out.archMap = [{ architecture: archs[0]!, subArchitectures: archs.slice(1) }];
  out.syscalls = rules(profile).map((r) => ({ ...r, args: Array.isArray(r.args) ? r.args : [] }));
  return out;
}

/** A Kubernetes object name: lowercase letters, digits, '-' and '.'. */
function k8sName(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9.-]/g, '-').replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '') || 'profile';
}

/** YAML for a scalar or a small structure: JSON is valid YAML, so anything nested is written inline. */
const yamlScalar = (v: JsonValue): string => (typeof v === 'bigint' ? v.toString() : JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? Number(x) : x)));

/** A Security Profiles Operator SeccompProfile (security-profiles-operator.x-k8s.io/v1beta1), as YAML. */
export function toK8s(name: string, profile: JsonObject): string {
  const lines = [
    'apiVersion: security-profiles-operator.x-k8s.io/v1beta1',
    'kind: SeccompProfile',
    'metadata:',
    `  name: ${k8sName(name)}`,
    '  annotations:',
    `    hyperbox.io/profile: ${JSON.stringify(name)}`,
    'spec:',
    `  defaultAction: ${profile.defaultAction as string}`,
  ];
  // The operator's spec has no defaultErrnoRet; its default ERRNO is EPERM, which is ours.
  const archs = Array.isArray(profile.architectures) ? profile.architectures : [];
  if (archs.length) lines.push('  architectures:', ...archs.map((a) => `  - ${String(a)}`));
  lines.push('  syscalls:');
  for (const rule of rules(profile)) {
    lines.push(`  - action: ${String(rule.action)}`);
    if (rule.errnoRet !== undefined) lines.push(`    errnoRet: ${yamlScalar(rule.errnoRet)}`);
    if (Array.isArray(rule.args) && rule.args.length) lines.push(`    args: ${yamlScalar(rule.args)}`);
    lines.push('    names:', ...(rule.names as JsonValue[]).map((n) => `    - ${String(n)}`));
  }
  return lines.join('\n') + '\n';
}

function fromDocker(doc: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(doc)) if (!['archMap', 'syscalls', 'architectures'].includes(k)) out[k] = v;
  const archs: JsonValue[] = Array.isArray(doc.architectures) ? [...doc.architectures] : [];
  for (const m of Array.isArray(doc.archMap) ? doc.archMap : []) {
    if (!isJsonObject(m)) continue;
    archs.push(m.architecture as JsonValue, ...(Array.isArray(m.subArchitectures) ? m.subArchitectures : []));
  }
  if (archs.length) out.architectures = [...new Set(archs)];
  out.syscalls = rules(doc).map((r) => {
    for (const key of ['includes', 'excludes'] as const) {
      const cond = r[key];
      if (isJsonObject(cond) && Object.keys(cond).length) {
        throw new HyperboxError(
          'E_PROFILE',
          `this Docker profile has rules conditional on capabilities, architectures or kernel versions (${key}); import the linux.seccomp that Podman or Docker wrote into a container's config.json instead`,
        );
      }
    }
    const { includes: _i, excludes: _e, name, comment: _c, ...rest } = r;
    if (typeof name === 'string' && !Array.isArray(rest.names)) rest.names = [name];
    return rest;
  });
  return out;
}

/**
 * Reads a profile to import: an OCI linux.seccomp object, a whole config.json,
 * Docker's seccomp.json, or a SeccompProfile resource (JSON). Returns the OCI form.
 */
export function fromImport(doc: JsonValue): JsonObject {
  if (!isJsonObject(doc)) throw new HyperboxError('E_PROFILE', 'a seccomp profile must be a JSON object');
  let profile: JsonObject;
  if (doc.kind === 'SeccompProfile' && isJsonObject(doc.spec)) {
    if (doc.spec.baseProfileName) throw new HyperboxError('E_PROFILE', 'this SeccompProfile extends a base profile (baseProfileName); import the resolved profile instead');
    const { disabled: _d, baseProfileName: _b, ...spec } = doc.spec;
    profile = spec;
  } else if (typeof doc.ociVersion === 'string') {
    const linux = doc.linux;
    if (!isJsonObject(linux) || !isJsonObject(linux.seccomp)) throw new HyperboxError('E_PROFILE', 'this config.json has no linux.seccomp to import');
    profile = linux.seccomp;
  } else if ('archMap' in doc || rules(doc).some((r) => 'includes' in r || 'excludes' in r || 'name' in r)) {
    profile = fromDocker(doc);
  } else {
    profile = doc;
  }
  const checked = seccompSchema.safeParse(profile);
  if (!checked.success) {
    const issue = checked.error.issues[0]!;
    throw new HyperboxError('E_PROFILE', `not a seccomp profile: ${issue.path.join('.') || 'profile'}: ${issue.message}`);
  }
  return profile;
}
