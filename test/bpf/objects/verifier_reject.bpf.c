/* Compiles, but the verifier must reject it: it reads past the end of the packet
 * without a bounds check. Proves the verifier's log reaches the error. */
#include "stm_common.h"

SEC("xdp")
int stm_test_unchecked_read(struct xdp_md *ctx)
{
	unsigned char *data = (void *)(long)ctx->data;

	return data[100] == 0xff ? XDP_DROP : XDP_PASS;
}
