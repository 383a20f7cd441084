/* Where a frame entered the host, across the links between user bridges.
 *
 * A Linux bridge holds at most 1,023 ports, so a node's endpoints beyond that sit on extension
 * bridges (cnv-user-br1 …), each joined to cnv-user-br0 by a veth pair. Crossing a veth resets
 * skb->ingress_ifindex to the veth's own and skb->priority to 0; the port, uplink and overlay
 * programs judge a frame by where it came from. So every link end carries two programs
 * (link.bpf.c): on egress, stm_link_out puts where the frame came from into skb->mark and its
 * microsegmentation group into skb->tc_index (both cross a veth within one namespace); on
 * ingress, stm_link_in puts the group's stamp back into the mark and where the frame came from
 * into skb->priority (with STM_LINK_SEEN: a link end without stm_link_in gives a priority
 * without it, and the frame is dropped, link-unmarked), which the bridge keeps. A firewall's
 * reject answer (its mark, STM_MARK_FW_REPLY) crosses as tc_index STM_LINK_FW_REPLY. The
 * extension bridges' own stack takes nothing (stm_extbr_in drops what a bridge passes up
 * to it): they switch, they never route. A frame crosses at most two links (extension →
 * cnv-user-br0 → extension): the second carries what the first delivered. Nothing is sent
 * through a link's end without passing its egress, so what stm_link_in reads is always
 * stm_link_out's writing, never a sender's. */
#ifndef STM_LINK_H
#define STM_LINK_H

#include "stm_common.h"
#include "stm_maps.h"

/* The device `skb` entered the host on: a workload's port, the uplink, the overlay's device, a
 * device the node routed it from (the bridge), or 0 for what the node sent itself. `*linked` is
 * set when the frame crossed a link (its priority is the carrier, not the sender's). */
static __always_inline __u32 stm_from(struct __sk_buff *skb, int *linked)
{
	/* Both read at fixed offsets (volatile): the compiler would otherwise pick one field's
	 * address by the branch below, a computed context pointer the verifier refuses. */
	__u32 from = *(volatile __u32 *)&skb->ingress_ifindex;
	__u32 carried = *(volatile __u32 *)&skb->priority;
	*linked = 0;
	if (!from) {
		/* What a VM wrote to its macvtap has no ingress device: stm_port_in put the macvtap's
		 * ifindex in the priority (a local sender cannot set STM_LINK_SEEN without
		 * CAP_NET_ADMIN). Only a macvtap's counts; anything else is the node's own. */
		if (!(carried & STM_LINK_SEEN))
			return 0;
		__u32 vm = carried & ~STM_LINK_SEEN;
		struct stm_iface *m = bpf_map_lookup_elem(&stm_ifaces, &vm);
		if (!m || m->kind != STM_IFACE_MACVTAP)
			return 0;
		*linked = 1;
		return vm;
	}
	struct stm_iface *d = bpf_map_lookup_elem(&stm_ifaces, &from);
	if (d && d->kind == STM_IFACE_LINK) {
		*linked = 1;
		/* Fail closed: without stm_link_in's mark the priority is nobody's record. */
		return carried & STM_LINK_SEEN ? carried & ~STM_LINK_SEEN : STM_FROM_UNMARKED;
	}
	return from;
}

/* The same, for a hook the frame leaves the node's bridges through (the uplink, the overlay, a
 * workload's port): a carrier read is cleared, so the frame goes on with priority 0, not an
 * ifindex a qdisc would take for a priority. */
static __always_inline __u32 stm_from_last(struct __sk_buff *skb)
{
	int linked;
	__u32 from = stm_from(skb, &linked);
	if (linked)
		skb->priority = 0;
	return from;
}

#endif
