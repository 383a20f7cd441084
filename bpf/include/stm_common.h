/* Common definitions for every Stratum datapath object: kernel types from the
 * running kernel's BTF (vmlinux.h), libbpf helpers, and the return codes of
 * each hook so programs never spell a magic number. */
#ifndef STM_COMMON_H
#define STM_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define STM_ETH_P_IP   0x0800
#define STM_ETH_P_ARP  0x0806
#define STM_ETH_P_IPV6 0x86DD

/* tc verdicts. TC_ACT_UNSPEC (-1) is TCX_NEXT for tcx links and "continue"
 * for cls_bpf in direct-action mode, so one program serves both attach modes. */
#define STM_TC_NEXT  (-1)
#define STM_TC_PASS  0
#define STM_TC_DROP  2

/* skb->data and skb->data_end, read with a direct ctx load each time. With CO-RE field
 * relocations clang may keep &skb->data_end in a register and load through it later,
 * which the verifier rejects ("dereference of modified ctx ptr"). The offsets are UAPI. */
static __always_inline void *stm_skb_data(struct __sk_buff *skb)
{
	void *p;
	asm volatile("%0 = *(u32 *)(%1 + 76)" : "=r"(p) : "r"(skb));
	return p;
}

static __always_inline void *stm_skb_end(struct __sk_buff *skb)
{
	void *p;
	asm volatile("%0 = *(u32 *)(%1 + 80)" : "=r"(p) : "r"(skb));
	return p;
}

_Static_assert(__builtin_offsetof(struct __sk_buff, data) == 76, "__sk_buff.data");
_Static_assert(__builtin_offsetof(struct __sk_buff, data_end) == 80, "__sk_buff.data_end");

/* Weak: every unit of a linked object carries it, and the linker keeps one. */
char LICENSE[] SEC("license") __attribute__((weak)) = "GPL";

/* A function of a shared header that the verifier checks once (global, not inlined), weak
 * so that each unit of a linked object may carry it: the linker keeps one. */
#define STM_SHARED __attribute__((noinline, weak))

#endif
