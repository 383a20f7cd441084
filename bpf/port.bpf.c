/* Workload port programs, on the host side of every veth or tap plugged into cnv-user-br0,
 * and on a VM's macvtap the other way round (stm_port_in on its tc egress, stm_port_out on its
 * tc ingress: docs/networks.md#vms-on-a-macvtap). The uplink's are in uplink.bpf.c; both are
 * linked into one object sharing its maps.
 *
 * stm_port_in (tc ingress: frames from the workload) is port security: the frame must
 * carry the port's profile MAC and address (IPv4, IPv6 profile or link-local, :: for
 * DAD), ARP and ND must tell the truth about the port (Dynamic ARP Inspection, ND
 * inspection), a workload cannot act as a router, DHCP server or VXLAN endpoint, and
 * malformed frames go no further. IP fragments are legitimate: a non-first fragment has
 * no L4 header and is checked on its MAC and L3 source.
 *
 * stm_port_out (tc egress: frames to the workload) keeps networks apart: a frame that
 * entered the bridge on a port of another network is never delivered (flooding
 * included), frames bridged from the uplink only into a network extended onto the LAN, and
 * frames of the host or routed ones only when they are about this port's network, never
 * router, neighbour or DHCP server messages the node did not send; frames from another node
 * (the overlay device) only from an endpoint of the port's network.
 *
 * An endpoint's egress cap (stm_shape.h) is at the end of stm_port_in. All fail closed: a
 * port without configuration passes nothing, and every drop goes through stm_drop() with
 * its reason. */
#include "stm_common.h"
#include "stm_maps.h"
#include "stm_link.h"
#include "stm_drop.h"
#include "stm_fw.h"
#include "stm_shape.h"
#include "stm_parse.h"
#include "stm_reply.h"
#include "stm_ns.h"
#include "stm_mseg.h"
#include "stm_lb.h"

/* The configuration of the port a frame crosses at `hook` (the frame counted in the port's
 * stm_port_stats row), or NULL when the frame is dropped (and counted) before any parsing:
 * the port has no configuration (fail closed), or the frame carries a VLAN tag the stack moved
 * out of it (ingress: 802.1Q from a workload; egress: a tag kept from the uplink or the host,
 * which would reach a workload's VLAN devices). */
static __always_inline struct stm_port *port_of(struct __sk_buff *skb, __u32 hook)
{
	__u32 ifindex = skb->ifindex;
	struct stm_port *port = bpf_map_lookup_elem(&stm_ports, &ifindex);

	if (!port) {
		stm_drop(skb, hook, STM_DROP_PORT_UNCONFIGURED);
		return NULL;
	}
	__u32 slot = port->slot;
	struct stm_port_stats *st = bpf_map_lookup_elem(&stm_port_stats, &slot);
	if (st) {
		struct stm_count_val *c = hook == STM_HOOK_TC_INGRESS ? &st->from_ep : &st->to_ep;
		c->packets += 1;
		c->bytes += skb->len;
	}
	if (skb->vlan_present) {
		stm_drop(skb, hook, STM_DROP_VLAN_TAGGED);
		return NULL;
	}
	return port;
}

/* ---- port ingress --------------------------------------------------------------------- */

/* A DHCPv4 request at `off` (the BOOTP header) names its client by chaddr, and the server
 * leases by it: it must be the port's own MAC (one workload cannot take or release
 * another's lease), Ethernet, and not relayed (giaddr 0: workloads are clients, never relay
 * agents). Global, so its buffer is not on the stack of the firewall's deeper call chain.
 * `mac_lo`/`mac_hi`: the port MAC's first four and last two bytes as they lie in memory. */
__attribute__((noinline)) int stm_dhcp_client_ok(struct __sk_buff *skb, __u32 off, __u32 l4len, __u32 mac_lo,
						 __u32 mac_hi)
{
	/* The fixed header up to the end of chaddr's MAC (RFC 2131 figure 1). */
	__u8 b[40] __attribute__((aligned(8)));

	if (!skb || l4len < 8 + 34 || bpf_skb_load_bytes(skb, off, b, 34))
		return 0;
	return b[1] == 1 && b[2] == 6 && *(__u32 *)&b[24] == 0 && *(__u32 *)&b[28] == mac_lo &&
	       *(__u16 *)&b[32] == (__u16)mac_hi;
}

/* UDP checks shared by both families: no DHCP server, no VXLAN from a workload. */
static __always_inline int check_udp(struct __sk_buff *skb, struct stm_port *port, __u32 l4off,
				     __u32 l4len, int v6, int fragmented)
{
	__u8 hdr[9];

	if (l4len < 8 || bpf_skb_load_bytes(skb, l4off, hdr, 8))
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
	__u16 sport = ((__u16)hdr[0] << 8) | hdr[1];
	__u16 dport = ((__u16)hdr[2] << 8) | hdr[3];

	if (dport == VXLAN_PORT)
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_ROGUE_VXLAN);
	if (!v6) {
		/* A DHCP message is never fragmented; a fragment could hide the op byte. */
		if (sport == DHCP_SERVER_PORT || dport == DHCP_CLIENT_PORT || (dport == DHCP_SERVER_PORT && fragmented))
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_ROGUE_DHCP);
		if (dport == DHCP_SERVER_PORT && l4len > 8 && !bpf_skb_load_bytes(skb, l4off + 8, &hdr[8], 1) &&
		    hdr[8] == BOOTREPLY)
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_ROGUE_DHCP);
		/* A request names its client by chaddr, and the server leases by it: it must be the
		 * port's own MAC (one workload cannot take or release another's lease), Ethernet,
		 * and not relayed (giaddr 0): workloads are clients, never relay agents. */
		if (dport == DHCP_SERVER_PORT &&
		    !stm_dhcp_client_ok(skb, l4off + 8, l4len, *(__u32 *)port->mac, *(__u16 *)&port->mac[4]))
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_DHCP_SPOOF);
	} else {
		if (sport == DHCP6_SERVER_PORT || dport == DHCP6_CLIENT_PORT || (dport == DHCP6_SERVER_PORT && fragmented))
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_ROGUE_DHCP6);
		if (dport == DHCP6_SERVER_PORT && l4len > 8 && !bpf_skb_load_bytes(skb, l4off + 8, &hdr[8], 1)) {
			/* ADVERTISE, REPLY, RECONFIGURE, RELAY-REPL: what only a server sends. */
			__u8 t = hdr[8];
			if (t == 2 || t == 7 || t == 10 || t == 13)
				return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_ROGUE_DHCP6);
		}
	}
	return STM_TC_NEXT;
}

static __always_inline int check_tcp(struct __sk_buff *skb, __u32 l4off, __u32 l4len)
{
	__u8 doff;

	if (l4len < 20 || bpf_skb_load_bytes(skb, l4off + 12, &doff, 1))
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
	doff >>= 4;
	if (doff < 5 || (__u32)doff * 4 > l4len)
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
	return STM_TC_NEXT;
}

static __always_inline int check_ip4(struct __sk_buff *skb, struct stm_port *port)
{
	if (!stm_linear(skb, ETH_HLEN + 20))
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
	void *data = stm_skb_data(skb);
	void *end = stm_skb_end(skb);
	struct iphdr *ip = data + ETH_HLEN;
	if ((void *)(ip + 1) > end)
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);

	__u32 hlen = ip->ihl * 4;
	__u32 tot = bpf_ntohs(ip->tot_len);
	if (tot == 0 && skb->gso_size)
		tot = skb->len - ETH_HLEN; /* BIG TCP: the length is the skb's */
	if (ip->version != 4 || hlen < 20 || tot < hlen || tot > skb->len - ETH_HLEN)
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);

	__u16 frag = bpf_ntohs(ip->frag_off);
	int non_first = (frag & 0x1fff) != 0;
	int more = (frag & 0x2000) != 0;
	__u8 proto = ip->protocol;
	__u32 src = ip->saddr;
	__u32 dst = ip->daddr;
	__u32 l4off = ETH_HLEN + hlen;
	__u32 l4len = tot - hlen;

	/* An IGMP membership query elects a querier, from any source (0.0.0.0 included): a
	 * router's job (RFC 3376 6.6.2). */
	if (proto == IPPROTO_IGMP_ && !non_first) {
		__u8 type;
		if (l4len < 8 || bpf_skb_load_bytes(skb, l4off, &type, 1))
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
		if (type == IGMP_QUERY)
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_ROGUE_ROUTER);
	}
	/* A DSR VIP's backend answers from the VIP's address and port (stm_lb.h). */
	if (src != port->ip4 && !(src && stm_lb_dsr_port(skb, port, bpf_htons(STM_ETH_P_IP), 0))) {
		/* No address yet: IGMP reports to multicast (RFC 3376 allows 0.0.0.0) ... */
		if (src == 0 && proto == IPPROTO_IGMP_ && (dst & bpf_htonl(0xf0000000)) == bpf_htonl(0xe0000000) && !non_first)
			return STM_TC_NEXT;
		/* ... and a DHCP client: 0.0.0.0:68 → broadcast or the gateway :67. */
		if (src != 0 || non_first || proto != IPPROTO_UDP || (dst != 0xffffffff && dst != port->gw4))
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_IP4_SPOOF);
		__u8 ports[4];
		if (l4len < 8 || bpf_skb_load_bytes(skb, l4off, ports, 4))
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
		if (ports[0] != 0 || ports[1] != DHCP_CLIENT_PORT || ports[2] != 0 || ports[3] != DHCP_SERVER_PORT)
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_IP4_SPOOF);
	}
	if (non_first)
		return STM_TC_NEXT;
	/* A first fragment (or a whole datagram) must hold its L4 header. */
	if (proto == IPPROTO_TCP)
		return check_tcp(skb, l4off, l4len);
	if (proto == IPPROTO_UDP)
		return check_udp(skb, port, l4off, l4len, 0, more);
	if (proto == IPPROTO_ICMP) {
		__u8 type;
		if (l4len < 8 || bpf_skb_load_bytes(skb, l4off, &type, 1))
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
		/* Redirects and router advertisements (RFC 1256) are a router's messages, as in
		 * IPv6: a workload is never one. */
		if (type == ICMP_REDIRECT_ || type == ICMP_ROUTER_ADV_)
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_ROGUE_ROUTER);
		/* An error about a datagram that was not sent to it is a router's message too: a
		 * host reports only what it received (RFC 1122 3.2.2), never about broadcasts. */
		if (type == ICMP_DEST_UNREACH_ || type == ICMP_TIME_EXCEEDED_ || type == ICMP_PARAM_PROBLEM_) {
			__u32 quoted_dst;
			if (l4len < 8 + 20 || bpf_skb_load_bytes(skb, l4off + 8 + 16, &quoted_dst, 4))
				return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
			if (quoted_dst != port->ip4)
				return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_ROGUE_ROUTER);
		}
	}
	return STM_TC_NEXT;
}

/* ---- neighbours answered on the node ----------------------------------------------------- */

/* ARP requests and neighbour solicitations for an endpoint of the port's network, on this
 * node or another, are answered here with the endpoint's profile MAC: the request never
 * floods the bridge, and never the overlay. The answer leaves through the port itself, with
 * the mark the port programs let pass once. Anything else (the gateway, a free address, a
 * DAD probe) goes on as it came. */
static __always_inline int answer_back(struct __sk_buff *skb)
{
	skb->mark = STM_MARK_FW_REPLY;
	/* A macvtap's stm_port_in runs on its tc egress: the guest is behind its ingress. */
	__u32 ifindex = skb->ifindex;
	struct stm_port *port = bpf_map_lookup_elem(&stm_ports, &ifindex);
	return bpf_redirect(ifindex, port && (port->flags & STM_PORT_F_MACVTAP) ? BPF_F_INGRESS : 0);
}

/* A request from the port for `tpa` (network order), already found truthful by check_arp.
 * Global (a frame of its own): its buffer stays off the firewall's deeper call chain. */
__attribute__((noinline)) int stm_arp_answer(struct __sk_buff *skb, struct stm_port *port, __u32 tpa)
{
	if (!skb || !port)
		return STM_TC_NEXT;
	struct stm_profile_key k = { .net_id = port->net_id, .ip4 = tpa };
	struct stm_profile *p = bpf_map_lookup_elem(&stm_profiles, &k);
	if (!p || !(p->flags & STM_PROFILE_F_CLAIMED) || (p->flags & STM_PROFILE_F_GATEWAY))
		return STM_TC_NEXT;
	__u8 f[44] __attribute__((aligned(4))) = {};
	__u8 *e = f + 2;
	__builtin_memcpy(e, port->mac, 6);
	__builtin_memcpy(e + 6, p->mac, 6);
	e[12] = 0x08;
	e[13] = 0x06;
	__u8 *a = e + ETH_HLEN;
	a[1] = 1;    /* Ethernet */
	a[2] = 0x08; /* IPv4 */
	a[4] = 6;
	a[5] = 4;
	a[7] = 2; /* reply */
	__builtin_memcpy(a + 8, p->mac, 6);
	__builtin_memcpy(a + 14, &tpa, 4);
	__builtin_memcpy(a + 18, port->mac, 6);
	__builtin_memcpy(a + 24, &port->ip4, 4);
	if (bpf_skb_store_bytes(skb, 0, e, ETH_HLEN + ARP_LEN, 0))
		return STM_TC_NEXT;
	return answer_back(skb);
}

/* A neighbour solicitation from the port (not DAD) whose target is the link-local or profile
 * address of another endpoint of its network: the MAC is the target's interface id (EUI-64),
 * and the endpoint must exist, on this node (stm_local) or another (stm_remote). Global, as
 * stm_arp_answer. */
__attribute__((noinline)) int stm_nd_answer(struct __sk_buff *skb, struct stm_port *port, __u32 off)
{
	if (!skb || !port)
		return STM_TC_NEXT;
	__u8 t[16] __attribute__((aligned(8)));
	if (bpf_skb_load_bytes(skb, off + 8, t, 16) || t[11] != 0xff || t[12] != 0xfe)
		return STM_TC_NEXT;
	int ll = t[0] == 0xfe && t[1] == 0x80 && !t[2] && !t[3] && !t[4] && !t[5] && !t[6] && !t[7];
	if (!ll && !((port->flags & STM_PORT_F_IP6) && *(__u64 *)t == *(__u64 *)port->ip6))
		return STM_TC_NEXT;
	__u8 mac[8] __attribute__((aligned(8))) = { t[8] ^ 2, t[9], t[10], t[13], t[14], t[15] };
	if (mac[0] != 0x02 || (((__u32)mac[1] << 8) | mac[2]) != port->net_id || mac_eq(mac, port->mac))
		return STM_TC_NEXT;
	struct stm_local_key lk = { .kind = STM_LOCAL_MAC };
	__builtin_memcpy(lk.addr, mac, 6);
	struct stm_local *l = bpf_map_lookup_elem(&stm_local, &lk);
	if (!l || l->net_id != port->net_id) {
		struct stm_mac_key rk = {};
		__builtin_memcpy(rk.mac, mac, 6);
		struct stm_remote *r = bpf_map_lookup_elem(&stm_remote, &rk);
		if (!r || r->net_id != port->net_id)
			return STM_TC_NEXT;
	}
	/* Ethernet, IPv6 and an NA with the target's link-layer address, after 2 bytes of pad
	 * (the IPv6 header 4-aligned for the checksum). */
	__u8 f[88] __attribute__((aligned(8))) = {};
	__u8 *e = f + 2;
	__u8 *ip = e + ETH_HLEN;
	__u8 *na = ip + IP6_HLEN;
	__builtin_memcpy(e, port->mac, 6);
	__builtin_memcpy(e + 6, mac, 6);
	e[12] = 0x86;
	e[13] = 0xdd;
	ip[0] = 0x60;
	ip[5] = 32; /* payload length */
	ip[6] = IPPROTO_ICMPV6_;
	ip[7] = 255;
	__builtin_memcpy(ip + 8, t, 16);
	if (bpf_skb_load_bytes(skb, ETH_HLEN + 8, ip + 24, 16))
		return STM_TC_NEXT;
	na[0] = ICMP6_NA;
	na[4] = 0x60; /* solicited, override */
	__builtin_memcpy(na + 8, t, 16);
	na[24] = ND_OPT_TLLA;
	na[25] = 1;
	__builtin_memcpy(na + 26, mac, 6);
	__u32 pseudo[2] = { bpf_htonl(32), bpf_htonl(IPPROTO_ICMPV6_) };
	__s64 sum = bpf_csum_diff(0, 0, (__be32 *)(ip + 8), 32, 0);
	sum = bpf_csum_diff(0, 0, pseudo, 8, (__u32)sum);
	sum = bpf_csum_diff(0, 0, (__be32 *)na, 32, (__u32)sum);
	__u16 c = csum_fold(sum);
	__builtin_memcpy(na + 2, &c, 2);
	if (bpf_skb_change_tail(skb, ETH_HLEN + IP6_HLEN + 32, 0) ||
	    bpf_skb_store_bytes(skb, 0, e, ETH_HLEN + IP6_HLEN + 32, 0))
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
	return answer_back(skb);
}

static __always_inline int check_arp(struct __sk_buff *skb, struct stm_port *port)
{
	if (!stm_linear(skb, ETH_HLEN + ARP_LEN))
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
	void *data = stm_skb_data(skb);
	void *end = stm_skb_end(skb);
	__u8 *a = data + ETH_HLEN;
	if ((void *)(a + ARP_LEN) > end)
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);

	/* Ethernet/IPv4 only: htype 1, ptype 0x0800, hlen 6, plen 4, op request or reply. */
	if (*(__u32 *)a != bpf_htonl(0x00010800) || a[4] != 6 || a[5] != 4 || a[6] != 0 || (a[7] != 1 && a[7] != 2))
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
	__u8 *sha = a + 8;
	__u32 spa = *(__u32 *)(a + 14);
	__u32 tpa = *(__u32 *)(a + 24);

	if (!mac_eq(sha, port->mac))
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_ARP_SPOOF);
	/* The sender is the port's address; 0.0.0.0 only in a request for the port's own address
	 * (an RFC 5227 probe: a probe for another's address would block it from taking it).
	 * A gratuitous ARP (sender = target) is thereby only ever for the port's own address. */
	if (spa != port->ip4 && !(spa == 0 && a[7] == 1 && tpa == port->ip4))
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_ARP_SPOOF);
	if ((tpa & port->mask4) != port->net4)
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_ARP_TARGET);
	if (a[7] == 1 && spa == port->ip4 && tpa != port->ip4)
		return stm_arp_answer(skb, port, tpa);
	return STM_TC_NEXT;
}

/* NS, NA and RS: an NA's target must be the port's, and so must a DAD probe's (an NS from
 * ::, or a workload could claim every address its neighbours try); link-layer address
 * options must carry the port's MAC, and every option is read (more than ND_MAX_OPTS:
 * dropped, so none can hide behind padding). */
static __always_inline int check_nd(struct __sk_buff *skb, struct stm_port *port, __u8 type, __u32 l4off,
				    __u32 l4len, int src_dad)
{
	__u32 off = 8; /* RS: options after the reserved word */

	if (type != ICMP6_RS) {
		__u8 target[16] __attribute__((aligned(8)));
		if (l4len < 24 || bpf_skb_load_bytes(skb, l4off + 8, target, 16))
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
		if ((type == ICMP6_NA || src_dad) && !ip6_eq(target, port->ll6) &&
		    !((port->flags & STM_PORT_F_IP6) && ip6_eq(target, port->ip6)))
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_ND_SPOOF);
		off = 24;
	}
#pragma unroll
	for (int i = 0; i < ND_MAX_OPTS; i++) {
		__u8 opt[2];
		if (off + 2 > l4len)
			return STM_TC_NEXT;
		if (bpf_skb_load_bytes(skb, l4off + off, opt, 2))
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
		__u32 olen = (__u32)opt[1] * 8;
		if (olen == 0 || off + olen > l4len)
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
		if (opt[0] == ND_OPT_SLLA || opt[0] == ND_OPT_TLLA) {
			__u8 lla[8] __attribute__((aligned(8)));
			if (olen < 8 || bpf_skb_load_bytes(skb, l4off + off + 2, lla, 6))
				return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
			if (!mac_eq(lla, port->mac))
				return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_ND_SPOOF);
		}
		off += olen;
	}
	return off + 2 > l4len ? STM_TC_NEXT : stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
}

static __always_inline int check_ip6(struct __sk_buff *skb, struct stm_port *port)
{
	if (!stm_linear(skb, ETH_HLEN + IP6_HLEN))
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
	void *data = stm_skb_data(skb);
	void *end = stm_skb_end(skb);
	struct ipv6hdr *ip6 = data + ETH_HLEN;
	if ((void *)(ip6 + 1) > end)
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);

	__u32 plen = bpf_ntohs(ip6->payload_len);
	__u32 avail = skb->len - ETH_HLEN - IP6_HLEN;
	if (ip6->version != 6 || plen > avail)
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
	if (plen == 0 && skb->gso_size)
		plen = avail; /* BIG TCP: the length is the skb's */

	__u8 *src = (__u8 *)&ip6->saddr;
	int src_ok = ip6_eq(src, port->ll6) || ((port->flags & STM_PORT_F_IP6) && ip6_eq(src, port->ip6));
	int src_dad = !src_ok && ip6_zero(src);
	if (!src_ok && !src_dad && !stm_lb_dsr_port(skb, port, bpf_htons(STM_ETH_P_IPV6), 0))
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_IP6_SPOOF);

	/* Walk the extension headers to the L4 header. */
	struct stm_ip6_l4 w;
	int walk = stm_ip6_walk(skb, 0, ip6->nexthdr, ETH_HLEN + IP6_HLEN, plen, &w);
	if (walk == STM_WALK_TOO_LONG)
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_IP6_EXT_CHAIN);
	if (walk)
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
	__u8 next = w.proto;
	__u32 off = w.off;
	__u32 left = w.left;
	int non_first = w.frag == 2;
	int fragmented = w.frag != 0;

	if (non_first) {
		/* :: is for DAD only, and DAD is never fragmented. */
		if (src_dad)
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_IP6_SPOOF);
		return STM_TC_NEXT;
	}

	if (next == IPPROTO_ICMPV6_) {
		__u8 type;
		if (left < 4 || bpf_skb_load_bytes(skb, off, &type, 1))
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
		/* A multicast listener query elects a querier: a router's job (RFC 3810 7.6.2). */
		if (type == ICMP6_RA || type == ICMP6_REDIRECT || type == ICMP6_MLD_QUERY)
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_ROGUE_ROUTER);
		/* :: only before an address is ready: DAD's NS, MLD reports and dones, RS (RFC 4861). */
		if (src_dad && type != ICMP6_NS && type != ICMP6_MLD2_REPORT && type != ICMP6_MLD_REPORT &&
		    type != ICMP6_MLD_DONE && type != ICMP6_RS)
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_IP6_SPOOF);
		if (type == ICMP6_NS || type == ICMP6_NA || type == ICMP6_RS) {
			int r = check_nd(skb, port, type, off, left, src_dad);
			if (r != STM_TC_NEXT || type != ICMP6_NS || src_dad || fragmented)
				return r;
			return stm_nd_answer(skb, port, off);
		}
		/* An error about a packet that was not sent to it (its addresses, or a group) is a
		 * router's message: a host reports only what it received (RFC 4443 2.4). */
		if (type >= ICMP6_DEST_UNREACH && type <= ICMP6_PARAM_PROBLEM) {
			__u8 quoted_dst[16];
			if (left < 8 + IP6_HLEN || bpf_skb_load_bytes(skb, off + 8 + 24, quoted_dst, 16))
				return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
			if (quoted_dst[0] != 0xff && !ip6_eq(quoted_dst, port->ll6) &&
			    !((port->flags & STM_PORT_F_IP6) && ip6_eq(quoted_dst, port->ip6)))
				return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_ROGUE_ROUTER);
		}
		return STM_TC_NEXT;
	}
	if (src_dad)
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_IP6_SPOOF);
	if (next == IPPROTO_TCP)
		return check_tcp(skb, off, left);
	if (next == IPPROTO_UDP)
		return check_udp(skb, port, off, left, 1, fragmented);
	return STM_TC_NEXT;
}

/* ---- firewall at the ports ------------------------------------------------------------ */

/* An address on the port's link: link-local, or inside its network's IPv6 subnet. */
static __always_inline int on_link6(const __u8 *a, struct stm_port *port)
{
	return (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) ||
	       (!ip6_zero(port->mask6) && ip6_in(a, port->net6, port->mask6));
}

/* An ND message (RS, RA, NS, NA) made of its header and ND options only: every option has
 * a length, they fill the message exactly, and (but in an RA, the node's alone) they are
 * link-layer addresses or a nonce of 8 bytes. Nothing else rides along. */
static __always_inline int nd_only_options(struct __sk_buff *skb, struct stm_tuple *t, __u8 type)
{
	__u32 off = type == ICMP6_RS ? 8 : type == ICMP6_RA ? 16 : 24;
	if (t->l4len < off)
		return 0;
#pragma unroll
	for (int i = 0; i < ND_MAX_OPTS; i++) {
		if (off == t->l4len)
			return 1;
		__u8 opt[2];
		if (off + 8 > t->l4len || bpf_skb_load_bytes(skb, t->l4off + off, opt, 2))
			return 0;
		__u32 olen = (__u32)opt[1] * 8;
		if (olen == 0 || off + olen > t->l4len)
			return 0;
		/* Ethernet's link-layer addresses and enhanced DAD's nonce (RFC 7527) are 8 bytes:
		 * a longer one carries something else. */
		if (type != ICMP6_RA &&
		    ((opt[0] != ND_OPT_SLLA && opt[0] != ND_OPT_TLLA && opt[0] != ND_OPT_NONCE) || olen != 8))
			return 0;
		off += olen;
	}
	return off == t->l4len;
}

/* An MLD message of its exact size: a query (v1 24 bytes, v2 28 plus its sources), a v1
 * report or done (24), a v2 report (8 plus its records, each 20 plus its sources, no
 * auxiliary data). */
static __always_inline int mld_exact(struct __sk_buff *skb, struct stm_tuple *t, __u8 type)
{
	__u8 h[8];
	if (type != ICMP6_MLD2_REPORT) {
		if (t->l4len == 24)
			return 1;
		if (type != ICMP6_MLD_QUERY || t->l4len < 28 || bpf_skb_load_bytes(skb, t->l4off + 24, h, 4))
			return 0;
		return t->l4len == 28 + 16 * (((__u32)h[2] << 8) | h[3]);
	}
	if (bpf_skb_load_bytes(skb, t->l4off + 4, h, 4))
		return 0;
	__u32 records = ((__u32)h[2] << 8) | h[3];
	__u32 off = 8;
	/* A bounded loop the verifier walks (not unrolled: the body is too big to repeat). */
	for (__u32 i = 0; i < MLD_MAX_RECORDS && i < records; i++) {
		if (off + 20 > t->l4len || bpf_skb_load_bytes(skb, t->l4off + off, h, 4) || h[1] != 0)
			return 0;
		off += 20 + 16 * (((__u32)h[2] << 8) | h[3]);
	}
	return records <= MLD_MAX_RECORDS && off == t->l4len;
}

/* What always passes between a workload and its gateway and link, whatever the rules:
 * neighbour discovery and MLD on the link, DHCP and DHCPv6 with the node's servers, DNS to
 * the gateway. A deny-all network still gets addresses and names. On the link means what
 * a router never forwards: ND with hop limit 255 from an address of the link, MLD with hop
 * limit 1 from a link-local address (or ::), each message its header and options only. */
__attribute__((noinline)) int stm_fw_failsafe(struct __sk_buff *skb, struct stm_tuple *t, struct stm_port *port,
					     __u32 dir)
{
	if (!skb || !t || !port || t->frag)
		return 0;
	int out = dir == STM_FW_EGRESS;
	const __u8 *peer = out ? t->dst : t->src;
	if (t->pcls == STM_PCLS_ICMP6) {
		__u8 type = t->sport;
		if (type >= ICMP6_RS && type <= ICMP6_NA)
			return t->hop_limit == 255 && (on_link6(peer, port) || (out && peer[0] == 0xff) ||
						      (!out && ip6_zero(peer))) &&
			       nd_only_options(skb, t, type);
		if (type == ICMP6_MLD_QUERY || type == ICMP6_MLD_REPORT || type == ICMP6_MLD_DONE ||
		    type == ICMP6_MLD2_REPORT)
			return t->hop_limit == 1 && (out ? t->dst[0] == 0xff : on_link6(t->src, port) || ip6_zero(t->src)) &&
			       mld_exact(skb, t, type);
		return 0;
	}
	__u16 mine = out ? t->sport : t->dport;
	__u16 theirs = out ? t->dport : t->sport;
	if (t->pcls == STM_PCLS_UDP) {
		/* The node's DHCP server answers from the gateway's address; DHCPv6 from link-local. */
		if (t->family == 4 && mine == DHCP_CLIENT_PORT && theirs == DHCP_SERVER_PORT)
			return out || *(__u32 *)peer == port->gw4;
		if (t->family == 6 && mine == DHCP6_CLIENT_PORT && theirs == DHCP6_SERVER_PORT)
			return out || (peer[0] == 0xfe && (peer[1] & 0xc0) == 0x80);
	}
	if ((t->pcls == STM_PCLS_UDP || t->pcls == STM_PCLS_TCP) && theirs == DNS_PORT) {
		if (t->family == 4)
			return *(__u32 *)peer == port->gw4;
		return !ip6_zero(port->gw6) && ip6_eq(peer, port->gw6);
	}
	return 0;
}

/* The blocklist, on the source address read straight from the frame (no parse needed; port
 * security has made the IP header linear; else it is copied). A frame too short to hold the
 * address fails the parse after this. */
static __always_inline int fw_blocked(struct __sk_buff *skb, __u16 eth_proto)
{
	void *data = stm_skb_data(skb);
	void *end = stm_skb_end(skb);
	if (eth_proto == bpf_htons(STM_ETH_P_IP)) {
		struct iphdr *ip = data + ETH_HLEN;
		struct stm_lpm4_key k = { .prefixlen = 32 };
		if ((void *)(ip + 1) <= end)
			__builtin_memcpy(k.addr, &ip->saddr, 4);
		else if (bpf_skb_load_bytes(skb, ETH_HLEN + 12, k.addr, 4))
			return 0;
		return bpf_map_lookup_elem(&stm_block4, &k) != NULL;
	}
	struct ipv6hdr *ip6 = data + ETH_HLEN;
	struct stm_lpm6_key k = { .prefixlen = 128 };
	if ((void *)(ip6 + 1) <= end)
		__builtin_memcpy(k.addr, &ip6->saddr, 16);
	else if (bpf_skb_load_bytes(skb, ETH_HLEN + 8, k.addr, 16))
		return 0;
	return bpf_map_lookup_elem(&stm_block6, &k) != NULL;
}

/* The firewall stage of a port: blocklist, failsafe, then the network's rules. A global
 * function: the verifier checks it once, not once per path through port security. Passes as
 * STM_TC_NEXT (nothing parsed: the network has no scope), FW_PASS_FAILSAFE or FW_PASS_PARSED
 * (the packet's tuple is in the hook's scratch slot, for microsegmentation to reuse). */
__attribute__((noinline)) int stm_fw_port(struct __sk_buff *skb, struct stm_port *port, __u32 eth_proto, __u32 dir)
{
	if (!skb || !port)
		return STM_TC_DROP;
	__u32 ifindex = skb->ifindex;
	/* From the workload: port ingress hook; to it: port egress. */
	__u32 hook = dir == STM_FW_EGRESS ? STM_HOOK_TC_INGRESS : STM_HOOK_TC_EGRESS;
	if (fw_blocked(skb, eth_proto))
		return stm_drop(skb, hook, STM_DROP_BLOCKLIST);
	struct stm_fw_scope *scope = fw_scope_on(port->net_id);
	if (!scope)
		return STM_TC_NEXT;
	struct stm_tuple *t = fw_scratch(dir, dir, skb->len);
	if (!t)
		return STM_TC_DROP;
	int pr = stm_fw_parse_tc(skb, eth_proto, t);
	if (pr)
		return stm_drop(skb, hook, fw_parse_reason(pr));
	if (stm_fw_failsafe(skb, t, port, dir))
		return FW_PASS_FAILSAFE;
	int r = stm_fw_check(t, scope, ifindex, port->net_id);
	if (r >= FW_DROP)
		return stm_drop(skb, hook, r - FW_DROP);
	/* From the workload (its egress): back out of the port to it. To the workload: into the
	 * port, as if the workload answered, and on through the bridge to the sender. */
	if (r == FW_REJECT)
		return fw_reject_tc(skb, t, (dir == STM_FW_INGRESS) ^ !!(port->flags & STM_PORT_F_MACVTAP), hook);
	return r == STM_TC_NEXT ? FW_PASS_PARSED : r;
}

/* ---- microsegmentation at the ports (stm_mseg.h) --------------------------------------- */

/* What the endpoint sends: stamped with its group (always: no mark of the workload's or an
 * earlier hop's survives), and, when the endpoint is in a group, its flow tracked so the
 * replies pass its port's egress. */
__attribute__((noinline)) int stm_mseg_in(struct __sk_buff *skb, struct stm_port *port, __u32 eth_proto,
					  __u32 fw)
{
	if (!skb || !port)
		return STM_TC_DROP;
	skb->mark = mseg_stamp(port->group);
	if (!port->group || !mseg_cfg_on())
		return STM_TC_NEXT;
	struct stm_tuple *t;
	if (fw == FW_PASS_STATE_PARSED) {
		/* The firewall parsed this very packet into the slot. */
		__u32 slot = STM_FW_EGRESS;
		t = bpf_map_lookup_elem(&stm_fw_scratch, &slot);
	} else {
		t = fw_scratch(STM_FW_EGRESS, STM_FW_EGRESS, skb->len);
		if (t && stm_fw_parse_tc(skb, eth_proto, t))
			t = NULL;
	}
	if (t)
		stm_mseg_track(t, skb->ifindex);
	return STM_TC_NEXT;
}

/* What reaches an endpoint in a group: the policy on the sender's group as the mark carries
 * it (what passes always, as for the firewall: ND, MLD, DHCP and DNS with the node). */
__attribute__((noinline)) int stm_mseg_out(struct __sk_buff *skb, struct stm_port *port, __u32 eth_proto,
					   __u32 fw)
{
	if (!skb || !port)
		return STM_TC_DROP;
	struct stm_mseg_cfg *c = mseg_cfg_on();
	if (!port->group || !c)
		return STM_TC_NEXT;
	__u32 src = mseg_group_of(skb->mark);
	struct stm_tuple *t;
	if (fw == FW_PASS_STATE_PARSED) {
		/* The firewall parsed this very packet into the slot, and it is no failsafe traffic. */
		__u32 slot = STM_FW_INGRESS;
		t = bpf_map_lookup_elem(&stm_fw_scratch, &slot);
		if (!t)
			return STM_TC_DROP;
	} else {
		t = fw_scratch(STM_FW_INGRESS, STM_FW_INGRESS, skb->len);
		if (!t)
			return STM_TC_DROP;
		int pr = stm_fw_parse_tc(skb, eth_proto, t);
		if (pr)
			return stm_drop(skb, STM_HOOK_TC_EGRESS, fw_parse_reason(pr));
		if (stm_fw_failsafe(skb, t, port, STM_FW_INGRESS))
			return STM_TC_NEXT;
	}
	int r = stm_mseg_check(t, skb->ifindex, src, port->group, c->gen);
	return r >= FW_DROP ? stm_drop(skb, STM_HOOK_TC_EGRESS, r - FW_DROP) : r;
}

/* ---- the overlay's MTU ----------------------------------------------------------------- */

/* An IP packet from the port to an endpoint of another node that the overlay cannot carry
 * whole (larger than its MTU, in stm_vteps' switch entry; a GSO packet by its segments):
 * dropped, and an ICMP "fragmentation needed" (IPv4 with DF) or "packet too big" (IPv6)
 * goes back to the sender from the network's gateway, quoting the packet's start. IPv4
 * without DF passes: the underlay fragments it. Global, as stm_arp_answer. */
__attribute__((noinline)) int stm_overlay_mtu(struct __sk_buff *skb, struct stm_port *port, __u32 proto)
{
	if (!skb || !port)
		return STM_TC_NEXT;
	struct stm_vtep_key on = {};
	struct stm_vtep *sw = bpf_map_lookup_elem(&stm_vteps, &on);
	if (!sw || !sw->mtu)
		return STM_TC_NEXT;
	__u32 mtu = sw->mtu;
	__u8 h[60 + 8] __attribute__((aligned(8))) = {};
	int v6 = proto == bpf_htons(STM_ETH_P_IPV6);
	__u32 hl = v6 ? IP6_HLEN : 20;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, h, 20))
		return STM_TC_NEXT;
	if (!v6) {
		hl = (__u32)(h[0] & 0xf) * 4;
		if (hl < 20 || hl > 60)
			return STM_TC_NEXT;
	}
	__u32 len = skb->len - ETH_HLEN;
	__u32 seg = skb->gso_size;
	if (seg) {
		/* GSO: each segment carries the headers and gso_size bytes of payload. */
		__u8 l4 = v6 ? h[6] : h[9];
		__u8 th[13];
		__u32 l4len = l4 == IPPROTO_UDP ? 8 : 0;
		if (l4 == IPPROTO_TCP && !bpf_skb_load_bytes(skb, ETH_HLEN + hl, th, 13))
			l4len = (__u32)(th[12] >> 4) * 4;
		len = hl + l4len + seg;
	}
	if (len <= mtu)
		return STM_TC_NEXT;
	if (!v6 && !(h[6] & 0x40))
		return STM_TC_NEXT;
	/* The destination: an endpoint of another node? */
	struct stm_mac_key mk = {};
	if (bpf_skb_load_bytes(skb, 0, mk.mac, 6) || !bpf_map_lookup_elem(&stm_remote, &mk))
		return STM_TC_NEXT;
	stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_OVERLAY_MTU);

	/* The answer, after 2 bytes of pad: Ethernet, IP, ICMP (8) and the quote. */
	__u8 f[2 + 14 + 40 + 8 + 64] __attribute__((aligned(8))) = {};
	__u8 *e = f + 2;
	__u8 *ip = e + ETH_HLEN;
	__u32 q = v6 ? 48 : hl + 8;
	if (q > 64)
		q = 64;
	if (skb->len < ETH_HLEN + q)
		return STM_TC_DROP;
	__builtin_memcpy(e, port->mac, 6);
	__builtin_memcpy(e + 6, mk.mac, 6);
	__u32 out;
	if (!v6) {
		e[12] = 0x08;
		__u8 *ic = ip + 20;
		if (bpf_skb_load_bytes(skb, ETH_HLEN, ic + 8, q & 0x7f))
			return STM_TC_DROP;
		ip[0] = 0x45;
		__u16 tot = bpf_htons(20 + 8 + q);
		__builtin_memcpy(ip + 2, &tot, 2);
		ip[6] = 0x40;
		ip[8] = 64;
		ip[9] = IPPROTO_ICMP;
		__builtin_memcpy(ip + 12, &port->gw4, 4);
		__builtin_memcpy(ip + 16, ic + 8 + 12, 4); /* the packet's source */
		ic[0] = 3; /* destination unreachable */
		ic[1] = 4; /* fragmentation needed */
		__u16 nh = bpf_htons(mtu > 0xffff ? 0xffff : mtu);
		__builtin_memcpy(ic + 6, &nh, 2);
		__u16 c = csum_fold(bpf_csum_diff(0, 0, (__be32 *)ic, (8 + q) & 0x7c, 0));
		__builtin_memcpy(ic + 2, &c, 2);
		c = csum_fold(bpf_csum_diff(0, 0, (__be32 *)ip, 20, 0));
		__builtin_memcpy(ip + 10, &c, 2);
		out = ETH_HLEN + 20 + 8 + q;
	} else {
		e[12] = 0x86;
		e[13] = 0xdd;
		__u8 *ic = ip + IP6_HLEN;
		if (bpf_skb_load_bytes(skb, ETH_HLEN, ic + 8, 48))
			return STM_TC_DROP;
		ip[0] = 0x60;
		ip[5] = 8 + 48;
		ip[6] = IPPROTO_ICMPV6_;
		ip[7] = 255;
		__builtin_memcpy(ip + 8, port->gw6, 16);
		__builtin_memcpy(ip + 24, ic + 8 + 8, 16); /* the packet's source */
		ic[0] = 2; /* packet too big */
		__u32 m = bpf_htonl(mtu);
		__builtin_memcpy(ic + 4, &m, 4);
		__u32 pseudo[2] = { bpf_htonl(8 + 48), bpf_htonl(IPPROTO_ICMPV6_) };
		__s64 sum = bpf_csum_diff(0, 0, (__be32 *)(ip + 8), 32, 0);
		sum = bpf_csum_diff(0, 0, pseudo, 8, (__u32)sum);
		sum = bpf_csum_diff(0, 0, (__be32 *)ic, 8 + 48, (__u32)sum);
		__u16 c = csum_fold(sum);
		__builtin_memcpy(ic + 2, &c, 2);
		out = ETH_HLEN + IP6_HLEN + 8 + 48;
	}
	if (bpf_skb_change_tail(skb, out, 0) || bpf_skb_store_bytes(skb, 0, e, out & 0xff, 0))
		return STM_TC_DROP;
	return answer_back(skb);
}

static __always_inline int port_in(struct __sk_buff *skb, struct stm_port *port)
{
	if (fw_reply_passes(skb))
		return STM_TC_NEXT;
	if (!stm_linear(skb, ETH_HLEN))
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
	void *data = stm_skb_data(skb);
	void *end = stm_skb_end(skb);
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
	if (!mac_eq(eth->h_source, port->mac))
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MAC_SPOOF);

	__u16 proto = eth->h_proto;
	int r;
	if (proto == bpf_htons(STM_ETH_P_IP) || proto == bpf_htons(STM_ETH_P_IPV6)) {
		r = proto == bpf_htons(STM_ETH_P_IP) ? check_ip4(skb, port) : check_ip6(skb, port);
		if (r != STM_TC_NEXT)
			return r;
		/* To a VIP: to its backend from here on (the firewall judges the backend). */
		r = stm_lb_tc_in(skb, proto, port->net_id);
		if (r != STM_TC_NEXT)
			return r;
		r = stm_fw_port(skb, port, proto, STM_FW_EGRESS);
		if (r == STM_TC_NEXT || r == FW_PASS_PARSED || r == FW_PASS_FAILSAFE)
			r = stm_mseg_in(skb, port, proto, r == FW_PASS_PARSED ? FW_PASS_STATE_PARSED : 0);
		/* Too large for the overlay (a frame of more than the smallest MTU, to another node). */
		if (r == STM_TC_NEXT && skb->len > ETH_HLEN + 1280)
			r = stm_overlay_mtu(skb, port, proto);
		/* What the endpoint may send, on every path: the cap comes last, so only traffic
		 * that would be delivered spends credit. */
		if (r == STM_TC_NEXT && (port->flags & STM_PORT_F_SHAPED))
			r = stm_shape(skb, STM_SHAPE_ENDPOINT, skb->ifindex, STM_HOOK_TC_INGRESS);
		/* Off the fabric, from a node that is not a gateway: to a gateway node. */
		return r == STM_TC_NEXT ? stm_ns_out(skb, proto) : r;
	}
	if (proto == bpf_htons(STM_ETH_P_ARP))
		return check_arp(skb, port);
	if (proto == bpf_htons(0x8100) || proto == bpf_htons(0x88a8))
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_VLAN_TAGGED);
	return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_ETHERTYPE);
}

/* A macvtap's fast path: checked unicast to an endpoint of its network on this node that is
 * not itself a VM's macvtap (a container's veth, a VM's tap or AF_XDP pair) goes straight to
 * that endpoint's port, whose stm_port_out judges it exactly as after the bridge (where it
 * came from is in the priority: stm_from). Everything else (broadcast, the gateway, a sibling
 * macvtap, another node, the LAN) goes on through the macvtap lower link. Returns the port's
 * ifindex, or 0. */
static __noinline __u32 macvtap_fast(struct __sk_buff *skb, __u32 net_id)
{
	if (!skb)
		return 0;
	struct stm_local_key lk = { .kind = STM_LOCAL_MAC };
	if (bpf_skb_load_bytes(skb, 0, lk.addr, 6) || (lk.addr[0] & 1))
		return 0;
	struct stm_local *l = bpf_map_lookup_elem(&stm_local, &lk);
	if (!l || l->net_id != net_id)
		return 0;
	__u32 to = l->ifindex;
	struct stm_port *p = bpf_map_lookup_elem(&stm_ports, &to);
	if (!p || p->net_id != net_id || (p->flags & STM_PORT_F_MACVTAP))
		return 0;
	return to;
}

SEC("tc")
int stm_port_in(struct __sk_buff *skb)
{
	struct stm_port *port = port_of(skb, STM_HOOK_TC_INGRESS);

	if (!port)
		return STM_TC_DROP;
	if (!(port->flags & STM_PORT_F_MACVTAP))
		return port_in(skb, port);
	/* A VM's macvtap, on its tc egress: what the guest wrote has no ingress device. Where it
	 * entered the host goes with it: in the priority, for a hook it is redirected to (stm_from);
	 * and, for what goes on through the macvtap lower link or straight to a sibling macvtap
	 * (both cross a dev_forward_skb, which clears the priority), as a link's stm_link_out
	 * writes it: the port into the mark, the group (or a reject's answer) into tc_index.
	 * Unicast to a local endpoint that is not a macvtap skips the lower link (macvtap_fast). */
	__u32 self = skb->ifindex;
	skb->priority = self | STM_LINK_SEEN;
	__u32 net_id = port->net_id;
	int r = port_in(skb, port);
	if (r == STM_TC_NEXT) {
		__u32 to = macvtap_fast(skb, net_id);
		if (to)
			return bpf_redirect(to, 0);
		skb->tc_index = skb->mark == STM_MARK_FW_REPLY ? STM_LINK_FW_REPLY : mseg_group_of(skb->mark);
		skb->mark = self;
	}
	return r;
}

/* ---- port egress ---------------------------------------------------------------------- */

/* A frame of the host (a gateway) or from the uplink reaches a port only when it is
 * about the port's network: ARP with the sender or target inside it, IP with the source
 * or destination inside it. IPv6 link-local traffic of the host (ND, RA) passes: the
 * gateway's link-local address is shared by every network on the bridge; so do its
 * multicast messages from :: (MLD, DAD). */
static __always_inline int foreign_ok(struct __sk_buff *skb, struct stm_port *port, __u32 from, int lan)
{
	void *data = stm_skb_data(skb);
	void *end = stm_skb_end(skb);
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return 0;
	__u16 proto = eth->h_proto;

	if (proto == bpf_htons(STM_ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end)
			return 0;
		return (ip->saddr & port->mask4) == port->net4 || (ip->daddr & port->mask4) == port->net4;
	}
	if (proto == bpf_htons(STM_ETH_P_ARP)) {
		__u8 *a = (void *)(eth + 1);
		if ((void *)(a + ARP_LEN) > end)
			return 0;
		return (*(__u32 *)(a + 14) & port->mask4) == port->net4 || (*(__u32 *)(a + 24) & port->mask4) == port->net4;
	}
	if (proto == bpf_htons(STM_ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end)
			return 0;
		__u8 *s = (__u8 *)&ip6->saddr;
		__u8 *d = (__u8 *)&ip6->daddr;
		/* Only the host itself (from 0: sent here, not bridged or routed) speaks link-local
		 * to every network; from the uplink, only to a network extended onto its LAN. */
		if ((from == 0 || lan) && s[0] == 0xfe && (s[1] & 0xc0) == 0x80)
			return 1;
		/* The host's MLD reports and DAD probes before its link-local address is ready. */
		if (from == 0 && ip6_zero(s) && d[0] == 0xff)
			return 1;
		if (!ip6_zero(port->mask6) && (ip6_in(s, port->net6, port->mask6) || ip6_in(d, port->net6, port->mask6)))
			return 1;
		return 0;
	}
	return 0;
}

/* What only the node itself may tell a workload, checked on every frame that does not come
 * from a port of its network (the host, routed traffic, the LAN of an extended network):
 * router advertisements and neighbour messages that did not come from the node (a routed
 * or bridged one poisons the workload's routes and neighbour cache), and DHCP or DHCPv6
 * server messages from anyone but the node's own servers. `from`: 0 for what the node sent
 * itself. */
__attribute__((noinline)) int stm_outside_ok(struct __sk_buff *skb, struct stm_port *port, __u32 from, __u32 proto,
					    __u32 lan)
{
	struct stm_ip6_l4 w;
	if (!skb || !port)
		return STM_TC_DROP;
	/* What cannot be walked cannot be judged: it is not delivered (fail closed). */
	int walk = tc_upper(skb, proto, &w);
	if (walk)
		return stm_drop(skb, STM_HOOK_TC_EGRESS,
				walk == STM_WALK_TOO_LONG ? STM_DROP_IP6_EXT_CHAIN : STM_DROP_MALFORMED);
	if (w.frag == 2)
		return STM_TC_NEXT;
	/* A first fragment without its upper-layer header (RFC 7112) hides what it is: an RA or
	 * a DHCP server message whose header waits in the next fragment. */
	if (w.frag == 1 && w.left < 8)
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_MALFORMED);
	int v6 = proto == bpf_htons(STM_ETH_P_IPV6);
	int type = icmp_type_of(skb, proto, &w);
	if (type == (v6 ? ICMP6_REDIRECT : ICMP_REDIRECT_))
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_REDIRECT);
	/* An IPv4 router advertisement (RFC 1256): the node sends none. */
	if (!v6 && type == ICMP_ROUTER_ADV_ && from != 0)
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_ND_OUTSIDE);
	if (v6 && type >= ICMP6_RS && type <= ICMP6_NA) {
		/* RA: the node's own only. NS/NA/RS: the node's, or (extended network) the LAN's
		 * hosts on the link; never routed. */
		if (from != 0 && (type == ICMP6_RA || !lan))
			return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_ND_OUTSIDE);
	}
	if (w.proto == IPPROTO_UDP && w.left >= 4) {
		__u8 ports[4];
		if (bpf_skb_load_bytes(skb, w.off, ports, 4))
			return STM_TC_NEXT;
		__u16 dport = ((__u16)ports[2] << 8) | ports[3];
		/* Anything to a client's port, whatever port it comes from: clients (dhclient,
		 * udhcpc) take a reply from any source port, as relays may use another. */
		if (from != 0 && !v6 && dport == DHCP_CLIENT_PORT)
			return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_ROGUE_DHCP);
		if (from != 0 && v6 && dport == DHCP6_CLIENT_PORT)
			return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_ROGUE_DHCP6);
	}
	return STM_TC_NEXT;
}

/* A macvtap's stm_port_out, first: what stm_link_in does on a link's far end (the mark: where
 * the frame entered the host; tc_index: its group, or a reject's answer). Returns where it came
 * from. An answer of this port's own programs (the reply mark) is left as it is. Not inlined:
 * the verifier wants the context's fields read at fixed offsets. */
static __noinline int macvtap_crossed(struct __sk_buff *skb)
{
	if (!skb)
		return 0;
	__u32 mark = skb->mark;
	if (mark == STM_MARK_FW_REPLY)
		return 0;
	__u32 group = skb->tc_index;
	__u32 next = group == STM_LINK_FW_REPLY	  ? STM_MARK_FW_REPLY
		     : group != STM_MSEG_UNTAGGED ? mseg_stamp(group)
						  : 0;
	skb->mark = next;
	skb->tc_index = 0;
	skb->priority = 0;
	return (int)mark;
}

SEC("tc")
int stm_port_out(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct stm_port *port = port_of(skb, STM_HOOK_TC_EGRESS);

	if (!port)
		return STM_TC_DROP;
	/* A VM's macvtap, on its tc ingress: every frame crossed the macvtap lower link or came
	 * straight from a sibling macvtap, as stm_link_out (or stm_port_in) wrote it; what
	 * stm_link_in does on a link's far end is done here (an answer of this port's own
	 * programs carries the reply mark as it is). */
	__u32 from = 0;
	if (port->flags & STM_PORT_F_MACVTAP)
		from = macvtap_crossed(skb);
	if (fw_reply_passes(skb))
		return STM_TC_NEXT;

	/* The device the frame entered the host on: for a bridged frame, the sending workload's
	 * port or the uplink (across the links between user bridges too: stm_link.h); for routed
	 * frames the device they were received on (the bridge, another NIC); for what the node
	 * sends itself, 0. */
	if (!(port->flags & STM_PORT_F_MACVTAP))
		from = stm_from_last(skb);
	if (from == STM_FROM_UNMARKED)
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_LINK_UNMARKED);
	int lan = 0;
	if (from && from != ifindex) {
		struct stm_port *src = bpf_map_lookup_elem(&stm_ports, &from);
		/* Another network's endpoint, or the LAN: a DSR VIP's frame to a port serving it
		 * (the load balancer sent it here: stm_lb.h); judged by the firewall as any is. */
		__u16 l3;
		if (src && src->net_id != port->net_id) {
			if (!bpf_skb_load_bytes(skb, 12, &l3, 2) && stm_lb_dsr_port(skb, port, l3, 1))
				goto firewall;
			return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_OTHER_NETWORK);
		}
		/* Two VMs' macvtaps, either private (whichever way the frame came: straight, or
		 * reflected by the bridge for VEPA). */
		if (src && (src->flags & port->flags & STM_PORT_F_MACVTAP) &&
		    ((src->flags | port->flags) & STM_PORT_F_VM_PRIVATE))
			return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_VM_PRIVATE);
		if (src)
			goto firewall;
		/* Straight from the LAN at L2: only into a network extended onto it. */
		struct stm_iface *dev = bpf_map_lookup_elem(&stm_ifaces, &from);
		/* From another node: stm_overlay_in admitted only an endpoint of the VNI's network
		 * running there; it must be this port's network. */
		if (dev && dev->kind == STM_IFACE_OVERLAY) {
			struct stm_mac_key mk = {};
			if (bpf_skb_load_bytes(skb, 6, mk.mac, 6))
				return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_MALFORMED);
			struct stm_remote *r = bpf_map_lookup_elem(&stm_remote, &mk);
			if (r && r->net_id == port->net_id)
				goto firewall;
			/* A gateway node's routed reply, from the gateway MAC (stm_overlay_in admitted
			 * it): judged as any routed frame is, below. */
			if (r || !ns_bridge_mac(mk.mac))
				return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_OTHER_NETWORK);
		}
		if (dev && dev->kind == STM_IFACE_UPLINK) {
			if (!(port->flags & STM_PORT_F_LAN)) {
				if (!bpf_skb_load_bytes(skb, 12, &l3, 2) && stm_lb_dsr_port(skb, port, l3, 1))
					goto firewall;
				return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_LAN_DIRECT);
			}
			lan = 1;
		}
	}
	__u32 want = ETH_HLEN + IP6_HLEN;
	if (skb->len < want)
		want = skb->len;
	if (!stm_linear(skb, want))
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_MALFORMED);
	if (!foreign_ok(skb, port, from, lan)) {
		/* A network extended onto the LAN: a DSR VIP's frame from the LAN, as above. */
		__u16 et;
		if (lan && !bpf_skb_load_bytes(skb, 12, &et, 2) && stm_lb_dsr_port(skb, port, et, 1))
			goto firewall;
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_OTHER_NETWORK);
	}
	__u16 l3proto;
	if (bpf_skb_load_bytes(skb, 12, &l3proto, 2))
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_MALFORMED);
	if (l3proto == bpf_htons(STM_ETH_P_IP) || l3proto == bpf_htons(STM_ETH_P_IPV6)) {
		int r = stm_outside_ok(skb, port, from, l3proto, lan);
		if (r != STM_TC_NEXT)
			return r;
	}
firewall:;
	__u16 proto;
	if (bpf_skb_load_bytes(skb, 12, &proto, 2))
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_MALFORMED);
	if (proto != bpf_htons(STM_ETH_P_IP) && proto != bpf_htons(STM_ETH_P_IPV6))
		return STM_TC_NEXT;
	int r = stm_fw_port(skb, port, proto, STM_FW_INGRESS);
	/* What always passes the firewall passes microsegmentation too. */
	if (r == FW_PASS_FAILSAFE)
		return STM_TC_NEXT;
	/* The firewall's tuple of this packet in the ingress slot (microsegmentation reuses it or
	 * parses the same packet into it again). */
	__u32 parsed = r == FW_PASS_PARSED;
	if (r == STM_TC_NEXT || r == FW_PASS_PARSED)
		r = stm_mseg_out(skb, port, proto, r == FW_PASS_PARSED ? FW_PASS_STATE_PARSED : 0);
	/* A reply of a load-balanced flow this endpoint opened: from the VIP, as it asked. */
	return r == STM_TC_NEXT ? stm_lb_tc_rev(skb, proto, STM_HOOK_TC_EGRESS, STM_FW_INGRESS, parsed) : r;
}
