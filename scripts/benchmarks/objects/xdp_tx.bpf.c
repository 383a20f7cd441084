/* The XDP ceiling the load balancer is measured against, for scripts/bench only (not in the
 * binary): what a program that does the least an L4 balancer must (read the Ethernet header,
 * swap its MACs, send the frame back out) costs. */
#include "stm_common.h"

SEC("xdp")
int stm_bench_xdp_tx(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_DROP;
	__u8 tmp[6];
	__builtin_memcpy(tmp, eth->h_dest, 6);
	__builtin_memcpy(eth->h_dest, eth->h_source, 6);
	__builtin_memcpy(eth->h_source, tmp, 6);
	return XDP_TX;
}

/* The packet generator of lb/vs-nft-dnat: sends the frame back out, its headers (Ethernet, IPv4,
 * UDP: 42 bytes) written from stm_bench_gen first. Live frames reuse their pages, and what the
 * receiving side wrote into them (a router's MACs and TTL, the load balancer's translation)
 * comes back with the page: every send restores the headers. */
struct stm_bench_gen_tpl {
	__u8 bytes[64];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stm_bench_gen_tpl);
} stm_bench_gen SEC(".maps");

SEC("xdp")
int stm_bench_xdp_send(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct stm_bench_gen_tpl *t = bpf_map_lookup_elem(&stm_bench_gen, &zero);
	if (!t || data + 42 > end)
		return XDP_DROP;
	__builtin_memcpy(data, t->bytes, 42);
	return XDP_TX;
}
