/* Bounded header parsers every program shares. The IPv6 extension-header chain is walked
 * here and only here, so every decision about the upper-layer header (ICMPv6 type, UDP
 * port) is made on the same header at every hook, whatever headers come before it. Loads
 * go through one macro for tc and XDP contexts: `xdp` is a constant where these are
 * inlined, and each program keeps only its own helper. */
#ifndef STM_PARSE_H
#define STM_PARSE_H

#include "stm_common.h"

#define STM_ETH_HLEN 14
#define STM_IP6_HLEN 40
/* Extension headers walked before the upper-layer header; a longer chain is not classified. */
#define STM_IP6_MAX_EXT 6

#define STM_IPPROTO_HOPOPTS 0
#define STM_IPPROTO_ROUTING 43
#define STM_IPPROTO_FRAGMENT 44
#define STM_IPPROTO_AH 51
#define STM_IPPROTO_ICMPV6 58
#define STM_IPPROTO_NONE 59
#define STM_IPPROTO_DSTOPTS 60

#define STM_LOAD(ctx, xdp, off, buf, n)                                                       \
	((xdp) ? bpf_xdp_load_bytes((struct xdp_md *)(ctx), off, buf, n)                        \
	       : bpf_skb_load_bytes((struct __sk_buff *)(ctx), off, buf, n))

/* Where an IPv6 packet's upper-layer header is, as the walk found it. */
struct stm_ip6_l4 {
	__u32 off;     /* the upper-layer header */
	__u32 left;    /* bytes from `off` to the end of the payload */
	__u32 frag_id; /* the fragment header's identification (frag != 0) */
	__u8 proto;    /* the upper-layer protocol */
	__u8 frag;     /* 0 whole, 1 first fragment, 2 a later one (no upper-layer header) */
	__u8 pad[2];
};

#define STM_WALK_TRUNCATED (-1) /* a header runs past the payload, or could not be read */
#define STM_WALK_TOO_LONG (-2)  /* more than STM_IP6_MAX_EXT extension headers */

static __always_inline int stm_ip6_is_ext(__u8 next)
{
	return next == STM_IPPROTO_HOPOPTS || next == STM_IPPROTO_ROUTING || next == STM_IPPROTO_DSTOPTS ||
	       next == STM_IPPROTO_FRAGMENT || next == STM_IPPROTO_AH;
}

/* Walks the extension headers from `next` (the IPv6 header's next-header field) at `off`
 * with `left` payload bytes: 0 and `r` filled, or STM_WALK_*. A later fragment ends the walk
 * at the fragment header: what follows is the middle of a datagram. */
static __always_inline int stm_ip6_walk(void *ctx, int xdp, __u8 next, __u32 off, __u32 left,
					struct stm_ip6_l4 *r)
{
	r->frag = 0;
	r->frag_id = 0;
#pragma unroll
	for (int i = 0; i < STM_IP6_MAX_EXT + 1; i++) {
		if (!stm_ip6_is_ext(next)) {
			r->proto = next;
			r->off = off;
			r->left = left;
			return 0;
		}
		if (i == STM_IP6_MAX_EXT)
			break;
		__u8 eh[8];
		if (left < 8 || STM_LOAD(ctx, xdp, off, eh, 8))
			return STM_WALK_TRUNCATED;
		__u32 elen;
		if (next == STM_IPPROTO_FRAGMENT) {
			elen = 8;
			r->frag = (((eh[2] << 8) | eh[3]) & 0xfff8) ? 2 : (eh[3] & 1) ? 1 : 0;
			r->frag_id = *(__u32 *)(eh + 4);
			/* An atomic fragment (offset 0, no more) is a whole datagram (RFC 6946). */
		} else if (next == STM_IPPROTO_AH) {
			elen = ((__u32)eh[1] + 2) * 4;
		} else {
			elen = ((__u32)eh[1] + 1) * 8;
		}
		if (elen > left)
			return STM_WALK_TRUNCATED;
		next = eh[0];
		off += elen;
		left -= elen;
		if (r->frag == 2) {
			r->proto = next;
			r->off = off;
			r->left = left;
			return 0;
		}
	}
	return STM_WALK_TOO_LONG;
}

#endif
