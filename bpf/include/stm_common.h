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

char LICENSE[] SEC("license") = "GPL";

#endif
