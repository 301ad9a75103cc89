/**
 * A fake runc for argv-handling tests only (never for integration tests): a
 * shell script that records what it was given - argv, its initial environ,
 * open fds, signal state and RLIMIT_NOFILE - into $FAKE_RUNC_OUT, then exits
 * with $FAKE_RUNC_EXIT.
 */
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SCRIPT = `#!/bin/sh
out="$FAKE_RUNC_OUT"
printf '%s\\0' "$0" "$@" > "$out.argv"
cat /proc/$$/environ > "$out.environ"
ls /proc/$$/fd | sort -n > "$out.fds"
grep -E '^Sig(Ign|Blk)' /proc/$$/status > "$out.signals"
grep 'Max open files' /proc/$$/limits > "$out.nofile"
case "$1" in --version|-v) echo "runc version 9.9.9-fake";; esac
exit "\${FAKE_RUNC_EXIT:-0}"
`;

/** What the fake saw. */
export interface FakeRuncCall {
  argv: string[];
  environ: string[];
  fds: number[];
  signals: string;
  nofile: string;
}

/** Writes the fake into a fresh dir (as `runc`) and returns its path and a reader. */
export function makeFakeRunc(): { dir: string; path: string; out: string; read: () => FakeRuncCall } {
  const dir = mkdtempSync(join(tmpdir(), 'hbx-fakerunc-'));
  const path = join(dir, 'runc');
  writeFileSync(path, SCRIPT);
  chmodSync(path, 0o755);
  const out = join(dir, 'out');
  const read = (): FakeRuncCall => ({
    argv: readFileSync(out + '.argv', 'utf8').split('\0').slice(0, -1),
    environ: readFileSync(out + '.environ', 'utf8').split('\0').filter(Boolean),
    // ls itself opens one fd for the directory it lists: that one is not the shell's.
    fds: readFileSync(out + '.fds', 'utf8').trim().split('\n').map(Number),
    signals: readFileSync(out + '.signals', 'utf8'),
    nofile: readFileSync(out + '.nofile', 'utf8'),
  });
  return { dir, path, out, read };
}
