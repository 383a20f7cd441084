/* Workload port programs, on the host side of every veth or tap plugged into
 * cnv-user-br0. stm_port_in (tc ingress) sees frames from the workload, stm_port_out
 * (tc egress) frames to it. Both fail closed: a port without configuration in
 * stm_ports passes nothing. Egress keeps networks apart: a frame that entered the
 * bridge on a port of another network is never delivered (flooding included). */
#include "stm_common.h"
#include "stm_maps.h"
#include "stm_drop.h"

SEC("tc")
int stm_port_in(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct stm_port *port = bpf_map_lookup_elem(&stm_ports, &ifindex);

	if (!port)
		return stm_drop(ifindex, STM_DROP_PORT_UNCONFIGURED);
	return STM_TC_NEXT;
}

SEC("tc")
int stm_port_out(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct stm_port *port = bpf_map_lookup_elem(&stm_ports, &ifindex);

	if (!port)
		return stm_drop(ifindex, STM_DROP_PORT_UNCONFIGURED);

	/* ingress_ifindex is the device the frame entered the host on: for a bridged
	 * frame, the sending workload's port. Frames of the host itself (the gateway)
	 * have none and pass. */
	__u32 from = skb->ingress_ifindex;
	if (from && from != ifindex) {
		struct stm_port *src = bpf_map_lookup_elem(&stm_ports, &from);
		if (src && src->net_id != port->net_id)
			return stm_drop(ifindex, STM_DROP_OTHER_NETWORK);
	}
	return STM_TC_NEXT;
}
