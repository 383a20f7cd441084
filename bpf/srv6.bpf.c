/* The SRv6 carrier of microsegmentation groups (linked into the port object: the maps are
 * theirs). An SRv6 packet (IPv6 with a segment routing header, RFC 8754) leaving through an
 * underlay interface gets its sender's group (the mark its port stamped, stm_mseg.h) in the
 * SRH's 16-bit tag; one arriving gets the tag back into its mark, so the destination port
 * judges it on the sender's group, as VXLAN-GBP does for the overlay.
 *
 * stm_srv6_out (tc egress): every SRv6 packet's tag is rewritten, to the group the packet
 * carries, or 0 when it carries none: a tag a workload wrote itself never leaves the node.
 * stm_srv6_in (tc ingress): a tag is lifted only from a packet whose source is a node of the
 * cluster (stm_vteps, as the overlay admits VXLAN); from anyone else the packet arrives
 * untagged. Packets without an SRH pass untouched, and so does what cannot be parsed (this is
 * a carrier, not a filter: port security and the firewall judge the packet).
 *
 * Stratum nodes do not encapsulate in SRv6 between themselves (the overlay is VXLAN; the
 * kernel here has no seg6 route encapsulation): these programs are for SRv6 traffic that
 * routers or hosts around the node originate (docs/microseg.md#carriers). */
#define STM_MAPS_EXTERN
#include "stm_common.h"
#include "stm_maps.h"
#include "stm_parse.h"
#include "stm_mseg.h"

#define IPPROTO_ROUTING_ 43
#define IPPROTO_HOPOPTS_ 0
#define IPPROTO_DSTOPTS_ 60
#define SRH_TYPE 4
#define SRV6_EXT_MAX 3

/* The offset of the SRH's tag in the frame, or 0 when the packet is not SRv6: IPv6 whose
 * routing header of type 4 follows the fixed header, or at most SRV6_EXT_MAX hop-by-hop and
 * destination options headers after it. */
static __always_inline __u32 srh_tag_off(struct __sk_buff *skb)
{
	__u8 eth[ETH_HLEN];
	if (bpf_skb_load_bytes(skb, 0, eth, ETH_HLEN) || eth[12] != 0x86 || eth[13] != 0xdd)
		return 0;
	__u8 ip6[8];
	if (bpf_skb_load_bytes(skb, ETH_HLEN, ip6, 8) || (ip6[0] >> 4) != 6)
		return 0;
	__u8 next = ip6[6];
	__u32 off = ETH_HLEN + IP6_HLEN;
#pragma unroll
	for (int i = 0; i <= SRV6_EXT_MAX; i++) {
		__u8 h[8];
		if (bpf_skb_load_bytes(skb, off, h, 8))
			return 0;
		if (next == IPPROTO_ROUTING_)
			return h[2] == SRH_TYPE ? off + 6 : 0;
		if (next != IPPROTO_HOPOPTS_ && next != IPPROTO_DSTOPTS_)
			return 0;
		next = h[0];
		off += ((__u32)h[1] + 1) * 8;
	}
	return 0;
}

SEC("tc")
int stm_srv6_out(struct __sk_buff *skb)
{
	__u32 off = srh_tag_off(skb);
	if (!off)
		return STM_TC_NEXT;
	__u16 tag = bpf_htons((__u16)mseg_group_of(skb->mark));
	bpf_skb_store_bytes(skb, off, &tag, sizeof(tag), 0);
	return STM_TC_NEXT;
}

SEC("tc")
int stm_srv6_in(struct __sk_buff *skb)
{
	__u32 off = srh_tag_off(skb);
	if (!off)
		return STM_TC_NEXT;
	/* Untagged, unless a node of the cluster sent it. */
	skb->mark = 0;
	struct stm_vtep_key k = {};
	__u16 tag;
	if (bpf_skb_load_bytes(skb, ETH_HLEN + 8, k.addr, 16) || bpf_skb_load_bytes(skb, off, &tag, sizeof(tag)))
		return STM_TC_NEXT;
	struct stm_vtep *v = bpf_map_lookup_elem(&stm_vteps, &k);
	if (!v || (v->flags & STM_VTEP_F_SELF))
		return STM_TC_NEXT;
	tag = bpf_ntohs(tag);
	if (tag)
		skb->mark = mseg_stamp(tag);
	return STM_TC_NEXT;
}
