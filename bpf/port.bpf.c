/* Workload port programs, on the host side of every veth or tap plugged into
 * cnv-user-br0, and the uplink filter on the NIC.
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
 * included), and frames of the host or the uplink are delivered only when they are
 * about this port's network.
 *
 * Egress caps (stm_shape.h): an endpoint's at the end of stm_port_in, a network's at the
 * end of stm_uplink_out.
 *
 * stm_uplink_in (XDP on the NIC) drops frames from outside that claim a local
 * endpoint's or gateway's MAC or address, and sources on the blocklist.
 *
 * All fail closed: a port without configuration passes nothing, and every drop goes
 * through stm_drop() with its reason. */
#include "stm_common.h"
#include "stm_maps.h"
#include "stm_drop.h"
#include "stm_fw.h"
#include "stm_shape.h"

#define ETH_HLEN 14
#define IP6_HLEN 40
#define ARP_LEN 28
/* Extension headers walked before the L4 header; a longer chain is dropped. */
#define IP6_MAX_EXT 6
/* ND options inspected after an NS/NA header; they come first in practice. */
#define ND_MAX_OPTS 8

#define IPPROTO_HOPOPTS_ 0
#define IPPROTO_ROUTING_ 43
#define IPPROTO_FRAGMENT_ 44
#define IPPROTO_AH_ 51
#define IPPROTO_DSTOPTS_ 60
#define IPPROTO_ICMPV6_ 58
#define IPPROTO_NONE_ 59

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

#define DHCP_SERVER_PORT 67
#define DHCP_CLIENT_PORT 68
#define DHCP6_CLIENT_PORT 546
#define DHCP6_SERVER_PORT 547
#define VXLAN_PORT 4789

#define BOOTREPLY 2

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

	if (src != port->ip4) {
		/* No address yet: IGMP reports to multicast (RFC 3376 allows 0.0.0.0) ... */
		if (src == 0 && proto == 2 && (dst & bpf_htonl(0xf0000000)) == bpf_htonl(0xe0000000) && !non_first)
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
	if (proto == IPPROTO_ICMP && l4len < 8)
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
	return STM_TC_NEXT;
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
	if (!src_ok && !src_dad)
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_IP6_SPOOF);

	/* Walk the extension headers to the L4 header. */
	__u8 next = ip6->nexthdr;
	__u32 off = ETH_HLEN + IP6_HLEN;
	__u32 left = plen;
	int non_first = 0;
	int fragmented = 0;
	int found = 0;
#pragma unroll
	for (int i = 0; i < IP6_MAX_EXT + 1; i++) {
		if (next != IPPROTO_HOPOPTS_ && next != IPPROTO_ROUTING_ && next != IPPROTO_DSTOPTS_ &&
		    next != IPPROTO_FRAGMENT_ && next != IPPROTO_AH_) {
			found = 1;
			break;
		}
		if (i == IP6_MAX_EXT)
			break;
		__u8 eh[4];
		if (left < 8 || bpf_skb_load_bytes(skb, off, eh, 4))
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
		__u32 elen;
		if (next == IPPROTO_FRAGMENT_) {
			elen = 8;
			fragmented = 1;
			if (((eh[2] << 8) | eh[3]) & 0xfff8)
				non_first = 1;
		} else if (next == IPPROTO_AH_) {
			elen = ((__u32)eh[1] + 2) * 4;
		} else {
			elen = ((__u32)eh[1] + 1) * 8;
		}
		if (elen > left)
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
		next = eh[0];
		off += elen;
		left -= elen;
		if (non_first)
			break;
	}
	if (!found && !non_first)
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_IP6_EXT_CHAIN);

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
		if (type == ICMP6_RA || type == ICMP6_REDIRECT)
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_ROGUE_ROUTER);
		/* :: only before an address is ready: DAD's NS, MLD reports and dones, RS (RFC 4861). */
		if (src_dad && type != ICMP6_NS && type != ICMP6_MLD2_REPORT && type != ICMP6_MLD_REPORT &&
		    type != ICMP6_MLD_DONE && type != ICMP6_RS)
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_IP6_SPOOF);
		if (type == ICMP6_NS || type == ICMP6_NA || type == ICMP6_RS)
			return check_nd(skb, port, type, off, left, src_dad);
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

#define ICMP6_ECHO_REQ 128
#define ICMP6_ECHO_REP 129
#define DNS_PORT 53

/* The L4 part of a tuple: ports, TCP flags and sequence numbers, ICMP kind (and, for an
 * ICMP error, the flow of the packet it quotes). Returns 0, or -1 for a truncated header. */
/* Loads from a tc or an XDP frame: `xdp` is a constant where these helpers are inlined, so
 * each program keeps only its own helper. */
#define FW_LOAD(off, buf, n)                                                                  \
	(xdp ? bpf_xdp_load_bytes((struct xdp_md *)ctx, off, buf, n)                             \
	     : bpf_skb_load_bytes((struct __sk_buff *)ctx, off, buf, n))

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

/* Parses an IPv4 or IPv6 frame (port security has checked its headers) into a tuple.
 * Returns 0, or -1 for a truncated header. */
static __always_inline int fw_parse(void *ctx, int xdp, __u32 pktlen, __u16 eth_proto, struct stm_tuple *t)
{
	if (eth_proto == bpf_htons(STM_ETH_P_IP)) {
		struct iphdr ip;
		if (FW_LOAD(ETH_HLEN, &ip, 20))
			return -1;
		__u32 hlen = ip.ihl * 4;
		__u32 tot = bpf_ntohs(ip.tot_len);
		if (tot == 0)
			tot = pktlen - ETH_HLEN;
		if (hlen < 20 || tot < hlen)
			return -1;
		t->family = 4;
		__builtin_memcpy(t->src, &ip.saddr, 4);
		__builtin_memcpy(t->dst, &ip.daddr, 4);
		t->proto = ip.protocol;
		__u16 frag = bpf_ntohs(ip.frag_off);
		t->frag = (frag & 0x1fff) ? 2 : (frag & 0x2000) ? 1 : 0;
		t->frag_id = ip.id;
		t->l4off = ETH_HLEN + hlen;
		t->l4len = tot - hlen;
		t->pcls = t->proto == IPPROTO_TCP   ? STM_PCLS_TCP
			  : t->proto == IPPROTO_UDP ? STM_PCLS_UDP
			  : t->proto == IPPROTO_ICMP ? STM_PCLS_ICMP
						    : STM_PCLS_OTHER;
	} else {
		struct ipv6hdr ip6;
		if (FW_LOAD(ETH_HLEN, &ip6, 40))
			return -1;
		t->family = 6;
		__builtin_memcpy(t->src, &ip6.saddr, 16);
		__builtin_memcpy(t->dst, &ip6.daddr, 16);
		__u8 next = ip6.nexthdr;
		__u32 off = ETH_HLEN + IP6_HLEN;
		__u32 left = bpf_ntohs(ip6.payload_len);
		if (left == 0)
			left = pktlen - off;
#pragma unroll
		for (int i = 0; i < IP6_MAX_EXT; i++) {
			if (next != IPPROTO_HOPOPTS_ && next != IPPROTO_ROUTING_ && next != IPPROTO_DSTOPTS_ &&
			    next != IPPROTO_FRAGMENT_ && next != IPPROTO_AH_)
				break;
			__u8 eh[8];
			if (left < 8 || FW_LOAD(off, eh, 8))
				return -1;
			__u32 elen;
			if (next == IPPROTO_FRAGMENT_) {
				elen = 8;
				t->frag = (((eh[2] << 8) | eh[3]) & 0xfff8) ? 2 : (eh[3] & 1) ? 1 : 0;
				t->frag_id = *(__u32 *)(eh + 4);
			} else if (next == IPPROTO_AH_) {
				elen = ((__u32)eh[1] + 2) * 4;
			} else {
				elen = ((__u32)eh[1] + 1) * 8;
			}
			if (elen > left)
				return -1;
			next = eh[0];
			off += elen;
			left -= elen;
			if (t->frag == 2)
				break;
		}
		t->proto = next;
		t->l4off = off;
		t->l4len = left;
		t->pcls = next == IPPROTO_TCP   ? STM_PCLS_TCP
			  : next == IPPROTO_UDP ? STM_PCLS_UDP
			  : next == IPPROTO_ICMPV6_ ? STM_PCLS_ICMP6
						   : STM_PCLS_OTHER;
	}
	if (t->frag == 2)
		return 0;
	return fw_parse_l4(ctx, xdp, t);
}

/* What always passes between a workload and its gateway, whatever the rules: neighbour
 * discovery and MLD, DHCP and DHCPv6, DNS to the gateway. A deny-all network still gets
 * addresses and names. */
static __always_inline int fw_failsafe(struct stm_tuple *t, struct stm_port *port, __u8 dir)
{
	if (t->frag)
		return 0;
	if (t->pcls == STM_PCLS_ICMP6)
		return (t->sport >= 130 && t->sport <= 137) || t->sport == ICMP6_MLD2_REPORT;
	int out = dir == STM_FW_EGRESS;
	__u16 mine = out ? t->sport : t->dport;
	__u16 theirs = out ? t->dport : t->sport;
	const __u8 *peer = out ? t->dst : t->src;
	if (t->pcls == STM_PCLS_UDP) {
		if (t->family == 4 && mine == DHCP_CLIENT_PORT && theirs == DHCP_SERVER_PORT)
			return 1;
		if (t->family == 6 && mine == DHCP6_CLIENT_PORT && theirs == DHCP6_SERVER_PORT)
			return 1;
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

static __always_inline __u16 csum_fold(__s64 s)
{
	__u32 c = (__u32)s;
	c = (c & 0xffff) + (c >> 16);
	c = (c & 0xffff) + (c >> 16);
	return ~c;
}

/* The TCP header of a reset answering `t` (RFC 793: the sequence number from the segment's
 * acknowledgment, else acknowledge all it carried); checksum left to the caller. */
static __always_inline void fw_rst(__u8 *th, struct stm_tuple *t)
{
	*(__u16 *)th = bpf_htons(t->dport);
	*(__u16 *)(th + 2) = bpf_htons(t->sport);
	if (t->tcp_flags & TCP_ACK) {
		*(__u32 *)(th + 4) = bpf_htonl(t->ack_seq);
		th[13] = TCP_RST;
	} else {
		*(__u32 *)(th + 8) = bpf_htonl(t->seq + t->seg_len);
		th[13] = TCP_RST | TCP_ACK;
	}
	th[12] = 5 << 4;
}

/* Turns a rejected packet into its answer in place: a TCP reset, or an ICMP/ICMPv6
 * "administratively prohibited" quoting its start, from the packet's destination to its
 * source. Returns 0, or -1 when the packet gets no answer. */
static __always_inline int fw_reply(void *ctx, int xdp, __u32 pktlen, struct stm_tuple *t)
{
	/* Two bytes ahead of the Ethernet header keep the IP header 4-byte aligned. */
	__u8 buf[136] __attribute__((aligned(8)));
	__u8 *eth = buf + 2;
	__u64 out;

	if (!t)
		return -1;
	__builtin_memset(buf, 0, sizeof(buf));
	if (FW_LOAD(0, buf + 8, 6) || FW_LOAD(6, eth, 6))
		return -1;
	if (t->family == 4) {
		eth[12] = 0x08;
		eth[13] = 0x00;
		__u8 *ip = buf + 16;
		ip[0] = 0x45;
		ip[6] = 0x40; /* DF */
		ip[8] = 64;
		__builtin_memcpy(ip + 12, t->dst, 4);
		__builtin_memcpy(ip + 16, t->src, 4);
		if (t->proto == IPPROTO_TCP) {
			__u8 *th = buf + 36;
			ip[9] = IPPROTO_TCP;
			*(__u16 *)(ip + 2) = bpf_htons(40);
			fw_rst(th, t);
			__u32 ph[3] = { *(__u32 *)(ip + 12), *(__u32 *)(ip + 16), bpf_htonl((IPPROTO_TCP << 16) | 20) };
			__s64 s = bpf_csum_diff(0, 0, ph, 12, 0);
			s = bpf_csum_diff(0, 0, (void *)th, 20, (__u32)s);
			*(__u16 *)(th + 16) = csum_fold(s);
			out = 54;
		} else {
			__u8 *ic = buf + 36;
			__u64 e = t->l4off - ETH_HLEN + 8; /* the IP header and 64 bits of what followed */
			if (pktlen < ETH_HLEN + e)
				e = (pktlen - ETH_HLEN) & ~3;
			if (e > 68)
				e = 68;
			if (e < 20)
				return -1;
			if (FW_LOAD(ETH_HLEN, buf + 44, e))
				return -1;
			ip[9] = IPPROTO_ICMP;
			*(__u16 *)(ip + 2) = bpf_htons(28 + e);
			ic[0] = 3;  /* destination unreachable */
			ic[1] = 13; /* communication administratively prohibited */
			*(__u16 *)(ic + 2) = csum_fold(bpf_csum_diff(0, 0, (void *)ic, 8 + e, 0));
			out = 42 + e;
		}
		*(__u16 *)(ip + 10) = csum_fold(bpf_csum_diff(0, 0, (void *)ip, 20, 0));
	} else {
		eth[12] = 0x86;
		eth[13] = 0xdd;
		__u8 *ip6 = buf + 16;
		ip6[0] = 0x60;
		ip6[7] = 64;
		__builtin_memcpy(ip6 + 8, t->dst, 16);
		__builtin_memcpy(ip6 + 24, t->src, 16);
		__u32 ph[2];
		__s64 s = bpf_csum_diff(0, 0, (void *)(ip6 + 8), 32, 0);
		if (t->proto == IPPROTO_TCP) {
			__u8 *th = buf + 56;
			ip6[6] = IPPROTO_TCP;
			*(__u16 *)(ip6 + 4) = bpf_htons(20);
			fw_rst(th, t);
			ph[0] = bpf_htonl(20);
			ph[1] = bpf_htonl(IPPROTO_TCP);
			s = bpf_csum_diff(0, 0, ph, 8, (__u32)s);
			s = bpf_csum_diff(0, 0, (void *)th, 20, (__u32)s);
			*(__u16 *)(th + 16) = csum_fold(s);
			out = 74;
		} else {
			__u8 *ic = buf + 56;
			__u64 e = (pktlen - ETH_HLEN) & ~3;
			if (e > 64)
				e = 64;
			if (e < 40)
				return -1;
			if (FW_LOAD(ETH_HLEN, buf + 64, e))
				return -1;
			ip6[6] = IPPROTO_ICMPV6_;
			*(__u16 *)(ip6 + 4) = bpf_htons(8 + e);
			ic[0] = 1; /* destination unreachable */
			ic[1] = 1; /* communication administratively prohibited */
			ph[0] = bpf_htonl(8 + e);
			ph[1] = bpf_htonl(IPPROTO_ICMPV6_);
			s = bpf_csum_diff(0, 0, ph, 8, (__u32)s);
			s = bpf_csum_diff(0, 0, (void *)ic, 8 + e, (__u32)s);
			*(__u16 *)(ic + 2) = csum_fold(s);
			out = 62 + e;
		}
	}
	if (out > sizeof(buf) - 2)
		return -1;
	if (xdp) {
		struct xdp_md *x = ctx;
		if (bpf_xdp_adjust_tail(x, (int)out - (int)pktlen))
			return -1;
		return bpf_xdp_store_bytes(x, 0, buf + 2, out) ? -1 : 0;
	}
	struct __sk_buff *skb = ctx;
	if (bpf_skb_change_tail(skb, out, 0))
		return -1;
	if (bpf_skb_store_bytes(skb, 0, buf + 2, out, BPF_F_RECOMPUTE_CSUM))
		return -1;
	return 0;
}

__attribute__((noinline)) int stm_fw_reply(struct __sk_buff *skb, struct stm_tuple *t)
{
	return skb ? fw_reply(skb, 0, skb->len, t) : -1;
}

__attribute__((noinline)) int stm_fw_reply_xdp(struct xdp_md *ctx, struct stm_tuple *t)
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

/* The firewall stage of a port: blocklist, failsafe, then the network's rules. A global
 * function: the verifier checks it once, not once per path through port security. */
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
	if (fw_parse(skb, 0, skb->len, eth_proto, t))
		return stm_drop(skb, hook, STM_DROP_MALFORMED);
	if (fw_failsafe(t, port, dir))
		return STM_TC_NEXT;
	int r = stm_fw_check(t, scope, ifindex, port->net_id);
	if (r >= FW_DROP)
		return stm_drop(skb, hook, r - FW_DROP);
	/* From the workload (its egress): back out of the port to it. To the workload: into the
	 * port, as if the workload answered, and on through the bridge to the sender. */
	return r == FW_REJECT ? fw_reject_tc(skb, t, dir == STM_FW_INGRESS, hook) : r;
}

SEC("tc")
int stm_port_in(struct __sk_buff *skb)
{
	struct stm_port *port = port_of(skb, STM_HOOK_TC_INGRESS);

	if (!port)
		return STM_TC_DROP;
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
		r = stm_fw_port(skb, port, proto, STM_FW_EGRESS);
		/* What the endpoint may send, on every path: the cap comes last, so only traffic
		 * that would be delivered spends credit. */
		if (r == STM_TC_NEXT && (port->flags & STM_PORT_F_SHAPED))
			return stm_shape(skb, STM_SHAPE_ENDPOINT, skb->ifindex, STM_HOOK_TC_INGRESS);
		return r;
	}
	if (proto == bpf_htons(STM_ETH_P_ARP))
		return check_arp(skb, port);
	if (proto == bpf_htons(0x8100) || proto == bpf_htons(0x88a8))
		return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_VLAN_TAGGED);
	return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_ETHERTYPE);
}

/* ---- port egress ---------------------------------------------------------------------- */

/* A frame of the host (a gateway) or from the uplink reaches a port only when it is
 * about the port's network: ARP with the sender or target inside it, IP with the source
 * or destination inside it. IPv6 link-local traffic of the host (ND, RA) passes: the
 * gateway's link-local address is shared by every network on the bridge; so do its
 * multicast messages from :: (MLD, DAD). */
static __always_inline int foreign_ok(struct __sk_buff *skb, struct stm_port *port, __u32 from)
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
		 * to every network; from the uplink, link-local is nobody's. */
		if (from == 0 && s[0] == 0xfe && (s[1] & 0xc0) == 0x80)
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

/* An ICMP redirect (type 5) or ICMPv6 redirect (137) sent by the node: its kernel forwards
 * a workload's packet out of the bridge it came in on (to a router on the uplink's LAN, say)
 * and offers the workload a shortcut past the gateway, which port security would drop (the
 * workload would ARP for an address outside its network). The same on the way back, to the
 * LAN's host. Checked on frames from the host (port egress) and leaving the uplink. */
static __always_inline int is_redirect(struct __sk_buff *skb)
{
	__u16 proto;
	__u8 b[2];
	if (bpf_skb_load_bytes(skb, 12, &proto, 2))
		return 0;
	if (proto == bpf_htons(STM_ETH_P_IP)) {
		__u8 vihl;
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &vihl, 1) || bpf_skb_load_bytes(skb, ETH_HLEN + 9, b, 1))
			return 0;
		if (b[0] != IPPROTO_ICMP || bpf_skb_load_bytes(skb, ETH_HLEN + (vihl & 0xf) * 4, &b[1], 1))
			return 0;
		return b[1] == 5; /* ICMP redirect */
	}
	if (proto == bpf_htons(STM_ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN + 6, b, 1) || b[0] != IPPROTO_ICMPV6_ ||
		    bpf_skb_load_bytes(skb, ETH_HLEN + IP6_HLEN, &b[1], 1))
			return 0;
		return b[1] == ICMP6_REDIRECT;
	}
	return 0;
}

SEC("tc")
int stm_port_out(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct stm_port *port = port_of(skb, STM_HOOK_TC_EGRESS);

	if (!port)
		return STM_TC_DROP;
	if (fw_reply_passes(skb))
		return STM_TC_NEXT;

	/* ingress_ifindex is the device the frame entered the host on: for a bridged frame,
	 * the sending workload's port; for routed or locally sent frames, the bridge or 0. */
	__u32 from = skb->ingress_ifindex;
	if (from && from != ifindex) {
		struct stm_port *src = bpf_map_lookup_elem(&stm_ports, &from);
		if (src && src->net_id != port->net_id)
			return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_OTHER_NETWORK);
		if (src)
			goto firewall;
	}
	__u32 want = ETH_HLEN + IP6_HLEN;
	if (skb->len < want)
		want = skb->len;
	if (!stm_linear(skb, want))
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_MALFORMED);
	if (!foreign_ok(skb, port, from))
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_OTHER_NETWORK);
	if (is_redirect(skb))
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_REDIRECT);
firewall:;
	__u16 proto;
	if (bpf_skb_load_bytes(skb, 12, &proto, 2))
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_MALFORMED);
	if (proto != bpf_htons(STM_ETH_P_IP) && proto != bpf_htons(STM_ETH_P_IPV6))
		return STM_TC_NEXT;
	return stm_fw_port(skb, port, proto, STM_FW_INGRESS);
}

/* ---- uplink --------------------------------------------------------------------------- */

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

/* The node's global scope on the uplink: north-south traffic, from outside (XDP: its ingress)
 * and to outside (tc egress: its egress). Untagged frames only: tagged ones never reach a
 * workload (port egress drops them). */
__attribute__((noinline)) int stm_fw_uplink_in(struct xdp_md *ctx, __u32 eth_proto)
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
	if (fw_parse(ctx, 1, len, eth_proto, t))
		return stm_drop_xdp(ctx, STM_DROP_MALFORMED);
	int r = stm_fw_check(t, scope, ifindex, STM_FW_GLOBAL);
	if (r == STM_TC_NEXT)
		return XDP_PASS;
	if (r >= FW_DROP)
		return stm_drop_xdp(ctx, r - FW_DROP);
	if (r != FW_REJECT)
		return XDP_DROP;
	stm_drop_xdp(ctx, STM_DROP_FW_REJECT);
	if (!fw_reply_ok(t) || stm_fw_reply_xdp(ctx, t))
		return XDP_DROP;
	fw_stat(STM_FW_STAT_REJECT_SENT);
	return XDP_TX;
}

__attribute__((noinline)) int stm_fw_uplink_out(struct __sk_buff *skb, __u32 eth_proto)
{
	if (!skb)
		return STM_TC_DROP;
	struct stm_fw_scope *scope = fw_scope_on(STM_FW_GLOBAL);
	if (!scope)
		return STM_TC_NEXT;
	struct stm_tuple *t = fw_scratch(3, STM_FW_EGRESS, skb->len);
	if (!t)
		return STM_TC_DROP;
	if (fw_parse(skb, 0, skb->len, eth_proto, t))
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_MALFORMED);
	int r = stm_fw_check(t, scope, skb->ifindex, STM_FW_GLOBAL);
	if (r >= FW_DROP)
		return stm_drop(skb, STM_HOOK_TC_EGRESS, r - FW_DROP);
	/* An answer goes back in through the uplink, over the bridge to the sender. */
	return r == FW_REJECT ? fw_reject_tc(skb, t, 1, STM_HOOK_TC_EGRESS) : r;
}

/* tc egress of the uplink: the global scope's rules on what leaves the node. */
SEC("tc")
int stm_uplink_out(struct __sk_buff *skb)
{
	__u16 proto;
	if (bpf_skb_load_bytes(skb, 12, &proto, 2))
		return STM_TC_NEXT;
	if (skb->vlan_present || (proto != bpf_htons(STM_ETH_P_IP) && proto != bpf_htons(STM_ETH_P_IPV6)))
		return STM_TC_NEXT;
	/* The node's kernel, forwarding a reply from the uplink's LAN back out of the bridge,
	 * would send the LAN's host a redirect to the workload itself: the workload's ARP answer
	 * to that host is dropped at its port (arp-target), so keep both on the gateway. */
	if (is_redirect(skb))
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_REDIRECT);
	int r = stm_fw_uplink_out(skb, proto);
	if (r != STM_TC_NEXT)
		return r;
	/* A network's aggregate cap on what its endpoints send off the node. */
	__u32 net = stm_shape_net_of(skb, proto);
	return net ? stm_shape(skb, STM_SHAPE_NETWORK, net, STM_HOOK_TC_EGRESS) : STM_TC_NEXT;
}

/* The uplink filter. Declared frags-aware so native mode works on jumbo-MTU NICs; it reads
 * only headers, which are in the first buffer. */
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
	void *l3 = eth + 1;
#pragma unroll
	for (int i = 0; i < 3; i++) {
		if (proto != bpf_htons(0x8100) && proto != bpf_htons(0x88a8))
			break;
		if (i == 2)
			return stm_drop_xdp(ctx, STM_DROP_VLAN_TAGGED);
		__u16 *vh = l3;
		if ((void *)(vh + 2) > end)
			return stm_drop_xdp(ctx, STM_DROP_MALFORMED);
		proto = vh[1];
		l3 = vh + 2;
	}

	if (proto == bpf_htons(STM_ETH_P_IP)) {
		struct iphdr *ip = l3;
		if ((void *)(ip + 1) > end)
			return stm_drop_xdp(ctx, STM_DROP_MALFORMED);
		struct stm_lpm4_key k = { .prefixlen = 32 };
		__builtin_memcpy(k.addr, &ip->saddr, 4);
		if (bpf_map_lookup_elem(&stm_block4, &k))
			return stm_drop_xdp(ctx, STM_DROP_BLOCKLIST);
		if (is_local(STM_LOCAL_IP4, &ip->saddr, 4))
			return stm_drop_xdp(ctx, STM_DROP_LOCAL_SPOOF);
		if (ip->protocol == IPPROTO_UDP && !(ip->frag_off & bpf_htons(0x1fff))) {
			struct udphdr *udp = (void *)ip + ip->ihl * 4;
			if ((void *)(udp + 1) <= end && udp->dest == bpf_htons(DHCP_SERVER_PORT))
				return stm_drop_xdp(ctx, STM_DROP_DHCP_OUTSIDE);
		}
		if (l3 == (void *)(eth + 1))
			return stm_fw_uplink_in(ctx, proto);
	} else if (proto == bpf_htons(STM_ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;
		if ((void *)(ip6 + 1) > end)
			return stm_drop_xdp(ctx, STM_DROP_MALFORMED);
		struct stm_lpm6_key k = { .prefixlen = 128 };
		__builtin_memcpy(k.addr, &ip6->saddr, 16);
		if (bpf_map_lookup_elem(&stm_block6, &k))
			return stm_drop_xdp(ctx, STM_DROP_BLOCKLIST);
		if (is_local(STM_LOCAL_IP6, &ip6->saddr, 16))
			return stm_drop_xdp(ctx, STM_DROP_LOCAL_SPOOF);
		/* An NA from outside for one of our addresses would poison the neighbour caches.
		 * (ND travels without extension headers; a receiver drops ND that is not hop limit 255.) */
		if (ip6->nexthdr == IPPROTO_UDP) {
			struct udphdr *udp = (void *)(ip6 + 1);
			if ((void *)(udp + 1) <= end && udp->dest == bpf_htons(DHCP6_SERVER_PORT))
				return stm_drop_xdp(ctx, STM_DROP_DHCP_OUTSIDE);
		}
		if (ip6->nexthdr == IPPROTO_ICMPV6_) {
			__u8 *icmp = (void *)(ip6 + 1);
			if ((void *)(icmp + 24) <= end && icmp[0] == ICMP6_NA && is_local(STM_LOCAL_IP6, icmp + 8, 16))
				return stm_drop_xdp(ctx, STM_DROP_LOCAL_SPOOF);
		}
		if (l3 == (void *)(eth + 1))
			return stm_fw_uplink_in(ctx, proto);
	} else if (proto == bpf_htons(STM_ETH_P_ARP)) {
		__u8 *a = l3;
		if ((void *)(a + ARP_LEN) > end)
			return stm_drop_xdp(ctx, STM_DROP_MALFORMED);
		if (is_local(STM_LOCAL_MAC, a + 8, 6) || (*(__u32 *)(a + 14) && is_local(STM_LOCAL_IP4, a + 14, 4)))
			return stm_drop_xdp(ctx, STM_DROP_LOCAL_SPOOF);
	}
	return XDP_PASS;
}
