/** A packet generator for lb/vs-nft-dnat (scripts/benchmarks/lb.ts), run inside the generator's
 * namespace: BPF_PROG_TEST_RUN live frames through an XDP program that restores the frame's
 * headers and returns XDP_TX, so the frame leaves gen0 toward the node at the kernel's speed.
 * Prints the nanoseconds the run took.
 * usage: bun lb-gen.ts FRAME-HEX COUNT */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { BPF_F, BpfObject, testRun } from "../../src/sys/bpf";
import { withLibbpfLog } from "../../src/sys/ffi";

const frame = Buffer.from(process.argv[2] as string, "hex");
const count = Number(process.argv[3]);
const ifindex = Number(readFileSync("/sys/class/net/gen0/ifindex", "utf8"));
const path = join(import.meta.dir, "../../build/bench-bpf/xdp_tx.bpf.o");
const obj = withLibbpfLog(() => BpfObject.openMem(new Uint8Array(readFileSync(path)), "stm_xdp_gen").load());
const tpl = Buffer.alloc(64);
frame.copy(tpl, 0, 0, 42);
obj.map("stm_bench_gen").update(Buffer.alloc(4), tpl);
const ctx = Buffer.alloc(24);
ctx.writeUInt32LE(frame.length, 4);
ctx.writeUInt32LE(ifindex, 12);
const t0 = Bun.nanoseconds();
testRun(obj.program("stm_bench_xdp_send").fd, {
  data: frame,
  ctx,
  repeat: count,
  flags: BPF_F.TEST_XDP_LIVE_FRAMES,
  batchSize: 64,
});
process.stdout.write(`${Bun.nanoseconds() - t0}\n`);
obj.close();
