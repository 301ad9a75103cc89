/* The syscall recorder's map layout, shared by the BPF program and the addon. */
#ifndef HYPERBOX_RECORDER_H
#define HYPERBOX_RECORDER_H

#include <linux/types.h>

/* Entry flags. Bits other than LEARN are reserved for features that bring their own maps. */
#define RECORDER_LEARN (1u << 0)
#define RECORDER_TELEMETRY (1u << 1)

/* Room above the highest syscall numbers of Linux 6.x on each ABI; x32 has its own 512-547 range. */
#define RECORDER_NATIVE_MAX 512
#define RECORDER_COMPAT_MAX 512
#define RECORDER_X32_MAX 576

#define RECORDER_MAX_TRACKED 1024

#define RECORDER_X32_BIT 0x40000000u

struct recorder_entry {
	__u32 flags;
	/* Set by the program itself at runc's prctl(PR_GET_PDEATHSIG); counting starts after it. */
	__u32 armed;
	/* Numbers beyond the arrays below (or negative ones): never dropped silently. */
	__u64 overflow;
	__u64 native[RECORDER_NATIVE_MAX];
	__u64 compat[RECORDER_COMPAT_MAX];
	__u64 x32[RECORDER_X32_MAX];
};

/* Context of the set_flags program: ORs flags into an existing entry in place. */
struct recorder_set_flags {
	__u64 cgroup_id;
	__u32 flags;
	__u32 reserved;
};

#endif
