// SPDX-License-Identifier: GPL-2.0
// The recorder behind learned seccomp and telemetry: per tracked cgroup it counts
// syscalls per ABI, times them, counts network traffic and logs execs.
// The sys_enter and exec programs run for the whole host, so the path of a task
// nobody tracks must stay at one helper call and one hash lookup.
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "recorder.h"

#define NR_PRCTL_X86_64 157
#define PR_GET_PDEATHSIG 2
#define TS_COMPAT 0x0002
#define EEXIST 17
// MAX_PID_NS_LEVEL: the deepest a pid namespace nests.
#define PID_NS_LEVEL_MAX 32
// Deeper cgroups than this under a tracked one are not looked through.
#define CGROUP_LEVEL_MAX 32

// Only the fields used, relocated against the running kernel's BTF (no vmlinux.h).
struct pt_regs {
	unsigned long di;
} __attribute__((preserve_access_index));

struct thread_info {
	__u32 status;
} __attribute__((preserve_access_index));

struct pid_namespace;

struct upid {
	int nr;
	struct pid_namespace *ns;
} __attribute__((preserve_access_index));

struct pid {
	unsigned int level;
	struct upid numbers[1];
} __attribute__((preserve_access_index));

struct task_struct {
	struct thread_info thread_info;
	int tgid;
	struct pid *thread_pid;
} __attribute__((preserve_access_index));

struct linux_binprm {
	const char *filename;
} __attribute__((preserve_access_index));

// No preallocation: a 30 KiB value times max_entries would otherwise be charged up front.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, RECORDER_MAX_TRACKED);
	__type(key, __u64);
	__type(value, struct recorder_entry);
} tracked SEC(".maps");

// Host-wide and bounded: a cgroup calling many distinct syscalls must not grow
// every entry by 64 KiB of histograms it mostly does not use.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, RECORDER_LATENCY_MAX);
	__type(key, struct recorder_latency_key);
	__type(value, struct recorder_latency);
} latency SEC(".maps");

// The syscall a traced task is in. Task storage: no lookup by pid, freed with the task.
struct recorder_start {
	__u64 start_ns;
	__u64 cgroup_id;
	__u32 syscall;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct recorder_start);
} starts SEC(".maps");

// The value a new latency record starts from: too big for the 512-byte stack.
struct recorder_latency latency_zero;

// Only for tasks of a traced cgroup: creating storage for every task would cost them all.
static __always_inline void start_timer(struct task_struct *task, __u64 cgid, __u32 syscall)
{
	struct recorder_start *s = bpf_task_storage_get(&starts, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!s)
		return;
	s->cgroup_id = cgid;
	s->syscall = syscall;
	s->start_ns = bpf_ktime_get_ns();
}

// tp_btf rather than raw_tracepoint: same attach cost, but regs and the task are
// typed pointers the program can read directly instead of through probe_read.
SEC("tp_btf/sys_enter")
int BPF_PROG(record_sys_enter, struct pt_regs *regs, long id)
{
	__u64 cgid = bpf_get_current_cgroup_id();
	struct recorder_entry *e = bpf_map_lookup_elem(&tracked, &cgid);
	if (!e)
		return 0;

	struct task_struct *task = bpf_get_current_task_btf();
	int compat = task->thread_info.status & TS_COMPAT;

	// Armed whatever the flags: the exec log waits for the same point.
	if (!e->armed) {
		// runc asks for its parent-death signal once the rootfs is ready and just
		// before it installs the container's seccomp filter: its own mount and
		// pivot_root work must not end up in the learned profile.
		if (id == NR_PRCTL_X86_64 && !compat && regs->di == PR_GET_PDEATHSIG)
			e->armed = 1;
		return 0;
	}
	__u32 flags = e->flags;
	if (!(flags & (RECORDER_LEARN | RECORDER_SYSCALLS)))
		return 0;

	// One increment per branch: with a shared slot pointer clang computes the
	// address before the bounds check, which the verifier refuses.
	unsigned long nr = (unsigned long)id;
	__u32 abi;
	if (compat) {
		abi = RECORDER_ABI_COMPAT;
		if (nr < RECORDER_COMPAT_MAX)
			__sync_fetch_and_add(&e->compat[nr], 1);
		else
			__sync_fetch_and_add(&e->overflow, 1);
	} else if (nr & RECORDER_X32_BIT) {
		abi = RECORDER_ABI_X32;
		nr &= ~(unsigned long)RECORDER_X32_BIT;
		if (nr < RECORDER_X32_MAX)
			__sync_fetch_and_add(&e->x32[nr], 1);
		else
			__sync_fetch_and_add(&e->overflow, 1);
	} else {
		abi = RECORDER_ABI_NATIVE;
		if (nr < RECORDER_NATIVE_MAX)
			__sync_fetch_and_add(&e->native[nr], 1);
		else
			__sync_fetch_and_add(&e->overflow, 1);
	}
	// Numbers that do not fit the key (negative ones) have no latency record.
	if ((flags & RECORDER_SYSCALLS) && nr <= 0xffff)
		start_timer(task, cgid, RECORDER_SYSCALL_KEY(abi, nr));
	return 0;
}

// floor(log2 d) by halving, then the next bit splits each power of two in two.
static __always_inline __u32 latency_bucket(__u64 d)
{
	if (d < 2)
		return 0;
	__u32 k = 0;
	__u64 x = d;
	if (x >> 32) {
		k += 32;
		x >>= 32;
	}
	if (x >> 16) {
		k += 16;
		x >>= 16;
	}
	if (x >> 8) {
		k += 8;
		x >>= 8;
	}
	if (x >> 4) {
		k += 4;
		x >>= 4;
	}
	if (x >> 2) {
		k += 2;
		x >>= 2;
	}
	if (x >> 1)
		k += 1;
	if (k >= 32)
		return RECORDER_LATENCY_BUCKETS - 1;
	return 2 * k + ((d >> (k - 1)) & 1);
}

// Attached only while some entry has SYSCALLS: every other task on the host
// pays one storage lookup here, so nothing may come before it.
SEC("tp_btf/sys_exit")
int BPF_PROG(record_sys_exit, struct pt_regs *regs, long ret)
{
	struct recorder_start *s = bpf_task_storage_get(&starts, bpf_get_current_task_btf(), 0, 0);
	if (!s || !s->start_ns)
		return 0;
	__u64 d = bpf_ktime_get_ns() - s->start_ns;
	s->start_ns = 0;

	struct recorder_latency_key key = {.cgroup_id = s->cgroup_id, .syscall = s->syscall, .pad = 0};
	struct recorder_latency *l = bpf_map_lookup_elem(&latency, &key);
	if (!l) {
		// Only for a cgroup still tracked: an untrack sweeping its records while
		// this call was in flight must not find a new one behind it.
		struct recorder_entry *e = bpf_map_lookup_elem(&tracked, &key.cgroup_id);
		if (!e || !(e->flags & RECORDER_SYSCALLS))
			return 0;
		long err = bpf_map_update_elem(&latency, &key, &latency_zero, BPF_NOEXIST);
		if (err && err != -EEXIST) {
			__sync_fetch_and_add(&e->latency_dropped, 1);
			return 0;
		}
		l = bpf_map_lookup_elem(&latency, &key);
		if (!l)
			return 0;
	}
	__u32 i = latency_bucket(d);
	__sync_fetch_and_add(&l->count, 1);
	__sync_fetch_and_add(&l->sum_ns, d);
	__sync_fetch_and_add(&l->buckets[i & (RECORDER_LATENCY_BUCKETS - 1)], 1);
	return 0;
}

// The pid as the task's own namespace numbers it: the innermost level of its struct pid.
static __always_inline __u32 ns_pid(struct task_struct *p)
{
	struct pid *tp = BPF_CORE_READ(p, thread_pid);
	unsigned int level = BPF_CORE_READ(tp, level);
	if (level > PID_NS_LEVEL_MAX)
		return 0;
	int nr = 0;
	// A variable index into a flexible array: offsets relocated, the read done by hand.
	__u64 off = bpf_core_field_offset(struct pid, numbers) + (__u64)level * bpf_core_type_size(struct upid) +
		    bpf_core_field_offset(struct upid, nr);
	bpf_probe_read_kernel(&nr, sizeof nr, (void *)tp + off);
	return nr;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(record_exec, struct task_struct *p, int old_pid, struct linux_binprm *bprm)
{
	__u64 cgid = bpf_get_current_cgroup_id();
	struct recorder_entry *e = bpf_map_lookup_elem(&tracked, &cgid);
	if (!e)
		return 0;
	// Not armed yet: runc's own execs (runc init) are no container's.
	if (!(e->flags & RECORDER_EXEC) || !e->armed)
		return 0;
	__u64 n = __sync_fetch_and_add(&e->exec_total, 1);
	struct recorder_exec *x = &e->execs[n % RECORDER_EXEC_RING];
	x->time_ns = bpf_ktime_get_ns();
	x->pid = p->tgid;
	x->ns_pid = ns_pid(p);
	bpf_probe_read_kernel_str(x->filename, sizeof x->filename, bprm->filename);
	return 0;
}

// The entry of the socket's cgroup, else of its deepest tracked ancestor: links are
// inherited, so a container that makes sub-cgroups is still counted.
static __always_inline struct recorder_entry *skb_entry(struct __sk_buff *skb)
{
	__u64 id = bpf_skb_cgroup_id(skb);
	struct recorder_entry *e = bpf_map_lookup_elem(&tracked, &id);
	if (e)
		return e;
	for (int level = 1; level < CGROUP_LEVEL_MAX; level++) {
		id = bpf_skb_ancestor_cgroup_id(skb, level);
		if (!id)
			break;
		struct recorder_entry *a = bpf_map_lookup_elem(&tracked, &id);
		if (a)
			e = a;
	}
	return e;
}

// Counters only: 1 lets every packet through, whatever other programs decide.
SEC("cgroup_skb/ingress")
int count_ingress(struct __sk_buff *skb)
{
	struct recorder_entry *e = skb_entry(skb);
	if (e && (e->flags & RECORDER_NET)) {
		__sync_fetch_and_add(&e->rx_bytes, skb->len);
		__sync_fetch_and_add(&e->rx_packets, 1);
	}
	return 1;
}

SEC("cgroup_skb/egress")
int count_egress(struct __sk_buff *skb)
{
	struct recorder_entry *e = skb_entry(skb);
	if (e && (e->flags & RECORDER_NET)) {
		__sync_fetch_and_add(&e->tx_bytes, skb->len);
		__sync_fetch_and_add(&e->tx_packets, 1);
	}
	return 1;
}

static long union_flags(void *map, __u64 *key, struct recorder_entry *e, __u32 *all)
{
	*all |= e->flags;
	return 0;
}

// Run from user space (BPF_PROG_RUN) to edit a live entry's flags: rewriting the
// whole value with a map update would replace the element and lose increments
// that land on the old copy meanwhile. Reports the flags left, so the caller
// knows when to drop the entry and whether anyone still needs sys_exit.
SEC("syscall")
int set_flags(struct recorder_set_flags *args)
{
	__u64 cgid = args->cgroup_id;
	int ret = 1;
	struct recorder_entry *e = bpf_map_lookup_elem(&tracked, &cgid);
	if (e) {
		if (args->op == RECORDER_OP_CLEAR)
			e->flags &= ~args->flags;
		else
			e->flags |= args->flags;
		args->entry_flags = e->flags;
		ret = 0;
	} else {
		args->entry_flags = 0;
	}
	__u32 all = 0;
	bpf_for_each_map_elem(&tracked, union_flags, &all, 0);
	args->all_flags = all;
	return ret;
}

char LICENSE[] SEC("license") = "GPL";
