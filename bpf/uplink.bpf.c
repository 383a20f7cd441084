/* The uplink's programs, on the NIC that joins cnv-user-br0 to the LAN (linked with the port
 * programs into one object: the maps are theirs, declared extern here).
 *
 * stm_uplink_in (XDP) drops frames from the LAN that claim a local endpoint's or gateway's
 * MAC or address, or an address of a network's subnet, sources on the blocklist, DHCP and
 * DHCPv6 requests for the node's servers, and applies the global firewall to the rest,
 * whatever tags they carry, and VXLAN from a source that is not a node of the cluster (the
 * overlay's outer check, when the node's address is on the uplink's bridge). stm_uplink_out (tc egress) keeps workloads' frames from being
 * bridged onto the LAN, drops the node's redirects, applies the global firewall to what
 * leaves, a network's egress cap, and masquerading (stm_nat.h); stm_uplink_nat_in (tc ingress)
 * translates the replies back and applies the global firewall to what XDP left to it. */
#define STM_MAPS_EXTERN
#include "stm_common.h"
#include "stm_maps.h"
#include "stm_link.h"
#include "stm_drop.h"
#include "stm_fw.h"
#include "stm_shape.h"
#include "stm_parse.h"
#include "stm_reply.h"
#include "stm_vtep.h"
#include "stm_nat.h"
#include "stm_vip.h"
#include "stm_uplink_mac.h"
#include "stm_lb.h"

static __always_inline int is_local(__u32 kind, const void *addr, __u32 len)
{
	struct stm_local_key key = { .kind = kind };
	if (len == 4)
		__builtin_memcpy(key.addr, addr, 4);
	else if (len == 6)
		__builtin_memcpy(key.addr, addr, 6);
	else
		__builtin_memcpy(key.addr, addr, 16);
	return bpf_map_lookup_elem(&stm_local, &key) != NULL;
}

/* An ND message from outside whose link-layer address options (source or target, every one
 * read, at most ND_MAX_OPTS) carry a local MAC, the ND twin of an ARP sender claiming it:
 * STM_DROP_LOCAL_SPOOF; more options than that: STM_DROP_MALFORMED (none hides behind
 * padding); else 0. `off`: the ICMPv6 header, `left` bytes of it. */
static __always_inline __u32 nd_mac_claim(struct xdp_md *ctx, __u32 off, __u32 left, __u8 type)
{
	__u32 o = type == ICMP6_RS ? 8 : type == ICMP6_RA ? 16 : type == ICMP6_REDIRECT ? 40 : 24;
#pragma unroll
	for (int i = 0; i < ND_MAX_OPTS; i++) {
		__u8 opt[8] __attribute__((aligned(8)));
		if (o + 8 > left || bpf_xdp_load_bytes(ctx, off + o, opt, 8))
			return 0;
		if (opt[1] == 0)
			return 0;
		if ((opt[0] == ND_OPT_SLLA || opt[0] == ND_OPT_TLLA) && is_local(STM_LOCAL_MAC, opt + 2, 6))
			return STM_DROP_LOCAL_SPOOF;
		o += (__u32)opt[1] * 8;
	}
	return o + 8 > left ? 0 : STM_DROP_MALFORMED;
}

/* A DHCP or DHCPv6 message to a client's port (68, 546), after the extension headers. */
static __always_inline int to_dhcp_client(struct __sk_buff *skb, __u16 proto)
{
	struct stm_ip6_l4 w;
	__u8 ports[4];
	if (tc_upper(skb, proto, &w) || w.frag == 2 || w.proto != IPPROTO_UDP || w.left < 8 ||
	    bpf_skb_load_bytes(skb, w.off, ports, 4))
		return 0;
	__u16 dport = ((__u16)ports[2] << 8) | ports[3];
	return dport == (proto == bpf_htons(STM_ETH_P_IP) ? DHCP_CLIENT_PORT : DHCP6_CLIENT_PORT);
}

/* The node's global scope on the uplink: north-south traffic, from outside (XDP: its ingress,
 * the IP header at `l3`, after any tags) and to outside (tc egress: its egress). */
__attribute__((noinline)) int stm_fw_uplink_in(struct xdp_md *ctx, __u32 eth_proto, __u32 l3)
{
	if (!ctx)
		return XDP_DROP;
	__u32 ifindex = ctx->ingress_ifindex;
	struct stm_fw_scope *scope = fw_scope_on(STM_FW_GLOBAL);
	if (!scope)
		return XDP_PASS;
	__u32 len = ctx->data_end - ctx->data;
	struct stm_tuple *t = fw_scratch(2, STM_FW_INGRESS, len);
	if (!t)
		return XDP_DROP;
	int pr = stm_fw_parse_xdp(ctx, eth_proto, l3, t);
	if (pr)
		return stm_drop_xdp(ctx, fw_parse_reason(pr));
	int r = stm_fw_check(t, scope, ifindex, STM_FW_GLOBAL);
	if (r == STM_TC_NEXT)
		return XDP_PASS;
	if (r >= FW_DROP)
		return stm_drop_xdp(ctx, r - FW_DROP);
	if (r != FW_REJECT)
		return XDP_DROP;
	stm_drop_xdp(ctx, STM_DROP_FW_REJECT);
	/* A tagged frame is rejected without an answer: the answer would have to carry its tags. */
	if (l3 != ETH_HLEN || !fw_reply_ok(t) || stm_fw_reply_xdp(ctx, t))
		return XDP_DROP;
	fw_stat(STM_FW_STAT_REJECT_SENT);
	return XDP_TX;
}

/* The global scope at tc: what leaves (egress), and what the uplink filter left to the
 * translation (ingress: a packet to a NAT address, judged with the workload's address and port
 * when it is a reply). A reject's answer goes the other way: back in through the uplink to the
 * sender over the bridge, or out of it (translated like the rest of its flow). */
__attribute__((noinline)) int stm_fw_uplink_tc(struct __sk_buff *skb, __u32 eth_proto, __u32 egress)
{
	if (!skb)
		return STM_TC_DROP;
	struct stm_fw_scope *scope = fw_scope_on(STM_FW_GLOBAL);
	if (!scope)
		return STM_TC_NEXT;
	__u32 hook = egress ? STM_HOOK_TC_EGRESS : STM_HOOK_TC_INGRESS;
	struct stm_tuple *t = fw_scratch(egress ? 3 : 2, egress ? STM_FW_EGRESS : STM_FW_INGRESS, skb->len);
	if (!t)
		return STM_TC_DROP;
	int pr = stm_fw_parse_tc(skb, eth_proto, t);
	if (pr)
		return stm_drop(skb, hook, fw_parse_reason(pr));
	int r = stm_fw_check(t, scope, skb->ifindex, STM_FW_GLOBAL);
	if (r >= FW_DROP)
		return stm_drop(skb, hook, r - FW_DROP);
	return r == FW_REJECT ? fw_reject_tc(skb, t, egress, hook) : r;
}

/* tc ingress of the uplink: replies to masqueraded flows get the workload's address back. */
SEC("tc")
int stm_uplink_nat_in(struct __sk_buff *skb)
{
	__u16 proto;
	if (skb->vlan_present || bpf_skb_load_bytes(skb, 12, &proto, 2) ||
	    (proto != bpf_htons(STM_ETH_P_IP) && proto != bpf_htons(STM_ETH_P_IPV6)))
		return STM_TC_NEXT;
	struct stm_tuple *t = fw_scratch(2, STM_FW_INGRESS, skb->len);
	if (!t)
		return STM_TC_DROP;
	int r = stm_nat_in(skb, proto, t);
	if (r < 0)
		return STM_TC_DROP;
	return r == NAT_IN_NONE ? STM_TC_NEXT : stm_fw_uplink_tc(skb, proto, 0);
}

/* A source address inside a Stratum network's subnet, from the uplink: a spoof, unless the
 * network is extended onto the LAN (IPv4 looked up as ::ffff:a.b.c.d). */
static __always_inline int subnet_spoof(const void *addr, int v6)
{
	struct stm_lpm6_key k = { .prefixlen = 128 };
	if (v6) {
		__builtin_memcpy(k.addr, addr, 16);
	} else {
		k.addr[10] = 0xff;
		k.addr[11] = 0xff;
		__builtin_memcpy(&k.addr[12], addr, 4);
	}
	struct stm_subnet *n = bpf_map_lookup_elem(&stm_subnets, &k);
	return n && !(n->flags & STM_SUBNET_F_LAN);
}

/* An address the LAN must not learn from the node's own ARP and neighbour discovery: one
 * inside the subnet of a network not extended onto the LAN (its gateway, its workloads), or
 * the link-local address of such a network's endpoint. */
static __always_inline int private_addr(const void *addr, int v6)
{
	if (subnet_spoof(addr, v6))
		return 1;
	if (!v6)
		return 0;
	struct stm_local_key key = { .kind = STM_LOCAL_IP6 };
	__builtin_memcpy(key.addr, addr, 16);
	struct stm_local *l = bpf_map_lookup_elem(&stm_local, &key);
	if (!l || !l->net_id)
		return 0;
	__u32 port = l->ifindex;
	struct stm_port *p = bpf_map_lookup_elem(&stm_ports, &port);
	return p && !(p->flags & STM_PORT_F_LAN);
}

/* ARP or an NS/NA about a private address (private_addr) on its way to the LAN: the node's
 * kernel resolving a workload, or answering for a gateway, floods the bridge and with it the
 * uplink. */
static __always_inline int leaks_private(struct __sk_buff *skb, __u16 proto)
{
	if (proto == bpf_htons(STM_ETH_P_ARP)) {
		__u8 a[ARP_LEN];
		if (bpf_skb_load_bytes(skb, ETH_HLEN, a, ARP_LEN))
			return 0;
		return private_addr(a + 14, 0) || private_addr(a + 24, 0);
	}
	if (proto != bpf_htons(STM_ETH_P_IPV6))
		return 0;
	struct stm_ip6_l4 w;
	if (tc_upper(skb, proto, &w) || w.frag == 2 || w.proto != IPPROTO_ICMPV6_ || w.left < 24)
		return 0;
	__u8 icmp[24];
	if (bpf_skb_load_bytes(skb, w.off, icmp, 24) || (icmp[0] != ICMP6_NS && icmp[0] != ICMP6_NA))
		return 0;
	return private_addr(icmp + 8, 1);
}

/* tc egress of the uplink: the global scope's rules on what leaves the node. */
SEC("tc")
int stm_uplink_out(struct __sk_buff *skb)
{
	/* Gateway only: a workload's frame bridged straight to the LAN (its ARP and broadcasts,
	 * a frame to a LAN host's MAC) goes no further, unless its network is extended onto it. */
	__u32 from = stm_from_last(skb);
	if (from == STM_FROM_UNMARKED)
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_LINK_UNMARKED);
	int bridged = 0;
	if (from) {
		struct stm_port *src = bpf_map_lookup_elem(&stm_ports, &from);
		if (src && !(src->flags & STM_PORT_F_LAN))
			return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_LAN_DIRECT);
		bridged = src != NULL;
	}
	__u16 proto;
	if (bpf_skb_load_bytes(skb, 12, &proto, 2))
		return STM_TC_NEXT;
	/* Read once: the compiler would otherwise keep a pointer into the context. */
	__u32 tagged = skb->vlan_present;
	/* The networks' addresses stay off the LAN's wire, but routed. */
	if (!tagged && leaks_private(skb, proto))
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_LAN_LEAK);
	/* A gateway group's VIP whose hold has lapsed: the node no longer speaks for it. */
	if (!tagged && stm_vip_fenced_out(skb))
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_VIP_FENCED);
	/* A cluster node's own frames: its own MAC on the LAN, not the anycast gateway's. */
	if (!tagged && stm_uplink_mac_out(skb))
		return STM_TC_DROP;
	if (tagged || (proto != bpf_htons(STM_ETH_P_IP) && proto != bpf_htons(STM_ETH_P_IPV6)))
		return STM_TC_NEXT;
	/* The node's kernel, forwarding a reply from the uplink's LAN back out of the bridge,
	 * would send the LAN's host a redirect to the workload itself: the workload's ARP answer
	 * to that host is dropped at its port (arp-target), so keep both on the gateway. */
	if (is_redirect(skb))
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_REDIRECT);
	/* The node's DHCP servers serve its workloads only: an answer they broadcast (a NAK, one a
	 * client asked to have broadcast) floods the bridge, and stays off the LAN here. */
	if (to_dhcp_client(skb, proto))
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_DHCP_OUTSIDE);
	int r = stm_fw_uplink_tc(skb, proto, 1);
	if (r != STM_TC_NEXT)
		return r;
	/* A network's aggregate cap on what its endpoints send off the node. */
	__u32 net = stm_shape_net_of(skb, proto);
	if (net) {
		r = stm_shape(skb, STM_SHAPE_NETWORK, net, STM_HOOK_TC_EGRESS);
		if (r != STM_TC_NEXT)
			return r;
	}
	/* A load-balanced flow's reply leaves with its VIP's address (judged above with the
	 * backend's). */
	r = stm_lb_tc_rev(skb, proto, STM_HOOK_TC_EGRESS, 3, 0);
	if (r != STM_TC_NEXT)
		return r;
	/* Last, with every judgement made on the workload's own addresses: masquerading (a frame
	 * bridged onto the LAN of a network extended there keeps its addresses). */
	if (bridged)
		return STM_TC_NEXT;
	r = stm_nat_out(skb, proto);
	/* A translation to a VIP whose hold has lapsed goes no further either. */
	if (r == STM_TC_NEXT && stm_vip_fenced_out(skb))
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_VIP_FENCED);
	return r;
}

/* The uplink filter: whatever tags a frame carries (a priority tag, 802.1Q, QinQ), its
 * addresses, its upper-layer header (after the IPv6 extension headers) and the global
 * firewall are judged the same; a frame it cannot classify is dropped. Declared frags-aware
 * so native mode works on jumbo-MTU NICs; it reads only headers, which are in the first
 * buffer. */
SEC("xdp.frags")
int stm_uplink_in(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		return stm_drop_xdp(ctx, STM_DROP_MALFORMED);
	if (is_local(STM_LOCAL_MAC, eth->h_source, 6))
		return stm_drop_xdp(ctx, STM_DROP_LOCAL_SPOOF);

	/* Up to two tags (802.1Q, QinQ); a third is not looked behind. */
	__u16 proto = eth->h_proto;
	__u32 l3 = ETH_HLEN;
#pragma unroll
	for (int i = 0; i < 3; i++) {
		if (proto != bpf_htons(0x8100) && proto != bpf_htons(0x88a8))
			break;
		if (i == 2)
			return stm_drop_xdp(ctx, STM_DROP_VLAN_TAGGED);
		__u16 *vh = data + l3;
		if ((void *)(vh + 2) > end)
			return stm_drop_xdp(ctx, STM_DROP_MALFORMED);
		proto = vh[1];
		l3 += 4;
	}

	if (proto == bpf_htons(STM_ETH_P_IP)) {
		struct iphdr *ip = data + l3;
		if ((void *)(ip + 1) > end)
			return stm_drop_xdp(ctx, STM_DROP_MALFORMED);
		struct stm_lpm4_key k = { .prefixlen = 32 };
		__builtin_memcpy(k.addr, &ip->saddr, 4);
		if (bpf_map_lookup_elem(&stm_block4, &k))
			return stm_drop_xdp(ctx, STM_DROP_BLOCKLIST);
		if (is_local(STM_LOCAL_IP4, &ip->saddr, 4))
			return stm_drop_xdp(ctx, STM_DROP_LOCAL_SPOOF);
		if (subnet_spoof(&ip->saddr, 0))
			return stm_drop_xdp(ctx, STM_DROP_SUBNET_SPOOF);
		if (stm_vip_lapsed((const __u8 *)&ip->daddr, 4))
			return stm_drop_xdp(ctx, STM_DROP_VIP_FENCED);
		if (ip->protocol == IPPROTO_UDP && !(ip->frag_off & bpf_htons(0x1fff))) {
			__u8 dport[2];
			if (!bpf_xdp_load_bytes(ctx, l3 + ip->ihl * 4 + 2, dport, 2) && dport[0] == 0 &&
			    dport[1] == DHCP_SERVER_PORT)
				return stm_drop_xdp(ctx, STM_DROP_DHCP_OUTSIDE);
		}
		__u32 vtep = stm_vtep_check_xdp(ctx, proto, l3);
		if (vtep)
			return stm_drop_xdp(ctx, vtep);
		/* A VIP's packet is judged from here on with its backend's address. */
		int lb = l3 == ETH_HLEN ? stm_lb_xdp(ctx, proto) : XDP_PASS;
		if (lb != XDP_PASS && lb != LB_XDP_TRANSLATED)
			return lb;
		/* A translated packet is a backend's now: masquerading's inbound check is not for it. */
		if (lb == LB_XDP_TRANSLATED)
			return stm_fw_uplink_in(ctx, proto, l3);
		int nat = stm_nat_xdp((__u8 *)&ip->daddr, 4);
		if (nat == 2)
			return stm_drop_xdp(ctx, STM_DROP_NAT_INBOUND);
		if (nat == 1 && l3 == ETH_HLEN)
			return XDP_PASS;
		return stm_fw_uplink_in(ctx, proto, l3);
	}
	if (proto == bpf_htons(STM_ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + l3;
		if ((void *)(ip6 + 1) > end)
			return stm_drop_xdp(ctx, STM_DROP_MALFORMED);
		struct stm_lpm6_key k = { .prefixlen = 128 };
		__builtin_memcpy(k.addr, &ip6->saddr, 16);
		if (bpf_map_lookup_elem(&stm_block6, &k))
			return stm_drop_xdp(ctx, STM_DROP_BLOCKLIST);
		if (is_local(STM_LOCAL_IP6, &ip6->saddr, 16))
			return stm_drop_xdp(ctx, STM_DROP_LOCAL_SPOOF);
		if (subnet_spoof(&ip6->saddr, 1))
			return stm_drop_xdp(ctx, STM_DROP_SUBNET_SPOOF);
		if (stm_vip_lapsed(ip6->daddr.in6_u.u6_addr8, 6))
			return stm_drop_xdp(ctx, STM_DROP_VIP_FENCED);
		/* Decisions on the upper-layer header, wherever the extension headers put it. */
		struct stm_ip6_l4 w;
		__u32 plen = bpf_ntohs(ip6->payload_len);
		int walk = stm_ip6_walk(ctx, 1, ip6->nexthdr, l3 + IP6_HLEN, plen, &w);
		if (walk)
			return stm_drop_xdp(ctx, walk == STM_WALK_TOO_LONG ? STM_DROP_IP6_EXT_CHAIN : STM_DROP_MALFORMED);
		/* A first fragment carries the whole header chain and its upper-layer header (RFC
		 * 7112): one that does not cannot be judged (a DHCPv6 request's port, an NA's type). */
		if (w.frag == 1 && w.left < 8)
			return stm_drop_xdp(ctx, STM_DROP_MALFORMED);
		if (w.frag != 2 && w.proto == IPPROTO_UDP) {
			__u8 dport[2];
			if (w.left >= 8 && !bpf_xdp_load_bytes(ctx, w.off + 2, dport, 2) &&
			    ((__u16)dport[0] << 8 | dport[1]) == DHCP6_SERVER_PORT)
				return stm_drop_xdp(ctx, STM_DROP_DHCP_OUTSIDE);
		}
		/* An NA from outside claiming one of our addresses (or a network's) would poison
		 * the neighbour caches of the node and the workloads. */
		if (w.frag != 2 && w.proto == IPPROTO_ICMPV6_ && w.left >= 24) {
			__u8 icmp[24] __attribute__((aligned(8)));
			if (bpf_xdp_load_bytes(ctx, w.off, icmp, 24))
				return stm_drop_xdp(ctx, STM_DROP_MALFORMED);
			if (icmp[0] == ICMP6_NA && is_local(STM_LOCAL_IP6, icmp + 8, 16))
				return stm_drop_xdp(ctx, STM_DROP_LOCAL_SPOOF);
			if (icmp[0] == ICMP6_NA && subnet_spoof(icmp + 8, 1))
				return stm_drop_xdp(ctx, STM_DROP_SUBNET_SPOOF);
			if (icmp[0] == ICMP6_NS && stm_vip_lapsed(icmp + 8, 6))
				return stm_drop_xdp(ctx, STM_DROP_VIP_FENCED);
		}
		if (w.frag != 2 && w.proto == IPPROTO_ICMPV6_ && w.left >= 8) {
			__u8 type;
			if (bpf_xdp_load_bytes(ctx, w.off, &type, 1))
				return stm_drop_xdp(ctx, STM_DROP_MALFORMED);
			if (type >= ICMP6_RS && type <= ICMP6_REDIRECT) {
				__u32 claim = nd_mac_claim(ctx, w.off, w.left, type);
				if (claim)
					return stm_drop_xdp(ctx, claim);
				/* Neighbour discovery is never fragmented (RFC 6980): a fragmented NA
				 * could carry its target, or an option, in a later fragment. */
				if (w.frag == 1)
					return stm_drop_xdp(ctx, STM_DROP_MALFORMED);
			}
		}
		__u32 vtep = stm_vtep_check_xdp(ctx, proto, l3);
		if (vtep)
			return stm_drop_xdp(ctx, vtep);
		int lb = l3 == ETH_HLEN ? stm_lb_xdp(ctx, proto) : XDP_PASS;
		if (lb != XDP_PASS && lb != LB_XDP_TRANSLATED)
			return lb;
		if (lb == LB_XDP_TRANSLATED)
			return stm_fw_uplink_in(ctx, proto, l3);
		int nat = stm_nat_xdp(ip6->daddr.in6_u.u6_addr8, 6);
		if (nat == 2)
			return stm_drop_xdp(ctx, STM_DROP_NAT_INBOUND);
		if (nat == 1 && l3 == ETH_HLEN)
			return XDP_PASS;
		return stm_fw_uplink_in(ctx, proto, l3);
	}
	if (proto == bpf_htons(STM_ETH_P_ARP)) {
		__u8 *a = data + l3;
		if ((void *)(a + ARP_LEN) > end)
			return stm_drop_xdp(ctx, STM_DROP_MALFORMED);
		if (is_local(STM_LOCAL_MAC, a + 8, 6) || (*(__u32 *)(a + 14) && is_local(STM_LOCAL_IP4, a + 14, 4)))
			return stm_drop_xdp(ctx, STM_DROP_LOCAL_SPOOF);
		if (subnet_spoof(a + 14, 0))
			return stm_drop_xdp(ctx, STM_DROP_SUBNET_SPOOF);
		if (stm_vip_lapsed(a + 24, 4))
			return stm_drop_xdp(ctx, STM_DROP_VIP_FENCED);
	}
	return XDP_PASS;
}
