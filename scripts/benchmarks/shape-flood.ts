/** A flood of test frames through one pinned tc program, from one process (scripts/bench
 * starts one per CPU with taskset): waits for START (epoch ms), runs BPF_PROG_TEST_RUN in
 * batches until END, prints {"packets": N, "nsPerPacket": X} (the kernel's own timing).
 *   bun shape-flood.ts PROG_PIN FRAME_BYTES START_MS END_MS */
import { objGet, testRun } from "../../src/sys/bpf";
import { alloc, SK_BUFF } from "../../src/sys/layout";

const [pin, bytes, start, end] = process.argv.slice(2);
if (!pin || !bytes || !start || !end) {
  process.stderr.write("usage: shape-flood.ts PROG_PIN FRAME_BYTES START_MS END_MS\n");
  process.exit(2);
}
const fd = objGet(pin, "program");
// An IPv4 frame of the given length (only its length matters to a bucket).
const frame = new Uint8Array(Number(bytes));
frame[12] = 0x08;
frame[14] = 0x45;
const ctx = alloc(SK_BUFF, { ifindex: 1 });
const BATCH = 2000;
while (Date.now() < Number(start)) await Bun.sleep(1);
let packets = 0;
let ns = 0;
while (Date.now() < Number(end)) {
  ns += testRun(fd, { data: frame, repeat: BATCH, ctx }).durationNs * BATCH;
  packets += BATCH;
}
process.stdout.write(`${JSON.stringify({ packets, nsPerPacket: packets ? ns / packets : 0 })}\n`);
