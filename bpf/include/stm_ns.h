/* North-south over the overlay (docs/gateway.md): on a node that is not a gateway, a workload's
 * packet through its gateway to an address outside every network goes to a gateway node over
 * the overlay (the port redirects it to cnv-vxlan0, whose egress picks the gateway per flow);
 * the gateway node routes it out of its uplink, masqueraded or not, and sends the replies back
 * to the endpoint's node from the network's gateway MAC, which that node admits from a gateway
 * node only and for an address outside every network only. */
#ifndef STM_NS_H
#define STM_NS_H

#include "stm_maps.h"

static __always_inline struct stm_gw_cfg *ns_cfg(void)
{
	__u32 z = 0;
	return bpf_map_lookup_elem(&stm_gw, &z);
}

/* The MAC of the user bridge: every network's gateway, the same on every node. */
static __always_inline int ns_bridge_mac(const __u8 *mac)
{
	struct stm_local_key k = { .kind = STM_LOCAL_MAC };
	__builtin_memcpy(k.addr, mac, 6);
	struct stm_local *l = bpf_map_lookup_elem(&stm_local, &k);
	return l && l->net_id == 0;
}

/* The packet's destination (`dst`) or source address is outside the fabric: in no network's
 * subnet, not one of the node's Stratum addresses, not link-local, multicast or broadcast. */
static __always_inline int ns_outside(struct __sk_buff *skb, __u32 proto, int dst)
{
	struct stm_lpm6_key k = { .prefixlen = 128 };
	struct stm_local_key lk = {};
	if (proto == bpf_htons(STM_ETH_P_IP)) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN + (dst ? 16 : 12), &k.addr[12], 4))
			return 0;
		if (k.addr[12] >= 224 || k.addr[12] == 127 || (k.addr[12] == 169 && k.addr[13] == 254))
			return 0;
		k.addr[10] = 0xff;
		k.addr[11] = 0xff;
		lk.kind = STM_LOCAL_IP4;
		__builtin_memcpy(lk.addr, &k.addr[12], 4);
	} else if (proto == bpf_htons(STM_ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN + (dst ? 24 : 8), k.addr, 16))
			return 0;
		if (k.addr[0] == 0xff || (k.addr[0] == 0xfe && (k.addr[1] & 0xc0) == 0x80))
			return 0;
		lk.kind = STM_LOCAL_IP6;
		__builtin_memcpy(lk.addr, k.addr, 16);
	} else {
		return 0;
	}
	return !bpf_map_lookup_elem(&stm_subnets, &k) && !bpf_map_lookup_elem(&stm_local, &lk);
}

/* The tunnel key toward an underlay address (IPv4 as ::ffff:a.b.c.d). */
static __always_inline int ns_set_key(struct __sk_buff *skb, const __u8 *addr, __u32 vni)
{
	struct bpf_tunnel_key t = {};
	__u64 flags = 0;
	t.tunnel_id = vni;
	t.tunnel_ttl = 64;
	if (!addr[0] && !addr[1] && !addr[2] && !addr[3] && !addr[4] && !addr[5] && !addr[6] && !addr[7] && !addr[8] &&
	    !addr[9] && addr[10] == 0xff && addr[11] == 0xff) {
		t.remote_ipv4 = bpf_ntohl(*(__u32 *)&addr[12]);
	} else {
		__builtin_memcpy(t.remote_ipv6, addr, 16);
		flags = BPF_F_TUNINFO_IPV6;
	}
	return bpf_skb_set_tunnel_key(skb, &t, sizeof(t), flags);
}

/* The port's ingress, after every check: a packet through the gateway to outside the fabric,
 * on a node that is not a gateway while the cluster has one, goes to cnv-vxlan0 (its egress
 * picks the gateway node). STM_TC_NEXT (the node routes it itself), or the redirect. */
STM_SHARED int stm_ns_out(struct __sk_buff *skb, __u32 proto)
{
	if (!skb)
		return STM_TC_DROP;
	struct stm_gw_cfg *g = ns_cfg();
	if (!g || !g->count || (g->flags & STM_GW_F_SELF) || !g->overlay_ifindex)
		return STM_TC_NEXT;
	__u8 dmac[6];
	if (bpf_skb_load_bytes(skb, 0, dmac, 6) || !ns_bridge_mac(dmac) || !ns_outside(skb, proto, 1))
		return STM_TC_NEXT;
	return bpf_redirect(g->overlay_ifindex, 0);
}

#endif
