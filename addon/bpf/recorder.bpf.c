// SPDX-License-Identifier: GPL-2.0
// The learned-seccomp recorder: counts the syscalls of tracked cgroups, per ABI.
// One program for the whole host, so the path of a task nobody tracks must stay
// at one helper call and one hash lookup.
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "recorder.h"

#define NR_PRCTL_X86_64 157
#define PR_GET_PDEATHSIG 2
#define TS_COMPAT 0x0002

// Only the fields used, relocated against the running kernel's BTF (no vmlinux.h).
struct pt_regs {
	unsigned long di;
} __attribute__((preserve_access_index));

struct thread_info {
	__u32 status;
} __attribute__((preserve_access_index));

struct task_struct {
	struct thread_info thread_info;
} __attribute__((preserve_access_index));

// No preallocation: a 13 KiB value times max_entries would otherwise be charged up front.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, RECORDER_MAX_TRACKED);
	__type(key, __u64);
	__type(value, struct recorder_entry);
} tracked SEC(".maps");

// tp_btf rather than raw_tracepoint: same attach cost, but regs and the task are
// typed pointers the program can read directly instead of through probe_read.
SEC("tp_btf/sys_enter")
int BPF_PROG(record_sys_enter, struct pt_regs *regs, long id)
{
	__u64 cgid = bpf_get_current_cgroup_id();
	struct recorder_entry *e = bpf_map_lookup_elem(&tracked, &cgid);
	if (!e)
		return 0;
	if (!(e->flags & RECORDER_LEARN))
		return 0;

	struct task_struct *task = bpf_get_current_task_btf();
	int compat = task->thread_info.status & TS_COMPAT;

	if (!e->armed) {
		// runc asks for its parent-death signal once the rootfs is ready and just
		// before it installs the container's seccomp filter: its own mount and
		// pivot_root work must not end up in the learned profile.
		if (id == NR_PRCTL_X86_64 && !compat && regs->di == PR_GET_PDEATHSIG)
			e->armed = 1;
		return 0;
	}

	// One increment per branch: with a shared slot pointer clang computes the
	// address before the bounds check, which the verifier refuses.
	unsigned long nr = (unsigned long)id;
	if (compat) {
		if (nr < RECORDER_COMPAT_MAX) {
			__sync_fetch_and_add(&e->compat[nr], 1);
			return 0;
		}
	} else if (nr & RECORDER_X32_BIT) {
		nr &= ~(unsigned long)RECORDER_X32_BIT;
		if (nr < RECORDER_X32_MAX) {
			__sync_fetch_and_add(&e->x32[nr], 1);
			return 0;
		}
	} else if (nr < RECORDER_NATIVE_MAX) {
		__sync_fetch_and_add(&e->native[nr], 1);
		return 0;
	}
	__sync_fetch_and_add(&e->overflow, 1);
	return 0;
}

// Run from user space (BPF_PROG_RUN) to add flags to a live entry: rewriting the
// whole value with a map update would replace the element and lose increments
// that land on the old copy meanwhile.
SEC("syscall")
int set_flags(struct recorder_set_flags *args)
{
	__u64 cgid = args->cgroup_id;
	struct recorder_entry *e = bpf_map_lookup_elem(&tracked, &cgid);
	if (!e)
		return 1;
	e->flags |= args->flags;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
