/* The load balancer alone on an XDP hook (stm_lb.h; linked into the port object: the maps are
 * theirs). The uplink runs the same stage inside stm_uplink_in, after its anti-spoofing; this
 * entry is the stage by itself, what tests and benchmarks run. */
#define STM_MAPS_EXTERN
#include "stm_common.h"
#include "stm_maps.h"
#include "stm_lb.h"

SEC("xdp")
int stm_xdp_lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return stm_drop_xdp(ctx, STM_DROP_MALFORMED);
	__u16 proto = eth->h_proto;
	if (proto != bpf_htons(STM_ETH_P_IP) && proto != bpf_htons(STM_ETH_P_IPV6))
		return XDP_PASS;
	int r = stm_lb_xdp(ctx, proto);
	return r == LB_XDP_TRANSLATED ? XDP_PASS : r;
}
