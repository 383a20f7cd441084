/* The firewall: a stateful, ordered, dual-stack L3/L4 ACL per scope (a network, or the node's
 * global scope at the uplink), shared by every hook that enforces it.
 *
 * Classification is not a walk over rules. The agent compiles a scope's rules (in priority
 * order, each rule at a slot: bit i) into four longest-prefix tries per generation: source address,
 * destination address, source port and destination port (the port tries keyed by direction
 * and protocol class too, ICMP type/code standing in for the ports). Each trie entry holds
 * the bitmap of rules its value satisfies (an address's: the rules of its longest prefix, ORed
 * with the /0 entry's rules for any address); a packet makes these lookups and ANDs the bitmaps
 * to their first set bit, skipping zero words through a summary bitmap. The cost depends on the
 * width of the bitmaps (fixed) and the depth of the tries, not on the number of rules.
 *
 * State: a flow allowed once is tracked per port in stm_ct; its replies pass, unsolicited
 * packets from the other side are classified like any other. A flow allowed under an older
 * epoch of the scope is classified again (its first packet's tuple) when the epoch changes, so
 * a new deny cuts it and an unrelated change leaves it alone. */
#ifndef STM_FW_H
#define STM_FW_H

#include "stm_drop.h"

#define STM_SEC 1000000000ULL
#define CT_TO_SYN (60 * STM_SEC)
#define CT_TO_EST (21600 * STM_SEC)
#define CT_TO_FIN (30 * STM_SEC)
#define CT_TO_CLOSED (10 * STM_SEC)
#define CT_TO_UDP (60 * STM_SEC)
#define CT_TO_ICMP (30 * STM_SEC)

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

/* What kind of ICMP message a packet is. */
#define FW_ICMP_NONE 0
#define FW_ICMP_ECHO_REQ 1
#define FW_ICMP_ECHO_REP 2
#define FW_ICMP_ERR 3
#define FW_ICMP_OTHER 4

/* stm_fw_check's verdicts besides STM_TC_NEXT / STM_TC_DROP: the caller sends a reject reply
 * (FW_REJECT) or drops with reason r - FW_DROP (the caller has the context to report it). */
#define FW_REJECT 100
#define FW_DROP 200
/* A port's firewall stage passed the packet: by the failsafe, or by the rules with its tuple
 * parsed into the hook's scratch slot (microsegmentation reuses it). Never returned by a
 * program: the port programs turn them into STM_TC_NEXT. */
#define FW_PASS_FAILSAFE 101
#define FW_PASS_PARSED 102
#define FW_PASS_STATE_PARSED 1

/* A classification query; also rebuilt from a tracked flow to classify it again. */
struct stm_fw_q {
	__u8 src[16];
	__u8 dst[16];
	__u32 gen;
	__u8 family;
	__u8 dir;
	__u8 pcls;
	__u8 _pad;
	__u16 sport;
	__u16 dport;
	__u16 nsum;
	__u16 _pad2;
} __attribute__((aligned(8)));

static __always_inline void fw_stat(__u32 i)
{
	__u64 *v = bpf_map_lookup_elem(&stm_fw_stats, &i);
	if (v)
		*v += 1;
}

/* Index of the lowest set bit of a non-zero word: de Bruijn multiplication, no branches (a
 * binary search would fork the verifier's paths six times per bit). */
static const __u8 stm_debruijn64[64] = {
	0,  1,  48, 2,  57, 49, 28, 3,  61, 58, 50, 42, 38, 29, 17, 4,
	62, 55, 59, 36, 53, 51, 43, 22, 45, 39, 33, 30, 24, 18, 12, 5,
	63, 47, 56, 27, 60, 41, 37, 16, 54, 35, 52, 21, 44, 32, 23, 11,
	46, 26, 40, 15, 34, 20, 31, 10, 25, 14, 19, 9,  13, 8,  7,  6,
};

static __always_inline __u32 ctz64(__u64 x)
{
	return stm_debruijn64[((x & -x) * 0x03f79d71b4cb0a89ULL) >> 58];
}

/* ::ffff:a.b.c.d */
static __always_inline int fw_mapped(const __u8 *a)
{
	return *(__u64 *)a == 0 && *(__u32 *)(a + 8) == bpf_htonl(0xffff);
}

static __always_inline struct stm_fw_bits *fw_addr4(int dst, __u32 gen, __u64 lens, const __u8 *addr)
{
	struct stm_fw_addr4_key k = { .gen = gen };
	void *map = dst ? (void *)&stm_fw_dst4 : (void *)&stm_fw_src4;
	__u32 a = bpf_ntohl(*(__u32 *)addr);

	for (int i = 0; i < 33; i++) {
		if (!lens)
			break;
		__u32 len = 32 - ctz64(lens);
		lens &= lens - 1;
		__u32 m = len >= 32 ? 0xffffffffu : len == 0 ? 0 : ~(0xffffffffu >> len);
		k.len = len;
		*(__u32 *)k.addr = bpf_htonl(a & m);
		struct stm_fw_bits *v = bpf_map_lookup_elem(map, &k);
		if (v)
			return v;
	}
	return NULL;
}

static __always_inline struct stm_fw_bits *fw_addr6(int dst, __u32 gen, const __u64 *lens, const __u8 *addr)
{
	struct stm_fw_addr6_key k __attribute__((aligned(8))) = { .gen = gen };
	void *map = dst ? (void *)&stm_fw_dst6 : (void *)&stm_fw_src6;
	__u64 hi = bpf_be64_to_cpu(*(__u64 *)addr);
	__u64 lo = bpf_be64_to_cpu(*(__u64 *)(addr + 8));
	__u64 m0 = lens[0], m1 = lens[1], m2 = lens[2];

	for (int i = 0; i < 129; i++) {
		__u32 b;
		if (m0) {
			b = ctz64(m0);
			m0 &= m0 - 1;
		} else if (m1) {
			b = 64 + ctz64(m1);
			m1 &= m1 - 1;
		} else if (m2) {
			b = 128 + ctz64(m2);
			m2 &= m2 - 1;
		} else {
			break;
		}
		__u32 len = 128 - b;
		__u64 mh = len >= 64 ? ~0ULL : len == 0 ? 0 : ~(~0ULL >> len);
		__u64 ml = len >= 128 ? ~0ULL : len <= 64 ? 0 : ~(~0ULL >> (len - 64));
		k.len = len;
		*(__u64 *)k.addr = bpf_cpu_to_be64(hi & mh);
		*(__u64 *)(k.addr + 8) = bpf_cpu_to_be64(lo & ml);
		struct stm_fw_bits *v = bpf_map_lookup_elem(map, &k);
		if (v)
			return v;
	}
	return NULL;
}

/* The entry of the longest prefix present that holds an address (/0 at the last). */
static __always_inline struct stm_fw_bits *fw_addr(int dst, struct stm_fw_scope *sc, __u32 gen, __u8 family,
						   const __u8 *a)
{
	if (family == 4)
		return fw_addr4(dst, gen, sc->len4[dst & 1], a);
	if (fw_mapped(a))
		return fw_addr4(dst, gen, sc->len4[dst & 1], a + 12);
	return fw_addr6(dst, gen, sc->len6[dst & 1], a);
}

/* The rules any address of the family satisfies (no prefix on that side, or /0): one entry
 * per side and family, both families' in the IPv6 table under length 0 with the family in
 * the address's first byte (one map per side, whatever the packet's family). */
static __always_inline struct stm_fw_bits *fw_addr_any(int dst, __u32 gen, __u8 family, const __u8 *a)
{
	struct stm_fw_addr6_key k __attribute__((aligned(8))) = { .gen = gen };
	k.addr[0] = family == 4 || fw_mapped(a) ? 4 : 6;
	return bpf_map_lookup_elem(dst ? (void *)&stm_fw_dst6 : (void *)&stm_fw_src6, &k);
}

static __always_inline struct stm_fw_bits *fw_port(__u8 sel, struct stm_fw_q *q, __u16 port)
{
	struct stm_fw_port_key k = {
		.prefixlen = 72, .gen = q->gen, .sel = sel, .dir = q->dir, .pcls = q->pcls,
	};
	k.port[0] = port >> 8;
	k.port[1] = port & 0xff;
	return bpf_map_lookup_elem(&stm_fw_ports, &k);
}

/* The position of the first rule (in slot order) the query matches, or -1. An address's rules
 * are those of its longest prefix present ORed with those for any address (fw_addr_any). A
 * side and family with any rule has both a /0 entry in its table (empty: the longest-prefix
 * search always ends on something) and its any-address entry; without them none of its rules
 * can match. Global functions here are verified once each, not once per path that reaches them. */
STM_SHARED int stm_fw_classify(struct stm_fw_q *q, struct stm_fw_scope *sc)
{
	if (!q || !sc)
		return -1;
	struct stm_fw_bits *s0 = fw_addr_any(0, q->gen, q->family, q->src);
	if (!s0)
		return -1;
	struct stm_fw_bits *s = fw_addr(0, sc, q->gen, q->family, q->src);
	if (!s)
		return -1;
	struct stm_fw_bits *d0 = fw_addr_any(1, q->gen, q->family, q->dst);
	if (!d0)
		return -1;
	struct stm_fw_bits *d = fw_addr(1, sc, q->gen, q->family, q->dst);
	if (!d)
		return -1;
	struct stm_fw_bits *sp = fw_port(0, q, q->sport);
	if (!sp)
		return -1;
	struct stm_fw_bits *dp = fw_port(1, q, q->dport);
	if (!dp)
		return -1;

	__u32 nsum = q->nsum;
	for (__u32 si = 0; si < STM_FW_SUMS; si++) {
		if (si >= nsum)
			break;
		__u64 m = (s->sum[si] | s0->sum[si]) & (d->sum[si] | d0->sum[si]) & sp->sum[si] & dp->sum[si];
		for (int k = 0; k < 64; k++) {
			if (!m)
				break;
			__u64 wi = (__u64)si * 64 + ctz64(m);
			if (wi >= STM_FW_WORDS)
				return -1;
			asm volatile("" : "+r"(wi)); /* index with the checked value */
			__u64 w = (s->w[wi] | s0->w[wi]) & (d->w[wi] | d0->w[wi]) & sp->w[wi] & dp->w[wi];
			if (w)
				return wi * 64 + ctz64(w);
			m &= m - 1;
		}
	}
	return -1;
}

/* Classifies a query: the action, with the rule (id) that decided and whether to log. */
struct fw_verdict {
	__u32 rule_id;
	__u8 action;
	__u8 log;
	__u8 by_rule;
};

static __always_inline void fw_decide(struct stm_fw_q *q, struct stm_fw_scope *scope, __u32 scope_id,
				      struct fw_verdict *v)
{
	int idx = scope->nsum ? stm_fw_classify(q, scope) : -1;
	if (idx >= 0) {
		struct stm_fw_rule_key rk = { .gen = q->gen, .idx = idx };
		struct stm_fw_rule *r = bpf_map_lookup_elem(&stm_fw_rules, &rk);
		if (r) {
			v->rule_id = r->id;
			v->action = r->action;
			v->log = r->flags & STM_FW_RULE_F_LOG;
			v->by_rule = 1;
			return;
		}
		/* A generation's rules are written before its scope points at it: a missing rule
		 * is a bug; deny. */
		v->rule_id = STM_FW_DEFAULT_ID | scope_id;
		v->action = STM_FW_DENY;
		v->log = 0;
		v->by_rule = 1;
		return;
	}
	v->rule_id = STM_FW_DEFAULT_ID | scope_id;
	v->action = scope->def;
	v->log = 0;
	v->by_rule = 0;
}

static __always_inline void fw_count(__u32 id, __u32 len)
{
	struct stm_count_val *c = bpf_map_lookup_elem(&stm_fw_hits, &id);
	if (!c) {
		struct stm_count_val one = { .packets = 1, .bytes = len };
		if (!bpf_map_update_elem(&stm_fw_hits, &id, &one, BPF_NOEXIST))
			return;
		c = bpf_map_lookup_elem(&stm_fw_hits, &id);
		if (!c)
			return;
	}
	c->packets += 1;
	c->bytes += len;
}

/* A log hit or a new flow, for a monitor (stm_mon.h): the parsed packet. A log event the pace
 * or a full ring holds back is counted as log-lost too. */
STM_SHARED int stm_mon_tuple(struct stm_tuple *t, __u32 ifindex, __u32 kind, __u32 rule_id,
					   __u32 action)
{
	if (!t)
		return 0;
	struct stm_mon_cfg *c = mon_wanted(kind);
	__u64 now = bpf_ktime_get_coarse_ns();
	if (!c || now >= c->until_ns)
		return 0;
	struct stm_mon_event *e = mon_admit(c, ifindex, now) ? mon_reserve(bpf_ktime_get_ns(), ifindex, kind) : NULL;
	if (!e) {
		if (kind == STM_MON_LOG)
			fw_stat(STM_FW_STAT_LOG_LOST);
		return 0;
	}
	e->dir = t->dir;
	e->action = action;
	e->rule_id = rule_id;
	e->len = t->len;
	e->family = t->family;
	e->proto = t->proto;
	e->sport = t->sport;
	e->dport = t->dport;
	__builtin_memcpy(e->src, t->src, 16);
	__builtin_memcpy(e->dst, t->dst, 16);
	mon_submit(e);
	return 0;
}

/* The flow key of a tuple (the two sides in a canonical order); returns 1 when the packet's
 * source is side a. */
static __always_inline int ct_key_of(struct stm_ct_key *k, __u32 ifindex, __u8 family, __u8 proto,
				     const __u8 *src, const __u8 *dst, __u16 sp, __u16 dp)
{
	__u64 s0 = *(__u64 *)src, s1 = *(__u64 *)(src + 8);
	__u64 d0 = *(__u64 *)dst, d1 = *(__u64 *)(dst + 8);
	int src_a = s0 < d0 || (s0 == d0 && (s1 < d1 || (s1 == d1 && sp <= dp)));

	k->ifindex = ifindex;
	k->family = family;
	k->proto = proto;
	k->_pad = 0;
	if (src_a) {
		__builtin_memcpy(k->a, src, 16);
		__builtin_memcpy(k->b, dst, 16);
		k->pa = sp;
		k->pb = dp;
	} else {
		__builtin_memcpy(k->a, dst, 16);
		__builtin_memcpy(k->b, src, 16);
		k->pa = dp;
		k->pb = sp;
	}
	return src_a;
}

static __always_inline void ct_advance(struct stm_ct *ct, struct stm_tuple *t, int orig, __u64 now)
{
	if (!orig)
		ct->flags |= STM_CT_F_REPLIED;
	if (t->proto != IPPROTO_TCP) {
		ct->expires = now + (t->pcls == STM_PCLS_UDP || t->pcls == STM_PCLS_OTHER ? CT_TO_UDP : CT_TO_ICMP);
		return;
	}
	__u8 f = t->tcp_flags;
	__u8 state = ct->state;
	if (f & TCP_RST) {
		state = STM_CT_CLOSED;
	} else {
		if (f & TCP_FIN)
			ct->flags |= orig ? STM_CT_F_FIN_ORIG : STM_CT_F_FIN_REPLY;
		if (state == STM_CT_SYN_SENT && !orig && (f & TCP_ACK))
			state = STM_CT_ESTABLISHED;
		if ((ct->flags & (STM_CT_F_FIN_ORIG | STM_CT_F_FIN_REPLY)) == (STM_CT_F_FIN_ORIG | STM_CT_F_FIN_REPLY))
			state = STM_CT_CLOSING;
	}
	ct->state = state;
	__u64 to = CT_TO_EST;
	if (state == STM_CT_SYN_SENT)
		to = CT_TO_SYN;
	else if (state == STM_CT_CLOSED)
		to = CT_TO_CLOSED;
	else if (state == STM_CT_CLOSING || (ct->flags & (STM_CT_F_FIN_ORIG | STM_CT_F_FIN_REPLY)))
		to = CT_TO_FIN;
	ct->expires = now + to;
}

/* A packet that may pass as a reply of a tracked flow: not an opening (a bare SYN, an echo
 * request) from the flow's other side. */
static __always_inline int ct_reply_ok(struct stm_tuple *t)
{
	if (t->proto == IPPROTO_TCP)
		return !((t->tcp_flags & TCP_SYN) && !(t->tcp_flags & TCP_ACK));
	if (t->icmp == FW_ICMP_ECHO_REQ)
		return 0;
	return 1;
}

static __always_inline int fw_trackable(struct stm_tuple *t)
{
	return t->icmp == FW_ICMP_NONE || t->icmp == FW_ICMP_ECHO_REQ || t->icmp == FW_ICMP_ECHO_REP;
}

/* The datagram a fragment belongs to, on this device. */
static __always_inline void fw_frag_key(struct stm_frag_key *fk, struct stm_tuple *t, __u32 ifindex)
{
	fk->ifindex = ifindex;
	fk->family = t->family;
	fk->proto = t->proto;
	fk->_pad = 0;
	fk->id = t->frag_id;
	__builtin_memcpy(fk->src, t->src, 16);
	__builtin_memcpy(fk->dst, t->dst, 16);
}

static __always_inline void fw_frag_remember(struct stm_tuple *t, __u32 ifindex)
{
	struct stm_frag_key fk;
	fw_frag_key(&fk, t, ifindex);
	__u32 one = 1;
	bpf_map_update_elem(&stm_frags, &fk, &one, BPF_ANY);
}

/* The scope's active generation when it enforces; NULL: nothing to check (nor to parse). */
static __always_inline struct stm_fw_scope *fw_scope_on(__u32 scope_id)
{
	struct stm_fw_scope *scope = bpf_map_lookup_elem(&stm_fw_scopes, &scope_id);
	return scope && (scope->flags & STM_FW_SCOPE_F_ON) ? scope : NULL;
}

/* Per-CPU room for a hook's parsed packet, zeroed (slots: stm_fw_scratch). The tuple does not
 * live on the stack: the call chain below it (check, classify) needs the room. Programs do
 * not nest on a CPU. */
static __always_inline struct stm_tuple *fw_scratch(__u32 slot, __u8 dir, __u32 len)
{
	struct stm_tuple *t = bpf_map_lookup_elem(&stm_fw_scratch, &slot);
	if (!t)
		return NULL;
	__builtin_memset(t, 0, sizeof(*t));
	t->dir = dir;
	t->len = len;
	return t;
}

static __always_inline void fw_query_of(struct stm_fw_q *q, struct stm_tuple *t, struct stm_fw_scope *scope, __u8 dir)
{
	__builtin_memcpy(q->src, t->src, 16);
	__builtin_memcpy(q->dst, t->dst, 16);
	q->gen = scope->gen;
	q->family = t->family;
	q->dir = dir;
	q->pcls = t->pcls;
	q->sport = t->sport;
	q->dport = t->dport;
	q->nsum = scope->nsum;
}

/* An ICMP error a router on the path may send (so from any address): IPv4 destination
 * unreachable for the network, the host, a source route or "fragmentation needed", time
 * exceeded, parameter problem; ICMPv6 unreachable but "port unreachable", packet too big,
 * time exceeded, parameter problem. A port or protocol unreachable comes from the host. */
static __always_inline int fw_icmp_from_router(struct stm_tuple *t)
{
	__u8 type = t->sport, code = t->dport;
	if (t->family == 4)
		return (type == 3 && code != 2 && code != 3) || type == 11 || type == 12;
	return (type == 1 && code != 4) || type == 2 || type == 3 || type == 4;
}

static __always_inline int fw_addr_eq(const __u8 *a, const __u8 *b, __u8 family)
{
	if (family == 4)
		return *(__u32 *)a == *(__u32 *)b;
	return *(__u64 *)a == *(__u64 *)b && *(__u64 *)(a + 8) == *(__u64 *)(b + 8);
}

/* The error goes to the quoted packet's source and comes from its destination (or a router). */
static __always_inline int fw_icmp_err_addressed(struct stm_tuple *t)
{
	return fw_addr_eq(t->dst, t->inner_src, t->family) &&
	       (fw_addr_eq(t->src, t->inner_dst, t->family) || fw_icmp_from_router(t));
}

/* The firewall verdict for a parsed packet crossing `ifindex` (in direction t->dir) under scope
 * `scope_id`, whose enforcing entry `scope` the caller looked up (fw_scope_on): STM_TC_NEXT
 * (pass), STM_TC_DROP (dropped and counted) or FW_REJECT (the caller replies, then drops).
 * Context free, so tc and XDP hooks share it. */
STM_SHARED int stm_fw_check(struct stm_tuple *t, struct stm_fw_scope *scope, __u32 ifindex,
					  __u32 scope_id)
{
	if (!t || !scope)
		return STM_TC_DROP;
	__u8 dir = t->dir;

	if (t->frag == 2) {
		struct stm_frag_key fk;
		fw_frag_key(&fk, t, ifindex);
		if (bpf_map_lookup_elem(&stm_frags, &fk))
			return STM_TC_NEXT;
		fw_stat(STM_FW_STAT_FRAG_MISS);
		return FW_DROP + STM_DROP_FW_FRAGMENT;
	}

	__u64 now = bpf_ktime_get_ns();
	struct stm_ct_key k;

	/* An ICMP error about a tracked flow (either way) is related to it when it goes back to
	 * the quoted packet's sender, and (but for what routers send: unreachable networks and
	 * hosts, too big, time exceeded) comes from its destination. Anything else is judged as
	 * any packet: an error cannot carry data past the rules by quoting an allowed flow. */
	if (t->icmp == FW_ICMP_ERR && t->inner_proto && fw_icmp_err_addressed(t)) {
		ct_key_of(&k, ifindex, t->family, t->inner_proto, t->inner_src, t->inner_dst, t->inner_sport,
			  t->inner_dport);
		struct stm_ct *ct = bpf_map_lookup_elem(&stm_ct, &k);
		if (ct && ct->expires > now)
			return STM_TC_NEXT;
	}

	struct stm_fw_q q;
	struct fw_verdict v;
	int track = fw_trackable(t);
	int src_a = 0;
	if (track) {
		src_a = ct_key_of(&k, ifindex, t->family, t->proto, t->src, t->dst, t->ct_sport, t->ct_dport);
		struct stm_ct *ct = bpf_map_lookup_elem(&stm_ct, &k);
		if (ct && ct->expires > now) {
			int orig = !!(ct->flags & STM_CT_F_ORIG_A) == src_a;
			int reopen = ct->state == STM_CT_CLOSED && t->proto == IPPROTO_TCP && (t->tcp_flags & TCP_SYN);
			if ((orig || ct_reply_ok(t)) && !reopen) {
				if (ct->gen != scope->epoch) {
					/* Classify the flow's first packet again under the new rules. */
					int a_first = !!(ct->flags & STM_CT_F_ORIG_A);
					__builtin_memcpy(q.src, a_first ? k.a : k.b, 16);
					__builtin_memcpy(q.dst, a_first ? k.b : k.a, 16);
					q.gen = scope->gen;
					q.family = t->family;
					q.dir = ct->dir;
					q.pcls = t->pcls;
					q.sport = ct->cls_sport;
					q.dport = ct->cls_dport;
					q.nsum = scope->nsum;
					fw_decide(&q, scope, scope_id, &v);
					if (v.action != STM_FW_ALLOW) {
						bpf_map_delete_elem(&stm_ct, &k);
						fw_stat(STM_FW_STAT_CT_CUT);
						if (!orig)
							return FW_DROP + (v.by_rule ? STM_DROP_FW_RULE : STM_DROP_FW_DEFAULT);
						goto classify;
					}
					fw_stat(STM_FW_STAT_CT_REVALIDATED);
					ct->gen = scope->epoch;
					ct->rule_id = v.rule_id;
				}
				ct_advance(ct, t, orig, now);
				if (t->frag == 1)
					fw_frag_remember(t, ifindex);
				return STM_TC_NEXT;
			}
		}
	}

classify:
	fw_query_of(&q, t, scope, dir);
	fw_decide(&q, scope, scope_id, &v);
	fw_count(v.rule_id, t->len);
	if (v.log && mon_wanted(STM_MON_LOG))
		stm_mon_tuple(t, ifindex, STM_MON_LOG, v.rule_id, v.action);
	if (v.action == STM_FW_REJECT)
		return FW_REJECT;
	if (v.action != STM_FW_ALLOW)
		return FW_DROP + (v.by_rule ? STM_DROP_FW_RULE : STM_DROP_FW_DEFAULT);

	if (t->frag == 1)
		fw_frag_remember(t, ifindex);
	/* Track what opens a flow: not a reset, not an echo reply on its own. */
	if (track && t->icmp != FW_ICMP_ECHO_REP && !(t->proto == IPPROTO_TCP && (t->tcp_flags & TCP_RST))) {
		struct stm_ct ct = {
			.gen = scope->epoch,
			.rule_id = v.rule_id,
			.dir = dir,
			.flags = src_a ? STM_CT_F_ORIG_A : 0,
			.cls_sport = t->sport,
			.cls_dport = t->dport,
		};
		if (t->proto == IPPROTO_TCP) {
			if ((t->tcp_flags & TCP_SYN) && !(t->tcp_flags & TCP_ACK)) {
				ct.state = STM_CT_SYN_SENT;
			} else {
				ct.state = STM_CT_ESTABLISHED;
				fw_stat(STM_FW_STAT_CT_PICKUP);
			}
		} else {
			ct.state = STM_CT_OPEN;
		}
		ct_advance(&ct, t, 1, now);
		if (bpf_map_update_elem(&stm_ct, &k, &ct, BPF_ANY)) {
			fw_stat(STM_FW_STAT_CT_FULL);
		} else {
			fw_stat(STM_FW_STAT_CT_NEW);
			if (mon_wanted(STM_MON_FLOW))
				stm_mon_tuple(t, ifindex, STM_MON_FLOW, v.rule_id, STM_FW_ALLOW);
		}
	}
	return STM_TC_NEXT;
}

#endif
