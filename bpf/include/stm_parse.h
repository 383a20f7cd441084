/* Bounded header parsers every program shares. The IPv6 extension-header chain is walked
 * here and only here, so every decision about the upper-layer header (ICMPv6 type, UDP
 * port) is made on the same header at every hook, whatever headers come before it. Loads
 * go through one macro for tc and XDP contexts: `xdp` is a constant where these are
 * inlined, and each program keeps only its own helper. */
#ifndef STM_PARSE_H
#define STM_PARSE_H

#include "stm_common.h"
#include "stm_abi.h"
#include "stm_drop.h"
#include "stm_fw.h"

#define STM_ETH_HLEN 14
#define STM_IP6_HLEN 40
/* Extension headers walked before the upper-layer header; a longer chain is not classified. */
#define STM_IP6_MAX_EXT 6

#define STM_IPPROTO_HOPOPTS 0
#define STM_IPPROTO_ROUTING 43
#define STM_IPPROTO_FRAGMENT 44
#define STM_IPPROTO_AH 51
#define STM_IPPROTO_ICMPV6 58
#define STM_IPPROTO_NONE 59
#define STM_IPPROTO_DSTOPTS 60

#define STM_LOAD(ctx, xdp, off, buf, n)                                                       \
	((xdp) ? bpf_xdp_load_bytes((struct xdp_md *)(ctx), off, buf, n)                        \
	       : bpf_skb_load_bytes((struct __sk_buff *)(ctx), off, buf, n))

/* Where an IPv6 packet's upper-layer header is, as the walk found it. */
struct stm_ip6_l4 {
	__u32 off;     /* the upper-layer header */
	__u32 left;    /* bytes from `off` to the end of the payload */
	__u32 frag_id; /* the fragment header's identification (frag != 0) */
	__u8 proto;    /* the upper-layer protocol */
	__u8 frag;     /* 0 whole, 1 first fragment, 2 a later one (no upper-layer header) */
	__u8 pad[2];
};

#define STM_WALK_TRUNCATED (-1) /* a header runs past the payload, or could not be read */
#define STM_WALK_TOO_LONG (-2)  /* more than STM_IP6_MAX_EXT extension headers */

static __always_inline int stm_ip6_is_ext(__u8 next)
{
	return next == STM_IPPROTO_HOPOPTS || next == STM_IPPROTO_ROUTING || next == STM_IPPROTO_DSTOPTS ||
	       next == STM_IPPROTO_FRAGMENT || next == STM_IPPROTO_AH;
}

/* Walks the extension headers from `next` (the IPv6 header's next-header field) at `off`
 * with `left` payload bytes: 0 and `r` filled, or STM_WALK_*. A later fragment ends the walk
 * at the fragment header: what follows is the middle of a datagram. */
static __always_inline int stm_ip6_walk(void *ctx, int xdp, __u8 next, __u32 off, __u32 left,
					struct stm_ip6_l4 *r)
{
	r->frag = 0;
	r->frag_id = 0;
#pragma unroll
	for (int i = 0; i < STM_IP6_MAX_EXT + 1; i++) {
		if (!stm_ip6_is_ext(next)) {
			r->proto = next;
			r->off = off;
			r->left = left;
			return 0;
		}
		if (i == STM_IP6_MAX_EXT)
			break;
		__u8 eh[8];
		if (left < 8 || STM_LOAD(ctx, xdp, off, eh, 8))
			return STM_WALK_TRUNCATED;
		__u32 elen;
		if (next == STM_IPPROTO_FRAGMENT) {
			elen = 8;
			r->frag = (((eh[2] << 8) | eh[3]) & 0xfff8) ? 2 : (eh[3] & 1) ? 1 : 0;
			r->frag_id = *(__u32 *)(eh + 4);
			/* An atomic fragment (offset 0, no more) is a whole datagram (RFC 6946). */
		} else if (next == STM_IPPROTO_AH) {
			elen = ((__u32)eh[1] + 2) * 4;
		} else {
			elen = ((__u32)eh[1] + 1) * 8;
		}
		if (elen > left)
			return STM_WALK_TRUNCATED;
		next = eh[0];
		off += elen;
		left -= elen;
		if (r->frag == 2) {
			r->proto = next;
			r->off = off;
			r->left = left;
			return 0;
		}
	}
	return STM_WALK_TOO_LONG;
}

/* ---- protocol numbers and sizes the programs check ------------------------------------- */

#define ETH_HLEN 14
#define ETH_ALEN 6
#define IP6_HLEN 40
#define ARP_LEN 28
/* ND options inspected after an NS/NA header; they come first in practice. */
#define ND_MAX_OPTS 8

#define IPPROTO_HOPOPTS_ 0
#define IPPROTO_ROUTING_ 43
#define IPPROTO_FRAGMENT_ 44
#define IPPROTO_AH_ 51
#define IPPROTO_DSTOPTS_ 60
#define IPPROTO_ICMPV6_ 58
#define IPPROTO_NONE_ 59

#define IPPROTO_IGMP_ 2
#define IGMP_QUERY 0x11
#define ICMP_DEST_UNREACH_ 3
#define ICMP_REDIRECT_ 5
#define ICMP_TIME_EXCEEDED_ 11
#define ICMP_PARAM_PROBLEM_ 12
#define ICMP_ROUTER_ADV_ 9

#define ICMP6_DEST_UNREACH 1
#define ICMP6_PARAM_PROBLEM 4
#define ICMP6_MLD_QUERY 130
#define ICMP6_MLD_REPORT 131
#define ICMP6_MLD_DONE 132
#define ICMP6_RS 133
#define ICMP6_RA 134
#define ICMP6_NS 135
#define ICMP6_NA 136
#define ICMP6_REDIRECT 137
#define ICMP6_MLD2_REPORT 143

#define ND_OPT_SLLA 1
#define ND_OPT_TLLA 2
#define ND_OPT_NONCE 14
/* Records of an MLDv2 report the failsafe measures; a longer report goes to the rules. */
#define MLD_MAX_RECORDS 16

#define DHCP_SERVER_PORT 67
#define DHCP_CLIENT_PORT 68
#define DHCP6_CLIENT_PORT 546
#define DHCP6_SERVER_PORT 547
#define VXLAN_PORT 4789

#define BOOTREPLY 2
#define ICMP6_ECHO_REQ 128
#define ICMP6_ECHO_REP 129
#define DNS_PORT 53

/* ---- small helpers ---------------------------------------------------------------------- */

/* Makes the first `len` bytes linear (a frame whose headers sit in paged data); 0 when
 * the frame is shorter than that. Cheap when the bytes are already there. */
static __always_inline int stm_linear(struct __sk_buff *skb, __u32 len)
{
	if (stm_skb_data(skb) + len <= stm_skb_end(skb))
		return 1;
	if (len > skb->len)
		return 0;
	return bpf_skb_pull_data(skb, len) == 0 &&
	       stm_skb_data(skb) + len <= stm_skb_end(skb);
}

static __always_inline int mac_eq(const __u8 *a, const __u8 *b)
{
	return *(__u32 *)a == *(__u32 *)b && *(__u16 *)(a + 4) == *(__u16 *)(b + 4);
}

static __always_inline int ip6_eq(const __u8 *a, const __u8 *b)
{
	return *(__u64 *)a == *(__u64 *)b && *(__u64 *)(a + 8) == *(__u64 *)(b + 8);
}

static __always_inline int ip6_in(const __u8 *a, const __u8 *net, const __u8 *mask)
{
	return (*(__u64 *)a & *(__u64 *)mask) == *(__u64 *)net &&
	       (*(__u64 *)(a + 8) & *(__u64 *)(mask + 8)) == *(__u64 *)(net + 8);
}

static __always_inline int ip6_zero(const __u8 *a)
{
	return (*(__u64 *)a | *(__u64 *)(a + 8)) == 0;
}

/* ---- upper-layer headers at tc --------------------------------------------------------- */

/* The upper-layer header of an untagged IPv4 or IPv6 frame at a tc hook, the IPv6
 * extension headers walked (stm_parse.h): 0 and `w` filled, or STM_WALK_*. */
static __always_inline int tc_upper(struct __sk_buff *skb, __u16 eth_proto, struct stm_ip6_l4 *w)
{
	__u8 h[10];
	if (bpf_skb_load_bytes(skb, ETH_HLEN, h, 10))
		return STM_WALK_TRUNCATED;
	if (eth_proto == bpf_htons(STM_ETH_P_IP)) {
		__u32 hlen = (__u32)(h[0] & 0xf) * 4;
		__u32 tot = ((__u32)h[2] << 8) | h[3];
		__u16 frag = ((__u16)h[6] << 8) | h[7];
		if (hlen < 20 || tot < hlen)
			return STM_WALK_TRUNCATED;
		w->frag = (frag & 0x1fff) ? 2 : (frag & 0x2000) ? 1 : 0;
		w->frag_id = 0;
		w->proto = h[9];
		w->off = ETH_HLEN + hlen;
		w->left = tot - hlen;
		return 0;
	}
	__u32 plen = ((__u32)h[4] << 8) | h[5];
	if (plen == 0 && skb->len > ETH_HLEN + IP6_HLEN)
		plen = skb->len - ETH_HLEN - IP6_HLEN; /* BIG TCP */
	return stm_ip6_walk(skb, 0, h[6], ETH_HLEN + IP6_HLEN, plen, w);
}

/* The ICMP or ICMPv6 type of a frame whose upper layer `w` found (-1: not ICMP, or a later fragment). */
static __always_inline int icmp_type_of(struct __sk_buff *skb, __u16 eth_proto, struct stm_ip6_l4 *w)
{
	__u8 type;
	int v6 = eth_proto == bpf_htons(STM_ETH_P_IPV6);
	if (w->frag == 2 || w->proto != (v6 ? IPPROTO_ICMPV6_ : IPPROTO_ICMP) || w->left < 4 ||
	    bpf_skb_load_bytes(skb, w->off, &type, 1))
		return -1;
	return type;
}

/* An ICMP redirect (type 5) or ICMPv6 redirect (137) sent by the node: its kernel forwards
 * a workload's packet out of the bridge it came in on (to a router on the uplink's LAN, say)
 * and offers the workload a shortcut past the gateway, which port security would drop (the
 * workload would ARP for an address outside its network). The same on the way back, to the
 * LAN's host. Checked on frames from the host (port egress) and leaving the uplink, after
 * the extension headers. */
static __always_inline int is_redirect(struct __sk_buff *skb)
{
	__u16 proto;
	struct stm_ip6_l4 w;
	if (bpf_skb_load_bytes(skb, 12, &proto, 2) ||
	    (proto != bpf_htons(STM_ETH_P_IP) && proto != bpf_htons(STM_ETH_P_IPV6)) || tc_upper(skb, proto, &w))
		return 0;
	return icmp_type_of(skb, proto, &w) == (proto == bpf_htons(STM_ETH_P_IP) ? ICMP_REDIRECT_ : ICMP6_REDIRECT);
}

/* ---- the firewall's tuple -------------------------------------------------------------- */

/* The L4 part of a tuple: ports, TCP flags and sequence numbers, ICMP kind (and, for an
 * ICMP error, the flow of the packet it quotes). Returns 0, or -1 for a truncated header. */
/* Loads of the tuple parser, from a tc or an XDP frame. */
#define FW_LOAD(off, buf, n) STM_LOAD(ctx, xdp, off, buf, n)

static __always_inline int fw_parse_l4(void *ctx, int xdp, struct stm_tuple *t)
{
	__u8 h[16] __attribute__((aligned(8)));
	__u32 off = t->l4off;

	if (t->proto == IPPROTO_TCP) {
		if (t->l4len < 20 || FW_LOAD(off, h, 14))
			return -1;
		t->sport = t->ct_sport = ((__u16)h[0] << 8) | h[1];
		t->dport = t->ct_dport = ((__u16)h[2] << 8) | h[3];
		t->seq = bpf_ntohl(*(__u32 *)(h + 4));
		t->ack_seq = bpf_ntohl(*(__u32 *)(h + 8));
		t->tcp_flags = h[13];
		__u32 doff = (__u32)(h[12] >> 4) * 4;
		if (t->frag == 0 && doff <= t->l4len)
			t->seg_len = t->l4len - doff;
		t->seg_len += !!(h[13] & TCP_SYN) + !!(h[13] & TCP_FIN);
		return 0;
	}
	if (t->proto == IPPROTO_UDP) {
		if (t->l4len < 8 || FW_LOAD(off, h, 4))
			return -1;
		t->sport = t->ct_sport = ((__u16)h[0] << 8) | h[1];
		t->dport = t->ct_dport = ((__u16)h[2] << 8) | h[3];
		return 0;
	}
	if (t->pcls != STM_PCLS_ICMP && t->pcls != STM_PCLS_ICMP6)
		return 0;
	if (t->l4len < 8 || FW_LOAD(off, h, 8))
		return -1;
	__u8 type = h[0];
	t->sport = type;
	t->dport = h[1];
	int v6 = t->pcls == STM_PCLS_ICMP6;
	if (type == (v6 ? ICMP6_ECHO_REQ : 8) || type == (v6 ? ICMP6_ECHO_REP : 0)) {
		t->icmp = type == (v6 ? ICMP6_ECHO_REQ : 8) ? FW_ICMP_ECHO_REQ : FW_ICMP_ECHO_REP;
		t->ct_sport = t->ct_dport = ((__u16)h[4] << 8) | h[5];
		return 0;
	}
	if ((!v6 && (type == 3 || type == 4 || type == 5 || type == 11 || type == 12)) || (v6 && type >= 1 && type <= 4)) {
		t->icmp = FW_ICMP_ERR;
		/* The quoted packet: its addresses, protocol and ports (or echo identifier). */
		__u32 in = off + 8, hl;
		if (!v6) {
			struct iphdr ip;
			if (FW_LOAD(in, &ip, 20))
				return 0;
			__builtin_memcpy(t->inner_src, &ip.saddr, 4);
			__builtin_memcpy(t->inner_dst, &ip.daddr, 4);
			t->inner_proto = ip.protocol;
			hl = ip.ihl * 4;
		} else {
			struct ipv6hdr ip6;
			if (FW_LOAD(in, &ip6, 40))
				return 0;
			__builtin_memcpy(t->inner_src, &ip6.saddr, 16);
			__builtin_memcpy(t->inner_dst, &ip6.daddr, 16);
			t->inner_proto = ip6.nexthdr;
			hl = 40;
		}
		if (FW_LOAD(in + hl, h, 8)) {
			t->inner_proto = 0;
			return 0;
		}
		if (t->inner_proto == IPPROTO_TCP || t->inner_proto == IPPROTO_UDP) {
			t->inner_sport = ((__u16)h[0] << 8) | h[1];
			t->inner_dport = ((__u16)h[2] << 8) | h[3];
		} else if (t->inner_proto == (v6 ? IPPROTO_ICMPV6_ : IPPROTO_ICMP)) {
			t->inner_sport = t->inner_dport = ((__u16)h[4] << 8) | h[5];
		} else {
			t->inner_proto = 0;
		}
		return 0;
	}
	t->icmp = FW_ICMP_OTHER;
	return 0;
}

/* Parses an IPv4 or IPv6 packet whose IP header is at `l3` (port security has checked the
 * headers of what a workload sends; the rest is checked here) into a tuple. Returns 0,
 * FW_PARSE_MALFORMED for a truncated header, FW_PARSE_CHAIN for an IPv6 extension-header
 * chain too long to classify. */
#define FW_PARSE_MALFORMED (-1)
#define FW_PARSE_CHAIN (-2)
static __always_inline int fw_parse(void *ctx, int xdp, __u32 pktlen, __u16 eth_proto, __u32 l3, struct stm_tuple *t)
{
	if (eth_proto == bpf_htons(STM_ETH_P_IP)) {
		struct iphdr ip;
		if (FW_LOAD(l3, &ip, 20))
			return FW_PARSE_MALFORMED;
		__u32 hlen = ip.ihl * 4;
		__u32 tot = bpf_ntohs(ip.tot_len);
		if (tot == 0)
			tot = pktlen - l3;
		if (hlen < 20 || tot < hlen)
			return FW_PARSE_MALFORMED;
		t->family = 4;
		__builtin_memcpy(t->src, &ip.saddr, 4);
		__builtin_memcpy(t->dst, &ip.daddr, 4);
		t->proto = ip.protocol;
		t->hop_limit = ip.ttl;
		__u16 frag = bpf_ntohs(ip.frag_off);
		t->frag = (frag & 0x1fff) ? 2 : (frag & 0x2000) ? 1 : 0;
		t->frag_id = ip.id;
		t->l4off = l3 + hlen;
		t->l4len = tot - hlen;
		t->pcls = t->proto == IPPROTO_TCP   ? STM_PCLS_TCP
			  : t->proto == IPPROTO_UDP ? STM_PCLS_UDP
			  : t->proto == IPPROTO_ICMP ? STM_PCLS_ICMP
						    : STM_PCLS_OTHER;
	} else {
		struct ipv6hdr ip6;
		if (FW_LOAD(l3, &ip6, 40))
			return FW_PARSE_MALFORMED;
		t->family = 6;
		__builtin_memcpy(t->src, &ip6.saddr, 16);
		__builtin_memcpy(t->dst, &ip6.daddr, 16);
		t->hop_limit = ip6.hop_limit;
		__u32 left = bpf_ntohs(ip6.payload_len);
		if (left == 0)
			left = pktlen - l3 - IP6_HLEN;
		struct stm_ip6_l4 w;
		int walk = stm_ip6_walk(ctx, xdp, ip6.nexthdr, l3 + IP6_HLEN, left, &w);
		if (walk)
			return walk == STM_WALK_TOO_LONG ? FW_PARSE_CHAIN : FW_PARSE_MALFORMED;
		t->proto = w.proto;
		t->frag = w.frag;
		t->frag_id = w.frag_id;
		t->l4off = w.off;
		t->l4len = w.left;
		t->pcls = w.proto == IPPROTO_TCP   ? STM_PCLS_TCP
			  : w.proto == IPPROTO_UDP ? STM_PCLS_UDP
			  : w.proto == IPPROTO_ICMPV6_ ? STM_PCLS_ICMP6
						      : STM_PCLS_OTHER;
	}
	if (t->frag == 2)
		return 0;
	return fw_parse_l4(ctx, xdp, t) ? FW_PARSE_MALFORMED : 0;
}

/* fw_parse as functions of their own: verified once, and their buffers off the stack of the
 * firewall's deeper call chain. */
STM_SHARED int stm_fw_parse_tc(struct __sk_buff *skb, __u32 eth_proto, struct stm_tuple *t)
{
	if (!skb || !t)
		return FW_PARSE_MALFORMED;
	return fw_parse(skb, 0, skb->len, eth_proto, ETH_HLEN, t);
}

STM_SHARED int stm_fw_parse_xdp(struct xdp_md *ctx, __u32 eth_proto, __u32 l3, struct stm_tuple *t)
{
	if (!ctx || !t)
		return FW_PARSE_MALFORMED;
	return fw_parse(ctx, 1, (__u32)(ctx->data_end - ctx->data), eth_proto, l3 & 0xff, t);
}

/* The drop reason of a failed fw_parse. */
static __always_inline __u32 fw_parse_reason(int r)
{
	return r == FW_PARSE_CHAIN ? STM_DROP_IP6_EXT_CHAIN : STM_DROP_MALFORMED;
}

#endif
