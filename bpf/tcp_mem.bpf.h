/* tcp_mem.bpf.h - whether TCP's memory is near its pressure mark, read through a socket's protocol (CO-RE): shared by the splice and short-circuit programs, which stop redirecting there. */
#ifndef PANDIT_TCP_MEM_BPF_H
#define PANDIT_TCP_MEM_BPF_H

/*
 * Why: past tcp_mem[1] (TCP's memory pressure) a send can stop short
 * however much room a socket's buffer shows, and a redirect into a peer's
 * receive queue can fail to charge it:
 *   - the splice program's redirects are sent by the peer's psock work
 *     item, which resends a partly sent skb from its start after it runs
 *     out of room (the kernel keeps the offset, then overwrites it), so a
 *     partial send duplicates bytes;
 *   - the short-circuit's ingress redirect fails the sender's send() with
 *     ENOMEM where TCP would make it wait.
 * The programs read the flag when they decide, but pressure can begin
 * between that and the send. So they stop earlier, from tcp_mem[0] on
 * (below it TCP does not regulate memory at all): from there the bytes
 * take the paths that flow control covers (the worker's relay, TCP).
 *
 * A memory cgroup limit on socket memory fails the same charges. Under
 * cgroup v1 socket buffers have a counter of their own once it has a
 * limit (memory.kmem.tcp.*): a socket whose cgroup, or one of its first
 * PANDIT_MEMCG_LEVELS ancestors, uses more than 7/8 of that limit is
 * tight too. Under v2 they share memory.max with the page cache, which
 * keeps a cgroup near its limit without any pressure, so its usage says
 * nothing here; the kernel's own signal is read instead, as TCP does: a
 * cgroup or ancestor whose reclaim struggles sets socket_pressure (a
 * jiffies deadline), and it is tight until then. That signal comes after
 * the fact (ARCHITECTURE, open problems).
 */

/* The fields of the kernel's struct proto read here (TCP's). */
struct proto {
	unsigned long *memory_pressure;	/* set above tcp_mem[1] */
	long *memory_allocated;		/* atomic_long_t: pages charged to TCP */
	long *sysctl_mem;		/* tcp_mem[3], pages */
} __attribute__((preserve_access_index));

/* The fields of the kernel's memory cgroup counters read here. */
struct pandit_atomic_long {
	long counter;
};

struct page_counter {
	struct pandit_atomic_long usage;	/* pages */
	unsigned long max;			/* memory.max, pages */
	struct page_counter *parent;
} __attribute__((preserve_access_index));

struct mem_cgroup {
	struct page_counter memory;	/* its parent counter is the parent cgroup's */
	struct page_counter tcpmem;	/* v1: socket buffers (memory.kmem.tcp.*) */
	__u64 socket_pressure;		/* jiffies until which sockets are under pressure */
} __attribute__((preserve_access_index));

#define PANDIT_MEMCG_LEVELS 8

/* Whether the counter pc or one of its first ancestors is past 7/8 of its
 * limit; 1 when it cannot be read. */
static __always_inline int counter_tight(struct page_counter *pc)
{
	for (int i = 0; i < PANDIT_MEMCG_LEVELS && pc; i++) {
		long usage = 0;
		unsigned long max = 0;
		struct page_counter *parent = NULL;
		if (bpf_core_read(&usage, sizeof(usage), &pc->usage.counter) < 0 ||
		    bpf_core_read(&max, sizeof(max), &pc->max) < 0 ||
		    bpf_core_read(&parent, sizeof(parent), &pc->parent) < 0)
			return 1;
		if (usage > 0 && (unsigned long)usage > max - max / 8)
			return 1;
		pc = parent;
	}
	return 0;
}

/* Whether memcg or one of its first ancestors is under socket pressure
 * (mem_cgroup_under_socket_pressure's test); 1 when it cannot be read. */
static __always_inline int memcg_pressure(struct mem_cgroup *memcg)
{
	__u64 now = bpf_jiffies64();
	for (int i = 0; i < PANDIT_MEMCG_LEVELS && memcg; i++) {
		__u64 until = 0;
		struct page_counter *parent = NULL;
		if (bpf_core_read(&until, sizeof(until), &memcg->socket_pressure) < 0 ||
		    bpf_core_read(&parent, sizeof(parent), &memcg->memory.parent) < 0)
			return 1;
		if ((__s64)(now - until) < 0)
			return 1;
		memcg = parent ? (struct mem_cgroup *)((char *)parent -
						       bpf_core_field_offset(struct mem_cgroup, memory))
			       : NULL;
	}
	return 0;
}

/* Whether the socket's memory cgroup memcg (NULL: none, the case unless
 * its socket memory is accounted) is tight: its v1 socket counter, or
 * socket pressure. */
static __always_inline int memcg_tight(struct mem_cgroup *memcg)
{
	if (!memcg)
		return 0;
	if (bpf_core_field_exists(memcg->tcpmem) && counter_tight(&memcg->tcpmem))
		return 1;
	return bpf_core_field_exists(memcg->socket_pressure) && memcg_pressure(memcg);
}

/* Whether TCP memory is past tcp_mem[0] or under pressure; 1 when it
 * cannot be read. */
static __always_inline int tcp_mem_tight(struct proto *prot)
{
	unsigned long *mp = NULL, pressure = 1;
	long *ap = NULL, *limits = NULL, allocated = 0, low = 0;
	if (!prot ||
	    bpf_core_read(&mp, sizeof(mp), &prot->memory_pressure) < 0 || !mp ||
	    bpf_probe_read_kernel(&pressure, sizeof(pressure), mp) < 0 || pressure ||
	    bpf_core_read(&ap, sizeof(ap), &prot->memory_allocated) < 0 || !ap ||
	    bpf_probe_read_kernel(&allocated, sizeof(allocated), ap) < 0 ||
	    bpf_core_read(&limits, sizeof(limits), &prot->sysctl_mem) < 0 || !limits ||
	    bpf_probe_read_kernel(&low, sizeof(low), limits) < 0)
		return 1;
	return allocated > low;
}

#endif
