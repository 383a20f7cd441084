/* The node's own MAC on the uplink's LAN. A cluster node's user bridge carries the anycast
 * gateway MAC (the same on every node: workloads keep their gateway's MAC wherever they move),
 * and the node's own frames leave through the uplink with it: two nodes on one LAN would share
 * a MAC, and the LAN's switch would send each one's traffic to the other. On the way out the
 * anycast MAC becomes the uplink NIC's own, in the Ethernet source, an ARP sender and the link-
 * layer address options of neighbour discovery (checksum mended). Frames to that MAC come back
 * to the node by themselves: the bridge delivers a frame to a port's own address locally. */
#ifndef STM_UPLINK_MAC_H
#define STM_UPLINK_MAC_H

/* Byte by byte: an option's MAC sits at no 4-byte boundary. */
static __always_inline int mac_same(const __u8 *a, const __u8 *b)
{
	__u8 d = 0;
#pragma unroll
	for (int i = 0; i < 6; i++)
		d |= a[i] ^ b[i];
	return d == 0;
}

/* 0, or -1 when a rewrite failed (the frame is dropped: it would carry the anycast MAC). */
__attribute__((noinline)) int stm_uplink_mac_out(struct __sk_buff *skb)
{
	if (!skb)
		return 0;
	__u32 zero = 0;
	struct stm_uplink_mac *m = bpf_map_lookup_elem(&stm_uplink_mac, &zero);
	if (!m || !m->on)
		return 0;
	__u8 mac[8] __attribute__((aligned(8))) = {};
	__u16 proto;
	if (bpf_skb_load_bytes(skb, 6, mac, 6) || bpf_skb_load_bytes(skb, 12, &proto, 2) || !mac_same(mac, m->anycast))
		return 0;
	if (bpf_skb_store_bytes(skb, 6, m->own, 6, 0))
		return -1;
	if (proto == bpf_htons(STM_ETH_P_ARP)) {
		if (!bpf_skb_load_bytes(skb, ETH_HLEN + 8, mac, 6) && mac_same(mac, m->anycast) &&
		    bpf_skb_store_bytes(skb, ETH_HLEN + 8, m->own, 6, 0))
			return -1;
		return 0;
	}
	__u8 nh, type;
	__u16 plen;
	if (proto != bpf_htons(STM_ETH_P_IPV6) || bpf_skb_load_bytes(skb, ETH_HLEN + 6, &nh, 1) ||
	    nh != IPPROTO_ICMPV6_ || bpf_skb_load_bytes(skb, ETH_HLEN + 4, &plen, 2) ||
	    bpf_skb_load_bytes(skb, ETH_HLEN + IP6_HLEN, &type, 1) || type < ICMP6_RS || type > ICMP6_NA)
		return 0;
	__u32 l4 = ETH_HLEN + IP6_HLEN;
	__u32 end = l4 + bpf_ntohs(plen);
	__u32 o = l4 + (type == ICMP6_RS ? 8 : type == ICMP6_RA ? 16 : 24);
#pragma unroll
	for (int i = 0; i < ND_MAX_OPTS; i++) {
		__u8 opt[8] __attribute__((aligned(8)));
		if (o + 8 > end || bpf_skb_load_bytes(skb, o, opt, 8) || opt[1] == 0)
			return 0;
		if ((opt[0] == ND_OPT_SLLA || opt[0] == ND_OPT_TLLA) && opt[1] == 1 && mac_same(opt + 2, m->anycast)) {
			__u8 nopt[8] __attribute__((aligned(8)));
			__builtin_memcpy(nopt, opt, 2);
			__builtin_memcpy(nopt + 2, m->own, 6);
			__s64 d = bpf_csum_diff((__be32 *)opt, 8, (__be32 *)nopt, 8, 0);
			if (bpf_skb_store_bytes(skb, o, nopt, 8, 0) || bpf_l4_csum_replace(skb, l4 + 2, 0, d, 0))
				return -1;
		}
		o += (__u32)opt[1] * 8;
	}
	return 0;
}

#endif
