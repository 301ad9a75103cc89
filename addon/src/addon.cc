// hyperbox N-API addon: the native operations the Node side cannot do itself.
// Everything here is reached only through src/native/index.ts.
#include <napi.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <seccomp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "recorder.h"
#include "recorder.skel.h"
#include "runc_lookup.h"

extern char **environ;

void RegisterMount(Napi::Env env, Napi::Object exports);  // mount.cc
void RegisterPsi(Napi::Env env, Napi::Object exports);    // psi.cc

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

// ---------------------------------------------------------------------------
// Shared by the recorder and the seccomp compiler: failures carry one sentence
// and an errno, and become a JS Error at the N-API boundary.

struct Failure {
  std::string message;
  int err;
};

Napi::Value Throw(Napi::Env env, const Failure &f) {
  Napi::Error e = Napi::Error::New(env, f.message);
  e.Set("errno", Napi::Number::New(env, f.err));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

// Every descriptor is closed before returning to JS: the Node process goes on to
// exec runc, and a stray map or link fd would keep the object alive in the container's runc.
struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd &) = delete;
  Fd &operator=(const Fd &) = delete;
  Fd(Fd &&o) noexcept : fd(o.fd) { o.fd = -1; }
  Fd &operator=(Fd &&o) noexcept {
    if (this != &o) {
      if (fd >= 0) close(fd);
      fd = o.fd;
      o.fd = -1;
    }
    return *this;
  }
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

// A cgroup id from JS: a bigint, or a number when it is exact.
bool U64Arg(const Napi::Value &v, uint64_t *out) {
  if (v.IsBigInt()) {
    bool lossless = false;
    *out = v.As<Napi::BigInt>().Uint64Value(&lossless);
    return lossless;
  }
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= 0) || d != std::floor(d) || d > 9007199254740992.0) return false;
    *out = (uint64_t)d;
    return true;
  }
  return false;
}

// ---------------------------------------------------------------------------
// The syscall recorder (addon/bpf/recorder.bpf.c). One object per pin dir,
// shared by every process through bpffs and alive only while some cgroup is
// tracked: an attached sys_enter program taxes every syscall on the host.

constexpr const char *kBpffs = "/sys/fs/bpf";
constexpr const char *kDoctor = "; is BPF available (hyperbox-runc doctor)?";
// Always there once loaded: a complete set.
constexpr const char *kPinLink = "link";
constexpr const char *kPinExecLink = "link_exec";
constexpr const char *kPinMap = "tracked";
constexpr const char *kPinLatency = "latency";
constexpr const char *kPinSetFlags = "set_flags";
constexpr const char *kPinExitProg = "sys_exit";
constexpr const char *kPinIngress = "skb_ingress";
constexpr const char *kPinEgress = "skb_egress";
// Only while some entry has SYSCALLS: sys_exit would otherwise tax learn-only hosts.
constexpr const char *kPinExitLink = "link_exit";

// libbpf's first warning of the current operation: it names the real cause
// (verifier, BTF) and must not go to stderr, which may be runc's caller's log.
std::string libbpf_note;

int LibbpfPrint(enum libbpf_print_level level, const char *fmt, va_list ap) {
  if (level != LIBBPF_WARN || !libbpf_note.empty()) return 0;
  char buf[512];
  vsnprintf(buf, sizeof buf, fmt, ap);
  std::string line(buf);
  size_t nl = line.find('\n');
  if (nl != std::string::npos) line.resize(nl);
  while (!line.empty() && (line.back() == ' ' || line.back() == ':')) line.pop_back();
  if (line.compare(0, 8, "libbpf: ") == 0) line.erase(0, 8);
  libbpf_note = line;
  return 0;
}

std::string LibbpfReason(int err) {
  return libbpf_note.empty() ? std::string(strerror(err)) : libbpf_note + " (" + strerror(err) + ")";
}

std::string CgroupText(uint64_t id) { return "cgroup " + std::to_string(id); }

// Per-cgroup cgroup_skb links, pinned next to the object so untrack finds them.
std::string NetPin(const std::string &dir, uint64_t cgid, bool egress) {
  return dir + "/net-" + std::to_string(cgid) + (egress ? "-egress" : "-ingress");
}

bool IsLinkPin(const std::string &name) { return name.compare(0, 4, "link") == 0 || name.compare(0, 4, "net-") == 0; }

// Pins only outlive this process on a real bpffs; /sys/fs/bpf is a plain sysfs
// directory until someone mounts it, and nothing does at boot here.
void EnsureBpffs() {
  struct statfs st;
  if (statfs(kBpffs, &st) == 0 && (unsigned long)st.f_type == BPF_FS_MAGIC) return;
  // systemd's mode: pinned objects are root's business.
  if (mount("bpf", kBpffs, "bpf", 0, "mode=0700") != 0) {
    int err = errno;
    throw Failure{std::string("cannot mount bpffs on ") + kBpffs + ": " + strerror(err) + kDoctor, err};
  }
}

// The pins that make a usable recorder: the links keep sys_enter and exec attached,
// the maps hold the data, set_flags edits entries in place, and the sys_exit and
// cgroup_skb programs wait to be attached on demand.
struct Pins {
  Fd link, exec_link, map, latency, set_flags, exit_prog, ingress, egress;
};

enum class PinState { Absent, Partial, Complete };

bool DirHasEntries(const std::string &dir) {
  DIR *d = opendir(dir.c_str());
  if (!d) return false;
  bool any = false;
  while (struct dirent *e = readdir(d)) {
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
      any = true;
      break;
    }
  }
  closedir(d);
  return any;
}

// An invalid Fd when nothing is pinned at path; anything but "not there" throws.
Fd OpenPin(const std::string &path) {
  int fd = bpf_obj_get(path.c_str());
  if (fd >= 0) return Fd(fd);
  int err = errno;
  if (err == ENOENT || err == ENOTDIR) return Fd();
  throw Failure{"cannot open the syscall recorder pinned at " + path + ": " + strerror(err), err};
}

// Opens whatever is pinned under dir; "not there" is a state, anything else throws.
PinState OpenPins(const std::string &dir, Pins &p) {
  int present = 0;
  auto get = [&](const char *name, Fd &out) {
    out = OpenPin(dir + "/" + name);
    if (out.fd >= 0) present++;
  };
  get(kPinLink, p.link);
  get(kPinExecLink, p.exec_link);
  get(kPinMap, p.map);
  get(kPinLatency, p.latency);
  get(kPinSetFlags, p.set_flags);
  get(kPinExitProg, p.exit_prog);
  get(kPinIngress, p.ingress);
  get(kPinEgress, p.egress);
  if (present == 8) return PinState::Complete;
  return present == 0 && !DirHasEntries(dir) ? PinState::Absent : PinState::Partial;
}

bool HashLayoutIs(int fd, uint32_t key_size, uint32_t value_size) {
  struct bpf_map_info mi;
  memset(&mi, 0, sizeof mi);
  __u32 len = sizeof mi;
  if (bpf_obj_get_info_by_fd(fd, &mi, &len) != 0) return false;
  return mi.type == BPF_MAP_TYPE_HASH && mi.key_size == key_size && mi.value_size == value_size;
}

// Another hyperbox build may have pinned a map with a different entry layout.
bool MapLayoutMatches(int fd) { return HashLayoutIs(fd, sizeof(__u64), sizeof(struct recorder_entry)); }
bool LatencyLayoutMatches(int fd) {
  return HashLayoutIs(fd, sizeof(struct recorder_latency_key), sizeof(struct recorder_latency));
}

Failure LayoutMismatch(const std::string &dir) {
  return Failure{"the syscall recorder pinned at " + dir + " was made by a different hyperbox build; untrack its containers or remove " + dir, EPROTO};
}

std::vector<uint64_t> TrackedIds(int map_fd) {
  std::vector<uint64_t> ids;
  uint64_t key = 0, next = 0;
  const void *prev = nullptr;
  // The bound only guards against a restart loop should a key vanish mid-walk.
  while (ids.size() < 4 * RECORDER_MAX_TRACKED && bpf_map_get_next_key(map_fd, prev, &next) == 0) {
    ids.push_back(next);
    key = next;
    prev = &key;
  }
  return ids;
}

std::vector<struct recorder_latency_key> LatencyKeys(int map_fd, uint64_t cgid) {
  std::vector<struct recorder_latency_key> keys;
  struct recorder_latency_key key, next;
  const void *prev = nullptr;
  size_t seen = 0;
  while (seen++ < 4 * RECORDER_LATENCY_MAX && bpf_map_get_next_key(map_fd, prev, &next) == 0) {
    if (next.cgroup_id == cgid) keys.push_back(next);
    key = next;
    prev = &key;
  }
  return keys;
}

// Detaching first stops a program even while some other process still holds
// a descriptor of its link; a cgroup link whose cgroup is gone is already defunct.
void UnpinLink(const std::string &path) {
  int fd = bpf_obj_get(path.c_str());
  if (fd >= 0) {
    bpf_link_detach(fd);
    close(fd);
  }
  unlink(path.c_str());
}

// Empties a pin dir, links first.
void RemovePins(const std::string &dir) {
  DIR *d = opendir(dir.c_str());
  if (!d) return;
  std::vector<std::string> names;
  while (struct dirent *e = readdir(d))
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) names.push_back(e->d_name);
  closedir(d);
  for (const std::string &name : names)
    if (IsLinkPin(name)) UnpinLink(dir + "/" + name);
  for (const std::string &name : names) {
    std::string path = dir + "/" + name;
    if (unlink(path.c_str()) != 0 && errno == EISDIR) {
      RemovePins(path);
      rmdir(path.c_str());
    }
  }
}

void RemoveAll(const std::string &dir) {
  RemovePins(dir);
  if (rmdir(dir.c_str()) != 0 && errno != ENOENT) {
    int err = errno;
    throw Failure{"cannot remove the syscall recorder's pin directory " + dir + ": " + strerror(err), err};
  }
}

// libbpf raises RLIMIT_MEMLOCK on kernels without memcg accounting of BPF memory
// (1.1 cannot be told not to). This process's limits reach runc and the
// container, so whatever it did is undone.
struct MemlockGuard {
  struct rlimit saved;
  bool have;
  MemlockGuard() { have = getrlimit(RLIMIT_MEMLOCK, &saved) == 0; }
  ~MemlockGuard() {
    if (have) setrlimit(RLIMIT_MEMLOCK, &saved);
  }
};

using LinkPtr = std::unique_ptr<struct bpf_link, int (*)(struct bpf_link *)>;

LinkPtr Attach(struct bpf_program *prog, const char *what) {
  LinkPtr link(bpf_program__attach(prog), bpf_link__destroy);
  if (!link) {
    int err = errno;
    throw Failure{std::string("cannot attach the syscall recorder to the ") + what + " tracepoint: " + LibbpfReason(err) + kDoctor, err};
  }
  return link;
}

void LoadAndPin(const std::string &dir) {
  libbpf_note.clear();
  MemlockGuard memlock;
  std::unique_ptr<struct recorder, void (*)(struct recorder *)> skel(recorder__open(), recorder__destroy);
  if (!skel) {
    int err = errno;
    throw Failure{"cannot load the syscall recorder: " + LibbpfReason(err) + kDoctor, err};
  }
  int rc = recorder__load(skel.get());
  if (rc != 0) throw Failure{"cannot load the syscall recorder: " + LibbpfReason(-rc) + kDoctor, -rc};
  LinkPtr link = Attach(skel->progs.record_sys_enter, "sys_enter");
  LinkPtr exec_link = Attach(skel->progs.record_exec, "sched_process_exec");
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    int err = errno;
    throw Failure{"cannot create the pin directory " + dir + ": " + strerror(err), err};
  }
  // The sys_enter link goes last: a pinned link is what marks a complete set.
  auto pin = [&](const char *name) { return dir + "/" + name; };
  rc = bpf_map__pin(skel->maps.tracked, pin(kPinMap).c_str());
  if (rc == 0) rc = bpf_map__pin(skel->maps.latency, pin(kPinLatency).c_str());
  if (rc == 0) rc = bpf_program__pin(skel->progs.set_flags, pin(kPinSetFlags).c_str());
  if (rc == 0) rc = bpf_program__pin(skel->progs.record_sys_exit, pin(kPinExitProg).c_str());
  if (rc == 0) rc = bpf_program__pin(skel->progs.count_ingress, pin(kPinIngress).c_str());
  if (rc == 0) rc = bpf_program__pin(skel->progs.count_egress, pin(kPinEgress).c_str());
  if (rc == 0) rc = bpf_link__pin(exec_link.get(), pin(kPinExecLink).c_str());
  if (rc == 0) rc = bpf_link__pin(link.get(), pin(kPinLink).c_str());
  if (rc != 0) {
    RemovePins(dir);
    throw Failure{"cannot pin the syscall recorder under " + dir + ": " + LibbpfReason(-rc) + kDoctor, -rc};
  }
  // Closing our descriptors now leaves the pins as the only references.
}

struct FlagsResult {
  bool found;
  uint32_t entry_flags, all_flags;
};

// set_flags in the kernel: the counts keep running while the flags change.
FlagsResult RunSetFlags(const Pins &p, uint64_t cgid, uint32_t flags, uint32_t op) {
  struct recorder_set_flags args;
  memset(&args, 0, sizeof args);
  args.cgroup_id = cgid;
  args.flags = flags;
  args.op = op;
  struct bpf_test_run_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.sz = sizeof opts;
  opts.ctx_in = &args;
  opts.ctx_size_in = sizeof args;
  if (bpf_prog_test_run_opts(p.set_flags.fd, &opts) != 0) {
    int err = errno;
    throw Failure{"cannot change the flags of the tracked " + CgroupText(cgid) + ": " + strerror(err), err};
  }
  return FlagsResult{opts.retval == 0, args.entry_flags, args.all_flags};
}

void InsertEntry(const Pins &p, uint64_t cgid, uint32_t flags) {
  for (int attempt = 0; attempt < 2; attempt++) {
    // 30 KiB: too big for the stack of a Node thread's comfort.
    std::unique_ptr<struct recorder_entry> entry(new recorder_entry());
    entry->flags = flags;
    if (bpf_map_update_elem(p.map.fd, &cgid, entry.get(), BPF_NOEXIST) == 0) return;
    int err = errno;
    if (err == E2BIG)
      throw Failure{"cannot track " + CgroupText(cgid) + ": the syscall recorder already tracks its maximum of " + std::to_string(RECORDER_MAX_TRACKED) + " cgroups", err};
    if (err != EEXIST) throw Failure{"cannot track " + CgroupText(cgid) + ": " + strerror(err), err};
    // Already tracked: add the flags in place.
    if (RunSetFlags(p, cgid, flags, RECORDER_OP_OR).found) return;
  }
  throw Failure{"cannot track " + CgroupText(cgid) + ": its entry keeps disappearing", EAGAIN};
}

// sys_exit is attached from the pinned program, by whichever process first tracks SYSCALLS.
void EnsureExitLink(const std::string &dir, const Pins &p) {
  std::string path = dir + "/" + kPinExitLink;
  if (OpenPin(path).fd >= 0) return;
  int fd = bpf_raw_tracepoint_open(nullptr, p.exit_prog.fd);
  if (fd < 0) {
    int err = errno;
    throw Failure{std::string("cannot attach the syscall recorder to the sys_exit tracepoint: ") + strerror(err) + kDoctor, err};
  }
  Fd link(fd);
  if (bpf_obj_pin(link.fd, path.c_str()) != 0) {
    int err = errno;
    throw Failure{"cannot pin the syscall recorder's sys_exit link at " + path + ": " + strerror(err), err};
  }
}

void UnpinNetLinks(const std::string &dir, uint64_t cgid) {
  UnpinLink(NetPin(dir, cgid, false));
  UnpinLink(NetPin(dir, cgid, true));
}

// An entry's latency records go with it; a later entry for a recycled id starts clean.
void DeleteEntry(const std::string &dir, const Pins &p, uint64_t cgid) {
  if (bpf_map_delete_elem(p.map.fd, &cgid) != 0 && errno != ENOENT) {
    int err = errno;
    throw Failure{"cannot stop tracking " + CgroupText(cgid) + ": " + strerror(err), err};
  }
  if (p.latency.fd >= 0 && LatencyLayoutMatches(p.latency.fd))
    for (const auto &key : LatencyKeys(p.latency.fd, cgid)) bpf_map_delete_elem(p.latency.fd, &key);
  UnpinNetLinks(dir, cgid);
}

// After a failed track: programs attached for nobody would tax every syscall on
// the host. Best effort; the caller reports the first failure.
void Settle(const std::string &dir, Pins &p) {
  try {
    if (TrackedIds(p.map.fd).empty()) {
      p = Pins();
      RemoveAll(dir);
    } else if (!(RunSetFlags(p, 0, 0, RECORDER_OP_OR).all_flags & RECORDER_SYSCALLS)) {
      UnpinLink(dir + "/" + kPinExitLink);
    }
  } catch (const Failure &) {
  }
}

struct RecorderArgs {
  std::string dir;
  uint64_t cgid = 0;
};

bool ParseRecorderArgs(const Napi::CallbackInfo &info, bool with_id, RecorderArgs *out) {
  if (!info[0].IsString()) {
    Napi::TypeError::New(info.Env(), "pinDir must be a string").ThrowAsJavaScriptException();
    return false;
  }
  out->dir = info[0].As<Napi::String>().Utf8Value();
  while (out->dir.size() > 1 && out->dir.back() == '/') out->dir.pop_back();
  if (with_id && !U64Arg(info[1], &out->cgid)) {
    Napi::TypeError::New(info.Env(), "cgroupId must be a bigint").ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

// recorderTrack(pinDir, cgroupId, flags): loads and pins the recorder when
// needed, then tracks the cgroup (or adds flags to its entry).
Napi::Value RecorderTrack(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  RecorderArgs a;
  if (!ParseRecorderArgs(info, true, &a)) return env.Undefined();
  uint32_t flags = info[2].IsNumber() ? info[2].As<Napi::Number>().Uint32Value() : 0;
  try {
    EnsureBpffs();
    Pins p;
    PinState state = OpenPins(a.dir, p);
    // Another build's entries are left alone; without entries its object is just replaced.
    bool foreign = (p.map.fd >= 0 && !MapLayoutMatches(p.map.fd)) || (p.latency.fd >= 0 && !LatencyLayoutMatches(p.latency.fd));
    if (foreign) {
      if (p.map.fd >= 0 && !TrackedIds(p.map.fd).empty()) throw LayoutMismatch(a.dir);
      state = PinState::Partial;
    }
    if (state != PinState::Complete) {
      p = Pins();
      // Half a set (a crash mid-pin, a hand-removed link) cannot be repaired piecewise.
      if (state == PinState::Partial) RemovePins(a.dir);
      LoadAndPin(a.dir);
      if (OpenPins(a.dir, p) != PinState::Complete)
        throw Failure{"the syscall recorder pinned under " + a.dir + " disappeared right after pinning", ENOENT};
    }
    try {
      // Attached before the entry exists, so its first timed call has an exit.
      if (flags & RECORDER_SYSCALLS) EnsureExitLink(a.dir, p);
      InsertEntry(p, a.cgid, flags);
    } catch (const Failure &) {
      Settle(a.dir, p);
      throw;
    }
  } catch (const Failure &f) {
    return Throw(env, f);
  }
  return env.Undefined();
}

// The pinned map alone, for readers; an invalid Fd when nothing is pinned.
Fd OpenTrackedMap(const std::string &dir) {
  Fd map = OpenPin(dir + "/" + kPinMap);
  if (map.fd >= 0 && !MapLayoutMatches(map.fd)) throw LayoutMismatch(dir);
  return map;
}

// The cgroup's entry, or null when it is not tracked.
std::unique_ptr<struct recorder_entry> ReadEntry(int map_fd, uint64_t cgid) {
  // A copy taken while the counters may still run: each u64 is read whole, which is
  // all a snapshot needs (the caller reads after the container stopped).
  std::unique_ptr<struct recorder_entry> e(new recorder_entry());
  if (bpf_map_lookup_elem(map_fd, &cgid, e.get()) == 0) return e;
  int err = errno;
  if (err == ENOENT) return nullptr;
  throw Failure{"cannot read what the syscall recorder holds for " + CgroupText(cgid) + ": " + strerror(err), err};
}

const char *AbiName(uint32_t abi) {
  switch (abi) {
    case RECORDER_ABI_NATIVE: return "x86_64";
    case RECORDER_ABI_COMPAT: return "x86";
    case RECORDER_ABI_X32: return "x32";
  }
  return nullptr;
}

void PushCounts(Napi::Env env, Napi::Array &out, const char *arch, const __u64 *counts, size_t n) {
  for (size_t nr = 0; nr < n; nr++) {
    if (!counts[nr]) continue;
    Napi::Object c = Napi::Object::New(env);
    c.Set("arch", arch);
    c.Set("nr", Napi::Number::New(env, (double)nr));
    c.Set("count", Napi::BigInt::New(env, (uint64_t)counts[nr]));
    out.Set(out.Length(), c);
  }
}

// bpf_ktime_get_ns() is CLOCK_MONOTONIC; the wall clock is that plus the current offset.
int64_t MonotonicToRealtime() {
  struct timespec rt, mono;
  clock_gettime(CLOCK_REALTIME, &rt);
  clock_gettime(CLOCK_MONOTONIC, &mono);
  return ((int64_t)rt.tv_sec - (int64_t)mono.tv_sec) * 1000000000LL + ((int64_t)rt.tv_nsec - (int64_t)mono.tv_nsec);
}

Napi::Object ExecLog(Napi::Env env, const struct recorder_entry &e) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("total", Napi::BigInt::New(env, (uint64_t)e.exec_total));
  Napi::Array recent = Napi::Array::New(env);
  int64_t offset = MonotonicToRealtime();
  uint64_t n = e.exec_total < RECORDER_EXEC_RING ? e.exec_total : RECORDER_EXEC_RING;
  for (uint64_t i = e.exec_total - n; i < e.exec_total; i++) {
    const struct recorder_exec &x = e.execs[i % RECORDER_EXEC_RING];
    Napi::Object ev = Napi::Object::New(env);
    ev.Set("timeUnixNano", Napi::BigInt::New(env, (uint64_t)((int64_t)x.time_ns + offset)));
    ev.Set("pid", Napi::Number::New(env, x.pid));
    ev.Set("nsPid", Napi::Number::New(env, x.ns_pid));
    ev.Set("filename", Napi::String::New(env, std::string(x.filename, strnlen(x.filename, sizeof x.filename))));
    recent.Set(recent.Length(), ev);
  }
  out.Set("recent", recent);
  return out;
}

// recorderRead(pinDir, cgroupId) -> { flags, armed, counts, overflow, net, execs, latencyDropped } | undefined
Napi::Value RecorderRead(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  RecorderArgs a;
  if (!ParseRecorderArgs(info, true, &a)) return env.Undefined();
  try {
    Fd map = OpenTrackedMap(a.dir);
    if (map.fd < 0) return env.Undefined();
    std::unique_ptr<struct recorder_entry> e = ReadEntry(map.fd, a.cgid);
    if (!e) return env.Undefined();
    Napi::Object out = Napi::Object::New(env);
    out.Set("flags", Napi::Number::New(env, e->flags));
    out.Set("armed", Napi::Boolean::New(env, e->armed != 0));
    Napi::Array counts = Napi::Array::New(env);
    PushCounts(env, counts, "x86_64", e->native, RECORDER_NATIVE_MAX);
    PushCounts(env, counts, "x86", e->compat, RECORDER_COMPAT_MAX);
    PushCounts(env, counts, "x32", e->x32, RECORDER_X32_MAX);
    out.Set("counts", counts);
    out.Set("overflow", Napi::BigInt::New(env, (uint64_t)e->overflow));
    Napi::Object net = Napi::Object::New(env);
    net.Set("rxBytes", Napi::BigInt::New(env, (uint64_t)e->rx_bytes));
    net.Set("rxPackets", Napi::BigInt::New(env, (uint64_t)e->rx_packets));
    net.Set("txBytes", Napi::BigInt::New(env, (uint64_t)e->tx_bytes));
    net.Set("txPackets", Napi::BigInt::New(env, (uint64_t)e->tx_packets));
    out.Set("net", net);
    out.Set("execs", ExecLog(env, *e));
    out.Set("latencyDropped", Napi::BigInt::New(env, (uint64_t)e->latency_dropped));
    return out;
  } catch (const Failure &f) {
    return Throw(env, f);
  }
}

// recorderLatency(pinDir, cgroupId) -> [{ arch, nr, count, sumNs, buckets }], by ABI and number
Napi::Value RecorderLatency(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  RecorderArgs a;
  if (!ParseRecorderArgs(info, true, &a)) return env.Undefined();
  try {
    Napi::Array out = Napi::Array::New(env);
    Fd map = OpenTrackedMap(a.dir);
    if (map.fd < 0 || !ReadEntry(map.fd, a.cgid)) return out;
    Fd lat = OpenPin(a.dir + "/" + kPinLatency);
    if (lat.fd < 0) return out;
    if (!LatencyLayoutMatches(lat.fd)) throw LayoutMismatch(a.dir);
    std::vector<struct recorder_latency_key> keys = LatencyKeys(lat.fd, a.cgid);
    std::sort(keys.begin(), keys.end(), [](const auto &x, const auto &y) { return x.syscall < y.syscall; });
    for (const auto &key : keys) {
      struct recorder_latency v;
      if (bpf_map_lookup_elem(lat.fd, &key, &v) != 0) continue;  // swept meanwhile
      const char *arch = AbiName(key.syscall >> 16);
      if (!arch) continue;
      Napi::Object l = Napi::Object::New(env);
      l.Set("arch", arch);
      l.Set("nr", Napi::Number::New(env, key.syscall & 0xffff));
      l.Set("count", Napi::BigInt::New(env, (uint64_t)v.count));
      l.Set("sumNs", Napi::BigInt::New(env, (uint64_t)v.sum_ns));
      Napi::Array buckets = Napi::Array::New(env, RECORDER_LATENCY_BUCKETS);
      for (uint32_t i = 0; i < RECORDER_LATENCY_BUCKETS; i++) buckets.Set(i, Napi::BigInt::New(env, (uint64_t)v.buckets[i]));
      l.Set("buckets", buckets);
      out.Set(out.Length(), l);
    }
    return out;
  } catch (const Failure &f) {
    return Throw(env, f);
  }
}

// recorderNetAttach(pinDir, cgroupId, cgroupDir): links the cgroup_skb counters to
// the tracked cgroup. Links are multi-attach: other programs on the cgroup stay.
Napi::Value RecorderNetAttach(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  RecorderArgs a;
  if (!ParseRecorderArgs(info, true, &a)) return env.Undefined();
  if (!info[2].IsString()) {
    Napi::TypeError::New(env, "cgroupDir must be a string").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string cgdir = info[2].As<Napi::String>().Utf8Value();
  std::string what = "cannot count the network traffic of " + CgroupText(a.cgid);
  try {
    Pins p;
    OpenPins(a.dir, p);
    if (p.map.fd >= 0 && !MapLayoutMatches(p.map.fd)) throw LayoutMismatch(a.dir);
    if (p.map.fd < 0 || !ReadEntry(p.map.fd, a.cgid)) throw Failure{what + ": it is not tracked by the syscall recorder under " + a.dir, ENOENT};
    if (p.ingress.fd < 0 || p.egress.fd < 0)
      throw Failure{what + ": the syscall recorder under " + a.dir + " has no cgroup_skb programs pinned", ENOENT};
    Fd cg(open(cgdir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (cg.fd < 0) {
      int err = errno;
      throw Failure{what + ": cannot open " + cgdir + ": " + strerror(err), err};
    }
    struct statfs sf;
    struct stat st;
    if (fstatfs(cg.fd, &sf) != 0 || (unsigned long)sf.f_type != CGROUP2_SUPER_MAGIC || fstat(cg.fd, &st) != 0)
      throw Failure{what + ": " + cgdir + " is not a cgroup v2 directory", ENOTDIR};
    if ((uint64_t)st.st_ino != a.cgid)
      throw Failure{what + ": " + cgdir + " is " + CgroupText((uint64_t)st.st_ino) + ", not that one", EINVAL};
    for (bool egress : {false, true}) {
      std::string path = NetPin(a.dir, a.cgid, egress);
      if (OpenPin(path).fd >= 0) continue;  // attached already
      int fd = bpf_link_create(egress ? p.egress.fd : p.ingress.fd, cg.fd, egress ? BPF_CGROUP_INET_EGRESS : BPF_CGROUP_INET_INGRESS, nullptr);
      if (fd < 0) {
        int err = errno;
        throw Failure{what + ": cannot attach to " + cgdir + ": " + strerror(err), err};
      }
      Fd link(fd);
      if (bpf_obj_pin(link.fd, path.c_str()) != 0) {
        int err = errno;
        throw Failure{what + ": cannot pin its link at " + path + ": " + strerror(err), err};
      }
    }
  } catch (const Failure &f) {
    return Throw(env, f);
  }
  return env.Undefined();
}

// recorderUntrack(pinDir, cgroupId, flags?) -> cgroups still tracked. Clears the
// flags (all when omitted); an entry left without any is removed. At 0 every
// program is detached and the pin dir removed.
Napi::Value RecorderUntrack(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  RecorderArgs a;
  if (!ParseRecorderArgs(info, true, &a)) return env.Undefined();
  uint32_t flags = ~0u;
  if (!info[2].IsUndefined()) {
    if (!info[2].IsNumber()) {
      Napi::TypeError::New(env, "flags must be a number").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    flags = info[2].As<Napi::Number>().Uint32Value();
  }
  try {
    Pins p;
    OpenPins(a.dir, p);
    size_t remaining = 0;
    if (p.map.fd >= 0) {
      if (MapLayoutMatches(p.map.fd) && p.set_flags.fd >= 0) {
        FlagsResult r = RunSetFlags(p, a.cgid, flags, RECORDER_OP_CLEAR);
        if (!r.found || r.entry_flags == 0)
          DeleteEntry(a.dir, p, a.cgid);
        else if (!(r.entry_flags & RECORDER_NET))
          UnpinNetLinks(a.dir, a.cgid);  // no longer counted: do not run per packet for nothing
        if (!(r.all_flags & RECORDER_SYSCALLS)) UnpinLink(a.dir + "/" + kPinExitLink);
      } else {
        // Another build's map (or half a set): its entries can only be dropped whole.
        DeleteEntry(a.dir, p, a.cgid);
      }
      remaining = TrackedIds(p.map.fd).size();
    }
    // The caller's flock makes "0 left" final: no track can slip in before the unpin.
    if (remaining == 0) {
      p = Pins();
      RemoveAll(a.dir);
    }
    return Napi::Number::New(env, (double)remaining);
  } catch (const Failure &f) {
    return Throw(env, f);
  }
}

// recorderTracked(pinDir) -> cgroup ids
Napi::Value RecorderTracked(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  RecorderArgs a;
  if (!ParseRecorderArgs(info, false, &a)) return env.Undefined();
  try {
    Napi::Array out = Napi::Array::New(env);
    Fd map = OpenTrackedMap(a.dir);
    if (map.fd < 0) return out;
    for (uint64_t id : TrackedIds(map.fd)) out.Set(out.Length(), Napi::BigInt::New(env, id));
    return out;
  } catch (const Failure &f) {
    return Throw(env, f);
  }
}

// ---------------------------------------------------------------------------
// libseccomp: syscall names and numbers, and the filter runc 1.1.5 would build
// from an OCI linux.seccomp (libcontainer/specconv + libcontainer/seccomp).

struct ArchName {
  const char *oci;
  const char *name;
  uint32_t token;
};

// runc 1.1.5's list of architectures, no more.
const ArchName kArchs[] = {
    {"SCMP_ARCH_X86", "x86", SCMP_ARCH_X86},
    {"SCMP_ARCH_X86_64", "x86_64", SCMP_ARCH_X86_64},
    {"SCMP_ARCH_X32", "x32", SCMP_ARCH_X32},
    {"SCMP_ARCH_ARM", "arm", SCMP_ARCH_ARM},
    {"SCMP_ARCH_AARCH64", "aarch64", SCMP_ARCH_AARCH64},
    {"SCMP_ARCH_MIPS", "mips", SCMP_ARCH_MIPS},
    {"SCMP_ARCH_MIPS64", "mips64", SCMP_ARCH_MIPS64},
    {"SCMP_ARCH_MIPS64N32", "mips64n32", SCMP_ARCH_MIPS64N32},
    {"SCMP_ARCH_MIPSEL", "mipsel", SCMP_ARCH_MIPSEL},
    {"SCMP_ARCH_MIPSEL64", "mipsel64", SCMP_ARCH_MIPSEL64},
    {"SCMP_ARCH_MIPSEL64N32", "mipsel64n32", SCMP_ARCH_MIPSEL64N32},
    {"SCMP_ARCH_PPC", "ppc", SCMP_ARCH_PPC},
    {"SCMP_ARCH_PPC64", "ppc64", SCMP_ARCH_PPC64},
    {"SCMP_ARCH_PPC64LE", "ppc64le", SCMP_ARCH_PPC64LE},
    {"SCMP_ARCH_S390", "s390", SCMP_ARCH_S390},
    {"SCMP_ARCH_S390X", "s390x", SCMP_ARCH_S390X},
};

const ArchName *ArchByName(const std::string &s, bool oci_only) {
  for (const ArchName &a : kArchs)
    if (s == a.oci || (!oci_only && s == a.name)) return &a;
  return nullptr;
}

Failure UnknownArch(const std::string &s) { return Failure{"unknown architecture \"" + s + "\"", EINVAL}; }

// libseccomp numbers x32 calls with __X32_SYSCALL_BIT set; the recorder and our
// callers number them without it, like the other ABIs.
int ToScmpNr(const ArchName &a, int nr) { return a.token == SCMP_ARCH_X32 && nr >= 0 ? nr | (int)RECORDER_X32_BIT : nr; }
int FromScmpNr(const ArchName &a, int nr) { return a.token == SCMP_ARCH_X32 && nr >= 0 ? nr & ~(int)RECORDER_X32_BIT : nr; }

// seccompResolve(arch, nr) -> name | undefined
Napi::Value SeccompResolve(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string arch = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  const ArchName *a = ArchByName(arch, false);
  if (!a) return Throw(env, UnknownArch(arch));
  if (!info[1].IsNumber()) return env.Undefined();
  double d = info[1].As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d != std::floor(d) || d >= RECORDER_X32_BIT) return env.Undefined();
  char *name = seccomp_syscall_resolve_num_arch(a->token, ToScmpNr(*a, (int)d));
  if (!name) return env.Undefined();
  Napi::String out = Napi::String::New(env, name);
  free(name);
  return out;
}

// seccompNumber(name, arch) -> nr | undefined (also for libseccomp's negative pseudo numbers)
Napi::Value SeccompNumber(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string arch = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  const ArchName *a = ArchByName(arch, false);
  if (!a) return Throw(env, UnknownArch(arch));
  if (!info[0].IsString()) return env.Undefined();
  int nr = seccomp_syscall_resolve_name_arch(a->token, info[0].As<Napi::String>().Utf8Value().c_str());
  if (nr < 0) return env.Undefined();
  return Napi::Number::New(env, FromScmpNr(*a, nr));
}

Napi::Value SeccompNativeArch(const Napi::CallbackInfo &info) {
  uint32_t token = seccomp_arch_native();
  for (const ArchName &a : kArchs)
    if (a.token == token) return Napi::String::New(info.Env(), a.oci);
  return Napi::String::New(info.Env(), "SCMP_ARCH_NATIVE");
}

bool Absent(const Napi::Value &v) { return v.IsUndefined() || v.IsNull(); }

Failure BadProfile(const std::string &what) { return Failure{"the seccomp profile's " + what, EINVAL}; }

// Profile integers, as runc decodes them into uint64: JSON numbers while exact,
// bigints, and strings of decimal digits (values past 2^53).
uint64_t ProfileU64(const Napi::Value &v, const std::string &what) {
  if (v.IsString()) {
    std::string s = v.As<Napi::String>().Utf8Value();
    if (!s.empty() && s.size() <= 20 && s.find_first_not_of("0123456789") == std::string::npos) {
      errno = 0;
      unsigned long long x = strtoull(s.c_str(), nullptr, 10);
      if (errno == 0) return x;
    }
  } else {
    uint64_t x;
    if (U64Arg(v, &x)) return x;
  }
  throw BadProfile(what + " is not an integer between 0 and 2^64-1");
}

std::string ProfileString(const Napi::Value &v, const std::string &what) {
  if (!v.IsString()) throw BadProfile(what + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

Napi::Array ProfileArray(const Napi::Value &v, const std::string &what) {
  if (!v.IsArray()) throw BadProfile(what + " must be an array");
  return v.As<Napi::Array>();
}

std::string Quoted(const std::string &s) { return "\"" + s + "\""; }

// runc's action table: KILL is KILL_THREAD; ERRNO and TRACE return errnoRet, else EPERM.
bool ActionValue(const std::string &name, bool has_errno, uint64_t errno_ret, uint32_t *out) {
  uint32_t ret = has_errno ? (uint32_t)errno_ret : EPERM;
  if (name == "SCMP_ACT_KILL" || name == "SCMP_ACT_KILL_THREAD") *out = SCMP_ACT_KILL_THREAD;
  else if (name == "SCMP_ACT_KILL_PROCESS") *out = SCMP_ACT_KILL_PROCESS;
  else if (name == "SCMP_ACT_TRAP") *out = SCMP_ACT_TRAP;
  else if (name == "SCMP_ACT_ERRNO") *out = SCMP_ACT_ERRNO(ret);
  else if (name == "SCMP_ACT_TRACE") *out = SCMP_ACT_TRACE(ret);
  else if (name == "SCMP_ACT_ALLOW") *out = SCMP_ACT_ALLOW;
  else if (name == "SCMP_ACT_LOG") *out = SCMP_ACT_LOG;
  else if (name == "SCMP_ACT_NOTIFY") *out = SCMP_ACT_NOTIFY;
  else return false;
  return true;
}

bool OperatorValue(const std::string &name, enum scmp_compare *out) {
  static const struct {
    const char *name;
    enum scmp_compare op;
  } ops[] = {{"SCMP_CMP_NE", SCMP_CMP_NE}, {"SCMP_CMP_LT", SCMP_CMP_LT}, {"SCMP_CMP_LE", SCMP_CMP_LE}, {"SCMP_CMP_EQ", SCMP_CMP_EQ},
             {"SCMP_CMP_GE", SCMP_CMP_GE}, {"SCMP_CMP_GT", SCMP_CMP_GT}, {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ}};
  for (const auto &o : ops)
    if (name == o.name) {
      *out = o.op;
      return true;
    }
  return false;
}

struct ProfileRule {
  std::string name;
  std::string action_name;
  uint32_t action;
  std::vector<struct scmp_arg_cmp> args;
};

// JSON.parse turns integers past 2^53 into the nearest double, while runc reads
// them exactly: integer literals of 16+ digits outside strings are quoted first
// so they arrive as digit strings. Strings are matched whole, so nothing inside
// one is touched.
Napi::Value ParseProfileText(Napi::Env env, const std::string &text) {
  Napi::Object global = env.Global();
  Napi::Function regexp = global.Get("RegExp").As<Napi::Function>();
  Napi::Object re = regexp.New({Napi::String::New(env, R"("(?:[^"\\]|\\.)*"|(?<![\d.eE+-])(-?\d{16,})(?![\d.eE]))"), Napi::String::New(env, "g")});
  Napi::Function quote = Napi::Function::New(env, [](const Napi::CallbackInfo &ci) -> Napi::Value {
    if (ci[1].IsString()) return Napi::String::New(ci.Env(), "\"" + ci[1].As<Napi::String>().Utf8Value() + "\"");
    return ci[0];
  });
  Napi::String str = Napi::String::New(env, text);
  Napi::Value quoted = str.ToObject().Get("replace").As<Napi::Function>().Call(str, {re, quote});
  Napi::Value parsed;
  if (!env.IsExceptionPending()) parsed = global.Get("JSON").As<Napi::Object>().Get("parse").As<Napi::Function>().Call({quoted});
  if (env.IsExceptionPending()) {
    Napi::Error e = env.GetAndClearPendingException();
    throw Failure{"the seccomp profile is not valid JSON: " + e.Message(), EINVAL};
  }
  return parsed;
}

struct FilterCtx {
  scmp_filter_ctx ctx = nullptr;
  ~FilterCtx() {
    if (ctx) seccomp_release(ctx);
  }
};

// Builds the profile the way runc 1.1.5 does and returns the exported BPF's
// instruction count (0 when runc would install no filter).
size_t CompileProfile(const Napi::Value &v) {
  if (!v.IsObject() || v.IsArray()) throw Failure{"the seccomp profile must be a JSON object (an OCI linux.seccomp)", EINVAL};
  Napi::Object p = v.As<Napi::Object>();
  std::string def_name = Absent(p.Get("defaultAction")) ? "" : ProfileString(p.Get("defaultAction"), "defaultAction");
  Napi::Array syscalls = Absent(p.Get("syscalls")) ? Napi::Array::New(v.Env()) : ProfileArray(p.Get("syscalls"), "syscalls");
  // runc: neither a default action nor rules means seccomp is off.
  if (def_name.empty() && syscalls.Length() == 0) return 0;

  std::vector<uint32_t> archs;
  if (!Absent(p.Get("architectures"))) {
    Napi::Array list = ProfileArray(p.Get("architectures"), "architectures");
    for (uint32_t i = 0; i < list.Length(); i++) {
      std::string s = ProfileString(list.Get(i), "architectures[" + std::to_string(i) + "]");
      const ArchName *a = ArchByName(s, true);
      if (!a) throw UnknownArch(s);
      archs.push_back(a->token);
    }
  }

  bool def_has_errno = !Absent(p.Get("defaultErrnoRet"));
  uint64_t def_errno = def_has_errno ? ProfileU64(p.Get("defaultErrnoRet"), "defaultErrnoRet") : 0;
  uint32_t def_action;
  if (!ActionValue(def_name, def_has_errno, def_errno, &def_action)) throw Failure{"unknown action " + Quoted(def_name), EINVAL};

  std::vector<ProfileRule> rules;
  for (uint32_t i = 0; i < syscalls.Length(); i++) {
    std::string where = "syscalls[" + std::to_string(i) + "]";
    Napi::Value rv = syscalls.Get(i);
    if (!rv.IsObject() || rv.IsArray()) throw BadProfile(where + " must be an object");
    Napi::Object r = rv.As<Napi::Object>();
    std::string action_name = ProfileString(r.Get("action"), where + ".action");
    bool has_errno = !Absent(r.Get("errnoRet"));
    uint64_t errno_ret = has_errno ? ProfileU64(r.Get("errnoRet"), where + ".errnoRet") : 0;
    uint32_t action;
    if (!ActionValue(action_name, has_errno, errno_ret, &action)) throw Failure{"unknown action " + Quoted(action_name), EINVAL};
    Napi::Array names = Absent(r.Get("names")) ? Napi::Array::New(v.Env()) : ProfileArray(r.Get("names"), where + ".names");
    Napi::Array args = Absent(r.Get("args")) ? Napi::Array::New(v.Env()) : ProfileArray(r.Get("args"), where + ".args");
    for (uint32_t n = 0; n < names.Length(); n++) {
      ProfileRule rule{ProfileString(names.Get(n), where + ".names[" + std::to_string(n) + "]"), action_name, action, {}};
      for (uint32_t k = 0; k < args.Length(); k++) {
        std::string aw = where + ".args[" + std::to_string(k) + "]";
        Napi::Value avv = args.Get(k);
        if (!avv.IsObject() || avv.IsArray()) throw BadProfile(aw + " must be an object");
        Napi::Object av = avv.As<Napi::Object>();
        std::string op_name = Absent(av.Get("op")) ? "" : ProfileString(av.Get("op"), aw + ".op");
        enum scmp_compare op;
        if (!OperatorValue(op_name, &op)) throw Failure{"unknown operator " + Quoted(op_name) + " in the rule for " + Quoted(rule.name), EINVAL};
        uint64_t index = Absent(av.Get("index")) ? 0 : ProfileU64(av.Get("index"), aw + ".index");
        uint64_t value = Absent(av.Get("value")) ? 0 : ProfileU64(av.Get("value"), aw + ".value");
        uint64_t value2 = Absent(av.Get("valueTwo")) ? 0 : ProfileU64(av.Get("valueTwo"), aw + ".valueTwo");
        // Index range is checked when the rule is added, as runc does (not for skipped rules).
        rule.args.push_back({(unsigned int)std::min<uint64_t>(index, 0xffffffffu), op, value, value2});
      }
      rules.push_back(std::move(rule));
    }
  }

  // runc's NOTIFY restrictions: runc itself must still write the listener fd to its parent.
  if (def_action == SCMP_ACT_NOTIFY) throw Failure{"SCMP_ACT_NOTIFY cannot be the default action", EINVAL};
  for (const ProfileRule &r : rules) {
    if (r.action != SCMP_ACT_NOTIFY) continue;
    if (seccomp_api_get() < 6) throw Failure{"SCMP_ACT_NOTIFY needs libseccomp API level 6 (libseccomp 2.5 and Linux 5.7)", ENOTSUP};
    if (r.name == "write") throw Failure{"SCMP_ACT_NOTIFY cannot be used for the write syscall", EINVAL};
  }

  // From here on the order is runc's InitSeccomp: the first error it would hit is ours too.
  FilterCtx f;
  f.ctx = seccomp_init(def_action);
  if (!f.ctx) throw Failure{"libseccomp rejected the default action " + Quoted(def_name), EINVAL};
  for (uint32_t token : archs) {
    int rc = seccomp_arch_add(f.ctx, token);
    if (rc != 0 && rc != -EEXIST) {
      std::string name;
      for (const ArchName &a : kArchs)
        if (a.token == token) name = a.oci;
      throw Failure{"libseccomp rejected the architecture " + Quoted(name) + ": " + strerror(-rc), -rc};
    }
  }

  if (!Absent(p.Get("flags"))) {
    Napi::Array flags = ProfileArray(p.Get("flags"), "flags");
    for (uint32_t i = 0; i < flags.Length(); i++) {
      std::string flag = ProfileString(flags.Get(i), "flags[" + std::to_string(i) + "]");
      int rc = 0;
      if (flag == "SECCOMP_FILTER_FLAG_TSYNC") continue;  // runc always synchronizes threads
      if (flag == "SECCOMP_FILTER_FLAG_LOG") rc = seccomp_attr_set(f.ctx, SCMP_FLTATR_CTL_LOG, 1);
      else if (flag == "SECCOMP_FILTER_FLAG_SPEC_ALLOW") rc = seccomp_attr_set(f.ctx, SCMP_FLTATR_CTL_SSB, 1);
      else if (flag == "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV") throw Failure{"the seccomp flag SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV needs libseccomp 2.6; this build has 2.5", ENOTSUP};
      else throw Failure{"unknown seccomp flag " + Quoted(flag), EINVAL};
      if (rc != 0) throw Failure{"libseccomp rejected the seccomp flag " + flag + ": " + strerror(-rc), -rc};
    }
  }
  int rc = seccomp_attr_set(f.ctx, SCMP_FLTATR_CTL_NNP, 0);
  if (rc != 0) throw Failure{std::string("libseccomp cannot leave no_new_privs alone: ") + strerror(-rc), -rc};

  for (const ProfileRule &r : rules) {
    if (r.name.empty()) throw Failure{"a rule has an empty syscall name", EINVAL};
    if (r.action == def_action) continue;  // redundant; libseccomp would refuse it
    // Resolved for the native ABI, like runc: libseccomp maps the number (or its pseudo
    // number for calls only other ABIs have) onto every architecture in the filter.
    int nr = seccomp_syscall_resolve_name(r.name.c_str());
    if (nr == __NR_SCMP_ERROR) continue;  // runc ignores names libseccomp does not know
    std::string what = "the rule for " + Quoted(r.name) + " (action " + r.action_name + ", " + std::to_string(r.args.size()) +
                       (r.args.size() == 1 ? " condition)" : " conditions)");
    bool shared_index = false;
    unsigned int seen[6] = {0, 0, 0, 0, 0, 0};
    for (const struct scmp_arg_cmp &c : r.args) {
      // libseccomp-golang's MakeCondition refuses these before runc counts indexes.
    if (c.arg > 5) throw Failure{"argument index " + std::to_string(c.arg) + " in the rule for " + Quoted(r.name) + " is out of range (0-5)", EINVAL};
      if (++seen[c.arg] > 1) shared_index = true;
    }
    // Two conditions on one argument can only be ORed: runc then adds one rule per condition.
    if (shared_index) {
      for (const struct scmp_arg_cmp &c : r.args) {
        rc = seccomp_rule_add_array(f.ctx, r.action, nr, 1, &c);
        if (rc != 0) throw Failure{"libseccomp rejected " + what + ": " + strerror(-rc), -rc};
      }
    } else {
      rc = seccomp_rule_add_array(f.ctx, r.action, nr, (unsigned int)r.args.size(), r.args.empty() ? nullptr : r.args.data());
      if (rc != 0) throw Failure{"libseccomp rejected " + what + ": " + strerror(-rc), -rc};
    }
  }

  // Exported, never loaded: the count is what the kernel would check against BPF_MAXINSNS
  // (runc then prepends its -ENOSYS stub: a handful more per architecture).
  Fd mem(memfd_create("hyperbox-seccomp", MFD_CLOEXEC));
  if (mem.fd < 0) {
    int err = errno;
    throw Failure{std::string("cannot create a memfd for the seccomp filter: ") + strerror(err), err};
  }
  rc = seccomp_export_bpf(f.ctx, mem.fd);
  if (rc != 0) throw Failure{std::string("libseccomp could not generate the filter: ") + strerror(-rc), -rc};
  struct stat st;
  if (fstat(mem.fd, &st) != 0) {
    int err = errno;
    throw Failure{std::string("cannot measure the seccomp filter: ") + strerror(err), err};
  }
  size_t instructions = (size_t)st.st_size / 8;  // sizeof(struct sock_filter)
  if (instructions > 4096)
    throw Failure{"the seccomp filter has " + std::to_string(instructions) + " BPF instructions, more than the kernel's limit of 4096 (BPF_MAXINSNS)", E2BIG};
  return instructions;
}

// seccompCompile(profileJson) -> { instructions }
Napi::Value SeccompCompile(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  try {
    Napi::Value profile = info[0].IsString() ? ParseProfileText(env, info[0].As<Napi::String>().Utf8Value()) : info[0];
    size_t n = CompileProfile(profile);
    Napi::Object out = Napi::Object::New(env);
    out.Set("instructions", Napi::Number::New(env, (double)n));
    return out;
  } catch (const Failure &f) {
    return Throw(env, f);
  }
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("findRunc", Napi::Function::New(env, FindRunc));
  exports.Set("configDir", Napi::Function::New(env, ConfigDir));
  exports.Set("execRunc", Napi::Function::New(env, ExecRunc));
  exports.Set("spawnRestoreWatcher", Napi::Function::New(env, SpawnRestoreWatcher));
  exports.Set("flock", Napi::Function::New(env, Flock));
  exports.Set("recorderTrack", Napi::Function::New(env, RecorderTrack));
  exports.Set("recorderRead", Napi::Function::New(env, RecorderRead));
  exports.Set("recorderUntrack", Napi::Function::New(env, RecorderUntrack));
  exports.Set("recorderLatency", Napi::Function::New(env, RecorderLatency));
  exports.Set("recorderNetAttach", Napi::Function::New(env, RecorderNetAttach));
  exports.Set("recorderTracked", Napi::Function::New(env, RecorderTracked));
  exports.Set("seccompResolve", Napi::Function::New(env, SeccompResolve));
  exports.Set("seccompNumber", Napi::Function::New(env, SeccompNumber));
  exports.Set("seccompNativeArch", Napi::Function::New(env, SeccompNativeArch));
  exports.Set("seccompCompile", Napi::Function::New(env, SeccompCompile));
  RegisterMount(env, exports);
  RegisterPsi(env, exports);
  libbpf_set_print(LibbpfPrint);
  return exports;
}

}  // namespace

NODE_API_MODULE(hyperbox, Init)
