/** A paced, sequenced UDP stream for the program-swap benchmark, run inside namespaces:
 *   bun udp-gap.ts recv PORT MS            prints {n, lost, maxGapUs} after MS milliseconds
 *   bun udp-gap.ts send HOST PORT MS PER   PER datagrams every millisecond for MS milliseconds
 * lost: sequence numbers between the first and last received that never came; maxGapUs: the
 * longest time between two arrivals. */
import { createSocket } from "node:dgram";

const [mode, a, b, c, d] = process.argv.slice(2);
if (mode === "recv") {
  const u = createSocket("udp4");
  let n = 0;
  let first = -1;
  let last = -1;
  let prev = 0n;
  let maxGap = 0n;
  u.on("message", (m) => {
    const seq = m.readUInt32BE(0);
    const now = process.hrtime.bigint();
    if (prev && now - prev > maxGap) maxGap = now - prev;
    prev = now;
    if (first < 0) first = seq;
    last = Math.max(last, seq);
    n++;
  });
  u.bind(Number(a), () => process.stdout.write("ready\n"));
  setTimeout(() => {
    console.log(JSON.stringify({ n, lost: n ? last - first + 1 - n : 0, maxGapUs: Number(maxGap / 1000n) }));
    process.exit(0);
  }, Number(b));
} else if (mode === "send") {
  const u = createSocket("udp4");
  const per = Number(d);
  let seq = 0;
  const buf = Buffer.alloc(64);
  const end = Date.now() + Number(c);
  const tick = setInterval(() => {
    if (Date.now() >= end) {
      clearInterval(tick);
      setTimeout(() => process.exit(0), 50);
      return;
    }
    for (let i = 0; i < per; i++) {
      buf.writeUInt32BE(seq++, 0);
      u.send(buf, Number(b), a as string);
    }
  }, 1);
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
