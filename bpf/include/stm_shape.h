/* Egress caps: a token bucket per capped endpoint and per capped network.
 *
 * The bucket holds credit as sending time (ns): it fills at one ns per ns up to burst_ns,
 * and a packet of len bytes costs len × ns_per_byte >> STM_SHAPE_SHIFT. A packet the credit
 * does not cover is dropped (egress-cap) and counted in the bucket; nothing is queued (no
 * qdisc: a policer, which TCP reads as congestion).
 *
 * One bucket per cap for all CPUs, under a spin lock, not one per CPU. Per-CPU buckets
 * cannot hold a configured rate: each given the whole rate, a tenant whose flows spread over
 * N CPUs gets N times its cap; each given rate / N, one whose traffic lands on one CPU (one
 * flow, one RX queue) gets a fraction of it. scripts/bench measures both next to this design
 * (shape/bucket-*; figures in docs/benchmarks.md). Only capped endpoints and networks take
 * the lock; it costs when every CPU floods one cap at once. */
#ifndef STM_SHAPE_H
#define STM_SHAPE_H

#include "stm_drop.h"

/* The bucket arithmetic, apart from the maps so fixtures can drive it: refills `s` up to
 * `now`, then takes `len` bytes' worth of credit. Returns 1 (pass) or 0 (over the cap).
 * The caller holds s->lock. `now` may be older than s->last_ns (another CPU read the clock
 * later but took the lock first): no refill then, never a wrap-around. */
static __always_inline int stm_shape_take(struct stm_shape_state *s, const struct stm_shape_cfg *c, __u64 now,
					  __u64 len)
{
	__u64 burst = c->burst_ns;
	__u64 credit = s->credit_ns;
	if (credit > burst)
		credit = burst; /* the cap was lowered */
	if (s->last_ns == 0) {
		credit = burst; /* a new bucket starts full */
		s->last_ns = now;
	} else if (now > s->last_ns) {
		__u64 gap = now - s->last_ns;
		/* Against the room left, not credit + gap: an idle day must not wrap. */
		credit = gap >= burst - credit ? burst : credit + gap;
		s->last_ns = now;
	}
	/* len < 2^24 (an skb), ns_per_byte < 2^40 (8 bit/s): the product fits 64 bits. */
	__u64 cost = (len * c->ns_per_byte) >> STM_SHAPE_SHIFT;
	int pass = credit >= cost;
	if (pass) {
		s->credit_ns = credit - cost;
		s->passed_pkts++;
		s->passed_bytes += len;
	} else {
		s->credit_ns = credit;
		s->dropped_pkts++;
		s->dropped_bytes += len;
	}
	return pass;
}

/* The bucket of (kind, id), when there is a cap: STM_TC_NEXT, or a drop (egress-cap). A
 * function of its own (global: verified once) so its stack is not added to the callers'
 * deepest chain (the port programs' parsers and firewall). */
STM_SHARED int stm_shape(struct __sk_buff *skb, __u32 kind, __u32 id, __u32 hook)
{
	if (!skb)
		return STM_TC_NEXT;
	struct stm_shape_key k = { .kind = kind, .id = id };
	struct stm_shape_cfg *c = bpf_map_lookup_elem(&stm_shape_cfg, &k);
	if (!c || !c->ns_per_byte)
		return STM_TC_NEXT;
	struct stm_shape_state *s = bpf_map_lookup_elem(&stm_shape_state, &k);
	if (!s) {
		struct stm_shape_state fresh = {};
		bpf_map_update_elem(&stm_shape_state, &k, &fresh, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&stm_shape_state, &k);
		if (!s)
			return STM_TC_NEXT; /* the map is full: the agent sized it for every cap */
	}
	struct stm_shape_cfg cfg = *c;
	__u64 now = bpf_ktime_get_ns();
	bpf_spin_lock(&s->lock);
	int pass = stm_shape_take(s, &cfg, now, skb->len);
	bpf_spin_unlock(&s->lock);
	return pass ? STM_TC_NEXT : stm_drop(skb, hook, STM_DROP_EGRESS_CAP);
}

/* The network a packet leaving through the uplink is charged to, by its source address
 * (workloads' addresses are routed, not translated): 0 when none of the capped networks. */
static __always_inline __u32 stm_shape_net_of(struct __sk_buff *skb, __u16 eth_proto)
{
	struct stm_lpm6_key k = {};
	if (eth_proto == bpf_htons(STM_ETH_P_IP)) {
		k.prefixlen = 128;
		k.addr[10] = 0xff;
		k.addr[11] = 0xff;
		if (bpf_skb_load_bytes(skb, 14 + 12 /* Ethernet header, then the IPv4 source */, &k.addr[12], 4))
			return 0;
	} else {
		k.prefixlen = 128;
		if (bpf_skb_load_bytes(skb, 14 + 8 /* the IPv6 source */, k.addr, 16))
			return 0;
	}
	__u32 *net = bpf_map_lookup_elem(&stm_shape_src, &k);
	return net ? *net : 0;
}

#endif
