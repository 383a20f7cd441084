/* AF_XDP for VMs (docs/networks.md#vms-on-af_xdp). A VM on AF_XDP has a veth pair: the host end
 * is an ordinary Stratum port on the bridge (its programs judge everything the VM sends, before
 * any other workload sees it, and everything it is sent), the VM end stays outside the bridge
 * and carries stm_xsk_rx in XDP: every frame it receives (what the port delivered to the VM) goes
 * to the VM's AF_XDP socket for that queue, in stm_xsks from the VM's base index on. What the
 * VM sends on its sockets leaves through the VM end and enters the host end: port security.
 * A frame with no socket to take it is dropped: the VM end's own stack takes nothing. */
#include "stm_common.h"

/* The VMs' AF_XDP sockets: a VM's queue q at its base + q (stm_xsk_base). Both maps are pinned
 * by the agent under <pin-root>/xsk and taken over from there on restart (datapath/xsk.ts). */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u32);
} stm_xsks SEC(".maps");

struct stm_xsk_range {
	__u32 base;
	__u32 queues;
};

/* A VM end's ifindex → its range of stm_xsks. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct stm_xsk_range);
} stm_xsk_base SEC(".maps");

SEC("xdp")
int stm_xsk_rx(struct xdp_md *ctx)
{
	__u32 ifindex = ctx->ingress_ifindex;
	struct stm_xsk_range *r = bpf_map_lookup_elem(&stm_xsk_base, &ifindex);
	__u32 q = ctx->rx_queue_index;
	if (!r || q >= r->queues)
		return XDP_DROP;
	return bpf_redirect_map(&stm_xsks, r->base + q, XDP_DROP);
}
