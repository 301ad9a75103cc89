/** What the `seccomp` subcommands do; loaded only when one runs (commands.ts registers them). */
import { readFileSync } from 'node:fs';
import { formatTable, writeStdout } from '../../cli/output.js';
import { HyperboxError, reasonOf } from '../../errors.js';
import type { Native } from '../../native/index.js';
import { parseJson, stringifyJson, type JsonObject } from '../../oci/json.js';
import { writeFileAtomic } from '../../store/atomic.js';
import { checkProfileName, listProfiles, profileExists, readProfile, removeProfile, withStoreLock, writeProfile, type StoredProfile } from '../../store/profiles.js';
import type { ExportFormat } from './commands.js';
import { compileProfile } from './enforce.js';
import { fromImport, toDocker, toK8s } from './formats.js';
import { allowedNames } from './intersect.js';

const out = writeStdout;

/** One line per profile for `list`. */
function summary(p: StoredProfile): { name: string; source: string; allowed: number; runs: number; updated: string } {
  return {
    name: p.name,
    source: p.meta?.source ?? 'hand-written',
    allowed: allowedNames(p.profile).length,
    runs: p.meta?.runs.length ?? 0,
    updated: p.meta?.updated ?? '',
  };
}

const table = formatTable;

function show(p: StoredProfile, bpf: string): string {
  const lines = [`profile:       ${p.name}`, `source:        ${p.meta?.source ?? 'hand-written'}`, `default:       ${String(p.profile.defaultAction)}`];
  const allowed = allowedNames(p.profile);
  lines.push(`allowed:       ${allowed.length} syscalls`, `bpf:           ${bpf}`);
  for (const [arch, names] of Object.entries(p.meta?.syscalls ?? {})) {
    const total = Object.values(names).reduce((a, b) => a + b, 0);
    lines.push(`learned ${arch}: ${Object.keys(names).length} syscalls, ${total} calls`);
  }
  for (const [arch, nrs] of Object.entries(p.meta?.unresolved ?? {})) {
    lines.push(`unnamed ${arch}: ${Object.keys(nrs).join(', ')} (libseccomp has no name for these numbers; they stay refused)`);
  }
  for (const run of p.meta?.runs ?? []) {
    lines.push(`run:           ${run.date} ${run.containerId} (${run.syscalls} syscalls; kernel ${run.kernel}, runc ${run.runc}) ${JSON.stringify(run.command)}`);
  }
  lines.push('', ...allowed.map((n) => `  ${n}`));
  return lines.join('\n') + '\n';
}

/** `seccomp list`. */
export function listCommand(json: boolean): void {
  const rows = listProfiles().map((n) => summary(readProfile(n)));
  if (json) return out(JSON.stringify(rows, null, 2) + '\n');
  out(table([['NAME', 'SOURCE', 'SYSCALLS', 'RUNS', 'UPDATED'], ...rows.map((r) => [r.name, r.source, String(r.allowed), String(r.runs), r.updated])]));
}

/** `seccomp show`. */
export function showCommand(nat: Native, name: string, json: boolean): void {
  const p = readProfile(checkProfileName(name));
  if (json) return out(stringifyJson({ name: p.name, profile: p.profile, meta: (p.meta ?? null) as unknown as JsonObject }, { indent: '  ', trailingNewline: true }));
  let bpf: string;
  try {
    bpf = `${compileProfile(nat, p.profile, 'it')} instructions`;
  } catch (err) {
    bpf = reasonOf(err);
  }
  out(show(p, bpf));
}

/** `seccomp diff`: returns the exit code (1 when they differ, as diff(1)). */
export function diffCommand(a: string, b: string): number {
  const left = new Set(allowedNames(readProfile(checkProfileName(a)).profile));
  const right = new Set(allowedNames(readProfile(checkProfileName(b)).profile));
  const lines = [...[...left].filter((n) => !right.has(n)).map((n) => `- ${n}`), ...[...right].filter((n) => !left.has(n)).map((n) => `+ ${n}`)];
  lines.sort((x, y) => x.slice(2).localeCompare(y.slice(2)));
  if (lines.length) out(`--- ${a}\n+++ ${b}\n` + lines.join('\n') + '\n');
  return lines.length ? 1 : 0;
}

/** `seccomp export`. */
export function exportCommand(name: string, format: ExportFormat, output: string | undefined): void {
  const p = readProfile(checkProfileName(name));
  const text = format === 'k8s' ? toK8s(p.name, p.profile) : stringifyJson(format === 'docker' ? toDocker(p.profile) : p.profile, { indent: '  ', trailingNewline: true });
  if (output) writeFileAtomic(output, text, { mode: 0o644 });
  else out(text);
}

/** `seccomp import`: only a profile libseccomp can load is stored. */
export function importCommand(nat: Native, name: string, file: string, force: boolean): void {
  checkProfileName(name);
  let text: string;
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (err) {
    throw new HyperboxError('E_PROFILE', `cannot read ${file}: ${reasonOf(err)}`, { cause: err });
  }
  let doc;
  try {
    doc = parseJson(text);
  } catch (err) {
    throw new HyperboxError('E_PROFILE', `${file} is not JSON (${reasonOf(err)}); import takes JSON profiles`, { cause: err });
  }
  const profile = fromImport(doc);
  compileProfile(nat, profile, `${file} as a seccomp filter`);
  withStoreLock(nat, () => {
    if (profileExists(name) && !force) throw new HyperboxError('E_PROFILE', `a seccomp profile named ${name} exists; pass --force to replace it`);
    const now = new Date().toISOString();
    writeProfile(name, profile, { version: 1, name, source: 'imported', syscalls: {}, unresolved: {}, runs: [], created: now, updated: now });
  });
}

/** `seccomp rm`. */
export function rmCommand(nat: Native, names: string[]): void {
  withStoreLock(nat, () => {
    for (const name of names) {
      if (!removeProfile(checkProfileName(name))) throw new HyperboxError('E_PROFILE_MISSING', `no seccomp profile named ${name}`);
    }
  });
}
