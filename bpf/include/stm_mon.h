/* Monitoring events: drops (with the packet's first bytes), hits of rules marked `log` and new
 * flows, to stm_mon_ring for `monitor`. Nothing is emitted unless a monitor holds the lease in
 * stm_mon_cfg (it renews it every second, so a monitor that dies stops the events within
 * seconds); then each CPU paces its events (a generic cell rate algorithm: one per interval,
 * a burst on top), so a flood of drops costs a bounded number of events. Events not emitted
 * are counted in stm_mon_stats (paced, ring full) for the monitor to show. Admission reads
 * the coarse clock (a tick is resolution enough for a lease and a pace, at a fraction of the
 * precise clock's cost); an emitted event's timestamp is precise.
 *
 * The per-packet cost when nobody monitors is mon_wanted(): one array lookup on a drop,
 * a log hit or a new flow, nothing on a packet that passes. */
#ifndef STM_MON_H
#define STM_MON_H

#include "stm_maps.h"

static __always_inline void mon_stat(__u32 i)
{
	__u64 *c = bpf_map_lookup_elem(&stm_mon_stats, &i);
	if (c)
		*c += 1;
}

/* The lease when events of `kind` are asked for (its deadline is checked by mon_admit). */
static __always_inline struct stm_mon_cfg *mon_wanted(__u32 kind)
{
	__u32 zero = 0;
	struct stm_mon_cfg *c = bpf_map_lookup_elem(&stm_mon_cfg, &zero);
	return c && (c->kinds & (1u << kind)) ? c : NULL;
}

/* Whether an event of `ifindex` goes out now: the lease holds, the filter matches, the pace
 * allows. Counts what the pace holds back. */
static __always_inline int mon_admit(struct stm_mon_cfg *c, __u32 ifindex, __u64 now)
{
	if (now >= c->until_ns)
		return 0;
	if (c->ifindex && c->ifindex != ifindex)
		return 0;
	if (c->net_id) {
		struct stm_port *p = bpf_map_lookup_elem(&stm_ports, &ifindex);
		if (!p || p->net_id != c->net_id)
			return 0;
	}
	__u32 zero = 0;
	__u64 *tat = bpf_map_lookup_elem(&stm_mon_pace, &zero);
	if (!tat)
		return 0;
	__u64 t = *tat > now ? *tat : now;
	if (t - now > c->burst_ns) {
		mon_stat(STM_MON_STAT_PACED);
		return 0;
	}
	*tat = t + c->interval_ns;
	return 1;
}

/* A zeroed event in the ring, or NULL (counted) when the reader is behind. */
static __always_inline struct stm_mon_event *mon_reserve(__u64 now, __u32 ifindex, __u8 kind)
{
	struct stm_mon_event *e = bpf_ringbuf_reserve(&stm_mon_ring, sizeof(*e), 0);
	if (!e) {
		mon_stat(STM_MON_STAT_RING_FULL);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = now;
	e->ifindex = ifindex;
	e->kind = kind;
	return e;
}

static __always_inline void mon_submit(struct stm_mon_event *e)
{
	bpf_ringbuf_submit(e, 0);
	mon_stat(STM_MON_STAT_EMITTED);
}

/* The event of a drop of a `len`-byte frame at `ifindex`, reserved and filled but for the
 * frame's bytes (snapshot_len() of them go in); NULL when none goes out (no lease for drops,
 * filtered out, paced, ring full). */
static __always_inline struct stm_mon_event *mon_drop_event(__u32 ifindex, __u32 hook, __u32 reason, __u32 len)
{
	struct stm_mon_cfg *c = mon_wanted(STM_MON_DROP);
	if (!c || !mon_admit(c, ifindex, bpf_ktime_get_coarse_ns()))
		return NULL;
	struct stm_mon_event *e = mon_reserve(bpf_ktime_get_ns(), ifindex, STM_MON_DROP);
	if (e) {
		e->hook = hook;
		e->reason = reason;
		e->len = len;
	}
	return e;
}

/* How many of a frame's bytes an event carries (bounded for the verifier: a u64). */
static __always_inline __u64 snapshot_len(__u32 len)
{
	__u64 n = len;
	return n > STM_MON_SNAP ? STM_MON_SNAP : n;
}

/* A drop at a tc hook. Global functions: verified once, not at every drop site. */
STM_SHARED int stm_mon_drop(struct __sk_buff *skb, __u32 hook, __u32 reason)
{
	if (!skb)
		return 0;
	struct stm_mon_event *e = mon_drop_event(skb->ifindex, hook, reason, skb->len);
	if (!e)
		return 0;
	__u64 n = snapshot_len(skb->len);
	if (n && !bpf_skb_load_bytes(skb, 0, e->data, n))
		e->snap_len = n;
	mon_submit(e);
	return 0;
}

STM_SHARED int stm_mon_drop_xdp(struct xdp_md *ctx, __u32 reason)
{
	if (!ctx)
		return 0;
	__u32 len = ctx->data_end - ctx->data;
	struct stm_mon_event *e = mon_drop_event(ctx->ingress_ifindex, STM_HOOK_XDP, reason, len);
	if (!e)
		return 0;
	__u64 n = snapshot_len(len);
	if (n && !bpf_xdp_load_bytes(ctx, 0, e->data, n))
		e->snap_len = n;
	mon_submit(e);
	return 0;
}

#endif
