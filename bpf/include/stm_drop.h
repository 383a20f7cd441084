/* Drop reasons and the helpers every drop goes through: a per-CPU count per (device, reason)
 * and, while a monitor listens, an event (stm_mon.h). The reasons come from
 * stm_drop_reasons.def, which src/datapath/drops.ts reads too: one source, numbers ABI. */
#ifndef STM_DROP_H
#define STM_DROP_H

#include "stm_maps.h"
#include "stm_mon.h"

enum stm_drop_reason {
#define STM_DROP_REASON(num, id, name, what) STM_DROP_##id = num,
#include "stm_drop_reasons.def"
#undef STM_DROP_REASON
};

/* Counts one drop per (device, reason) in this CPU's slot. The first drop of a pair
 * inserts the key; a racing insert from another CPU makes ours fail with EEXIST, and the
 * count then goes to the entry that won. */
static __always_inline void stm_count_drop(__u32 ifindex, __u32 reason)
{
	struct stm_drop_key key = { .ifindex = ifindex, .reason = reason };
	__u64 *cnt = bpf_map_lookup_elem(&stm_drops, &key);

	if (!cnt) {
		__u64 one = 1;
		if (!bpf_map_update_elem(&stm_drops, &key, &one, BPF_NOEXIST))
			return;
		cnt = bpf_map_lookup_elem(&stm_drops, &key);
		if (!cnt)
			return;
	}
	*cnt += 1;
}

/* Counts the drop at a tc hook (enum stm_hook), reports it to a monitor, and returns the
 * tc verdict to drop with. */
static __always_inline int stm_drop(struct __sk_buff *skb, __u32 hook, __u32 reason)
{
	stm_count_drop(skb->ifindex, reason);
	if (mon_wanted(STM_MON_DROP))
		stm_mon_drop(skb, hook, reason);
	return STM_TC_DROP;
}

/* The same at XDP; returns XDP_DROP. */
static __always_inline int stm_drop_xdp(struct xdp_md *ctx, __u32 reason)
{
	stm_count_drop(ctx->ingress_ifindex, reason);
	if (mon_wanted(STM_MON_DROP))
		stm_mon_drop_xdp(ctx, reason);
	return XDP_DROP;
}

#endif
