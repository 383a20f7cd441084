/* Egress-cap designs side by side, for scripts/bench only (not in the binary).
 *
 * stm_bench_shape: Stratum's limiter as the datapath runs it (stm_shape: one bucket for all
 * CPUs under a spin lock), charged to network 1.
 * stm_bench_shape_percpu: the alternative the product description names, one bucket per
 * CPU (no lock) in stm_bench_percpu, each given the cap in stm_bench_percpu_cfg (the agent
 * would write rate / CPUs there). Same arithmetic (stm_shape_take). */
#include "stm_common.h"
#include "stm_shape.h"

/* struct stm_shape_state's layout without the lock (a per-CPU map may not hold one). */
struct stm_bench_bucket {
	__u32 pad;
	__u32 pad2;
	__u64 credit_ns;
	__u64 last_ns;
	__u64 passed_pkts;
	__u64 passed_bytes;
	__u64 dropped_pkts;
	__u64 dropped_bytes;
};
_Static_assert(sizeof(struct stm_bench_bucket) == sizeof(struct stm_shape_state), "same layout");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stm_bench_bucket);
} stm_bench_percpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stm_shape_cfg);
} stm_bench_percpu_cfg SEC(".maps");

SEC("tc")
int stm_bench_shape(struct __sk_buff *skb)
{
	return stm_shape(skb, STM_SHAPE_NETWORK, 1, STM_HOOK_TC_EGRESS);
}

SEC("tc")
int stm_bench_shape_percpu(struct __sk_buff *skb)
{
	__u32 k = 0;
	struct stm_shape_cfg *c = bpf_map_lookup_elem(&stm_bench_percpu_cfg, &k);
	struct stm_bench_bucket *b = bpf_map_lookup_elem(&stm_bench_percpu, &k);
	if (!c || !b || !c->ns_per_byte)
		return STM_TC_NEXT;
	struct stm_shape_cfg cfg = *c;
	int pass = stm_shape_take((struct stm_shape_state *)b, &cfg, bpf_ktime_get_ns(), skb->len);
	return pass ? STM_TC_NEXT : stm_drop(skb, STM_HOOK_TC_EGRESS, STM_DROP_EGRESS_CAP);
}
