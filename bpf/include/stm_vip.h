/* Fencing of gateway groups' VIPs (docs/gateway.md#high-availability). The agent of the node
 * holding a group's lease writes in stm_vip how long the node may answer for each VIP, and
 * renews it while the lease is renewed. Past that instant (the agent killed, its renewals
 * stopped) the node stops speaking for the VIP on its own, before any other node may take it
 * over: the uplink drops ARP and neighbour solicitations for it and traffic to it on the way
 * in, and ARP, neighbour advertisements and traffic from it on the way out. An address not in
 * the map is no VIP. */
#ifndef STM_VIP_H
#define STM_VIP_H

static __always_inline int stm_vip_lapsed(const __u8 *addr, __u8 family)
{
	struct stm_vtep_key k;
	__builtin_memset(&k, 0, sizeof(k));
	if (family == 4) {
		k.addr[10] = 0xff;
		k.addr[11] = 0xff;
		__builtin_memcpy(&k.addr[12], addr, 4);
	} else {
		__builtin_memcpy(k.addr, addr, 16);
	}
	struct stm_vip *v = bpf_map_lookup_elem(&stm_vip, &k);
	return v && bpf_ktime_get_ns() >= v->deadline;
}

/* A frame leaving through the uplink that speaks for a lapsed VIP: ARP from it, an IP packet
 * from it, a neighbour advertisement for it (the kernel's, right after the IPv6 header).
 * Global: verified once, whatever calls it. */
__attribute__((noinline)) int stm_vip_fenced_out(struct __sk_buff *skb)
{
	if (!skb)
		return 0;
	__u16 proto;
	__u8 a[16];
	if (bpf_skb_load_bytes(skb, 12, &proto, 2))
		return 0;
	if (proto == bpf_htons(STM_ETH_P_ARP))
		return !bpf_skb_load_bytes(skb, ETH_HLEN + 14, a, 4) && stm_vip_lapsed(a, 4);
	if (proto == bpf_htons(STM_ETH_P_IP))
		return !bpf_skb_load_bytes(skb, ETH_HLEN + 12, a, 4) && stm_vip_lapsed(a, 4);
	if (proto != bpf_htons(STM_ETH_P_IPV6) || bpf_skb_load_bytes(skb, ETH_HLEN + 8, a, 16))
		return 0;
	if (stm_vip_lapsed(a, 6))
		return 1;
	__u8 nh, type;
	if (bpf_skb_load_bytes(skb, ETH_HLEN + 6, &nh, 1) || nh != IPPROTO_ICMPV6_ ||
	    bpf_skb_load_bytes(skb, ETH_HLEN + IP6_HLEN, &type, 1) || type != ICMP6_NA ||
	    bpf_skb_load_bytes(skb, ETH_HLEN + IP6_HLEN + 8, a, 16))
		return 0;
	return stm_vip_lapsed(a, 6);
}

#endif
