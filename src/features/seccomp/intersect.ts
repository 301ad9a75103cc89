/**
 * Enforcing a profile on a container whose caller already asked for one
 * (Podman's, containerd's or Docker's default): the result allows a call only
 * where both allow it, and keeps the caller's argument conditions and errno
 * choices. Worked out per syscall name, with libseccomp's semantics: a rule
 * without arguments for a syscall overrides every conditional rule for it, and
 * a rule whose action equals the default is dropped (runc drops it).
 */
import { HyperboxError } from '../../errors.js';
import { isJsonObject, type JsonObject, type JsonValue } from '../../oci/json.js';
import { actionOf, isDeny, sameAction, stricter, writeAction, type Action } from './actions.js';

interface ConditionalRule {
  action: Action;
  args: JsonValue[];
}

/** What a profile does with one syscall name. */
type Treatment = { kind: 'always'; action: Action } | { kind: 'conditional'; rules: ConditionalRule[]; otherwise: Action };

/** A profile read into per-name treatments. */
interface ProfileView {
  defaultAction: Action;
  byName: Map<string, { always?: Action; conditional: ConditionalRule[] }>;
  architectures: string[];
}

/** Reads an OCI linux.seccomp object the way runc would apply it. */
function view(profile: JsonObject): ProfileView {
  const defaultAction = actionOf(String(profile.defaultAction), profile.defaultErrnoRet);
  const byName: ProfileView['byName'] = new Map();
  for (const rule of Array.isArray(profile.syscalls) ? profile.syscalls : []) {
    if (!isJsonObject(rule) || !Array.isArray(rule.names)) continue;
    const action = actionOf(String(rule.action), rule.errnoRet);
    if (sameAction(action, defaultAction)) continue; // runc skips these
    const args = Array.isArray(rule.args) ? rule.args : [];
    for (const name of rule.names) {
      if (typeof name !== 'string') continue;
      const entry = byName.get(name) ?? { conditional: [] };
      if (args.length === 0) entry.always ??= action;
      else entry.conditional.push({ action, args });
      byName.set(name, entry);
    }
  }
  const architectures = Array.isArray(profile.architectures) ? profile.architectures.filter((a): a is string => typeof a === 'string') : [];
  return { defaultAction, byName, architectures };
}

function treatment(p: ProfileView, name: string): Treatment {
  const entry = p.byName.get(name);
  if (!entry) return { kind: 'always', action: p.defaultAction };
  if (entry.always) return { kind: 'always', action: entry.always };
  return { kind: 'conditional', rules: entry.conditional, otherwise: p.defaultAction };
}

/** Combines one name's treatments; throws when libseccomp could not express the result. */
function combine(name: string, ours: Treatment, callers: Treatment): Treatment {
  if (ours.kind === 'always' && callers.kind === 'always') return { kind: 'always', action: stricter(ours.action, callers.action) };
  if (ours.kind === 'always' && callers.kind === 'conditional') {
    return {
      kind: 'conditional',
      rules: callers.rules.map((r) => ({ action: stricter(ours.action, r.action), args: r.args })),
      otherwise: stricter(ours.action, callers.otherwise),
    };
  }
  if (ours.kind === 'conditional' && callers.kind === 'always') {
    return {
      kind: 'conditional',
      rules: ours.rules.map((r) => ({ action: stricter(r.action, callers.action), args: r.args })),
      otherwise: stricter(ours.otherwise, callers.action),
    };
  }
  throw new HyperboxError(
    'E_SECCOMP',
    `cannot intersect the profiles for syscall ${name}: both put argument conditions on it; drop the conditions from the hyperbox profile (seccomp import) or from the caller's`,
  );
}

/** The profile that allows only what both allow. `ours` is the stored (learned or imported) profile, `callers` the one in config.json. */
export function intersectProfiles(ours: JsonObject, callers: JsonObject): JsonObject {
  const a = view(ours);
  const b = view(callers);
  const defaultAction = stricter(a.defaultAction, b.defaultAction);
  const names = [...new Set([...a.byName.keys(), ...b.byName.keys()])].sort();

  const always = new Map<string, { action: Action; names: string[] }>();
  const conditional: JsonObject[] = [];
  for (const name of names) {
    const t = combine(name, treatment(a, name), treatment(b, name));
    if (t.kind === 'always') {
      if (sameAction(t.action, defaultAction)) continue;
      const key = `${t.action.name}/${t.action.errno ?? ''}`;
      const group = always.get(key) ?? { action: t.action, names: [] };
      group.names.push(name);
      always.set(key, group);
      continue;
    }
    // A conditional rule's unmatched calls fall to the default action: fine
    // when that is what they should get, or when both refuse the call.
    if (!sameAction(t.otherwise, defaultAction) && !(isDeny(t.otherwise) && isDeny(defaultAction))) {
      throw new HyperboxError(
        'E_SECCOMP',
        `cannot intersect the profiles for syscall ${name}: its argument conditions need ${t.otherwise.name} for the other calls but the combined default is ${defaultAction.name}`,
      );
    }
    for (const r of t.rules) {
      if (sameAction(r.action, defaultAction)) continue;
      const rule: JsonObject = { names: [name] };
      writeAction(rule, r.action, false);
      rule.args = r.args;
      conditional.push(rule);
    }
  }

  // The caller's other settings (flags, listenerPath, ...) are kept as they were.
  const result: JsonObject = {};
  writeAction(result, defaultAction, true);
  const archs = a.architectures.length && b.architectures.length ? b.architectures.filter((x) => a.architectures.includes(x)) : [];
  if (archs.length) result.architectures = archs;
  for (const [k, v] of Object.entries(callers)) {
    if (!['defaultAction', 'defaultErrnoRet', 'architectures', 'syscalls'].includes(k)) result[k] = v;
  }
  const groups = [...always.values()].sort((x, y) => (x.action.name === 'SCMP_ACT_ALLOW' ? -1 : y.action.name === 'SCMP_ACT_ALLOW' ? 1 : 0));
  result.syscalls = [
    ...groups.map((g) => {
      const rule: JsonObject = { names: g.names };
      writeAction(rule, g.action, false);
      return rule;
    }),
    ...conditional,
  ];
  return result;
}

/** Turns a profile into its complain-mode twin: what it would refuse is logged and allowed. */
export function auditVariant(profile: JsonObject): JsonObject {
  const out: JsonObject = { ...profile, defaultAction: 'SCMP_ACT_LOG' };
  delete out.defaultErrnoRet;
  return out;
}

/** Names a profile allows unconditionally (for reports and the benchmark). */
export function allowedNames(profile: JsonObject): string[] {
  const p = view(profile);
  if (p.defaultAction.name === 'SCMP_ACT_ALLOW') return [];
  return [...p.byName.entries()].filter(([, e]) => e.always?.name === 'SCMP_ACT_ALLOW').map(([n]) => n).sort();
}
