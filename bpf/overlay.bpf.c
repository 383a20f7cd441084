/* The overlay's programs (linked with the port programs into one object: the maps are
 * theirs, declared extern here). Every node of a cluster has one VXLAN device in external
 * mode, cnv-vxlan0, a port of cnv-user-br0; the VNI and the remote node of each frame come
 * from these programs, never from flood-and-learn (docs/overlay.md).
 *
 * stm_overlay_out (tc egress of cnv-vxlan0) sends a workload's frame to the node its
 * destination runs on: the destination MAC must be an endpoint of another node (stm_remote) in
 * the sender's network, and the tunnel key (remote address, VNI) is set from that entry.
 * Broadcast, multicast and unknown unicast go nowhere (overlay-flood); neither does anything
 * that is not a workload's own frame (overlay-routed).
 *
 * stm_overlay_in (tc ingress of cnv-vxlan0) admits a decapsulated frame only from a node of
 * the cluster (vtep-unknown) and only when its inner source is an endpoint of the VNI's
 * network that the cluster places on that very node, with that endpoint's addresses
 * (overlay-spoof): a node cannot speak for another node's endpoints. Then the frame meets
 * the destination port's programs as any bridged frame does.
 *
 * stm_underlay_in (tc ingress of the device that carries the node's address, when that is not
 * the uplink, whose XDP filter makes the same check) drops VXLAN from a source that is not a
 * node before it is decapsulated. */
#define STM_MAPS_EXTERN
#include "stm_common.h"
#include "stm_maps.h"
#include "stm_link.h"
#include "stm_drop.h"
#include "stm_parse.h"
#include "stm_vtep.h"
#include "stm_ns.h"
#include "stm_mseg.h"

/* The sender's group (its port stamped it) into the VXLAN-GBP policy id (struct
 * vxlan_metadata's gbp; the device has the gbp flag). Untagged: no GBP at all. */
static __always_inline int gbp_set(struct __sk_buff *skb)
{
	__u32 gbp = mseg_group_of(skb->mark);
	return gbp ? bpf_skb_set_tunnel_opt(skb, &gbp, sizeof(gbp)) : 0;
}

SEC("tc")
int stm_overlay_out(struct __sk_buff *skb)
{
	struct stm_mac_key k = {};
	if (bpf_skb_load_bytes(skb, 0, k.mac, 6))
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_MALFORMED);
	if (k.mac[0] & 1)
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_OVERLAY_FLOOD);
	__u32 from = stm_from_last(skb);
	if (from == STM_FROM_UNMARKED)
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_LINK_UNMARKED);
	struct stm_port *src = from ? bpf_map_lookup_elem(&stm_ports, &from) : NULL;
	struct stm_remote *r = bpf_map_lookup_elem(&stm_remote, &k);
	if (!src || !r) {
		/* North-south (stm_ns.h), off the path of a workload's frame to a remote endpoint. */
		struct stm_gw_cfg *g = ns_cfg();
		__u16 proto = 0;
		bpf_skb_load_bytes(skb, 12, &proto, 2);
		if (!src) {
			/* A gateway node's routed reply to another node's endpoint, from the gateway
			 * MAC, from outside the fabric (a flow that came here over the overlay). */
			__u8 smac[6];
			if (!r || !g || !(g->flags & STM_GW_F_SELF) || bpf_skb_load_bytes(skb, 6, smac, 6) ||
			    !ns_bridge_mac(smac) || !ns_outside(skb, proto, 0))
				return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_OVERLAY_ROUTED);
			if (ns_set_key(skb, r->vtep, r->vni))
				return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_UNSPEC);
			return STM_TC_NEXT;
		}
		/* A workload's packet to outside the fabric the port sent here: to a gateway node,
		 * the same one for every packet of the flow. */
		if (!g || !g->count || (g->flags & STM_GW_F_SELF) || !ns_bridge_mac(k.mac) || !ns_outside(skb, proto, 1))
			return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_OVERLAY_FLOOD);
		__u32 i = bpf_get_hash_recalc(skb) % g->count;
		if (i >= STM_GW_MAX)
			return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_OVERLAY_FLOOD);
		if (ns_set_key(skb, g->addr[i], STM_VNI_BASE + src->net_id) || gbp_set(skb))
			return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_UNSPEC);
		return STM_TC_NEXT;
	}
	if (r->net_id != src->net_id)
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_OTHER_NETWORK);
	if (ns_set_key(skb, r->vtep, r->vni) || gbp_set(skb))
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_UNSPEC);
	return STM_TC_NEXT;
}

/* The link-local address a MAC gives (fe80::/64 + EUI-64). */
static __always_inline int is_ll_of(const __u8 *a, const __u8 *mac)
{
	return a[0] == 0xfe && a[1] == 0x80 && !a[2] && !a[3] && !a[4] && !a[5] && !a[6] && !a[7] &&
	       a[8] == (mac[0] ^ 2) && a[9] == mac[1] && a[10] == mac[2] && a[11] == 0xff && a[12] == 0xfe &&
	       a[13] == mac[3] && a[14] == mac[4] && a[15] == mac[5];
}

/* What a workload's own port never lets out, nor a node's gateway: router and DHCP server
 * messages. STM_TC_NEXT, or a drop. */
static __always_inline int inner_upper_ok(struct __sk_buff *skb, __u16 proto)
{
	int v6 = proto == bpf_htons(STM_ETH_P_IPV6);
	struct stm_ip6_l4 w;
	int walk = tc_upper(skb, proto, &w);
	if (walk)
		return stm_drop(skb, STM_HOOK_TC_INGRESS,
				walk == STM_WALK_TOO_LONG ? STM_DROP_IP6_EXT_CHAIN : STM_DROP_MALFORMED);
	int type = icmp_type_of(skb, proto, &w);
	if (v6 ? (type == ICMP6_RA || type == ICMP6_REDIRECT || type == ICMP6_MLD_QUERY)
	       : (type == ICMP_REDIRECT_ || type == ICMP_ROUTER_ADV_))
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_ROGUE_ROUTER);
	if (w.frag != 2 && w.proto == IPPROTO_UDP && w.left >= 4) {
		__u8 ports[4];
		if (bpf_skb_load_bytes(skb, w.off, ports, 4))
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
		__u16 dport = ((__u16)ports[2] << 8) | ports[3];
		if (!v6 && dport == DHCP_CLIENT_PORT)
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_ROGUE_DHCP);
		if (v6 && dport == DHCP6_CLIENT_PORT)
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_ROGUE_DHCP6);
	}
	return STM_TC_NEXT;
}

/* The inner frame's addresses and what it says, against the endpoint `r` it claims to come
 * from: STM_TC_NEXT, or a drop. */
static __always_inline int inner_ok(struct __sk_buff *skb, struct stm_remote *r, const __u8 *mac, __u16 proto)
{
	if (proto == bpf_htons(STM_ETH_P_ARP)) {
		__u8 a[ARP_LEN];
		if (bpf_skb_load_bytes(skb, ETH_HLEN, a, ARP_LEN))
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
		__u32 spa = *(__u32 *)&a[14];
		if (!mac_eq(&a[8], mac) || (spa != r->ip4 && spa != 0))
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_OVERLAY_SPOOF);
		return STM_TC_NEXT;
	}
	if (proto != bpf_htons(STM_ETH_P_IP) && proto != bpf_htons(STM_ETH_P_IPV6))
		return stm_drop(skb, STM_HOOK_TC_INGRESS,
				proto == bpf_htons(0x8100) || proto == bpf_htons(0x88a8) ? STM_DROP_VLAN_TAGGED
											 : STM_DROP_ETHERTYPE);
	int v6 = proto == bpf_htons(STM_ETH_P_IPV6);
	if (v6) {
		__u8 s[16];
		if (bpf_skb_load_bytes(skb, ETH_HLEN + 8, s, 16))
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
		if (!is_ll_of(s, mac) && !((r->flags & STM_REMOTE_F_IP6) && ip6_eq(s, r->ip6)))
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_OVERLAY_SPOOF);
	} else {
		__u32 s;
		if (bpf_skb_load_bytes(skb, ETH_HLEN + 12, &s, 4))
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
		if (s != r->ip4)
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_OVERLAY_SPOOF);
	}
	return inner_upper_ok(skb, proto);
}

SEC("tc")
int stm_overlay_in(struct __sk_buff *skb)
{
	struct bpf_tunnel_key t = {};
	struct stm_vtep_key vk = {};
	if (!bpf_skb_get_tunnel_key(skb, &t, sizeof(t), 0)) {
		__u32 a = bpf_htonl(t.remote_ipv4);
		vk.addr[10] = 0xff;
		vk.addr[11] = 0xff;
		__builtin_memcpy(&vk.addr[12], &a, 4);
	} else if (!bpf_skb_get_tunnel_key(skb, &t, sizeof(t), BPF_F_TUNINFO_IPV6)) {
		__builtin_memcpy(vk.addr, t.remote_ipv6, 16);
	} else {
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_VTEP_UNKNOWN);
	}
	struct stm_vtep *v = bpf_map_lookup_elem(&stm_vteps, &vk);
	if (!v || (v->flags & STM_VTEP_F_SELF))
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_VTEP_UNKNOWN);
	/* Untagged, until the frame is found to be an endpoint's own (then its GBP group). */
	skb->mark = 0;
	if (skb->vlan_present)
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_VLAN_TAGGED);
	__u8 eth[14];
	if (bpf_skb_load_bytes(skb, 0, eth, ETH_HLEN))
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
	/* Nodes send no broadcast, multicast or unknown unicast to each other. */
	if (eth[0] & 1)
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_OVERLAY_FLOOD);
	struct stm_mac_key mk = {};
	__builtin_memcpy(mk.mac, &eth[6], 6);
	struct stm_remote *r = bpf_map_lookup_elem(&stm_remote, &mk);
	__u16 proto = ((__u16)eth[13] << 8) | eth[12];
	if (!r && (v->flags & STM_VTEP_F_GATEWAY) && ns_bridge_mac(mk.mac)) {
		/* A gateway node's routed reply: from outside the fabric, to an endpoint of this node
		 * in the VNI's network. */
		struct stm_local_key lk = { .kind = STM_LOCAL_MAC };
		__builtin_memcpy(lk.addr, eth, 6);
		struct stm_local *l = bpf_map_lookup_elem(&stm_local, &lk);
		if (!l || !l->net_id || STM_VNI_BASE + l->net_id != t.tunnel_id || !ns_outside(skb, proto, 0))
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_OVERLAY_SPOOF);
		return inner_upper_ok(skb, proto);
	}
	if (!r || r->vni != t.tunnel_id || !ip6_eq(r->vtep, vk.addr))
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_OVERLAY_SPOOF);
	/* The sender's group, as its port stamped it and its node put it in the GBP field. */
	__u32 gbp = 0;
	if (bpf_skb_get_tunnel_opt(skb, &gbp, sizeof(gbp)) == sizeof(gbp) && (gbp & STM_MSEG_GROUP_MASK))
		skb->mark = mseg_stamp(gbp);
	return inner_ok(skb, r, mk.mac, proto);
}

/* tc ingress (tcx) of the underlay device: up to two VLAN tags left in the frame (the stack
 * has taken an outer one into the skb already), then the outer check. tc, not XDP: it runs
 * once per GRO-merged packet rather than per wire frame, and native XDP on a veth turns off
 * GSO on its peer, so every frame to a node on veths would be segmented (docs/overlay.md). */
SEC("tc")
int stm_underlay_in(struct __sk_buff *skb)
{
	__u8 eth[ETH_HLEN];
	if (bpf_skb_load_bytes(skb, 0, eth, ETH_HLEN))
		return STM_TC_NEXT;
	__u16 proto = ((__u16)eth[12] << 8) | eth[13];
	__u32 l3 = ETH_HLEN;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != 0x8100 && proto != 0x88a8)
			break;
		__u8 vh[4];
		if (bpf_skb_load_bytes(skb, l3, vh, 4))
			return STM_TC_NEXT;
		proto = ((__u16)vh[2] << 8) | vh[3];
		l3 += 4;
	}
	__u32 r = stm_vtep_check_skb(skb, bpf_htons(proto), l3);
	return r ? stm_drop(skb, STM_HOOK_TC_INGRESS, r) : STM_TC_NEXT;
}
