/* Finding runc without PATH, shared by the launcher and the N-API addon so the
 * two can never disagree about which binary "runc" is. */
#ifndef HYPERBOX_RUNC_LOOKUP_H
#define HYPERBOX_RUNC_LOOKUP_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Where hyperbox keeps its host configuration (config.json, policy.json):
 * $HYPERBOX_CONFIG_DIR or /etc/hyperbox. */
const char *hyperbox_config_dir(void);

/* Resolves runc: $HYPERBOX_RUNC, then "runc" in <config dir>/config.json, then
 * PATH, then the usual sbin/bin directories; never the executable `self`
 * (compared by device and inode). Writes the path into out and returns 0, or
 * returns -1 with a one-sentence reason in why. */
int hyperbox_find_runc(const char *self, char *out, size_t outlen, char *why, size_t whylen);

#ifdef __cplusplus
}
#endif

#endif
