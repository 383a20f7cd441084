/* Answers the firewall sends for a rejected packet: a TCP reset, or an ICMP/ICMPv6
 * "administratively prohibited" quoting the packet's start, built in place of the packet (tc
 * or XDP); and the mark an answer carries so the port programs pass it once. */
#ifndef STM_REPLY_H
#define STM_REPLY_H

#include "stm_common.h"
#include "stm_csum.h"
#include "stm_drop.h"
#include "stm_fw.h"
#include "stm_parse.h"

/* The answer's frame, built on the stack: two bytes of padding keep the IP header 4-byte
 * aligned; after it a TCP header, or an ICMP header and the quoted start of the packet. */
#define STM_QUOTE4 68 /* RFC 792: the IP header and 64 bits of what followed (IHL up to 12) */
#define STM_QUOTE6 64
struct stm_reply4 {
	__u8 pad[2];
	struct ethhdr eth;
	struct iphdr ip;
	union {
		struct tcphdr tcp;
		struct {
			struct icmphdr icmp;
			__u8 quote[STM_QUOTE4];
		};
	};
};
struct stm_reply6 {
	__u8 pad[2];
	struct ethhdr eth;
	struct ipv6hdr ip6;
	union {
		struct tcphdr tcp;
		struct {
			struct icmp6hdr icmp6;
			__u8 quote[STM_QUOTE6];
		};
	};
};
_Static_assert(__builtin_offsetof(struct stm_reply4, ip) == 16, "the IPv4 header is 4-byte aligned");
_Static_assert(__builtin_offsetof(struct stm_reply6, ip6) == 16, "the IPv6 header is 4-byte aligned");
union stm_reply {
	struct stm_reply4 v4;
	struct stm_reply6 v6;
};

/* The TCP header of a reset answering `t` (RFC 793: the sequence number from the segment's
 * acknowledgment, else acknowledge all it carried); checksum left to the caller. */
static __always_inline void fw_rst(struct tcphdr *th, struct stm_tuple *t)
{
	th->source = bpf_htons(t->dport);
	th->dest = bpf_htons(t->sport);
	th->doff = 5;
	th->rst = 1;
	if (t->tcp_flags & TCP_ACK) {
		th->seq = bpf_htonl(t->ack_seq);
	} else {
		th->ack_seq = bpf_htonl(t->seq + t->seg_len);
		th->ack = 1;
	}
}

/* The ICMP answer's pseudo-header sum (IPv6: addresses, length, next header) or the TCP one. */
static __always_inline __s64 fw_pseudo6(struct ipv6hdr *ip6, __u32 len, __u8 next)
{
	__u32 ph[2] = { bpf_htonl(len), bpf_htonl(next) };
	__s64 s = bpf_csum_diff(0, 0, (void *)&ip6->saddr, 32, 0);
	return bpf_csum_diff(0, 0, ph, 8, (__u32)s);
}

/* Turns a rejected packet into its answer in place: a TCP reset, or an ICMP/ICMPv6
 * "administratively prohibited" quoting its start, from the packet's destination to its
 * source. Returns 0, or -1 when the packet gets no answer. */
static __always_inline int fw_reply(void *ctx, int xdp, __u32 pktlen, struct stm_tuple *t)
{
	union stm_reply r __attribute__((aligned(8)));
	__u64 out;

	if (!t)
		return -1;
	__builtin_memset(&r, 0, sizeof(r));
	/* Back to where it came from: the packet's source MAC is the answer's destination. */
	if (FW_LOAD(0, r.v4.eth.h_source, ETH_ALEN) || FW_LOAD(ETH_ALEN, r.v4.eth.h_dest, ETH_ALEN))
		return -1;
	if (t->family == 4) {
		struct stm_reply4 *f = &r.v4;
		f->eth.h_proto = bpf_htons(STM_ETH_P_IP);
		f->ip.version = 4;
		f->ip.ihl = 5;
		f->ip.frag_off = bpf_htons(0x4000); /* DF */
		f->ip.ttl = 64;
		__builtin_memcpy(&f->ip.saddr, t->dst, 4);
		__builtin_memcpy(&f->ip.daddr, t->src, 4);
		if (t->proto == IPPROTO_TCP) {
			f->ip.protocol = IPPROTO_TCP;
			f->ip.tot_len = bpf_htons(sizeof(f->ip) + sizeof(f->tcp));
			fw_rst(&f->tcp, t);
			__u32 ph[3] = { f->ip.saddr, f->ip.daddr, bpf_htonl((IPPROTO_TCP << 16) | sizeof(f->tcp)) };
			__s64 s = bpf_csum_diff(0, 0, ph, 12, 0);
			s = bpf_csum_diff(0, 0, (void *)&f->tcp, sizeof(f->tcp), (__u32)s);
			f->tcp.check = csum_fold(s);
			out = __builtin_offsetof(struct stm_reply4, tcp) + sizeof(f->tcp) - sizeof(f->pad);
		} else {
			__u64 e = t->l4off - ETH_HLEN + 8; /* the IP header and 64 bits of what followed */
			if (pktlen < ETH_HLEN + e)
				e = (pktlen - ETH_HLEN) & ~3;
			if (e > STM_QUOTE4)
				e = STM_QUOTE4;
			if (e < sizeof(struct iphdr))
				return -1;
			if (FW_LOAD(ETH_HLEN, f->quote, e))
				return -1;
			f->ip.protocol = IPPROTO_ICMP;
			f->ip.tot_len = bpf_htons(sizeof(f->ip) + sizeof(f->icmp) + e);
			f->icmp.type = 3;  /* destination unreachable */
			f->icmp.code = 13; /* communication administratively prohibited */
			f->icmp.checksum = csum_fold(bpf_csum_diff(0, 0, (void *)&f->icmp, sizeof(f->icmp) + e, 0));
			out = __builtin_offsetof(struct stm_reply4, quote) + e - sizeof(f->pad);
		}
		f->ip.check = csum_fold(bpf_csum_diff(0, 0, (void *)&f->ip, sizeof(f->ip), 0));
	} else {
		struct stm_reply6 *f = &r.v6;
		f->eth.h_proto = bpf_htons(STM_ETH_P_IPV6);
		f->ip6.version = 6;
		f->ip6.hop_limit = 64;
		__builtin_memcpy(&f->ip6.saddr, t->dst, 16);
		__builtin_memcpy(&f->ip6.daddr, t->src, 16);
		if (t->proto == IPPROTO_TCP) {
			f->ip6.nexthdr = IPPROTO_TCP;
			f->ip6.payload_len = bpf_htons(sizeof(f->tcp));
			fw_rst(&f->tcp, t);
			__s64 s = fw_pseudo6(&f->ip6, sizeof(f->tcp), IPPROTO_TCP);
			s = bpf_csum_diff(0, 0, (void *)&f->tcp, sizeof(f->tcp), (__u32)s);
			f->tcp.check = csum_fold(s);
			out = __builtin_offsetof(struct stm_reply6, tcp) + sizeof(f->tcp) - sizeof(f->pad);
		} else {
			__u64 e = (pktlen - ETH_HLEN) & ~3;
			if (e > STM_QUOTE6)
				e = STM_QUOTE6;
			if (e < sizeof(struct ipv6hdr))
				return -1;
			if (FW_LOAD(ETH_HLEN, f->quote, e))
				return -1;
			f->ip6.nexthdr = IPPROTO_ICMPV6_;
			f->ip6.payload_len = bpf_htons(sizeof(f->icmp6) + e);
			f->icmp6.icmp6_type = 1; /* destination unreachable */
			f->icmp6.icmp6_code = 1; /* communication administratively prohibited */
			__s64 s = fw_pseudo6(&f->ip6, sizeof(f->icmp6) + e, IPPROTO_ICMPV6_);
			s = bpf_csum_diff(0, 0, (void *)&f->icmp6, sizeof(f->icmp6) + e, (__u32)s);
			f->icmp6.icmp6_cksum = csum_fold(s);
			out = __builtin_offsetof(struct stm_reply6, quote) + e - sizeof(f->pad);
		}
	}
	if (out > sizeof(r) - 2)
		return -1;
	void *frame = (__u8 *)&r + 2;
	if (xdp) {
		struct xdp_md *x = ctx;
		if (bpf_xdp_adjust_tail(x, (int)out - (int)pktlen))
			return -1;
		return bpf_xdp_store_bytes(x, 0, frame, out) ? -1 : 0;
	}
	struct __sk_buff *skb = ctx;
	if (bpf_skb_change_tail(skb, out, 0))
		return -1;
	if (bpf_skb_store_bytes(skb, 0, frame, out, BPF_F_RECOMPUTE_CSUM))
		return -1;
	return 0;
}

STM_SHARED int stm_fw_reply(struct __sk_buff *skb, struct stm_tuple *t)
{
	return skb ? fw_reply(skb, 0, skb->len, t) : -1;
}

STM_SHARED int stm_fw_reply_xdp(struct xdp_md *ctx, struct stm_tuple *t)
{
	if (!ctx)
		return -1;
	return fw_reply(ctx, 1, (__u32)(ctx->data_end - ctx->data), t);
}

/* A rejected packet gets an answer unless it is one itself (a reset, an ICMP error) or went
 * to many (broadcast, multicast). */
static __always_inline int fw_reply_ok(struct stm_tuple *t)
{
	if (t->icmp == FW_ICMP_ERR || (t->proto == IPPROTO_TCP && (t->tcp_flags & TCP_RST)))
		return 0;
	if (t->family == 4)
		return (t->dst[0] & 0xf0) != 0xe0 && *(__u32 *)t->dst != 0xffffffff;
	return t->dst[0] != 0xff;
}

/* A rejected packet at a tc hook: counted, answered when it may be, the answer redirected
 * (`to_ingress`: into the device, on through the bridge to the sender; else back out of it)
 * with the mark the port programs let pass once. */
static __always_inline int fw_reject_tc(struct __sk_buff *skb, struct stm_tuple *t, int to_ingress, __u32 hook)
{
	__u32 ifindex = skb->ifindex;
	stm_drop(skb, hook, STM_DROP_FW_REJECT);
	if (!fw_reply_ok(t) || stm_fw_reply(skb, t))
		return STM_TC_DROP;
	fw_stat(STM_FW_STAT_REJECT_SENT);
	skb->mark = STM_MARK_FW_REPLY;
	return bpf_redirect(ifindex, to_ingress ? BPF_F_INGRESS : 0);
}

/* An answer fw_reject_tc sent through a port carries the mark: the port programs pass it once. */
static __always_inline int fw_reply_passes(struct __sk_buff *skb)
{
	if (skb->mark != STM_MARK_FW_REPLY)
		return 0;
	skb->mark = 0;
	return 1;
}

#endif
