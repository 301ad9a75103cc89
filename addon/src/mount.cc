// Mount primitives for an EROFS rootfs: the cached image mounted read-only
// (file-backed, or through a loop device), an overlay on top, and unmounting.
// Reached only through src/native/index.ts.
#include <napi.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <string>

namespace {

Napi::Value ThrowErr(Napi::Env env, const std::string &message, int err) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("errno", Napi::Number::New(env, err));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Value ThrowSys(Napi::Env env, const std::string &what, int err) { return ThrowErr(env, what + ": " + strerror(err), err); }

// errno is read before the message is built: allocating may clobber it.
Napi::Value ThrowLast(Napi::Env env, const char *syscall, const std::string &path) {
  int err = errno;
  return ThrowSys(env, std::string(syscall) + " " + path, err);
}

// No descriptor outlives a call: the Node process may go on to exec runc.
struct Fd {
  int fd = -1;
  explicit Fd(int f = -1) : fd(f) {}
  Fd(const Fd &) = delete;
  Fd &operator=(const Fd &) = delete;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

// A string argument, or false after throwing a TypeError-like error (errno EINVAL).
bool StrArg(const Napi::CallbackInfo &info, size_t i, const char *name, std::string *out) {
  if (!info[i].IsString()) {
    ThrowErr(info.Env(), std::string(name) + " must be a string", EINVAL);
    return false;
  }
  *out = info[i].As<Napi::String>().Utf8Value();
  if (out->empty() || out->find('\0') != std::string::npos) {
    ThrowErr(info.Env(), std::string(name) + " must be a non-empty path without NUL bytes", EINVAL);
    return false;
  }
  return true;
}

// The N of "/dev/loopN", or -1.
long LoopNumber(const std::string &dev) {
  static const std::string prefix = "/dev/loop";
  if (dev.compare(0, prefix.size(), prefix) != 0 || dev.size() == prefix.size() || dev.size() > prefix.size() + 9) return -1;
  long n = 0;
  for (size_t i = prefix.size(); i < dev.size(); i++) {
    if (dev[i] < '0' || dev[i] > '9') return -1;
    n = n * 10 + (dev[i] - '0');
  }
  return n;
}

// EBUSY from LOOP_CONFIGURE means another attacher took the device GET_FREE named.
constexpr int kLoopAttempts = 8;

// mountErofs(image, target, forceLoop) -> "/dev/loopN" | null
Napi::Value MountErofs(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string image, target;
  if (!StrArg(info, 0, "image", &image) || !StrArg(info, 1, "target", &target)) return env.Undefined();
  bool force_loop = info[2].ToBoolean().Value();
  // MS_RDONLY only: nodev/nosuid on the rootfs would break containers that rely on them.
  if (!force_loop) {
    if (mount(image.c_str(), target.c_str(), "erofs", MS_RDONLY, nullptr) == 0) return env.Null();
    int err = errno;
    // ENOTBLK: the kernel's erofs mounts block devices only (file-backed mounts came in 6.12).
    if (err != ENOTBLK) return ThrowSys(env, "mount erofs " + image + " on " + target, err);
  }

  Fd img(open(image.c_str(), O_RDONLY | O_CLOEXEC));
  if (img.fd < 0) return ThrowLast(env, "open", image);
  Fd ctl(open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (ctl.fd < 0) return ThrowLast(env, "open", "/dev/loop-control");

  std::string dev;
  int loop_fd = -1;
  for (int attempt = 0; attempt < kLoopAttempts && loop_fd < 0; attempt++) {
    int n = ioctl(ctl.fd, LOOP_CTL_GET_FREE);
    if (n < 0) return ThrowLast(env, "ioctl LOOP_CTL_GET_FREE", "/dev/loop-control");
    dev = "/dev/loop" + std::to_string(n);
    int fd = open(dev.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ThrowLast(env, "open", dev);
    struct loop_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.fd = (__u32)img.fd;
    cfg.block_size = 4096;
    // Autoclear: the device detaches itself when the mount (its last user) goes away.
    // No LO_FLAGS_DIRECT_IO: the image is read through the page cache.
    cfg.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
    strncpy((char *)cfg.info.lo_file_name, image.c_str(), LO_NAME_SIZE - 1);
    if (ioctl(fd, LOOP_CONFIGURE, &cfg) == 0) {
      loop_fd = fd;
      break;
    }
    int err = errno;
    close(fd);
    if (err != EBUSY || attempt + 1 == kLoopAttempts) return ThrowSys(env, "ioctl LOOP_CONFIGURE " + dev + " (" + image + ")", err);
  }
  Fd loop(loop_fd);

  if (mount(dev.c_str(), target.c_str(), "erofs", MS_RDONLY, nullptr) != 0) {
    int err = errno;
    // Only our fd holds the device: clearing now (or autoclear on close) frees it.
    ioctl(loop.fd, LOOP_CLR_FD, 0);
    return ThrowSys(env, "mount erofs " + dev + " (" + image + ") on " + target, err);
  }
  return Napi::String::New(env, dev);
}

// mountOverlay(lower, upper, work, target)
Napi::Value MountOverlay(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string lower, upper, work, target;
  if (!StrArg(info, 0, "lower", &lower) || !StrArg(info, 1, "upper", &upper) || !StrArg(info, 2, "work", &work) ||
      !StrArg(info, 3, "target", &target))
    return env.Undefined();
  // ',' separates options, ':' lower layers, '\' escapes them: such paths would be misread.
  for (const std::string *p : {&lower, &upper, &work}) {
    if (p->find_first_of(",:\\") != std::string::npos)
      return ThrowErr(env, "mount overlay on " + target + ": the path " + *p + " contains ',', ':' or '\\', which overlay options cannot carry unescaped", EINVAL);
  }
  std::string opts = "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work;
  if (mount("overlay", target.c_str(), "overlay", 0, opts.c_str()) != 0) {
    int err = errno;
    return ThrowSys(env, "mount overlay (" + opts + ") on " + target, err);
  }
  return env.Undefined();
}

// unmount(target, detach) -> true when unmounted, false when nothing was mounted there.
Napi::Value Unmount(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string target;
  if (!StrArg(info, 0, "target", &target)) return env.Undefined();
  int flags = UMOUNT_NOFOLLOW | (info[1].ToBoolean().Value() ? MNT_DETACH : 0);
  if (umount2(target.c_str(), flags) == 0) return Napi::Boolean::New(env, true);
  int err = errno;
  // EINVAL: not a mount point; ENOENT: no such path.
  if (err == EINVAL || err == ENOENT) return Napi::Boolean::New(env, false);
  return ThrowSys(env, std::string(flags & MNT_DETACH ? "umount2 (MNT_DETACH) " : "umount2 ") + target, err);
}

// loopBackingFile(dev) -> path | null
Napi::Value LoopBackingFile(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string dev;
  if (!StrArg(info, 0, "dev", &dev)) return env.Undefined();
  long n = LoopNumber(dev);
  if (n < 0) return ThrowErr(env, "loopBackingFile: " + dev + " is not a /dev/loopN path", EINVAL);
  // The loop/ directory exists only while a file is attached.
  std::string path = "/sys/block/loop" + std::to_string(n) + "/loop/backing_file";
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.fd < 0) {
    int err = errno;
    if (err == ENOENT) return env.Null();
    return ThrowSys(env, "open " + path, err);
  }
  std::string text;
  char buf[4096];
  ssize_t r;
  while ((r = read(fd.fd, buf, sizeof buf)) != 0) {
    if (r < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      // Read while the device detaches: no backing file any more.
      if (err == ENXIO || err == ENOENT) return env.Null();
      return ThrowSys(env, "read " + path, err);
    }
    text.append(buf, (size_t)r);
  }
  while (!text.empty() && text.back() == '\n') text.pop_back();
  if (text.empty()) return env.Null();
  return Napi::String::New(env, text);
}

// loopDetach(dev)
Napi::Value LoopDetach(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string dev;
  if (!StrArg(info, 0, "dev", &dev)) return env.Undefined();
  Fd fd(open(dev.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.fd < 0) return ThrowLast(env, "open", dev);
  // ENXIO: nothing attached, already free.
  if (ioctl(fd.fd, LOOP_CLR_FD, 0) != 0 && errno != ENXIO) return ThrowLast(env, "ioctl LOOP_CLR_FD", dev);
  return env.Undefined();
}

}  // namespace

void RegisterMount(Napi::Env env, Napi::Object exports) {
  exports.Set("mountErofs", Napi::Function::New(env, MountErofs));
  exports.Set("mountOverlay", Napi::Function::New(env, MountOverlay));
  exports.Set("unmount", Napi::Function::New(env, Unmount));
  exports.Set("loopBackingFile", Napi::Function::New(env, LoopBackingFile));
  exports.Set("loopDetach", Napi::Function::New(env, LoopDetach));
}
