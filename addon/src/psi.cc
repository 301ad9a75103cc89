// PSI triggers for the tuner: a trigger is a pressure file opened for writing
// with "some <stall us> <window us>" written to it; the kernel then raises
// POLLPRI on that descriptor whenever the cgroup stalls that long within one
// window. pollPressure waits for any of them on a worker thread, so the
// tuner's event loop stays free. Reached only through src/native/index.ts.
#include <napi.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace {

Napi::Value ThrowPsi(Napi::Env env, const std::string &what, int err) {
  Napi::Error e = Napi::Error::New(env, what + ": " + strerror(err));
  e.Set("errno", Napi::Number::New(env, err));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

// psiTriggerOpen(path, stallUs, windowUs) -> fd. The descriptor is close-on-exec.
Napi::Value PsiTriggerOpen(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString() || !info[1].IsNumber() || !info[2].IsNumber()) return ThrowPsi(env, "psiTriggerOpen(path, stallUs, windowUs)", EINVAL);
  std::string path = info[0].As<Napi::String>().Utf8Value();
  double stall = info[1].As<Napi::Number>().DoubleValue();
  double window = info[2].As<Napi::Number>().DoubleValue();
  if (path.empty() || path.find('\0') != std::string::npos || !(stall > 0) || !(window > 0) || stall >= window || window > 4e9)
    return ThrowPsi(env, "psiTriggerOpen " + path + ": stall must be above 0 and below the window", EINVAL);
  int fd = open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return ThrowPsi(env, "open " + path, err);
  }
  char buf[64];
  int n = snprintf(buf, sizeof buf, "some %lu %lu", (unsigned long)stall, (unsigned long)window);
  // The kernel parses a NUL-terminated string: write it with the NUL.
  if (write(fd, buf, (size_t)n + 1) < 0) {
    int err = errno;
    close(fd);
    return ThrowPsi(env, std::string("cannot set a PSI trigger (") + buf + ") on " + path, err);
  }
  return Napi::Number::New(env, fd);
}

Napi::Value PsiTriggerClose(const Napi::CallbackInfo &info) {
  if (!info[0].IsNumber()) return ThrowPsi(info.Env(), "psiTriggerClose(fd)", EINVAL);
  close(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

// poll() on a worker thread; resolves with [{fd, events}] for the descriptors
// that reported anything (POLLPRI: the trigger fired; POLLERR: the cgroup is gone).
class PollWorker : public Napi::AsyncWorker {
 public:
  PollWorker(Napi::Env env, std::vector<int> fds, int timeoutMs)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), timeout_(timeoutMs) {
    for (int fd : fds) pfds_.push_back({fd, POLLPRI, 0});
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    int rc;
    do rc = poll(pfds_.data(), pfds_.size(), timeout_);
    while (rc < 0 && errno == EINTR);
    if (rc < 0) err_ = errno;
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (err_ != 0) {
      Napi::Error e = Napi::Error::New(env, std::string("poll: ") + strerror(err_));
      e.Set("errno", Napi::Number::New(env, err_));
      deferred_.Reject(e.Value());
      return;
    }
    Napi::Array out = Napi::Array::New(env);
    for (const pollfd &p : pfds_) {
      if (p.revents == 0) continue;
      Napi::Object o = Napi::Object::New(env);
      o.Set("fd", Napi::Number::New(env, p.fd));
      o.Set("events", Napi::Number::New(env, p.revents));
      out.Set(out.Length(), o);
    }
    deferred_.Resolve(out);
  }
  void OnError(const Napi::Error &e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::vector<pollfd> pfds_;
  int timeout_;
  int err_ = 0;
};

// pollPressure(fds, timeoutMs) -> Promise<{fd, events}[]>
Napi::Value PollPressure(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray() || !info[1].IsNumber()) return ThrowPsi(env, "pollPressure(fds, timeoutMs)", EINVAL);
  Napi::Array arr = info[0].As<Napi::Array>();
  std::vector<int> fds;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value v = arr.Get(i);
    if (!v.IsNumber()) return ThrowPsi(env, "pollPressure: fds must be numbers", EINVAL);
    fds.push_back(v.As<Napi::Number>().Int32Value());
  }
  auto *w = new PollWorker(env, fds, info[1].As<Napi::Number>().Int32Value());
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace

void RegisterPsi(Napi::Env env, Napi::Object exports) {
  exports.Set("psiTriggerOpen", Napi::Function::New(env, PsiTriggerOpen));
  exports.Set("psiTriggerClose", Napi::Function::New(env, PsiTriggerClose));
  exports.Set("pollPressure", Napi::Function::New(env, PollPressure));
  exports.Set("POLLPRI", Napi::Number::New(env, POLLPRI));
  exports.Set("POLLERR", Napi::Number::New(env, POLLERR));
}
