/* Counting programs: count every packet and byte seen at a hook, per
 * (ifindex, hook), and leave the verdict to whatever runs next. The smallest
 * real datapath object: it proves the build, the embedding, the loader, the
 * attach paths (tcx, cls_bpf, XDP) and the map codecs end to end. */
#include "stm_common.h"
#include "stm_maps.h"

static __always_inline void stm_count(__u32 ifindex, __u32 hook, __u64 len)
{
	struct stm_count_key key = { .ifindex = ifindex, .hook = hook };
	struct stm_count_val *val = bpf_map_lookup_elem(&stm_counters, &key);

	if (val) {
		val->packets += 1; /* per-CPU value: no atomics needed */
		val->bytes += len;
		return;
	}
	struct stm_count_val init = { .packets = 1, .bytes = len };
	/* BPF_NOEXIST: a racing first packet on another CPU only loses the insert, not a count of its own CPU slot. */
	if (bpf_map_update_elem(&stm_counters, &key, &init, BPF_NOEXIST)) {
		val = bpf_map_lookup_elem(&stm_counters, &key);
		if (val) {
			val->packets += 1;
			val->bytes += len;
		}
	}
}

SEC("tc")
int stm_count_tc_in(struct __sk_buff *skb)
{
	stm_count(skb->ifindex, STM_HOOK_TC_INGRESS, skb->len);
	return STM_TC_NEXT;
}

SEC("tc")
int stm_count_tc_out(struct __sk_buff *skb)
{
	stm_count(skb->ifindex, STM_HOOK_TC_EGRESS, skb->len);
	return STM_TC_NEXT;
}

SEC("xdp")
int stm_count_xdp(struct xdp_md *ctx)
{
	__u64 len = ctx->data_end - ctx->data;

	stm_count(ctx->ingress_ifindex, STM_HOOK_XDP, len);
	return XDP_PASS;
}

/* Copies the head of each packet into the event ring buffer. */
SEC("tc")
int stm_sample_tc_in(struct __sk_buff *skb)
{
	struct stm_pkt_event *ev = bpf_ringbuf_reserve(&stm_events, sizeof(*ev), 0);

	if (!ev)
		return STM_TC_NEXT;
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->ts_ns = bpf_ktime_get_ns();
	ev->ifindex = skb->ifindex;
	ev->hook = STM_HOOK_TC_INGRESS;
	ev->len = skb->len;
	__u32 snap = skb->len;
	if (snap > STM_EVENT_SNAP)
		snap = STM_EVENT_SNAP;
	if (snap > 0 && bpf_skb_load_bytes(skb, 0, ev->data, snap) == 0)
		ev->snap_len = snap;
	bpf_ringbuf_submit(ev, 0);
	return STM_TC_NEXT;
}
