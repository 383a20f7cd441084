/* Masquerading (SNAT) at the uplink. What a masqueraded network sends off the node leaves with
 * its NAT address and a port of the NAT range (stm_nat_out, tc egress, after the global scope
 * and the caps have judged it with its own addresses); a reply, an ICMP error about the flow
 * included, gets the workload's address and port back before the global scope judges it
 * (stm_nat_in, tc ingress: the uplink filter's XDP leaves anything to a NAT address to it).
 * Rewrites go through the kernel's checksum helpers, which know a GSO or checksum-offloaded
 * packet's partial checksum from a complete one. */
#ifndef STM_NAT_H
#define STM_NAT_H

#include "stm_maps.h"
#include "stm_drop.h"
#include "stm_fw.h"
#include "stm_parse.h"

#define NAT_TRIES 32
#define NAT_SEC 1000000000ULL

static __always_inline void nat_stat(__u32 i)
{
	__u64 *c = bpf_map_lookup_elem(&stm_nat_stats, &i);
	if (c)
		*c += 1;
}

static __always_inline struct stm_nat_cfg *nat_cfg_on(void)
{
	__u32 z = 0;
	struct stm_nat_cfg *c = bpf_map_lookup_elem(&stm_nat_cfg, &z);
	return c && (c->flags & STM_NAT_CFG_F_ON) && c->port_hi >= c->port_lo ? c : NULL;
}

/* An address as the NAT address table's key (IPv4 as ::ffff:a.b.c.d). */
static __always_inline void nat_addr_key(struct stm_vtep_key *k, const __u8 *a, __u8 family)
{
	__builtin_memset(k, 0, sizeof(*k));
	if (family == 4) {
		k->addr[10] = 0xff;
		k->addr[11] = 0xff;
		__builtin_memcpy(&k->addr[12], a, 4);
	} else {
		__builtin_memcpy(k->addr, a, 16);
	}
}

static __always_inline void nat_copy(__u8 *d, const __u8 *s, __u8 family)
{
	if (family == 4)
		__builtin_memcpy(d, s, 4);
	else
		__builtin_memcpy(d, s, 16);
}

/* How long a flow's ports stay taken after its last packet: a TCP flow reset or closed both
 * ways 10 s, one never answered 60 s, an answered one 6 h; UDP 30 s unanswered, 180 s
 * answered; ICMP 30 s. */
static __always_inline __u64 nat_timeout(__u8 proto, __u8 out_flags, __u8 in_flags)
{
	if (proto == IPPROTO_TCP) {
		if (((out_flags | in_flags) & STM_NAT_F_RST) || ((out_flags & in_flags) & STM_NAT_F_FIN))
			return 10 * NAT_SEC;
		return in_flags & STM_NAT_F_REPLIED ? 21600 * NAT_SEC : 60 * NAT_SEC;
	}
	if (proto == IPPROTO_UDP)
		return in_flags & STM_NAT_F_REPLIED ? 180 * NAT_SEC : 30 * NAT_SEC;
	return 30 * NAT_SEC;
}

/* Marks a direction's entry as used now (to the second) and records TCP FIN and RST. */
static __always_inline void nat_touch(struct stm_nat_entry *e, struct stm_tuple *t, __u64 now)
{
	if (now - e->seen > NAT_SEC)
		e->seen = now;
	if (t->proto == IPPROTO_TCP) {
		__u8 f = (t->tcp_flags & TCP_FIN ? STM_NAT_F_FIN : 0) | (t->tcp_flags & TCP_RST ? STM_NAT_F_RST : 0);
		if ((e->flags & f) != f)
			e->flags |= f;
	}
}

/* The reply direction's key of a flow whose original key is `o`, toward NAT address `a` and
 * port `port`. */
static __always_inline void nat_reply_key(struct stm_nat_key *r, const struct stm_nat_key *o, const __u8 *a, __u16 port)
{
	__builtin_memset(r, 0, sizeof(*r));
	r->family = o->family;
	r->proto = o->proto;
	r->dir = STM_NAT_IN;
	__builtin_memcpy(r->src, o->dst, 16);
	nat_copy(r->dst, a, o->family);
	if (o->proto == IPPROTO_TCP || o->proto == IPPROTO_UDP) {
		r->sport = o->dport;
		r->dport = port;
	} else {
		r->sport = r->dport = port;
	}
}

/* A socket of the node would receive what arrives at `port` from the flow's destination (a
 * listener, or a connection of its own): the port is not for the translation. */
static __always_inline int nat_port_busy(struct __sk_buff *skb, const struct stm_nat_key *r)
{
	struct bpf_sock_tuple tup = {};
	__u32 len;
	if (r->family == 4) {
		__builtin_memcpy(&tup.ipv4.saddr, r->src, 4);
		__builtin_memcpy(&tup.ipv4.daddr, r->dst, 4);
		tup.ipv4.sport = bpf_htons(r->sport);
		tup.ipv4.dport = bpf_htons(r->dport);
		len = sizeof(tup.ipv4);
	} else {
		__builtin_memcpy(tup.ipv6.saddr, r->src, 16);
		__builtin_memcpy(tup.ipv6.daddr, r->dst, 16);
		tup.ipv6.sport = bpf_htons(r->sport);
		tup.ipv6.dport = bpf_htons(r->dport);
		len = sizeof(tup.ipv6);
	}
	struct bpf_sock *sk;
	if (r->proto == IPPROTO_TCP)
		sk = (struct bpf_sock *)bpf_skc_lookup_tcp(skb, &tup, len, BPF_F_CURRENT_NETNS, 0);
	else if (r->proto == IPPROTO_UDP)
		sk = bpf_sk_lookup_udp(skb, &tup, len, BPF_F_CURRENT_NETNS, 0);
	else
		return 0;
	if (!sk)
		return 0;
	bpf_sk_release(sk);
	return 1;
}

/* A port of the NAT range for the new flow `o` (the workload's own when it is in the range and
 * free, else random tries): its reply entry is stored, then its original one. Returns 0, or -1
 * when every try found the port in use toward that destination. */
static __noinline int nat_alloc(struct __sk_buff *skb, const struct stm_nat_key *o, const struct stm_nat_net *nn,
				__u32 net_id)
{
	struct stm_nat_cfg *cfg = nat_cfg_on();
	if (!skb || !o || !nn || !cfg)
		return -1;
	__u64 now = bpf_ktime_get_ns();
	__u8 a[16] = {};
	if (o->family == 4)
		__builtin_memcpy(a, nn->addr4, 4);
	else
		__builtin_memcpy(a, nn->addr6, 16);
	__u32 z = 0;
	struct stm_nat_work *w = bpf_map_lookup_elem(&stm_nat_scratch, &z);
	if (!w)
		return -1;
	__u32 lo = cfg->port_lo, range = (__u32)cfg->port_hi - lo + 1;
	struct stm_nat_entry *e = &w->e;
	struct stm_nat_key *r = &w->r, *ok = &w->ok;
	__builtin_memset(e, 0, sizeof(*e));
	e->port = o->sport;
	e->net_id = net_id;
	e->seen = now;
	__builtin_memcpy(e->addr, o->src, 16);
	for (int i = 0; i < NAT_TRIES; i++) {
		__u32 port = o->sport;
		if (i > 0 || port < lo || port > cfg->port_hi)
			port = lo + bpf_get_prandom_u32() % range;
		nat_reply_key(r, o, a, (__u16)port);
		if (nat_port_busy(skb, r)) {
			nat_stat(STM_NAT_STAT_SOCKET_SKIP);
			continue;
		}
		if (bpf_map_update_elem(&stm_nat, r, e, BPF_NOEXIST)) {
			/* Taken: by a flow that has ended (then it is this one's), or not. */
			struct stm_nat_entry *old = bpf_map_lookup_elem(&stm_nat, r);
			if (!old)
				continue;
			__builtin_memset(ok, 0, sizeof(*ok));
			ok->family = o->family;
			ok->proto = o->proto;
			ok->dir = STM_NAT_OUT;
			__builtin_memcpy(ok->src, old->addr, 16);
			__builtin_memcpy(ok->dst, r->src, 16);
			ok->sport = old->port;
			ok->dport = o->proto == IPPROTO_TCP || o->proto == IPPROTO_UDP ? r->sport : old->port;
			struct stm_nat_entry *twin = bpf_map_lookup_elem(&stm_nat, ok);
			__u64 last = old->seen;
			__u8 tf = 0;
			if (twin) {
				tf = twin->flags;
				if (twin->seen > last)
					last = twin->seen;
			}
			if (now - last < nat_timeout(o->proto, tf, old->flags))
				continue;
			if (twin)
				bpf_map_delete_elem(&stm_nat, ok);
			if (bpf_map_update_elem(&stm_nat, r, e, BPF_ANY))
				continue;
			nat_stat(STM_NAT_STAT_RECLAIMED);
		}
		/* The original direction: the NAT address and port. */
		__builtin_memcpy(e->addr, a, 16);
		e->port = (__u16)port;
		if (bpf_map_update_elem(&stm_nat, o, e, BPF_ANY)) {
			bpf_map_delete_elem(&stm_nat, r);
			return -1;
		}
		nat_stat(STM_NAT_STAT_NEW);
		return 0;
	}
	return -1;
}

/* ---- rewriting ----------------------------------------------------------------------------- */

/* The L4 checksum's offset and the flags its updates take: 0 when the packet has none to
 * update (a later fragment, ICMPv4 for an address change). */
static __always_inline __u32 nat_l4_csum(struct stm_tuple *t, __u64 *flags)
{
	*flags = 0;
	if (t->frag == 2)
		return 0;
	if (t->proto == IPPROTO_TCP)
		return t->l4off + 16;
	if (t->proto == IPPROTO_UDP) {
		*flags = t->family == 4 ? BPF_F_MARK_MANGLED_0 : 0;
		return t->l4off + 6;
	}
	if (t->proto == IPPROTO_ICMP || t->proto == IPPROTO_ICMPV6_)
		return t->l4off + 2;
	return 0;
}

/* Replaces the source (`dst` 0) or destination address of the IP header with `to`, and the
 * checksums that cover it: the IPv4 header's, the L4 one through its pseudo-header (ICMPv4
 * has none). */
static __always_inline int nat_set_addr(struct __sk_buff *skb, struct stm_tuple *t, int dst, const __u8 *to)
{
	__u64 fl;
	__u32 csum = nat_l4_csum(t, &fl);
	if (t->proto == IPPROTO_ICMP)
		csum = 0;
	if (t->family == 4) {
		__u32 off = ETH_HLEN + (dst ? 16 : 12);
		__u32 from = *(__u32 *)(dst ? t->dst : t->src), nw = *(__u32 *)to;
		if (csum && bpf_l4_csum_replace(skb, csum, from, nw, fl | BPF_F_PSEUDO_HDR | 4))
			return -1;
		if (bpf_l3_csum_replace(skb, ETH_HLEN + 10, from, nw, 4))
			return -1;
		return bpf_skb_store_bytes(skb, off, to, 4, 0);
	}
	__u32 off = ETH_HLEN + (dst ? 24 : 8);
	__s64 diff = bpf_csum_diff((__be32 *)(dst ? t->dst : t->src), 16, (__be32 *)to, 16, 0);
	if (csum && bpf_l4_csum_replace(skb, csum, 0, diff, fl | BPF_F_PSEUDO_HDR))
		return -1;
	return bpf_skb_store_bytes(skb, off, to, 16, 0);
}

/* Replaces the 16 bits at `off` (a port, an echo identifier) and the L4 checksum over them. */
static __always_inline int nat_set_port(struct __sk_buff *skb, struct stm_tuple *t, __u32 off, __u16 from, __u16 to)
{
	if (from == to)
		return 0;
	__u64 fl;
	__u32 csum = nat_l4_csum(t, &fl);
	__u16 nf = bpf_htons(from), nt = bpf_htons(to);
	if (csum && bpf_l4_csum_replace(skb, csum, nf, nt, fl | 2))
		return -1;
	return bpf_skb_store_bytes(skb, off, &nt, 2, 0);
}

/* An ICMP error's quoted packet: its address at `which` (0 source, 1 destination) becomes
 * `to` and its port or echo identifier on that side `port` (`qport` the offset of the
 * quoted L4 header), the quoted IPv4 header's checksum with them; the ICMP checksum follows,
 * as does the outer address `outer` (0 source, 1 destination) becoming `to` too. */
static __always_inline int nat_icmp_err(struct __sk_buff *skb, struct stm_tuple *t, int which, const __u8 *to,
					__u16 port, int outer)
{
	__u32 in = t->l4off + 8, qhl;
	__u8 q[40];
	if (t->family == 4) {
		if (bpf_skb_load_bytes(skb, in, q, 20))
			return -1;
		qhl = (__u32)(q[0] & 0xf) * 4;
	} else {
		qhl = 40;
	}
	__u32 ql4 = in + qhl;
	__u32 port_off = ql4;
	if (t->inner_proto == IPPROTO_ICMP || t->inner_proto == IPPROTO_ICMPV6_)
		port_off += 4;
	else if (which)
		port_off += 2;
	__u16 old_port;
	if (bpf_skb_load_bytes(skb, port_off, &old_port, 2))
		return -1;
	const __u8 *old_addr = which ? t->inner_dst : t->inner_src;
	__u32 aoff = in + (t->family == 4 ? (which ? 16 : 12) : (which ? 24 : 8));
	__s64 diff;
	if (t->family == 4) {
		/* The quoted header's checksum, with the address in it changed. */
		__u16 old_sum = *(__u16 *)&q[10];
		__u32 s = (__u16)~old_sum;
		__u32 oa = *(__u32 *)old_addr, na = *(__u32 *)to;
		s += (__u16)~(oa & 0xffff) + (__u16)~(oa >> 16) + (na & 0xffff) + (na >> 16);
		s = (s & 0xffff) + (s >> 16);
		s = (s & 0xffff) + (s >> 16);
		__u16 new_sum = (__u16)~s;
		if (bpf_skb_store_bytes(skb, aoff, to, 4, 0) || bpf_skb_store_bytes(skb, in + 10, &new_sum, 2, 0))
			return -1;
		/* The ICMP checksum covers both changes. */
		__u32 w_old[2] = { oa, (__u32)old_sum }, w_new[2] = { na, (__u32)new_sum };
		diff = bpf_csum_diff(w_old, 8, w_new, 8, 0);
	} else {
		if (bpf_skb_store_bytes(skb, aoff, to, 16, 0))
			return -1;
		diff = bpf_csum_diff((__be32 *)old_addr, 16, (__be32 *)to, 16, 0);
	}
	__u16 np = bpf_htons(port);
	if (bpf_skb_store_bytes(skb, port_off, &np, 2, 0))
		return -1;
	__u32 pw_old = old_port, pw_new = np;
	diff = bpf_csum_diff(&pw_old, 4, &pw_new, 4, diff);
	if (bpf_l4_csum_replace(skb, t->l4off + 2, 0, diff, 0))
		return -1;
	/* The outer header: ICMPv6's checksum covers it (pseudo-header), ICMPv4's does not. */
	return nat_set_addr(skb, t, outer, to);
}

/* ---- the two directions -------------------------------------------------------------------- */

/* The key of the tuple's own flow in direction `dir`. */
static __always_inline void nat_key_of(struct stm_nat_key *k, struct stm_tuple *t, __u8 dir)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->family = t->family;
	k->proto = t->proto;
	k->dir = dir;
	nat_copy(k->src, t->src, t->family);
	nat_copy(k->dst, t->dst, t->family);
	k->sport = t->ct_sport;
	k->dport = t->ct_dport;
}

/* The key, in direction `dir`, of the flow an ICMP error quotes: the quoted packet went the
 * other way, so its source is the flow's destination. */
static __always_inline void nat_quoted_key(struct stm_nat_key *k, struct stm_tuple *t, __u8 dir)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->family = t->family;
	k->proto = t->inner_proto;
	k->dir = dir;
	nat_copy(k->src, t->inner_dst, t->family);
	nat_copy(k->dst, t->inner_src, t->family);
	k->sport = t->inner_dport;
	k->dport = t->inner_sport;
}

/* What leaves through the uplink (tc egress): a packet from a masqueraded network gets its NAT
 * address and port; anything else is left alone. STM_TC_NEXT, or the drop verdict. */
STM_SHARED int stm_nat_out(struct __sk_buff *skb, __u32 eth_proto)
{
	if (!skb)
		return STM_TC_DROP;
	struct stm_nat_cfg *cfg = nat_cfg_on();
	if (!cfg)
		return STM_TC_NEXT;
	int v6 = eth_proto == bpf_htons(STM_ETH_P_IPV6);
	struct stm_lpm6_key sk = { .prefixlen = 128 };
	if (v6) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN + 8, sk.addr, 16))
			return STM_TC_NEXT;
	} else {
		sk.addr[10] = 0xff;
		sk.addr[11] = 0xff;
		if (bpf_skb_load_bytes(skb, ETH_HLEN + 12, &sk.addr[12], 4))
			return STM_TC_NEXT;
	}
	struct stm_subnet *sn = bpf_map_lookup_elem(&stm_subnets, &sk);
	if (!sn)
		return STM_TC_NEXT;
	__u32 net_id = sn->net_id;
	struct stm_nat_net *nn = bpf_map_lookup_elem(&stm_nat_nets, &net_id);
	if (!nn)
		return STM_TC_NEXT;
	if (!(nn->flags & (v6 ? STM_NAT_NET_F_V6 : STM_NAT_NET_F_V4)))
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_NAT_UNTRANSLATABLE);
	__u8 a[16] = {};
	if (v6)
		__builtin_memcpy(a, nn->addr6, 16);
	else
		__builtin_memcpy(a, nn->addr4, 4);
	struct stm_tuple *t = fw_scratch(3, STM_FW_EGRESS, skb->len);
	if (!t)
		return STM_TC_DROP;
	int pr = stm_fw_parse_tc(skb, eth_proto, t);
	if (pr)
		return stm_drop(skb, STM_HOOK_TC_EGRESS, fw_parse_reason(pr));
	/* A later fragment: only its address changes (its first fragment carried the ports). */
	if (t->frag == 2) {
		if (nat_set_addr(skb, t, 0, a))
			return STM_TC_DROP;
		nat_stat(STM_NAT_STAT_FRAG);
		return STM_TC_NEXT;
	}
	__u32 z = 0;
	struct stm_nat_work *w = bpf_map_lookup_elem(&stm_nat_scratch, &z);
	if (!w)
		return STM_TC_DROP;
	struct stm_nat_key *k = &w->k;
	if (t->proto == IPPROTO_TCP || t->proto == IPPROTO_UDP || t->icmp == FW_ICMP_ECHO_REQ) {
		nat_key_of(k, t, STM_NAT_OUT);
		struct stm_nat_entry *e = bpf_map_lookup_elem(&stm_nat, k);
		if (!e) {
			/* A mid-flow segment whose entry is gone gets a port as a new flow would,
			 * rather than leak the workload's address. */
			if (nat_alloc(skb, k, nn, net_id) || !(e = bpf_map_lookup_elem(&stm_nat, k))) {
				nat_stat(STM_NAT_STAT_EXHAUSTED);
				return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_NAT_EXHAUSTED);
			}
		}
		nat_touch(e, t, bpf_ktime_get_ns());
		__u32 poff = t->proto == IPPROTO_TCP || t->proto == IPPROTO_UDP ? t->l4off : t->l4off + 4;
		if (nat_set_port(skb, t, poff, t->ct_sport, e->port) || nat_set_addr(skb, t, 0, e->addr))
			return STM_TC_DROP;
		return STM_TC_NEXT;
	}
	/* An ICMP error from the workload about a flow it was answered in (the quoted packet went
	 * from the outside to the workload): it goes out about the translated flow. */
	if (t->icmp == FW_ICMP_ERR && t->inner_proto) {
		nat_quoted_key(k, t, STM_NAT_OUT);
		struct stm_nat_entry *e = bpf_map_lookup_elem(&stm_nat, k);
		if (e) {
			if (nat_icmp_err(skb, t, 1, e->addr, e->port, 0))
				return STM_TC_DROP;
			nat_stat(STM_NAT_STAT_ICMP_ERR);
			return STM_TC_NEXT;
		}
	}
	return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_NAT_UNTRANSLATABLE);
}

#define NAT_IN_NONE 0     /* not to a NAT address: the uplink filter (XDP) has judged it */
#define NAT_IN_JUDGE 1    /* to a NAT address (translated back, or not one of its flows): judge it */

/* What arrives through the uplink (tc ingress): a reply to a translated flow, or an ICMP error
 * about one, gets the workload's address and port back. NAT_IN_*, or -1 when the rewrite
 * failed (drop). */
STM_SHARED int stm_nat_in(struct __sk_buff *skb, __u32 eth_proto, struct stm_tuple *t)
{
	if (!skb || !t)
		return -1;
	if (!nat_cfg_on())
		return NAT_IN_NONE;
	struct stm_vtep_key ak = {};
	int v6 = eth_proto == bpf_htons(STM_ETH_P_IPV6);
	if (v6) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN + 24, ak.addr, 16))
			return NAT_IN_NONE;
	} else {
		ak.addr[10] = 0xff;
		ak.addr[11] = 0xff;
		if (bpf_skb_load_bytes(skb, ETH_HLEN + 16, &ak.addr[12], 4))
			return NAT_IN_NONE;
	}
	if (!bpf_map_lookup_elem(&stm_nat_addrs, &ak))
		return NAT_IN_NONE;
	if (stm_fw_parse_tc(skb, eth_proto, t))
		return NAT_IN_JUDGE;
	struct stm_frag_key fk = { .family = t->family, .proto = t->proto, .id = t->frag_id };
	nat_copy(fk.src, t->src, t->family);
	nat_copy(fk.dst, t->dst, t->family);
	if (t->frag == 2) {
		struct stm_vtep_key *w = bpf_map_lookup_elem(&stm_nat_frags, &fk);
		if (!w)
			return NAT_IN_JUDGE;
		__u8 to[16];
		__builtin_memcpy(to, w->addr, 16);
		if (nat_set_addr(skb, t, 1, to))
			return -1;
		nat_stat(STM_NAT_STAT_FRAG);
		return NAT_IN_JUDGE;
	}
	struct stm_nat_key k;
	if (t->proto == IPPROTO_TCP || t->proto == IPPROTO_UDP || t->icmp == FW_ICMP_ECHO_REP) {
		nat_key_of(&k, t, STM_NAT_IN);
		struct stm_nat_entry *e = bpf_map_lookup_elem(&stm_nat, &k);
		if (!e)
			return NAT_IN_JUDGE;
		if (!(e->flags & STM_NAT_F_REPLIED))
			e->flags |= STM_NAT_F_REPLIED;
		nat_touch(e, t, bpf_ktime_get_ns());
		__u16 port = e->port;
		__u8 to[16];
		__builtin_memcpy(to, e->addr, 16);
		__u32 poff = t->proto == IPPROTO_TCP || t->proto == IPPROTO_UDP ? t->l4off + 2 : t->l4off + 4;
		if (nat_set_port(skb, t, poff, t->ct_dport, port) || nat_set_addr(skb, t, 1, to))
			return -1;
		if (t->frag == 1) {
			struct stm_vtep_key w = {};
			__builtin_memcpy(w.addr, to, 16);
			bpf_map_update_elem(&stm_nat_frags, &fk, &w, BPF_ANY);
		}
		return NAT_IN_JUDGE;
	}
	if (t->icmp == FW_ICMP_ERR && t->inner_proto) {
		/* The quoted packet is the translated one, from the NAT address to the outside. */
		nat_quoted_key(&k, t, STM_NAT_IN);
		struct stm_nat_entry *e = bpf_map_lookup_elem(&stm_nat, &k);
		if (!e)
			return NAT_IN_JUDGE;
		__u8 to[16];
		__builtin_memcpy(to, e->addr, 16);
		if (nat_icmp_err(skb, t, 0, to, e->port, 1))
			return -1;
		nat_stat(STM_NAT_STAT_ICMP_ERR);
	}
	return NAT_IN_JUDGE;
}

/* The uplink filter (XDP) on a packet to `dst`: 1 when it is a NAT address (the translation,
 * at tc ingress, and the global scope after it take the packet), 2 when it is inside a
 * masqueraded network not extended onto the LAN (nat-inbound), else 0. */
static __always_inline int stm_nat_xdp(const __u8 *dst, __u8 family)
{
	if (!nat_cfg_on())
		return 0;
	struct stm_vtep_key ak;
	nat_addr_key(&ak, dst, family);
	if (bpf_map_lookup_elem(&stm_nat_addrs, &ak))
		return 1;
	struct stm_lpm6_key k = { .prefixlen = 128 };
	__builtin_memcpy(k.addr, ak.addr, 16);
	struct stm_subnet *n = bpf_map_lookup_elem(&stm_subnets, &k);
	if (!n || (n->flags & STM_SUBNET_F_LAN))
		return 0;
	__u32 id = n->net_id;
	return bpf_map_lookup_elem(&stm_nat_nets, &id) ? 2 : 0;
}

#endif
