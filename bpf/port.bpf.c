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
#include "stm_parse.h"

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

#define ICMP_REDIRECT_ 5
#define ICMP_ROUTER_ADV_ 9

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
	if (proto == IPPROTO_ICMP) {
		__u8 type;
		if (l4len < 8 || bpf_skb_load_bytes(skb, l4off, &type, 1))
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_MALFORMED);
		/* Redirects and router advertisements (RFC 1256) are a router's messages, as in
		 * IPv6: a workload is never one. */
		if (type == ICMP_REDIRECT_ || type == ICMP_ROUTER_ADV_)
			return stm_drop(skb, STM_HOOK_TC_INGRESS, STM_DROP_ROGUE_ROUTER);
	}
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
__attribute__((noinline)) int stm_fw_parse_tc(struct __sk_buff *skb, __u32 eth_proto, struct stm_tuple *t)
{
	if (!skb || !t)
		return FW_PARSE_MALFORMED;
	return fw_parse(skb, 0, skb->len, eth_proto, ETH_HLEN, t);
}

__attribute__((noinline)) int stm_fw_parse_xdp(struct xdp_md *ctx, __u32 eth_proto, __u32 l3, struct stm_tuple *t)
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
	int pr = stm_fw_parse_tc(skb, eth_proto, t);
	if (pr)
		return stm_drop(skb, hook, fw_parse_reason(pr));
	if (stm_fw_failsafe(skb, t, port, dir))
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
	return icmp_type_of(skb, proto, &w) == (proto == bpf_htons(STM_ETH_P_IP) ? 5 : ICMP6_REDIRECT);
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
	if (type == (v6 ? ICMP6_REDIRECT : 5))
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
	 * the sending workload's port or the uplink; for routed frames the device they were
	 * received on (the bridge, another NIC); for what the node sends itself, 0. */
	__u32 from = skb->ingress_ifindex;
	int lan = 0;
	if (from && from != ifindex) {
		struct stm_port *src = bpf_map_lookup_elem(&stm_ports, &from);
		if (src && src->net_id != port->net_id)
			return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_OTHER_NETWORK);
		if (src)
			goto firewall;
		/* Straight from the LAN at L2: only into a network extended onto it. */
		struct stm_iface *dev = bpf_map_lookup_elem(&stm_ifaces, &from);
		if (dev && dev->kind == STM_IFACE_UPLINK) {
			if (!(port->flags & STM_PORT_F_LAN))
				return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_LAN_DIRECT);
			lan = 1;
		}
	}
	__u32 want = ETH_HLEN + IP6_HLEN;
	if (skb->len < want)
		want = skb->len;
	if (!stm_linear(skb, want))
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_MALFORMED);
	if (!foreign_ok(skb, port, from, lan))
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_OTHER_NETWORK);
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
	int pr = stm_fw_parse_tc(skb, eth_proto, t);
	if (pr)
		return stm_drop(skb, STM_HOOK_TC_EGRESS, fw_parse_reason(pr));
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
	/* Gateway only: a workload's frame bridged straight to the LAN (its ARP and broadcasts,
	 * a frame to a LAN host's MAC) goes no further, unless its network is extended onto it. */
	__u32 from = skb->ingress_ifindex;
	if (from) {
		struct stm_port *src = bpf_map_lookup_elem(&stm_ports, &from);
		if (src && !(src->flags & STM_PORT_F_LAN))
			return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_LAN_DIRECT);
	}
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
	/* The node's DHCP servers serve its workloads only: an answer they broadcast (a NAK, one a
	 * client asked to have broadcast) floods the bridge, and stays off the LAN here. */
	if (to_dhcp_client(skb, proto))
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_DHCP_OUTSIDE);
	int r = stm_fw_uplink_out(skb, proto);
	if (r != STM_TC_NEXT)
		return r;
	/* A network's aggregate cap on what its endpoints send off the node. */
	__u32 net = stm_shape_net_of(skb, proto);
	return net ? stm_shape(skb, STM_SHAPE_NETWORK, net, STM_HOOK_TC_EGRESS) : STM_TC_NEXT;
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
		if (ip->protocol == IPPROTO_UDP && !(ip->frag_off & bpf_htons(0x1fff))) {
			__u8 dport[2];
			if (!bpf_xdp_load_bytes(ctx, l3 + ip->ihl * 4 + 2, dport, 2) && dport[0] == 0 &&
			    dport[1] == DHCP_SERVER_PORT)
				return stm_drop_xdp(ctx, STM_DROP_DHCP_OUTSIDE);
		}
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
	}
	return XDP_PASS;
}
