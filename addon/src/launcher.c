/* hyperbox-runc: the native launcher.
 *
 * Podman and containerd call the runtime several times per container, and Node
 * takes 35-50 ms to start while runc takes about 4, so this decides without
 * Node. Every call that needs nothing of hyperbox is execv'd straight into
 * runc with the caller's argv, environment, fds and signal state untouched.
 * Only create/run whose bundle asks for hyperbox (an io.hyperbox. annotation,
 * a flag runc does not know, or a host policy), spec with extra flags, and
 * hyperbox's own subcommands start Node.
 *
 * It also hosts one internal mode, `__restore-watch`, started by the Node side
 * just before it becomes runc: it waits for that process to exit and has the
 * caller's config.json put back if the container was not created. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include "runc_lookup.h"

#ifndef HYPERBOX_VERSION
#define HYPERBOX_VERSION "dev"
#endif
#ifndef HYPERBOX_NODE
#define HYPERBOX_NODE "/usr/bin/node"
#endif

extern char **environ;

/* What the caller asked of logging, read from runc's global flags. */
static const char *log_path;
static int log_json;
static int log_debug;

static void log_line(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes one line the way runc's logrus would: to --log (in --log-format) and,
 * for errors, the bare message on stderr as runc does; without --log, the
 * formatted line goes to stderr. */
static void log_line(const char *level, const char *fmt, ...) {
  char msg[2048], esc[4200], line[4600], when[64];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  int is_error = strcmp(level, "error") == 0;
  if (!is_error && strcmp(level, "warning") != 0 && !log_debug) return;

  size_t j = 0;
  for (const char *p = msg; *p && j + 7 < sizeof esc; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '"' || c == '\\') {
      esc[j++] = '\\';
      esc[j++] = (char)c;
    } else if (c == '\n') {
      esc[j++] = '\\';
      esc[j++] = 'n';
    } else if (c < 0x20) {
      j += (size_t)snprintf(esc + j, sizeof esc - j, "\\u%04x", c);
    } else {
      esc[j++] = (char)c;
    }
  }
  esc[j] = '\0';
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  int len = log_json ? snprintf(line, sizeof line, "{\"level\":\"%s\",\"msg\":\"%s\",\"time\":\"%s\"}\n", level, esc, when)
                     : snprintf(line, sizeof line, "time=\"%s\" level=%s msg=\"%s\"\n", when, level, esc);
  if (len < 0) return;
  if ((size_t)len >= sizeof line) len = sizeof line - 1;

  int fd = 2;
  if (log_path && *log_path) {
    fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) fd = 2;
  }
  if (write(fd, line, (size_t)len) < 0) { /* nowhere left to report it */
  }
  if (fd != 2) {
    close(fd);
    if (is_error) dprintf(2, "%s\n", msg);
  }
}

/* Flags runc 1.1 knows, by name without dashes. Value flags take the next
 * argument unless written name=value; everything else is boolean (Go's flag
 * package never lets a boolean consume the next argument). */
struct flag {
  const char *name;
  int takes_value;
};

static const struct flag global_flags[] = {
    {"debug", 0}, {"log", 1},  {"log-format", 1}, {"root", 1}, {"criu", 1}, {"systemd-cgroup", 0},
    {"rootless", 1}, {"help", 0}, {"h", 0},         {"version", 0}, {"v", 0}, {NULL, 0},
};
static const struct flag create_flags[] = {
    {"bundle", 1},   {"b", 1},    {"console-socket", 1}, {"pid-file", 1}, {"no-pivot", 0},
    {"no-new-keyring", 0}, {"preserve-fds", 1}, {"help", 0}, {"h", 0}, {NULL, 0},
};
static const struct flag run_flags[] = {
    {"bundle", 1},   {"b", 1},    {"console-socket", 1}, {"pid-file", 1}, {"no-pivot", 0},
    {"no-new-keyring", 0}, {"preserve-fds", 1}, {"detach", 0}, {"d", 0}, {"keep", 0},
    {"no-subreaper", 0}, {"help", 0}, {"h", 0}, {NULL, 0},
};
static const struct flag spec_flags[] = {
    {"bundle", 1}, {"b", 1}, {"rootless", 0}, {"help", 0}, {"h", 0}, {NULL, 0},
};

/* hyperbox's own subcommands: always the Node side. */
static const char *const own_commands[] = {"hook", "gc", "doctor", "seccomp", "image", "tune", "trace", NULL};

/* Splits "-name", "--name", "-name=v", "--name=v". Returns the flag entry or
 * NULL when unknown; *inline_value is set when "=" was used. */
static const struct flag *match_flag(const struct flag *table, const char *arg, const char **inline_value) {
  const char *name = arg + 1;
  if (*name == '-') name++;
  const char *eq = strchr(name, '=');
  size_t len = eq ? (size_t)(eq - name) : strlen(name);
  *inline_value = eq ? eq + 1 : NULL;
  for (const struct flag *f = table; f->name; f++)
    if (strlen(f->name) == len && strncmp(f->name, name, len) == 0) return f;
  return NULL;
}

static int is_flag_arg(const char *arg) {
  return arg[0] == '-' && arg[1] != '\0' && strcmp(arg, "--") != 0;
}

static const char *self_path(void) {
  static char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return NULL;
  buf[n] = '\0';
  return buf;
}

/* Does <bundle>/config.json mention an io.hyperbox. annotation? A byte search
 * is enough here: a false positive only costs a Node start, which then reads
 * the JSON properly and passes through unchanged. */
static int bundle_asks_hyperbox(const char *bundle) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/config.json", bundle);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0; /* runc will report the missing config in its own words */
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    return 0; /* unreadable: runc will report it in its own words */
  }
  if (st.st_size <= 0 || st.st_size > 64 * 1024 * 1024) {
    close(fd);
    return st.st_size > 0; /* an odd file: let the Node side give a clear error */
  }
  char *buf = malloc((size_t)st.st_size);
  if (!buf) {
    close(fd);
    return 1;
  }
  size_t got = 0;
  while (got < (size_t)st.st_size) {
    ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
    if (n <= 0) break;
    got += (size_t)n;
  }
  close(fd);
  int found = memmem(buf, got, "\"io.hyperbox.", 13) != NULL;
  free(buf);
  return found;
}

static int policy_exists(void) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/policy.json", hyperbox_config_dir());
  return access(path, F_OK) == 0;
}

/* Decides whether a create/run/spec call needs the Node side. */
static int needs_node(const char *cmd, int argc, char **argv, int first) {
  const struct flag *table = strcmp(cmd, "create") == 0 ? create_flags
                             : strcmp(cmd, "run") == 0  ? run_flags
                                                        : spec_flags;
  const char *bundle = NULL;
  for (int i = first; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) break;
    if (!is_flag_arg(argv[i])) continue;
    const char *value;
    const struct flag *f = match_flag(table, argv[i], &value);
    if (!f) return 1; /* a hyperbox flag, or a mistake runc will name after Node passes it on */
    if (f->takes_value && !value && i + 1 < argc) value = argv[++i];
    if (value && (strcmp(f->name, "bundle") == 0 || strcmp(f->name, "b") == 0)) bundle = value;
  }
  if (strcmp(cmd, "spec") == 0) return 0;
  if (policy_exists()) return 1;
  return bundle_asks_hyperbox(bundle && *bundle ? bundle : ".");
}

static int is_own_command(const char *cmd) {
  for (const char *const *c = own_commands; *c; c++)
    if (strcmp(*c, cmd) == 0) return 1;
  return 0;
}

static int file_exists(const char *dir, const char *rel) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", dir, rel);
  return access(path, R_OK) == 0;
}

/* Finds dist/src/cli.js: $HYPERBOX_CLI, the installed layout
 * (<prefix>/bin/.. /lib/hyperbox-runc), or the build tree (build/..). */
static int find_cli(const char *self, char *out, size_t outlen) {
  const char *env = getenv("HYPERBOX_CLI");
  if (env && *env) {
    snprintf(out, outlen, "%s", env);
    return 0;
  }
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", self);
  char *slash = strrchr(dir, '/');
  if (!slash) return -1;
  *slash = '\0';
  const char *const candidates[] = {"../lib/hyperbox-runc/dist/src/cli.js", "../dist/src/cli.js", NULL};
  for (const char *const *c = candidates; *c; c++) {
    if (file_exists(dir, *c)) {
      char joined[PATH_MAX * 2];
      snprintf(joined, sizeof joined, "%s/%s", dir, *c);
      if (!realpath(joined, out)) return -1;
      (void)outlen;
      return 0;
    }
  }
  return -1;
}

static void exec_runc(const char *runc, int argc, char **argv) {
  (void)argc;
  argv[0] = (char *)runc;
  execv(runc, argv);
  log_line("error", "hyperbox-runc: cannot execute %s: %s", runc, strerror(errno));
  exit(1);
}

/* The fds the caller lets us inherit (no close-on-exec), as "0,1,2,...".
 * Node's start marks every inherited fd close-on-exec
 * (uv_disable_stdio_inheritance), which would cut runc off from stdio,
 * --preserve-fds, LISTEN_FDS and the console socket. */
static void inheritable_fds(char *out, size_t outlen) {
  size_t used = 0;
  out[0] = '\0';
  DIR *dir = opendir("/proc/self/fd");
  if (!dir) return;
  int self_fd = dirfd(dir);
  struct dirent *e;
  while ((e = readdir(dir)) != NULL) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    int fd = atoi(e->d_name);
    if (fd == self_fd) continue;
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0 || (flags & FD_CLOEXEC)) continue;
    int n = snprintf(out + used, outlen - used, "%s%d", used ? "," : "", fd);
    if (n < 0 || (size_t)n >= outlen - used) break;
    used += (size_t)n;
  }
  closedir(dir);
}

/* Node changes signal dispositions, the signal mask, RLIMIT_NOFILE and fd
 * inheritance at start; the caller's values travel in the environment so the
 * addon can restore them exactly before it execs runc (and strips these
 * variables again). */
static void exec_node(const char *self, const char *runc, int argc, char **argv) {
  char cli[PATH_MAX];
  if (find_cli(self, cli, sizeof cli) != 0) {
    log_line("error", "hyperbox-runc: cannot find its Node side (dist/src/cli.js) next to %s; reinstall with make install",
             self);
    exit(1);
  }
  const char *node = getenv("HYPERBOX_NODE");
  if (!node || !*node) node = HYPERBOX_NODE;

  unsigned long long ignored = 0;
  for (int sig = 1; sig < 64; sig++) {
    struct sigaction sa;
    if (sigaction(sig, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN) ignored |= 1ULL << (sig - 1);
  }
  sigset_t mask;
  sigprocmask(SIG_SETMASK, NULL, &mask);
  unsigned long long blocked = 0;
  for (int sig = 1; sig < 64; sig++)
    if (sigismember(&mask, sig) == 1) blocked |= 1ULL << (sig - 1);
  struct rlimit nofile;
  getrlimit(RLIMIT_NOFILE, &nofile);

  /* The caller's NODE_* variables (NODE_OPTIONS, NODE_EXTRA_CA_CERTS, ...)
   * are for the caller's Node programs, not hyperbox's: each is hidden in
   * place as HYPERBOX_LAUNCHER_ENV=NAME=VALUE, which keeps the environment's
   * order, and the addon turns it back before runc gets the environment. */
  for (char **e = environ; *e; e++) {
    if (strncmp(*e, "NODE_", 5) != 0) continue;
    size_t len = strlen(*e);
    char *hidden = malloc(len + 24);
    if (!hidden) exit(1);
    memcpy(hidden, "HYPERBOX_LAUNCHER_ENV=", 22);
    memcpy(hidden + 22, *e, len + 1);
    *e = hidden;
  }

  char state[256];
  snprintf(state, sizeof state, "%llx:%llx:%llu:%llu", ignored, blocked, (unsigned long long)nofile.rlim_cur,
           (unsigned long long)nofile.rlim_max);
  setenv("HYPERBOX_LAUNCHER_SIGNALS", state, 1);
  static char fds[8192];
  inheritable_fds(fds, sizeof fds);
  setenv("HYPERBOX_LAUNCHER_FDS", fds, 1);
  setenv("HYPERBOX_LAUNCHER_RUNC", runc, 1);
  setenv("HYPERBOX_LAUNCHER_EXE", self, 1);

  char **nargv = calloc((size_t)argc + 4, sizeof *nargv);
  if (!nargv) exit(1);
  int n = 0;
  nargv[n++] = (char *)node;
  nargv[n++] = "--no-warnings";
  nargv[n++] = cli;
  for (int i = 1; i < argc; i++) nargv[n++] = argv[i];
  nargv[n] = NULL;
  execv(node, nargv);
  log_line("error", "hyperbox-runc: cannot start Node.js at %s (%s); set HYPERBOX_NODE to its path", node,
           strerror(errno));
  exit(1);
}

/* `--version`: runc's output unchanged (containerd parses its first line),
 * then ours. */
static int print_version(const char *runc, char **argv) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) return 1;
  if (pid == 0) {
    argv[0] = (char *)runc;
    execv(runc, argv);
    _exit(127);
  }
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
  printf("hyperbox-runc %s\n", HYPERBOX_VERSION);
  return 0;
}

/* __restore-watch PIDFD RUNC_STATE_JSON STATE_DIR INSTANCE
 *
 * Waits (on a pidfd) for the process that became runc to exit. If runc keeps
 * no state for the container (create failed, or `run` finished) while
 * hyperbox's state dir for it is still there, `hyperbox-runc gc --state-dir
 * DIR --instance N` puts config.json back and releases what the features
 * attached - only if the dir still belongs to this create (INSTANCE), not to
 * a new container that reused the id meanwhile. */
static int restore_watch(int argc, char **argv) {
  if (argc != 6) return 2;
  int pidfd = atoi(argv[2]);
  const char *runc_state = argv[3], *state_dir = argv[4], *instance = argv[5];
  struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
  while (poll(&pfd, 1, -1) < 0 && errno == EINTR) {
  }
  close(pidfd);
  if (access(runc_state, F_OK) == 0 || access(state_dir, F_OK) != 0) return 0;
  const char *self = self_path();
  if (!self) return 1;
  char *gc_argv[] = {"hyperbox-runc", "gc", "--state-dir", (char *)state_dir, "--instance", (char *)instance, NULL};
  execv(self, gc_argv);
  return 1;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "__restore-watch") == 0) return restore_watch(argc, argv);

  /* Global flags, then the subcommand: the same walk runc's CLI makes. */
  int i = 1, want_version = 0;
  for (; i < argc; i++) {
    const char *arg = argv[i];
    if (strcmp(arg, "--") == 0) {
      i++;
      break;
    }
    if (!is_flag_arg(arg)) break;
    const char *value;
    const struct flag *f = match_flag(global_flags, arg, &value);
    if (!f) continue; /* runc will reject it; pass through */
    if (f->takes_value && !value && i + 1 < argc) value = argv[++i];
    if (strcmp(f->name, "log") == 0) log_path = value;
    else if (strcmp(f->name, "log-format") == 0) log_json = value && strcmp(value, "json") == 0;
    else if (strcmp(f->name, "debug") == 0) log_debug = !value || strcmp(value, "false") != 0;
    else if (strcmp(f->name, "version") == 0 || strcmp(f->name, "v") == 0) want_version = 1;
  }
  const char *cmd = i < argc ? argv[i] : NULL;

  const char *self = self_path();
  char runc[PATH_MAX], why[PATH_MAX + 256];
  if (hyperbox_find_runc(self, runc, sizeof runc, why, sizeof why) != 0) {
    log_line("error", "hyperbox-runc: %s", why);
    return 1;
  }
  if (!cmd && want_version) return print_version(runc, argv);
  if (cmd && is_own_command(cmd)) exec_node(self, runc, argc, argv);
  if (cmd && (strcmp(cmd, "create") == 0 || strcmp(cmd, "run") == 0 || strcmp(cmd, "spec") == 0) &&
      needs_node(cmd, argc, argv, i + 1))
    exec_node(self, runc, argc, argv);
  log_line("debug", "hyperbox-runc: passing %s straight to %s", cmd ? cmd : "(no command)", runc);
  exec_runc(runc, argc, argv);
  return 1;
}
