/* The L4 load balancer. A packet to a VIP (stm_lb_vips: address, port, protocol)
 * keeps the backend its flow was given (stm_lb_ct, dir 0) while that backend is up; else it
 * gets one from the VIP's Maglev table (stm_lb_rings: slot = lb_hash % size, the hash
 * src/lb/maglev.ts flowHash computes) and both directions are recorded. Its destination becomes
 * the backend's; the backend's replies get the VIP back as their source (dir 1) where they
 * leave toward the client.
 *   stm_lb_xdp     the uplink's XDP: clients outside (checksums by hand: XDP has no skb)
 *   stm_lb_tc_in   stm_port_in: an endpoint reaching a VIP
 *   stm_lb_tc_rev  stm_port_out (clients that are endpoints), stm_uplink_out (outside)
 * Everything after the translation (firewalls, microsegmentation, caps) judges the packet with
 * the backend's address.
 * A DSR VIP (STM_LB_F_DSR) keeps its address: the frame goes to the backend's MAC (the uplink's
 * XDP, the client's port), the backend answers from the VIP itself (stm_lb_dsr_port admits
 * that at its port), and nothing is translated back. Its table holds backends of this node
 * only (docs/load-balancer.md#direct-server-return). */
#ifndef STM_LB_H
#define STM_LB_H

#include "stm_common.h"
#include "stm_maps.h"
#include "stm_drop.h"
#include "stm_csum.h"
#include "stm_parse.h"
#include "stm_fw.h"
#include "stm_nat.h"

#define LB_NOT_VIP 0
#define LB_TRANSLATE 1
#define LB_DSR 2 /* a DSR VIP's: to the backend's MAC, addresses untouched */
#define LB_DROP 0x100
/* stm_lb_xdp's verdict for a packet it translated (passes, as XDP_PASS does). */
#define LB_XDP_TRANSLATED 0x10

/* What the load balancer reads of a packet (a tuple's addresses: IPv4 in the first 4 bytes). */
struct stm_lb_flow {
	__u8 src[16];
	__u8 dst[16];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 family;
	__u8 frag; /* a fragment, first or later */
	__u8 _pad;
	__u32 len;
};

static __always_inline void lb_flow_of(struct stm_lb_flow *f, const struct stm_tuple *t)
{
	__builtin_memcpy(f->src, t->src, 16);
	__builtin_memcpy(f->dst, t->dst, 16);
	f->sport = t->sport;
	f->dport = t->dport;
	f->proto = t->proto;
	f->family = t->family;
	f->frag = t->frag != 0;
	f->len = t->len;
}

static __always_inline __u32 lb_rotl(__u32 x, __u32 r)
{
	return (x << r) | (x >> (32 - r));
}

static __always_inline __u32 lb_mix(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51;
	k = lb_rotl(k, 15);
	k *= 0x1b873593;
	h ^= k;
	h = lb_rotl(h, 13);
	return h * 5 + 0xe6546b64;
}

/* MurmurHash3 (x86, 32 bits, seed "STRM") of six little-endian words: the client's address
 * (IPv4 as ::ffff:a.b.c.d), sport << 16 | dport, the protocol. */
static __always_inline __u32 lb_hash(const struct stm_lb_flow *t)
{
	__u32 w[4] = { 0, 0, 0, 0 };
	if (t->family == 4) {
		w[2] = 0xffff0000;
		__builtin_memcpy(&w[3], t->src, 4);
	} else {
		__builtin_memcpy(w, t->src, 16);
	}
	__u32 h = 0x5354524d;
	h = lb_mix(h, w[0]);
	h = lb_mix(h, w[1]);
	h = lb_mix(h, w[2]);
	h = lb_mix(h, w[3]);
	h = lb_mix(h, ((__u32)t->sport << 16) | t->dport);
	h = lb_mix(h, t->proto);
	h ^= 24;
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

static __always_inline int lb_same16(const __u8 *a, const __u8 *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;
	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

static __always_inline void lb_stat(__u32 i)
{
	__u64 *v = bpf_map_lookup_elem(&stm_lb_stats, &i);
	if (v)
		*v += 1;
}

static __always_inline void lb_hit(__u32 backend, __u32 len, int fresh)
{
	struct stm_lb_hit *h = bpf_map_lookup_elem(&stm_lb_hits, &backend);
	if (!h)
		return;
	h->packets++;
	h->bytes += len;
	if (fresh)
		h->flows++;
}

/* Whether the node has a VIP at all: one array lookup, what every packet of a node without one pays. */
static __always_inline int lb_on(void)
{
	__u32 zero = 0;
	struct stm_lb_cfg *cfg = bpf_map_lookup_elem(&stm_lb_cfg, &zero);
	return cfg && cfg->vips;
}

/* Whether any VIP uses the packet's destination address: one lookup, before any parsing. */
static __always_inline int lb_addr_is_vip(const __u8 *a, __u8 family)
{
	struct stm_lb_vip_key k = { .family = family };
	if (family == 4)
		__builtin_memcpy(k.addr, a, 4);
	else
		__builtin_memcpy(k.addr, a, 16);
	return bpf_map_lookup_elem(&stm_lb_vips, &k) != NULL;
}

/* The reply direction's entry of the flow `t` given backend `baddr`:`bport`: keyed by the
 * backend's reply to the client, the VIP its value. `k` and `v` are the caller's room (its
 * stack is short); `v` is left holding the reply's value. */
static __always_inline int lb_put_reply(struct stm_lb_ct_key *k, struct stm_lb_ct *v, const struct stm_lb_flow *t,
					const __u8 *baddr, __u16 bport, __u32 bid, __u32 vip, __u64 now, __u64 flags)
{
	__builtin_memset(v, 0, sizeof(*v));
	__builtin_memcpy(v->addr, t->dst, 16);
	v->port = t->dport;
	v->backend = bid;
	v->vip = vip;
	v->seen = now;
	k->sport = bport;
	k->dport = t->sport;
	k->dir = 1;
	__builtin_memcpy(k->src, baddr, 16);
	__builtin_memcpy(k->dst, t->src, 16);
	return bpf_map_update_elem(&stm_lb_ct, k, v, flags);
}

/* The flow's backend for the packet `t`, whose destination address is a VIP's: LB_TRANSLATE
 * with *out the backend's address and port, or LB_DROP + a drop reason. A flow whose backend is
 * down or gone is given another one at its next packet (docs/load-balancer.md#flows). */
STM_SHARED int stm_lb_select(struct stm_lb_flow *t, struct stm_lb_ct *out)
{
	if (!t || !out)
		return LB_DROP + STM_DROP_MALFORMED;
	struct stm_lb_vip_key vk = { .family = t->family };
	__builtin_memcpy(vk.addr, t->dst, 16);
	if (t->frag)
		return LB_DROP + STM_DROP_LB_FRAGMENT;
	if (t->proto != IPPROTO_TCP && t->proto != IPPROTO_UDP)
		return LB_DROP + STM_DROP_LB_UNPUBLISHED;
	vk.port = t->dport;
	vk.proto = t->proto;
	struct stm_lb_vip *v = bpf_map_lookup_elem(&stm_lb_vips, &vk);
	if (!v)
		return LB_DROP + STM_DROP_LB_UNPUBLISHED;
	__u32 vip = v->id, size = v->size;
	/* DSR: no reply entry (the backend answers from the VIP, nothing to translate back). */
	int dsr = v->flags & STM_LB_F_DSR;

	struct stm_lb_ct_key k = { .sport = t->sport, .dport = t->dport, .proto = t->proto, .family = t->family };
	__builtin_memcpy(k.src, t->src, 16);
	__builtin_memcpy(k.dst, t->dst, 16);
	__u64 now = bpf_ktime_get_coarse_ns() >> 30;
	__u32 stat = STM_LB_STAT_NEW;
	struct stm_lb_ct *c = bpf_map_lookup_elem(&stm_lb_ct, &k);
	if (c && c->vip == vip) {
		__u32 id = c->backend;
		struct stm_lb_backend *b = bpf_map_lookup_elem(&stm_lb_backends, &id);
		/* Up, still the VIP's, and still at the address the flow was sent to. */
		if (b && (b->flags & STM_LB_B_UP) && b->vip == vip && b->port == c->port && lb_same16(b->addr, c->addr)) {
			/* Once a second: the reply's entry is there (the LRU may have taken it alone).
			 * `out` is room for its value until it gets the flow's. */
			if (c->seen != now) {
				c->seen = now;
				if (!dsr)
					lb_put_reply(&k, out, t, c->addr, c->port, id, vip, now, BPF_NOEXIST);
			}
			__builtin_memcpy(out, c, sizeof(*out));
			lb_hit(id, t->len, 0);
			return dsr ? LB_DSR : LB_TRANSLATE;
		}
		stat = STM_LB_STAT_REPICK;
	}

	void *ring = bpf_map_lookup_elem(&stm_lb_rings, &vip);
	if (!ring || !size)
		return LB_DROP + STM_DROP_LB_NO_BACKEND;
	__u32 slot = lb_hash(t) % size;
	__u32 *id = bpf_map_lookup_elem(ring, &slot);
	if (!id)
		return LB_DROP + STM_DROP_LB_NO_BACKEND;
	__u32 bid = *id;
	struct stm_lb_backend *b = bpf_map_lookup_elem(&stm_lb_backends, &bid);
	if (!b || !(b->flags & STM_LB_B_UP) || b->vip != vip || b->family != t->family)
		return LB_DROP + STM_DROP_LB_NO_BACKEND;

	/* The reply's entry first: a flow is never translated one way only. One key and one
	 * value on the stack (the uplink's XDP calls this with little room left): `out`. */
	if (!dsr && lb_put_reply(&k, out, t, b->addr, b->port, bid, vip, now, BPF_ANY))
		return LB_DROP + STM_DROP_LB_NO_BACKEND;
	struct stm_lb_ct val = { .port = b->port, .backend = bid, .vip = vip, .seen = now };
	k.sport = t->sport;
	k.dport = t->dport;
	k.dir = 0;
	__builtin_memcpy(k.src, t->src, 16);
	__builtin_memcpy(k.dst, t->dst, 16);
	__builtin_memcpy(val.addr, b->addr, 16);
	if (bpf_map_update_elem(&stm_lb_ct, &k, &val, BPF_ANY))
		return LB_DROP + STM_DROP_LB_NO_BACKEND;
	lb_stat(stat);
	lb_hit(bid, t->len, 1);
	__builtin_memcpy(out, &val, sizeof(*out));
	return dsr ? LB_DSR : LB_TRANSLATE;
}

/* A DSR flow's frame: to backend `id`'s MAC, nothing else changed (the uplink's bridge
 * forwards it to the backend's port). LB_XDP_TRANSLATED, or a drop. */
static __always_inline int lb_dsr_xdp(struct xdp_md *ctx, __u32 id)
{
	struct stm_lb_backend *b = bpf_map_lookup_elem(&stm_lb_backends, &id);
	if (!b)
		return stm_drop_xdp(ctx, STM_DROP_LB_NO_BACKEND);
	if (bpf_xdp_store_bytes(ctx, 0, b->mac, 6))
		return stm_drop_xdp(ctx, STM_DROP_MALFORMED);
	return LB_XDP_TRANSLATED;
}

/* XDP, the general case (IPv4 options, IPv6 extension headers; `t` the packet's tuple): the
 * destination becomes `addr`, `port`, the IPv4 header's checksum and the L4 one (pseudo-header
 * and port) updated through helpers. A UDP/IPv4 datagram without a checksum keeps none.
 * Returns 0, or -1 when the packet is too short. */
static __always_inline int lb_dnat_xdp(struct xdp_md *ctx, struct stm_tuple *t, __u32 l3, const __u8 *addr, __u16 port)
{
	if (t->l4off > 0x1ff)
		return -1;
	__u32 l4 = t->l4off & 0x1ff;
	__u32 coff = l4 + (t->proto == IPPROTO_TCP ? 16 : 6);
	__u16 csum, ports[2], nports[2];
	if (bpf_xdp_load_bytes(ctx, coff, &csum, 2) || bpf_xdp_load_bytes(ctx, l4, ports, 4))
		return -1;
	nports[0] = ports[0];
	nports[1] = bpf_htons(port);
	int v4 = t->family == 4;
	if (!(t->proto == IPPROTO_UDP && v4 && csum == 0)) {
		__s64 s;
		if (v4)
			s = bpf_csum_diff((__be32 *)t->dst, 4, (__be32 *)addr, 4, ~csum & 0xffff);
		else
			s = bpf_csum_diff((__be32 *)t->dst, 16, (__be32 *)addr, 16, ~csum & 0xffff);
		s = bpf_csum_diff((__be32 *)ports, 4, (__be32 *)nports, 4, (__u32)s);
		__u16 c = csum_fold(s);
		if (t->proto == IPPROTO_UDP && c == 0)
			c = 0xffff;
		if (bpf_xdp_store_bytes(ctx, coff, &c, 2))
			return -1;
	}
	if (bpf_xdp_store_bytes(ctx, l4, nports, 4))
		return -1;
	if (!v4)
		return bpf_xdp_store_bytes(ctx, l3 + 24, (void *)addr, 16) ? -1 : 0;
	__u16 ic;
	if (bpf_xdp_load_bytes(ctx, l3 + 10, &ic, 2))
		return -1;
	__u16 nc = csum_fold(bpf_csum_diff((__be32 *)t->dst, 4, (__be32 *)addr, 4, ~ic & 0xffff));
	if (bpf_xdp_store_bytes(ctx, l3 + 10, &nc, 2) || bpf_xdp_store_bytes(ctx, l3 + 16, (void *)addr, 4))
		return -1;
	return 0;
}

/* A checksum over `n` 16-bit words that changed from `from` to `to` (RFC 1624: HC' = ~(~HC +
 * ~m + m')), in place. */
static __always_inline void lb_csum_words(__u16 *csum, const __u16 *from, const __u16 *to, int n)
{
	__u32 s = (__u16)~*csum;
#pragma unroll
	for (int i = 0; i < 8; i++)
		if (i < n)
			s += (__u16)~from[i] + (__u32)to[i];
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	*csum = ~s;
}

/* The uplink's XDP (an untagged IP packet): a packet to a VIP is given its flow's backend.
 * LB_XDP_TRANSLATED, XDP_PASS (not a VIP's), or XDP_DROP (counted). The common packet (IPv4
 * without options, IPv6 with TCP or UDP right after its header) is read and rewritten in
 * place; anything else takes the general parse. */
STM_SHARED int stm_lb_xdp(struct xdp_md *ctx, __u32 eth_proto)
{
	if (!ctx)
		return XDP_DROP;
	if (!lb_on())
		return XDP_PASS;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct stm_lb_flow f = { .len = (__u32)(end - data) };
	/* The general parse (into the scratch tuple) when the fast one cannot read the packet. */
	struct stm_tuple *t = NULL;
	__u8 *l4 = NULL;
	if (eth_proto == bpf_htons(STM_ETH_P_IP)) {
		struct iphdr *ip = data + ETH_HLEN;
		if ((void *)(ip + 1) > end || !lb_addr_is_vip((const __u8 *)&ip->daddr, 4))
			return XDP_PASS;
		if (ip->ihl == 5) {
			f.family = 4;
			f.proto = ip->protocol;
			f.frag = (ip->frag_off & bpf_htons(0x3fff)) != 0;
			__builtin_memcpy(f.src, &ip->saddr, 4);
			__builtin_memcpy(f.dst, &ip->daddr, 4);
			l4 = (void *)(ip + 1);
		}
	} else {
		struct ipv6hdr *ip6 = data + ETH_HLEN;
		if ((void *)(ip6 + 1) > end || !lb_addr_is_vip(ip6->daddr.in6_u.u6_addr8, 6))
			return XDP_PASS;
		if (ip6->nexthdr == IPPROTO_TCP || ip6->nexthdr == IPPROTO_UDP) {
			f.family = 6;
			f.proto = ip6->nexthdr;
			__builtin_memcpy(f.src, &ip6->saddr, 16);
			__builtin_memcpy(f.dst, &ip6->daddr, 16);
			l4 = (void *)(ip6 + 1);
		}
	}
	if (l4) {
		if (!f.frag && (f.proto == IPPROTO_TCP || f.proto == IPPROTO_UDP)) {
			if ((void *)(l4 + 4) > end)
				return stm_drop_xdp(ctx, STM_DROP_MALFORMED);
			f.sport = bpf_ntohs(*(__u16 *)l4);
			f.dport = bpf_ntohs(*(__u16 *)(l4 + 2));
		}
	} else {
		t = fw_scratch(2, STM_FW_INGRESS, f.len);
		if (!t)
			return XDP_DROP;
		int pr = stm_fw_parse_xdp(ctx, eth_proto, ETH_HLEN, t);
		if (pr)
			return stm_drop_xdp(ctx, fw_parse_reason(pr));
		lb_flow_of(&f, t);
	}
	struct stm_lb_ct c = {};
	int r = stm_lb_select(&f, &c);
	if (r >= LB_DROP)
		return stm_drop_xdp(ctx, r - LB_DROP);
	if (r == LB_DSR)
		return lb_dsr_xdp(ctx, c.backend);
	if (t)
		return lb_dnat_xdp(ctx, t, ETH_HLEN, c.addr, c.port) ? stm_drop_xdp(ctx, STM_DROP_MALFORMED) : LB_XDP_TRANSLATED;

	/* In place, with the pointers taken again (the verifier forgets them across the call). */
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	__u16 nport = bpf_htons(c.port), oport = bpf_htons(f.dport);
	__u8 *ipb = data + ETH_HLEN;
	__u8 *l4p = ipb + (f.family == 4 ? 20 : 40);
	__u16 *csum;
	if (f.proto == IPPROTO_TCP) {
		if ((void *)(l4p + 20) > end)
			return stm_drop_xdp(ctx, STM_DROP_MALFORMED);
		csum = (__u16 *)(l4p + 16);
	} else {
		if ((void *)(l4p + 8) > end)
			return stm_drop_xdp(ctx, STM_DROP_MALFORMED);
		csum = (__u16 *)(l4p + 6);
	}
	if (!(f.proto == IPPROTO_UDP && f.family == 4 && *csum == 0)) {
		lb_csum_words(csum, (const __u16 *)f.dst, (const __u16 *)c.addr, f.family == 4 ? 2 : 8);
		lb_csum_words(csum, &oport, &nport, 1);
		if (f.proto == IPPROTO_UDP && *csum == 0)
			*csum = 0xffff;
	}
	*(__u16 *)(l4p + 2) = nport;
	if (f.family == 4) {
		lb_csum_words((__u16 *)(ipb + 10), (const __u16 *)f.dst, (const __u16 *)c.addr, 2);
		__builtin_memcpy(ipb + 16, c.addr, 4);
	} else {
		__builtin_memcpy(ipb + 24, c.addr, 16);
	}
	return LB_XDP_TRANSLATED;
}

/* An endpoint's packet to a VIP (stm_port_in, before its firewall): given its flow's backend.
 * A backend of the endpoint's own network (`net_id`) gets the frame as the endpoint's own, to
 * its MAC: bridged to it, over the overlay when it runs on another node (which carries only
 * endpoints' frames, not routed ones). One of another network is reached through the node's
 * routing, on this node. STM_TC_NEXT, or the drop verdict. */
STM_SHARED int stm_lb_tc_in(struct __sk_buff *skb, __u32 eth_proto, __u32 net_id)
{
	if (!skb)
		return STM_TC_DROP;
	if (!lb_on())
		return STM_TC_NEXT;
	__u8 a[16];
	int v4 = eth_proto == bpf_htons(STM_ETH_P_IP);
	if (bpf_skb_load_bytes(skb, ETH_HLEN + (v4 ? 16 : 24), a, v4 ? 4 : 16) || !lb_addr_is_vip(a, v4 ? 4 : 6))
		return STM_TC_NEXT;
	struct stm_tuple *t = fw_scratch(STM_FW_EGRESS, STM_FW_EGRESS, skb->len);
	if (!t)
		return STM_TC_DROP;
	int pr = stm_fw_parse_tc(skb, eth_proto, t);
	if (pr)
		return stm_drop(skb, STM_HOOK_TC_INGRESS, fw_parse_reason(pr));
	struct stm_lb_flow f;
	lb_flow_of(&f, t);
	struct stm_lb_ct c = {};
	int r = stm_lb_select(&f, &c);
	if (r >= LB_DROP)
		return stm_drop(skb, STM_HOOK_TC_INGRESS, r - LB_DROP);
	__u32 id = c.backend;
	struct stm_lb_backend *b;
	if (r == LB_DSR) {
		/* To the backend's MAC, whatever its network: its port admits a DSR VIP's frame. */
		b = bpf_map_lookup_elem(&stm_lb_backends, &id);
		if (!b)
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_LB_NO_BACKEND);
		return bpf_skb_store_bytes(skb, 0, b->mac, 6, 0) ? STM_TC_DROP : STM_TC_NEXT;
	}
	if (nat_set_port(skb, t, t->l4off + 2, t->dport, c.port) || nat_set_addr(skb, t, 1, c.addr))
		return STM_TC_DROP;
	b = bpf_map_lookup_elem(&stm_lb_backends, &id);
	if (b && b->net_id && b->net_id == net_id && bpf_skb_store_bytes(skb, 0, b->mac, 6, 0))
		return STM_TC_DROP;
	return STM_TC_NEXT;
}

/* An IPv4 packet's family, protocol and source (`dst` 0) or destination address into `k`;
 * returns where its L4 header starts, or 0 for a later fragment (no ports) or a short packet. */
static __always_inline __u32 lb_key4(struct __sk_buff *skb, struct stm_lb_vip_key *k, __u32 dst)
{
	__u8 h[20];
	if (bpf_skb_load_bytes(skb, ETH_HLEN, h, 20) || (*(__u16 *)(h + 6) & bpf_htons(0x1fff)))
		return 0;
	k->family = 4;
	k->proto = h[9];
	__builtin_memcpy(k->addr, h + (dst ? 16 : 12), 4);
	return ETH_HLEN + (h[0] & 0xf) * 4;
}

/* Whether the packet belongs to a flow of a DSR VIP that this node's load balancer gave port
 * `port`: one it answers (`to` 0: from the VIP's address and port) or one it is sent (`to` 1:
 * the VIP's frame from outside the port's network, which the port admits). The flow's entry in
 * stm_lb_ct must name this port's endpoint: a backend cannot answer, or be sent, another
 * backend's flows or a flow nobody opened. TCP and UDP only, with the ports right after the
 * fixed header; a later fragment has none. A VLAN-tagged frame never gets here: port_of drops
 * it first. 1 or 0. */
STM_SHARED int stm_lb_dsr_port(struct __sk_buff *skb, struct stm_port *port, __u32 eth_proto, __u32 to)
{
	if (!skb || !port || !lb_on())
		return 0;
	struct stm_lb_vip_key k = {};
	/* The flow as the client opened it: the client's address and port, the VIP's. */
	struct stm_lb_ct_key ck = {};
	__u32 l4;
	if (eth_proto == bpf_htons(STM_ETH_P_IP)) {
		l4 = lb_key4(skb, &k, to);
		if (!l4 || bpf_skb_load_bytes(skb, ETH_HLEN + (to ? 12 : 16), ck.src, 4))
			return 0;
	} else if (eth_proto == bpf_htons(STM_ETH_P_IPV6)) {
		__u8 h[40];
		if (bpf_skb_load_bytes(skb, ETH_HLEN, h, 40))
			return 0;
		k.family = 6;
		k.proto = h[6];
		__builtin_memcpy(k.addr, h + (to ? 24 : 8), 16);
		__builtin_memcpy(ck.src, h + (to ? 8 : 24), 16);
		l4 = ETH_HLEN + IP6_HLEN;
	} else {
		return 0;
	}
	if (k.proto != IPPROTO_TCP && k.proto != IPPROTO_UDP)
		return 0;
	__u16 ports[2];
	if (bpf_skb_load_bytes(skb, l4 & 0xff, ports, 4))
		return 0;
	k.port = bpf_ntohs(to ? ports[1] : ports[0]);
	struct stm_lb_vip *v = bpf_map_lookup_elem(&stm_lb_vips, &k);
	if (!v || !(v->flags & STM_LB_F_DSR))
		return 0;
	__u32 vip = v->id;
	struct stm_lb_dsr_key d = { .vip = vip };
	__builtin_memcpy(d.mac, port->mac, 6);
	if (!bpf_map_lookup_elem(&stm_lb_dsr, &d))
		return 0;
	ck.sport = bpf_ntohs(to ? ports[0] : ports[1]);
	ck.dport = k.port;
	ck.proto = k.proto;
	ck.family = k.family;
	__builtin_memcpy(ck.dst, k.addr, 16);
	struct stm_lb_ct *c = bpf_map_lookup_elem(&stm_lb_ct, &ck);
	if (!c || c->vip != vip)
		return 0;
	__u32 bid = c->backend;
	struct stm_lb_backend *b = bpf_map_lookup_elem(&stm_lb_backends, &bid);
	return b && b->vip == vip && mac_eq(b->mac, port->mac);
}

/* Whether the packet comes from a backend's address and port (stm_lb_bsrc): read from its
 * headers alone, before any parse. An IPv6 packet whose TCP or UDP header does not follow its
 * fixed header counts as a candidate (the general parse decides). */
static __always_inline int lb_from_backend(struct __sk_buff *skb, __u32 eth_proto)
{
	struct stm_lb_vip_key k = {};
	__u32 l4;
	if (eth_proto == bpf_htons(STM_ETH_P_IP)) {
		l4 = lb_key4(skb, &k, 0);
		if (!l4)
			return 0;
	} else {
		__u8 h[24];
		if (bpf_skb_load_bytes(skb, ETH_HLEN, h, 24))
			return 0;
		/* Behind extension headers (hop-by-hop, routing, fragment, destination options) the
		 * general parse decides; anything else that is not TCP or UDP is no reply of a flow. */
		if (h[6] != IPPROTO_TCP && h[6] != IPPROTO_UDP)
			return h[6] == 0 || h[6] == 43 || h[6] == 44 || h[6] == 60;
		k.family = 6;
		k.proto = h[6];
		__builtin_memcpy(k.addr, h + 8, 16);
		l4 = ETH_HLEN + IP6_HLEN;
	}
	if (k.proto != IPPROTO_TCP && k.proto != IPPROTO_UDP)
		return 0;
	__u16 sport;
	if (bpf_skb_load_bytes(skb, l4 & 0xff, &sport, 2))
		return 0;
	k.port = bpf_ntohs(sport);
	return bpf_map_lookup_elem(&stm_lb_bsrc, &k) != NULL;
}

/* A backend's reply on its way to the client (`hook` of the port or the uplink): its source
 * becomes the VIP's. `slot`: the scratch tuple to parse into, already holding this packet's
 * when `parsed` (the firewall's). Anything not from a backend's address and port is left after
 * one lookup. STM_TC_NEXT, or the drop verdict. */
STM_SHARED int stm_lb_tc_rev(struct __sk_buff *skb, __u32 eth_proto, __u32 hook, __u32 slot, __u32 parsed)
{
	if (!skb)
		return STM_TC_DROP;
	if (!lb_on())
		return STM_TC_NEXT;
	struct stm_tuple *t;
	if (parsed) {
		__u32 s = slot & 3;
		t = bpf_map_lookup_elem(&stm_fw_scratch, &s);
		if (!t)
			return STM_TC_NEXT;
		struct stm_lb_vip_key b = { .port = t->sport, .proto = t->proto, .family = t->family };
		__builtin_memcpy(b.addr, t->src, 16);
		if (!bpf_map_lookup_elem(&stm_lb_bsrc, &b))
			return STM_TC_NEXT;
	} else {
		if (!lb_from_backend(skb, eth_proto))
			return STM_TC_NEXT;
		t = fw_scratch(slot & 3, slot & 3, skb->len);
		if (!t || stm_fw_parse_tc(skb, eth_proto, t))
			return STM_TC_NEXT;
	}
	if (t->frag == 2 || (t->proto != IPPROTO_TCP && t->proto != IPPROTO_UDP))
		return STM_TC_NEXT;
	struct stm_lb_ct_key k = { .sport = t->sport, .dport = t->dport, .proto = t->proto, .dir = 1, .family = t->family };
	__builtin_memcpy(k.src, t->src, 16);
	__builtin_memcpy(k.dst, t->dst, 16);
	struct stm_lb_ct *c = bpf_map_lookup_elem(&stm_lb_ct, &k);
	if (!c)
		return STM_TC_NEXT;
	__u8 vip[16];
	__builtin_memcpy(vip, c->addr, 16);
	__u16 port = c->port;
	if (nat_set_port(skb, t, t->l4off, t->sport, port) || nat_set_addr(skb, t, 0, vip))
		return stm_drop(skb, hook, STM_DROP_MALFORMED);
	lb_stat(STM_LB_STAT_REV);
	return STM_TC_NEXT;
}

#endif
