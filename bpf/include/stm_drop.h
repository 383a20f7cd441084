/* Drop reasons and the one helper every drop goes through. The reasons come from
 * stm_drop_reasons.def, which src/datapath/drops.ts reads too: one source, numbers ABI. */
#ifndef STM_DROP_H
#define STM_DROP_H

#include "stm_maps.h"

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

/* Counts the drop and returns the tc verdict to drop with. */
static __always_inline int stm_drop(__u32 ifindex, __u32 reason)
{
	stm_count_drop(ifindex, reason);
	return STM_TC_DROP;
}

/* Counts the drop and returns XDP_DROP. */
static __always_inline int stm_drop_xdp(__u32 ifindex, __u32 reason)
{
	stm_count_drop(ifindex, reason);
	return XDP_DROP;
}

#endif
