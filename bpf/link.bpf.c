/* The links between the user bridges (linked into the port object: the maps are its). Both ends
 * of every link carry both programs; stm_link.h says what they carry and why. Nothing is judged
 * here: the frame was judged where it entered, and is judged again where it leaves (a port, the
 * uplink, the overlay). */
#define STM_MAPS_EXTERN
#include "stm_common.h"
#include "stm_maps.h"
#include "stm_link.h"
#include "stm_mseg.h"
#include "stm_drop.h"

/* tc egress: about to cross. Where the frame came from into the mark, its group into tc_index. */
SEC("tc")
int stm_link_out(struct __sk_buff *skb)
{
	int linked;
	__u32 from = stm_from(skb, &linked);
	if (from == STM_FROM_UNMARKED)
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_LINK_UNMARKED);
	skb->tc_index = skb->mark == STM_MARK_FW_REPLY ? STM_LINK_FW_REPLY : mseg_group_of(skb->mark);
	skb->mark = from;
	return STM_TC_NEXT;
}

/* tc ingress: has crossed. The group's stamp back into the mark, where the frame came from into
 * the priority (stm_from reads it there). */
SEC("tc")
int stm_link_in(struct __sk_buff *skb)
{
	__u32 from = skb->mark;
	__u32 group = skb->tc_index;
	if (group == STM_LINK_FW_REPLY)
		skb->mark = STM_MARK_FW_REPLY;
	else
		skb->mark = group != STM_MSEG_UNTAGGED ? mseg_stamp(group) : 0;
	skb->tc_index = 0;
	skb->priority = from | STM_LINK_SEEN;
	return STM_TC_NEXT;
}

/* tc egress of the macvtap lower link's outer end (cnv-user-mvla, the VMs' macvtaps' lower
 * device): every frame leaving through it was sent by a VM and judged by its macvtap's
 * stm_port_in, which put the macvtap's ifindex in the mark. Anything else (a macvtap without
 * its programs, a sender on the node) would cross as the node's own: it goes no further. */
SEC("tc")
int stm_mvl_out(struct __sk_buff *skb)
{
	__u32 from = skb->mark;
	struct stm_iface *d = bpf_map_lookup_elem(&stm_ifaces, &from);
	if (!d || d->kind != STM_IFACE_MACVTAP)
		return stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_LINK_UNMARKED);
	return STM_TC_NEXT;
}

/* tc ingress of an extension bridge's own device: what the bridge passes up to its stack (a
 * broadcast's copy, a frame to its MAC) goes no further. An extension switches; only
 * cnv-user-br0 is the networks' gateway, and routing through another device would bypass it. */
SEC("tc")
int stm_extbr_in(struct __sk_buff *skb)
{
	return STM_TC_DROP;
}
