/** `hyperbox-runc seccomp list | show | diff | export | import | rm`: the profile store from the command line. */
import { readFileSync, writeSync } from 'node:fs';
import type { Command } from 'commander';
import { HyperboxError, reasonOf } from '../../errors.js';
import type { Native } from '../../native/index.js';
import { parseJson, stringifyJson, type JsonObject } from '../../oci/json.js';
import { writeFileAtomic } from '../../store/atomic.js';
import { checkProfileName, listProfiles, profileExists, readProfile, removeProfile, seccompStoreDir, withStoreLock, writeProfile, type StoredProfile } from '../../store/profiles.js';
import { allowedNames } from './intersect.js';
import { EXPORT_FORMATS, fromImport, toDocker, toK8s, type ExportFormat } from './formats.js';

function out(text: string): void {
  const buf = Buffer.from(text);
  let off = 0;
  while (off < buf.length) off += writeSync(1, buf, off, buf.length - off);
}

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

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

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

/** Adds the `seccomp` command tree. */
export function seccompCommands(deps: { native: () => Native }): (program: Command, setCode: (code: number) => void) => void {
  return (program, setCode) => {
    const cmd = program.command('seccomp').description(`learned and imported seccomp profiles (in ${seccompStoreDir()})`);

    cmd
      .command('list')
      .description('list stored profiles')
      .option('--json', 'print JSON')
      .action((opts: { json?: boolean }) => {
        const rows = listProfiles().map((n) => summary(readProfile(n)));
        if (opts.json) return out(JSON.stringify(rows, null, 2) + '\n');
        out(table([['NAME', 'SOURCE', 'SYSCALLS', 'RUNS', 'UPDATED'], ...rows.map((r) => [r.name, r.source, String(r.allowed), String(r.runs), r.updated])]));
      });

    cmd
      .command('show')
      .description("a profile's allowed syscalls, what was learned and from which runs")
      .argument('<name>')
      .option('--json', 'print the profile and its metadata as JSON')
      .action((name: string, opts: { json?: boolean }) => {
        const p = readProfile(checkProfileName(name));
        if (opts.json) return out(stringifyJson({ name: p.name, profile: p.profile, meta: (p.meta ?? null) as unknown as JsonObject }, { indent: '  ', trailingNewline: true }));
        let bpf: string;
        try {
          bpf = `${deps.native().seccompCompile(stringifyJson(p.profile)).instructions} instructions`;
        } catch (err) {
          bpf = `cannot be built: ${reasonOf(err)}`;
        }
        out(show(p, bpf));
      });

    cmd
      .command('diff')
      .description('syscalls allowed by one profile and not the other (exit 1 when they differ)')
      .argument('<a>')
      .argument('<b>')
      .action((a: string, b: string) => {
        const left = new Set(allowedNames(readProfile(checkProfileName(a)).profile));
        const right = new Set(allowedNames(readProfile(checkProfileName(b)).profile));
        const lines = [...[...left].filter((n) => !right.has(n)).map((n) => `- ${n}`), ...[...right].filter((n) => !left.has(n)).map((n) => `+ ${n}`)];
        lines.sort((x, y) => x.slice(2).localeCompare(y.slice(2)));
        if (lines.length) out(`--- ${a}\n+++ ${b}\n` + lines.join('\n') + '\n');
        setCode(lines.length ? 1 : 0);
      });

    cmd
      .command('export')
      .description('write a profile as OCI linux.seccomp, Docker/Podman seccomp.json, or a Kubernetes SeccompProfile')
      .argument('<name>')
      .option('--format <format>', `${EXPORT_FORMATS.join(', ')}`, 'oci')
      .option('-o, --output <file>', 'write to a file instead of stdout')
      .action((name: string, opts: { format: string; output?: string }) => {
        if (!(EXPORT_FORMATS as readonly string[]).includes(opts.format)) {
          throw new HyperboxError('E_USAGE', `unknown export format ${opts.format}: expected ${EXPORT_FORMATS.join(', ')}`);
        }
        const p = readProfile(checkProfileName(name));
        const format = opts.format as ExportFormat;
        const text =
          format === 'k8s' ? toK8s(p.name, p.profile) : stringifyJson(format === 'docker' ? toDocker(p.profile) : p.profile, { indent: '  ', trailingNewline: true });
        if (opts.output) writeFileAtomic(opts.output, text, { mode: 0o644 });
        else out(text);
      });

    cmd
      .command('import')
      .description('store a profile (OCI, a config.json, Docker/Podman seccomp.json, or SeccompProfile JSON; - for stdin)')
      .argument('<name>')
      .argument('<file>')
      .option('--force', 'replace a stored profile of the same name')
      .action(async (name: string, file: string, opts: { force?: boolean }) => {
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
        const nat = deps.native();
        try {
          nat.seccompCompile(stringifyJson(profile));
        } catch (err) {
          throw new HyperboxError('E_SECCOMP', `${file} cannot be loaded as a seccomp filter: ${reasonOf(err)}`, { cause: err });
        }
        await withStoreLock(nat, () => {
          if (profileExists(name) && !opts.force) throw new HyperboxError('E_PROFILE', `a seccomp profile named ${name} exists; pass --force to replace it`);
          const now = new Date().toISOString();
          writeProfile(name, profile, { version: 1, name, source: 'imported', syscalls: {}, unresolved: {}, runs: [], created: now, updated: now });
        });
      });

    cmd
      .command('rm')
      .description('remove profiles')
      .argument('<names...>')
      .action(async (names: string[]) => {
        await withStoreLock(deps.native(), () => {
          for (const name of names) {
            if (!removeProfile(checkProfileName(name))) throw new HyperboxError('E_PROFILE_MISSING', `no seccomp profile named ${name}`);
          }
        });
      });
  };
}
