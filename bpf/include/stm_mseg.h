/* Microsegmentation: endpoints sorted into groups (a tree), policy between groups, enforced
 * where the destination endpoint's port is, on the sender's group as the packet carries it.
 *
 * Carriers. The sending port (stm_port_in) stamps skb->mark with its endpoint's group
 * (mseg_stamp: STM_MSEG_MARK_TAG in the high half, the group in the low; 0 untagged), always,
 * so nothing the workload or an earlier hop set survives. On one node the mark rides the
 * bridge (and the host's routing) to the destination port. To another node the overlay's
 * egress puts it into the VXLAN-GBP policy id, and the receiving node's overlay ingress
 * lifts it back into the mark, only on a frame it admitted as that node's endpoint's own.
 * Whatever arrives without a stamp (the node, the LAN, a gateway's routed reply) is untagged.
 *
 * Policy. The agent compiles the entries (src/model/microseg.ts) into stm_mseg_pol: for each
 * group D an endpoint may be in, and each source A named by an entry whose destination is D or
 * above it, the nearest such destination (dist). A packet from group S to D looks up S, then
 * S's parent and so on up the tree (stm_mseg_groups): the entry with the smallest
 * (dist, level of S, protocol-and-port before protocol before any) decides; none: denied. So a
 * packet costs one lookup per level of the source's line (at most STM_MSEG_DEPTH_MAX), three
 * where the pair has protocol entries, whatever the number of groups or entries.
 *
 * State. A grouped endpoint's port tracks, in stm_mseg_ct, the flows its endpoint opened (their
 * replies pass; TCP from its SYN only) and the flows the policy let in (passed until the
 * generation, the source's or the endpoint's group changes, then judged again: a new deny cuts
 * them, and the entry stays, cut, so the endpoint's answers cannot reopen it as its own). */
#ifndef STM_MSEG_H
#define STM_MSEG_H

#include "stm_fw.h"

static __always_inline __u32 mseg_stamp(__u32 group)
{
	return ((__u32)STM_MSEG_MARK_TAG << STM_MSEG_MARK_SHIFT) | (group & STM_MSEG_GROUP_MASK);
}

/* The group a mark carries: untagged unless a port (or the overlay) stamped it. */
static __always_inline __u32 mseg_group_of(__u32 mark)
{
	return (mark >> STM_MSEG_MARK_SHIFT) == STM_MSEG_MARK_TAG ? mark & STM_MSEG_GROUP_MASK : STM_MSEG_UNTAGGED;
}

static __always_inline struct stm_mseg_cfg *mseg_cfg_on(void)
{
	__u32 z = 0;
	struct stm_mseg_cfg *c = bpf_map_lookup_elem(&stm_mseg_cfg, &z);
	return c && (c->flags & STM_MSEG_F_ON) ? c : NULL;
}

/* What decided: the entry (its id), its action, whether it logs, and (trace) where it sat. */
struct stm_mseg_verdict {
	__u32 id;
	__u8 action;
	__u8 log;
	__u8 dist;
	__u8 level;
	__u32 rank; /* dist << 16 | level << 8 | 0 port, 1 protocol, 2 any (0xffffffff: none) */
};

static __always_inline void mseg_consider(struct stm_mseg_verdict *v, struct stm_mseg_val *e, __u32 level,
					  __u32 variant)
{
	if (e->action == STM_MSEG_A_NONE)
		return;
	__u32 rank = ((__u32)e->dist << 16) | (level << 8) | variant;
	if (rank >= v->rank)
		return;
	v->rank = rank;
	v->id = e->id;
	v->action = e->action;
	v->log = e->flags & STM_MSEG_V_LOG;
	v->dist = e->dist;
	v->level = level;
}

/* The policy's verdict for a packet from group `src` to an endpoint of group `dst`: fills `v`
 * (action STM_MSEG_A_DENY and STM_MSEG_DEFAULT_ID when no entry applies). `l4`: the protocol
 * << 16 | the destination port (0: the packet has none: not TCP or UDP, or a later fragment). */
STM_SHARED int stm_mseg_classify(__u32 src, __u32 dst, __u32 l4, __u32 gen, struct stm_mseg_verdict *v)
{
	if (!v)
		return 0;
	__u32 proto = (l4 >> 16) & 0xff;
	__u32 dport = l4 & 0xffff;
	v->id = STM_MSEG_DEFAULT_ID;
	v->action = STM_MSEG_A_DENY;
	v->log = 0;
	v->dist = 0xff;
	v->level = 0xff;
	v->rank = 0xffffffff;
	__u32 g = src;
	struct stm_mseg_group *line = src ? bpf_map_lookup_elem(&stm_mseg_groups, &g) : NULL;
	if (line && !line->len)
		line = NULL;
	__u32 len = line ? line->len : 1;
	struct stm_mseg_key k = { .dst = dst, .gen = gen };
	for (__u32 i = 0; i < STM_MSEG_DEPTH_MAX; i++) {
		if (i >= len)
			break;
		/* A group this node does not know yet (or no more): its own entries only. */
		k.src = line ? line->chain[i] : src;
		k.proto = 0;
		k.dport = 0;
		struct stm_mseg_val *e = bpf_map_lookup_elem(&stm_mseg_pol, &k);
		if (!e)
			continue;
		mseg_consider(v, e, i, 2);
		if (e->flags & STM_MSEG_V_MORE) {
			k.proto = proto;
			struct stm_mseg_val *p = bpf_map_lookup_elem(&stm_mseg_pol, &k);
			if (p)
				mseg_consider(v, p, i, 1);
			if (dport) {
				k.dport = dport;
				p = bpf_map_lookup_elem(&stm_mseg_pol, &k);
				if (p)
					mseg_consider(v, p, i, 0);
			}
		}
		/* Nothing further up the source's line beats an entry for the destination itself. */
		if (v->dist == 0)
			break;
	}
	return 0;
}

static __always_inline void mseg_count(__u32 id, __u32 len)
{
	struct stm_count_val *c = bpf_map_lookup_elem(&stm_mseg_hits, &id);
	if (!c) {
		struct stm_count_val one = { .packets = 1, .bytes = len };
		if (!bpf_map_update_elem(&stm_mseg_hits, &id, &one, BPF_NOEXIST))
			return;
		c = bpf_map_lookup_elem(&stm_mseg_hits, &id);
		if (!c)
			return;
	}
	c->packets += 1;
	c->bytes += len;
}

/* A later fragment's datagram, as microsegmentation let its first fragment in (the key differs
 * from the firewall's: one's verdict is never taken for the other's). */
static __always_inline void mseg_frag_key(struct stm_frag_key *fk, struct stm_tuple *t, __u32 ifindex)
{
	fw_frag_key(fk, t, ifindex);
	fk->_pad = 1;
}

/* The ports a policy entry may name: TCP and UDP destination ports. */
static __always_inline __u32 mseg_dport(struct stm_tuple *t)
{
	return t->frag != 2 && (t->pcls == STM_PCLS_TCP || t->pcls == STM_PCLS_UDP) ? t->dport : 0;
}

/* The verdict for a parsed packet from group `src` to the endpoint (group `dst`) behind
 * `ifindex`: STM_TC_NEXT, or FW_DROP + the drop reason. Context free (tc, the trace, tests). */
STM_SHARED int stm_mseg_check(struct stm_tuple *t, __u32 ifindex, __u32 src, __u32 dst, __u32 gen)
{
	if (!t)
		return STM_TC_DROP;
	struct stm_frag_key fk;
	if (t->frag == 2) {
		mseg_frag_key(&fk, t, ifindex);
		return bpf_map_lookup_elem(&stm_frags, &fk) ? STM_TC_NEXT : FW_DROP + STM_DROP_MICROSEG_DENY;
	}
	/* The coarse clock: timeouts are seconds, and it costs a fraction of the fine one. */
	__u64 now = bpf_ktime_get_coarse_ns();
	struct stm_ct_key k;
	/* An ICMP error about a flow of the endpoint's (either way), addressed as such. */
	if (t->icmp == FW_ICMP_ERR && t->inner_proto && fw_icmp_err_addressed(t)) {
		ct_key_of(&k, ifindex, t->family, t->inner_proto, t->inner_src, t->inner_dst, t->inner_sport,
			  t->inner_dport);
		struct stm_ct *ct = bpf_map_lookup_elem(&stm_mseg_ct, &k);
		if (ct && ct->expires > now)
			return STM_TC_NEXT;
	}
	int track = fw_trackable(t);
	int src_a = 0;
	if (track) {
		src_a = ct_key_of(&k, ifindex, t->family, t->proto, t->src, t->dst, t->ct_sport, t->ct_dport);
		struct stm_ct *ct = bpf_map_lookup_elem(&stm_mseg_ct, &k);
		if (ct && ct->expires > now &&
		    !(ct->state == STM_CT_CLOSED && t->proto == IPPROTO_TCP && (t->tcp_flags & TCP_SYN))) {
			int orig = !!(ct->flags & STM_CT_F_ORIG_A) == src_a;
			/* A reply to a flow the endpoint opened. */
			int pass = ct->dir == STM_FW_EGRESS ? !orig && ct_reply_ok(t)
				   /* More of a flow the policy let in, judged by the same policy and groups. */
				   : orig && ct->gen == gen && ct->cls_sport == src && ct->cls_dport == dst;
			if (pass) {
				ct_advance(ct, t, orig, now);
				if (t->frag == 1) {
					mseg_frag_key(&fk, t, ifindex);
					__u32 one = 1;
					bpf_map_update_elem(&stm_frags, &fk, &one, BPF_ANY);
				}
				return STM_TC_NEXT;
			}
		}
	}
	struct stm_mseg_verdict v;
	stm_mseg_classify(src, dst, ((__u32)t->proto << 16) | mseg_dport(t), gen, &v);
	mseg_count(v.id, t->len);
	if (v.log && mon_wanted(STM_MON_LOG))
		stm_mon_tuple(t, ifindex, STM_MON_LOG, STM_MSEG_LOG_ID | v.id, v.action);
	if (v.action != STM_MSEG_A_ALLOW) {
		/* A flow let in before, now denied: kept, as cut (no generation is 0), so the
		 * endpoint's own packets of it cannot pass for a flow it opened. */
		struct stm_ct *was = track ? bpf_map_lookup_elem(&stm_mseg_ct, &k) : NULL;
		if (was && was->dir == STM_FW_INGRESS)
			was->gen = 0;
		return FW_DROP + STM_DROP_MICROSEG_DENY;
	}
	if (t->frag == 1) {
		mseg_frag_key(&fk, t, ifindex);
		__u32 one = 1;
		bpf_map_update_elem(&stm_frags, &fk, &one, BPF_ANY);
	}
	if (track && t->icmp != FW_ICMP_ECHO_REP && !(t->proto == IPPROTO_TCP && (t->tcp_flags & TCP_RST))) {
		struct stm_ct ct = {
			.gen = gen,
			.rule_id = v.id,
			.dir = STM_FW_INGRESS,
			.flags = src_a ? STM_CT_F_ORIG_A : 0,
			.cls_sport = src,
			.cls_dport = dst,
		};
		ct.state = t->proto != IPPROTO_TCP ? STM_CT_OPEN
			   : (t->tcp_flags & TCP_SYN) && !(t->tcp_flags & TCP_ACK) ? STM_CT_SYN_SENT
										 : STM_CT_ESTABLISHED;
		ct_advance(&ct, t, 1, now);
		bpf_map_update_elem(&stm_mseg_ct, &k, &ct, BPF_ANY);
	}
	return STM_TC_NEXT;
}

/* A flow the endpoint (behind `ifindex`) sends on: tracked, so its replies pass. A packet of a
 * flow the policy let in (the endpoint answering) keeps that entry going. */
STM_SHARED int stm_mseg_track(struct stm_tuple *t, __u32 ifindex)
{
	if (!t || t->frag == 2 || !fw_trackable(t))
		return 0;
	__u64 now = bpf_ktime_get_coarse_ns();
	struct stm_ct_key k;
	int src_a = ct_key_of(&k, ifindex, t->family, t->proto, t->src, t->dst, t->ct_sport, t->ct_dport);
	struct stm_ct *ct = bpf_map_lookup_elem(&stm_mseg_ct, &k);
	if (ct && ct->expires > now) {
		ct_advance(ct, t, !!(ct->flags & STM_CT_F_ORIG_A) == src_a, now);
		return 0;
	}
	/* Nothing opens on an echo reply, and TCP only on a SYN: a packet in the middle of a
	 * connection is no flow the endpoint opens (it may be the endpoint answering a flow the
	 * policy cut). */
	if (t->icmp == FW_ICMP_ECHO_REP ||
	    (t->proto == IPPROTO_TCP && ((t->tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST)) != TCP_SYN)))
		return 0;
	struct stm_ct n = {
		.dir = STM_FW_EGRESS,
		.flags = src_a ? STM_CT_F_ORIG_A : 0,
	};
	n.state = t->proto != IPPROTO_TCP ? STM_CT_OPEN
		  : (t->tcp_flags & TCP_SYN) && !(t->tcp_flags & TCP_ACK) ? STM_CT_SYN_SENT
									: STM_CT_ESTABLISHED;
	ct_advance(&n, t, 1, now);
	bpf_map_update_elem(&stm_mseg_ct, &k, &n, BPF_ANY);
	return 0;
}

#endif
