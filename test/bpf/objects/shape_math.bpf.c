/* The egress cap's bucket arithmetic alone (stm_shape_take), driven from a map: the test
 * writes a bucket, a cap, a clock reading and a length, runs the program once and reads back
 * the verdict and the bucket. */
#include "stm_common.h"
#include "stm_shape.h"

struct stm_test_shape_io {
	struct stm_shape_state state;
	struct stm_shape_cfg cfg;
	__u64 now;
	__u64 len;
	__u64 pass;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stm_test_shape_io);
} stm_test_shape_io SEC(".maps");

SEC("tc")
int stm_test_shape(struct __sk_buff *skb)
{
	__u32 k = 0;
	struct stm_test_shape_io *io = bpf_map_lookup_elem(&stm_test_shape_io, &k);
	if (!io)
		return 0;
	struct stm_shape_cfg c = io->cfg;
	io->pass = stm_shape_take(&io->state, &c, io->now, io->len);
	return (int)io->pass;
}
