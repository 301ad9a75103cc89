/**
 * A fake runc for argv-handling tests only (never for integration tests): a
 * small C program, compiled once per test process, that records at entry -
 * before anything could disturb it - its argv, its initial environ, its open
 * fds, its ignored/blocked signals and RLIMIT_NOFILE, into files named after
 * $FAKE_RUNC_OUT, then exits with $FAKE_RUNC_EXIT. (A shell script cannot do
 * this reliably: it blocks signals and opens fds around its own forks.)
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SOURCE = String.raw`
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static FILE *out(const char *base, const char *ext) {
  char path[4096];
  snprintf(path, sizeof path, "%s.%s", base, ext);
  return fopen(path, "w");
}

int main(int argc, char **argv) {
  char status[8192] = "", fds[4096] = "", environ_block[65536];
  int sfd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  ssize_t n = read(sfd, status, sizeof status - 1);
  close(sfd);
  status[n > 0 ? n : 0] = 0;
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  size_t used = 0;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9' || atoi(e->d_name) == dirfd(d)) continue;
    used += snprintf(fds + used, sizeof fds - used, "%s\n", e->d_name);
  }
  closedir(d);
  int efd = open("/proc/self/environ", O_RDONLY | O_CLOEXEC);
  ssize_t en = read(efd, environ_block, sizeof environ_block);
  close(efd);
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);

  const char *base = getenv("FAKE_RUNC_OUT");
  if (!base) return 99;
  FILE *f = out(base, "argv");
  for (int i = 0; i < argc; i++) fwrite(argv[i], 1, strlen(argv[i]) + 1, f);
  fclose(f);
  f = out(base, "environ");
  fwrite(environ_block, 1, en > 0 ? (size_t)en : 0, f);
  fclose(f);
  f = out(base, "fds");
  fputs(fds, f);
  fclose(f);
  f = out(base, "signals");
  for (char *line = strtok(status, "\n"); line; line = strtok(NULL, "\n"))
    if (!strncmp(line, "SigBlk:", 7) || !strncmp(line, "SigIgn:", 7)) fprintf(f, "%s\n", line);
  fclose(f);
  f = out(base, "nofile");
  fprintf(f, "Max open files %llu %llu\n", (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
  fclose(f);
  if (argc > 1 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-v"))) puts("runc version 9.9.9-fake");
  const char *code = getenv("FAKE_RUNC_EXIT");
  return code ? atoi(code) : 0;
}
`;

let compiled: string | undefined;

/** Compiles the fake once per process. */
function fakeBinary(): string {
  if (compiled) return compiled;
  const dir = mkdtempSync(join(tmpdir(), 'hbx-fakerunc-src-'));
  writeFileSync(join(dir, 'fake-runc.c'), SOURCE);
  execFileSync('cc', ['-O2', '-o', join(dir, 'fake-runc'), join(dir, 'fake-runc.c')]);
  compiled = join(dir, 'fake-runc');
  return compiled;
}

/** What the fake saw. */
export interface FakeRuncCall {
  argv: string[];
  environ: string[];
  fds: number[];
  signals: string;
  nofile: string;
}

/** A fresh dir holding the fake as `runc`, its path, its output base and a reader. */
export function makeFakeRunc(): { dir: string; path: string; out: string; read: () => FakeRuncCall } {
  const dir = mkdtempSync(join(tmpdir(), 'hbx-fakerunc-'));
  const path = join(dir, 'runc');
  writeFileSync(path, readFileSync(fakeBinary()), { mode: 0o755 });
  const out = join(dir, 'out');
  const read = (): FakeRuncCall => ({
    argv: readFileSync(out + '.argv', 'utf8').split('\0').slice(0, -1),
    environ: readFileSync(out + '.environ', 'utf8').split('\0').filter(Boolean),
    fds: readFileSync(out + '.fds', 'utf8').trim().split('\n').map(Number).sort((a, b) => a - b),
    signals: readFileSync(out + '.signals', 'utf8'),
    nofile: readFileSync(out + '.nofile', 'utf8'),
  });
  return { dir, path, out, read };
}
