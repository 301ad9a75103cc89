// hyperbox N-API addon: the native operations the Node side cannot do itself.
// Everything here is reached only through src/native/index.ts.
#include <napi.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "runc_lookup.h"

extern char **environ;

namespace {

Napi::Value ThrowErrno(Napi::Env env, const std::string &what, int err) {
  Napi::Error e = Napi::Error::New(env, what + ": " + strerror(err));
  e.Set("errno", Napi::Number::New(env, err));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

std::vector<std::string> StringArray(const Napi::Value &v) {
  std::vector<std::string> out;
  Napi::Array arr = v.As<Napi::Array>();
  for (uint32_t i = 0; i < arr.Length(); i++) out.push_back(arr.Get(i).As<Napi::String>().Utf8Value());
  return out;
}

std::vector<char *> CArgv(std::vector<std::string> &args) {
  std::vector<char *> out;
  for (auto &s : args) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// findRunc(self) -> path; throws with the launcher's own sentence.
Napi::Value FindRunc(const Napi::CallbackInfo &info) {
  std::string self = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  char out[4096], why[4600];
  if (hyperbox_find_runc(self.empty() ? nullptr : self.c_str(), out, sizeof out, why, sizeof why) != 0) {
    Napi::Error::New(info.Env(), why).ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  return Napi::String::New(info.Env(), out);
}

Napi::Value ConfigDir(const Napi::CallbackInfo &info) {
  return Napi::String::New(info.Env(), hyperbox_config_dir());
}

// Puts back what the caller's process had before Node started: signal
// dispositions (ignored or default), the blocked mask and RLIMIT_NOFILE, as
// the launcher recorded them in "ignoredHex:blockedHex:nofileCur:nofileMax".
// Without a record (Node started by hand) every signal goes back to default.
void RestoreCallerProcessState(const std::string &record) {
  unsigned long long ignored = 0, blocked = 0, cur = 0, max = 0;
  bool have = !record.empty() && sscanf(record.c_str(), "%llx:%llx:%llu:%llu", &ignored, &blocked, &cur, &max) == 4;
  for (int sig = 1; sig < 65; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = (have && sig < 64 && (ignored >> (sig - 1)) & 1) ? SIG_IGN : SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, nullptr);
  }
  sigset_t mask;
  sigemptyset(&mask);
  for (int sig = 1; have && sig < 64; sig++)
    if ((blocked >> (sig - 1)) & 1) sigaddset(&mask, sig);
  sigprocmask(SIG_SETMASK, &mask, nullptr);
  if (have) {
    struct rlimit rl = {(rlim_t)cur, (rlim_t)max};
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// Clears close-on-exec on the fds the caller passed us (the launcher's list):
// Node marked them all close-on-exec at start.
void RestoreFdInheritance(const std::string &list) {
  const char *p = list.c_str();
  while (*p) {
    char *end;
    long fd = strtol(p, &end, 10);
    if (end == p) break;
    int flags = fcntl((int)fd, F_GETFD);
    if (flags >= 0) fcntl((int)fd, F_SETFD, flags & ~FD_CLOEXEC);
    p = *end == ',' ? end + 1 : end;
  }
}

// The environment this process was started with, from /proc/self/environ
// rather than the live environ: whatever Node or a library set since must not
// reach runc. The launcher's HYPERBOX_LAUNCHER_* notes are dropped and the
// caller's NODE_* variables it hid from Node are put back where they were.
std::vector<std::string> CallerEnvironment() {
  std::vector<std::string> env;
  std::string block;
  int fd = open("/proc/self/environ", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char buf[65536];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) block.append(buf, (size_t)n);
    close(fd);
  } else {
    for (char **e = environ; *e; e++) block.append(*e).push_back('\0');
  }
  size_t start = 0;
  while (start < block.size()) {
    size_t end = block.find('\0', start);
    if (end == std::string::npos) end = block.size();
    std::string entry = block.substr(start, end - start);
    static const std::string hidden = "HYPERBOX_LAUNCHER_ENV=";
    if (entry.compare(0, hidden.size(), hidden) == 0) env.push_back(entry.substr(hidden.size()));  // a caller's NODE_*
    else if (!entry.empty() && entry.compare(0, 18, "HYPERBOX_LAUNCHER_") != 0) env.push_back(entry);
    start = end + 1;
  }
  return env;
}

// execRunc(path, argv) never returns on success: the process conmon or the
// containerd shim waits on becomes runc itself, with the caller's environment
// (less the launcher's own HYPERBOX_LAUNCHER_* notes) and fds.
Napi::Value ExecRunc(const Napi::CallbackInfo &info) {
  std::string path = info[0].As<Napi::String>().Utf8Value();
  std::vector<std::string> args = StringArray(info[1]);
  std::vector<char *> argv = CArgv(args);

  const char *record = getenv("HYPERBOX_LAUNCHER_SIGNALS");
  std::string saved = record ? record : "";
  std::vector<std::string> env = CallerEnvironment();
  std::vector<char *> envp = CArgv(env);

  const char *fds = getenv("HYPERBOX_LAUNCHER_FDS");
  std::string inheritable = fds ? fds : "0,1,2";

  RestoreCallerProcessState(saved);
  RestoreFdInheritance(inheritable);
  execve(path.c_str(), argv.data(), envp.data());
  int err = errno;
  return ThrowErrno(info.Env(), "cannot execute " + path, err);
}

// spawnRestoreWatcher(launcher, runcStatePath, stateDir, instance, env): starts
// `launcher __restore-watch` in its own session with no inherited fds but
// /dev/null on stdio and a pidfd of this process on fd 3, so that after this
// process execs runc something still notices when runc exits. posix_spawn
// (vfork-style) rather than fork: copying Node's address space costs ms.
Napi::Value SpawnRestoreWatcher(const Napi::CallbackInfo &info) {
  std::string launcher = info[0].As<Napi::String>().Utf8Value();
  std::vector<std::string> args = {"hyperbox-runc", "__restore-watch", "3", info[1].As<Napi::String>().Utf8Value(),
                                   info[2].As<Napi::String>().Utf8Value(), info[3].As<Napi::String>().Utf8Value()};
  std::vector<char *> argv = CArgv(args);
  std::vector<std::string> env = StringArray(info[4]);
  std::vector<char *> envp = CArgv(env);

  int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
  if (pidfd < 0) return ThrowErrno(info.Env(), "pidfd_open", errno);
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull < 0) {
    int err = errno;
    close(pidfd);
    return ThrowErrno(info.Env(), "open /dev/null", err);
  }
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  for (int fd = 0; fd < 3; fd++) posix_spawn_file_actions_adddup2(&actions, devnull, fd);
  posix_spawn_file_actions_adddup2(&actions, pidfd, 3);  // the copy is not close-on-exec
  posix_spawn_file_actions_addclosefrom_np(&actions, 4);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid;
  int rc = posix_spawn(&pid, launcher.c_str(), &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(pidfd);
  close(devnull);
  if (rc != 0) return ThrowErrno(info.Env(), "cannot start the restore watcher " + launcher, rc);
  return info.Env().Undefined();
}

// flock(fd): an exclusive, blocking flock on an open fd (released by closing it).
Napi::Value Flock(const Napi::CallbackInfo &info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  while (flock(fd, LOCK_EX) != 0) {
    if (errno != EINTR) return ThrowErrno(info.Env(), "flock", errno);
  }
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("findRunc", Napi::Function::New(env, FindRunc));
  exports.Set("configDir", Napi::Function::New(env, ConfigDir));
  exports.Set("execRunc", Napi::Function::New(env, ExecRunc));
  exports.Set("spawnRestoreWatcher", Napi::Function::New(env, SpawnRestoreWatcher));
  exports.Set("flock", Napi::Function::New(env, Flock));
  return exports;
}

}  // namespace

NODE_API_MODULE(hyperbox, Init)
