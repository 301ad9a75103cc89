/* The syscall recorder's map layout, shared by the BPF programs and the addon. */
#ifndef HYPERBOX_RECORDER_H
#define HYPERBOX_RECORDER_H

#include <linux/types.h>

/* Entry flags (RECORDER_FLAGS in src/native/index.ts). Counting serves both LEARN and SYSCALLS. */
#define RECORDER_LEARN (1u << 0)
#define RECORDER_SYSCALLS (1u << 1)
#define RECORDER_NET (1u << 2)
#define RECORDER_EXEC (1u << 3)

/* Room above the highest syscall numbers of Linux 6.x on each ABI; x32 has its own 512-547 range. */
#define RECORDER_NATIVE_MAX 512
#define RECORDER_COMPAT_MAX 512
#define RECORDER_X32_MAX 576

#define RECORDER_MAX_TRACKED 1024

#define RECORDER_X32_BIT 0x40000000u

#define RECORDER_EXEC_RING 64
#define RECORDER_FILENAME_MAX 256

struct recorder_exec {
	/* bpf_ktime_get_ns(): CLOCK_MONOTONIC. */
	__u64 time_ns;
	/* Host tgid, and the pid in the task's innermost pid namespace. */
	__u32 pid;
	__u32 ns_pid;
	char filename[RECORDER_FILENAME_MAX];
};

struct recorder_entry {
	__u32 flags;
	/* Set by the program itself at runc's prctl(PR_GET_PDEATHSIG); counting starts after it. */
	__u32 armed;
	/* Numbers beyond the arrays below (or negative ones): never dropped silently. */
	__u64 overflow;
	__u64 native[RECORDER_NATIVE_MAX];
	__u64 compat[RECORDER_COMPAT_MAX];
	__u64 x32[RECORDER_X32_MAX];
	/* NET: what the cgroup_skb programs saw, IP headers included. */
	__u64 rx_bytes;
	__u64 rx_packets;
	__u64 tx_bytes;
	__u64 tx_packets;
	/* SYSCALLS: returns not timed because the latency map was full. */
	__u64 latency_dropped;
	/* EXEC: every exec seen; the last RECORDER_EXEC_RING are kept at exec_total % RING. */
	__u64 exec_total;
	struct recorder_exec execs[RECORDER_EXEC_RING];
};

/* The latency map: one histogram per (cgroup, ABI, syscall), host-wide. */
#define RECORDER_LATENCY_MAX 16384
#define RECORDER_LATENCY_BUCKETS 64

#define RECORDER_ABI_NATIVE 0
#define RECORDER_ABI_COMPAT 1
#define RECORDER_ABI_X32 2
#define RECORDER_SYSCALL_KEY(abi, nr) (((__u32)(abi) << 16) | (__u32)(nr))

struct recorder_latency_key {
	__u64 cgroup_id;
	/* RECORDER_SYSCALL_KEY(abi, nr). */
	__u32 syscall;
	__u32 pad;
};

/* Bucket i >= 2 holds durations d with k = floor(log2 d), i = 2k + bit k-1 of d; 0 holds d < 2; 63 takes all from 2^32 ns up. */
struct recorder_latency {
	__u64 count;
	__u64 sum_ns;
	__u64 buckets[RECORDER_LATENCY_BUCKETS];
};

/* Context of the set_flags program: edits an entry's flags in place and reports back. */
#define RECORDER_OP_OR 0
#define RECORDER_OP_CLEAR 1

struct recorder_set_flags {
	__u64 cgroup_id;
	__u32 flags;
	/* RECORDER_OP_*. */
	__u32 op;
	/* Written by the program: the entry's flags afterwards (0 when absent), and the union over all entries. */
	__u32 entry_flags;
	__u32 all_flags;
};

#endif
