/* The outer check of the overlay, before decapsulation: a VXLAN packet (UDP to port 4789)
 * whose source is not a node of the cluster goes no further. Shared by the underlay's XDP
 * program (overlay.bpf.c) and the uplink filter (uplink.bpf.c), whichever runs on the device
 * that carries the node's address. Does nothing while the overlay is off (no switch entry in
 * stm_vteps): a single node does not judge someone else's VXLAN. */
#ifndef STM_VTEP_H
#define STM_VTEP_H

#include "stm_maps.h"
#include "stm_parse.h"

/* 0, or the drop reason, for the frame whose IP header (`proto`, network order) is at `l3`, read
 * through `ctx` (an xdp_md when `xdp`, else an __sk_buff). A later fragment has no UDP header:
 * it is judged, reassembled, by the overlay device's ingress (stm_overlay_in), which checks the
 * remote address again. A packet from a known node costs one lookup; the switch entry is read
 * only for a source that is not one. */
static __always_inline int stm_vtep_check(void *ctx, int xdp, __u32 proto, __u32 l3)
{
	struct stm_vtep_key k = {};
	__u32 l4;
	__u8 port[2];

	if (proto == bpf_htons(STM_ETH_P_IP)) {
		__u8 h[20];
		if (STM_LOAD(ctx, xdp, l3, h, 20) || h[9] != IPPROTO_UDP || (h[6] & 0x1f) || h[7])
			return 0;
		l4 = l3 + (__u32)(h[0] & 0xf) * 4;
		k.addr[10] = 0xff;
		k.addr[11] = 0xff;
		__builtin_memcpy(&k.addr[12], &h[12], 4);
	} else if (proto == bpf_htons(STM_ETH_P_IPV6)) {
		__u8 h[40];
		struct stm_ip6_l4 w;
		if (STM_LOAD(ctx, xdp, l3, h, 40))
			return 0;
		if (stm_ip6_walk(ctx, xdp, h[6], l3 + IP6_HLEN, ((__u32)h[4] << 8) | h[5], &w))
			return 0;
		if (w.proto != IPPROTO_UDP || w.frag == 2)
			return 0;
		l4 = w.off;
		__builtin_memcpy(k.addr, &h[8], 16);
	} else {
		return 0;
	}
	if (STM_LOAD(ctx, xdp, l4 + 2, port, 2) || port[0] != (STM_VXLAN_PORT >> 8) ||
	    port[1] != (STM_VXLAN_PORT & 0xff))
		return 0;
	struct stm_vtep *v = bpf_map_lookup_elem(&stm_vteps, &k);
	if (v && !(v->flags & STM_VTEP_F_SELF))
		return 0;
	struct stm_vtep_key on = {};
	if (!bpf_map_lookup_elem(&stm_vteps, &on))
		return 0; /* the overlay is off: not ours to judge */
	return STM_DROP_VTEP_UNKNOWN;
}

/* At XDP (the uplink filter). */
STM_SHARED int stm_vtep_check_xdp(struct xdp_md *ctx, __u32 proto, __u32 l3)
{
	if (!ctx)
		return 0;
	return stm_vtep_check(ctx, 1, proto, l3);
}

/* At tc ingress (the underlay device when it is not the uplink). */
STM_SHARED int stm_vtep_check_skb(struct __sk_buff *skb, __u32 proto, __u32 l3)
{
	if (!skb)
		return 0;
	return stm_vtep_check(skb, 0, proto, l3);
}

#endif
