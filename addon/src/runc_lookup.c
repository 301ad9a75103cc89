/* runc lookup: see runc_lookup.h. Plain C with no allocation beyond the stack
 * and one bounded read, because the launcher runs it on every runtime call. */
#define _GNU_SOURCE
#include "runc_lookup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const fallback_dirs[] = {
    "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin", NULL,
};

const char *hyperbox_config_dir(void) {
  const char *dir = getenv("HYPERBOX_CONFIG_DIR");
  return (dir && *dir) ? dir : "/etc/hyperbox";
}

/* An executable regular file that is not `self`. */
static int usable(const char *path, const struct stat *self_st) {
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || access(path, X_OK) != 0) return 0;
  if (self_st && st.st_dev == self_st->st_dev && st.st_ino == self_st->st_ino) return 0;
  return 1;
}

/* Extracts the string value of the top-level "runc" key from a small JSON
 * object. Only \" and \\ escapes are understood, which is all a path needs;
 * anything else makes the value unusable rather than misread. */
static int runc_from_config(char *out, size_t outlen) {
  char path[4096], buf[16384];
  snprintf(path, sizeof path, "%s/config.json", hyperbox_config_dir());
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  const char *p = strstr(buf, "\"runc\"");
  if (!p) return -1;
  p += 6;
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
  if (*p++ != ':') return -1;
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
  if (*p++ != '"') return -1;
  size_t i = 0;
  for (; *p && *p != '"'; p++) {
    if (*p == '\\') {
      p++;
      if (*p != '"' && *p != '\\' && *p != '/') return -1;
    }
    if (i + 1 >= outlen) return -1;
    out[i++] = *p;
  }
  if (*p != '"' || i == 0) return -1;
  out[i] = '\0';
  return 0;
}

int hyperbox_find_runc(const char *self, char *out, size_t outlen, char *why, size_t whylen) {
  struct stat self_st, *selfp = NULL;
  if (self && stat(self, &self_st) == 0) selfp = &self_st;

  /* An explicit choice that does not work is an error, not a reason to pick
   * some other runc behind the operator's back. */
  const char *env = getenv("HYPERBOX_RUNC");
  if (env && *env) {
    if (!usable(env, selfp)) {
      snprintf(why, whylen, "HYPERBOX_RUNC=%s is not an executable runc (and must not be hyperbox-runc itself)", env);
      return -1;
    }
    snprintf(out, outlen, "%s", env);
    return 0;
  }
  char configured[4096];
  if (runc_from_config(configured, sizeof configured) == 0) {
    if (!usable(configured, selfp)) {
      snprintf(why, whylen, "%s/config.json names runc \"%s\", which is not an executable runc", hyperbox_config_dir(),
               configured);
      return -1;
    }
    snprintf(out, outlen, "%s", configured);
    return 0;
  }
  const char *path = getenv("PATH");
  if (path && *path) {
    const char *start = path;
    for (;;) {
      const char *end = strchr(start, ':');
      size_t len = end ? (size_t)(end - start) : strlen(start);
      if (len > 0 && len < 4000) {
        char cand[4096];
        snprintf(cand, sizeof cand, "%.*s/runc", (int)len, start);
        if (usable(cand, selfp)) {
          snprintf(out, outlen, "%s", cand);
          return 0;
        }
      }
      if (!end) break;
      start = end + 1;
    }
  }
  for (const char *const *dir = fallback_dirs; *dir; dir++) {
    char cand[4096];
    snprintf(cand, sizeof cand, "%s/runc", *dir);
    if (usable(cand, selfp)) {
      snprintf(out, outlen, "%s", cand);
      return 0;
    }
  }
  snprintf(why, whylen, "cannot find runc: install it, or set HYPERBOX_RUNC or \"runc\" in %s/config.json",
           hyperbox_config_dir());
  return -1;
}
