/* Internet checksums: the fold of a bpf_csum_diff() sum to the 16 bits a header carries. */
#ifndef STM_CSUM_H
#define STM_CSUM_H

#include "stm_common.h"

static __always_inline __u16 csum_fold(__s64 s)
{
	__u32 c = (__u32)s;
	c = (c & 0xffff) + (c >> 16);
	c = (c & 0xffff) + (c >> 16);
	return ~c;
}

#endif
