/* Empty programs: the floor every datapath cost is measured against
 * (scripts/bench) and a second program for atomic replacement tests. */
#include "stm_common.h"

SEC("tc")
int stm_empty_tc(struct __sk_buff *skb)
{
	return STM_TC_NEXT;
}

SEC("xdp")
int stm_empty_xdp(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/* Drops everything: lets tests see that a replaced program really took over. */
SEC("tc")
int stm_drop_tc(struct __sk_buff *skb)
{
	return STM_TC_DROP;
}
