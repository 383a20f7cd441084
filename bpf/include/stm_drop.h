/* Drop reasons and the one helper every drop goes through. Reason numbers are ABI:
 * never renumber, only append (src/datapath/drops.ts mirrors them). */
#ifndef STM_DROP_H
#define STM_DROP_H

#include "stm_maps.h"

enum stm_drop_reason {
	STM_DROP_UNSPEC = 0,
	/* The port has no configuration: a port never runs open (fail closed). */
	STM_DROP_PORT_UNCONFIGURED = 1,
	/* The frame came from a port of another network. */
	STM_DROP_OTHER_NETWORK = 2,
};

/* Counts the drop per (port, reason) and returns the TC verdict to drop with. */
static __always_inline int stm_drop(__u32 ifindex, __u32 reason)
{
	struct stm_drop_key key = { .ifindex = ifindex, .reason = reason };
	__u64 *cnt = bpf_map_lookup_elem(&stm_drops, &key);

	if (cnt) {
		*cnt += 1;
	} else {
		__u64 one = 1;
		bpf_map_update_elem(&stm_drops, &key, &one, BPF_NOEXIST);
	}
	return STM_TC_DROP;
}

#endif
