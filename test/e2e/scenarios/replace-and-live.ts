/** Inside a namespace: attaches a counter through a pinned tcx link, swaps the program
 * in the link for a dropping one and back (atomic replacement), and injects frames with
 * XDP live-frames mode. Pings are sent by the test between the steps. */
import { spawnSync } from "node:child_process";
import { attachTc, attachXdp, detachPinnedLink, replaceProgram } from "../../../src/datapath/attach";
import { encodeCountKey, sumCountValue } from "../../../src/datapath/counters";
import { loadObject } from "../../../src/datapath/objects";
import { udpFrame } from "../../../src/datapath/packet";
import { mustGetLink } from "../../../src/netlink";
import { BPF_F, Fd, linkInfo, objGet, progInfo, testRun } from "../../../src/sys/bpf";

function ping(ns: string, ip: string): boolean {
  return spawnSync("ip", ["netns", "exec", ns, "ping", "-c", "1", "-W", "1", ip]).status === 0;
}

export default function (a: { dev: string; pinRoot: string; peerNs: string; ip: string }) {
  const ifindex = mustGetLink(a.dev).index;
  using counter = loadObject("counter");
  using base = loadObject("baseline");
  const count = counter.program("stm_count_tc_in");
  const drop = base.program("stm_drop_tc");
  const pin = `${a.pinRoot}/link_in`;
  const att = attachTc(count.fd, ifindex, "ingress", { pin });
  const steps: Record<string, unknown> = { kind: att.kind };
  steps.pingCounting = ping(a.peerNs, a.ip);
  const r1 = replaceProgram(pin, drop.fd, att.progId);
  steps.swapToDrop = r1.newProgId === progInfo(drop.fd).id && r1.oldProgId === att.progId;
  steps.pingDropped = ping(a.peerNs, a.ip);
  let stale = "";
  try {
    replaceProgram(pin, count.fd, att.progId); // the link no longer holds the counter: refused
  } catch (e) {
    stale = (e as Error).message;
  }
  steps.staleRefused = stale;
  replaceProgram(pin, count.fd, progInfo(drop.fd).id);
  steps.pingRestored = ping(a.peerNs, a.ip);
  {
    using l = new Fd(objGet(pin, "link"));
    steps.linkProg = linkInfo(l.fd).progId === att.progId;
    steps.linkIfindex = linkInfo(l.fd).ifindex === ifindex;
  }
  const counted = sumCountValue(
    counter.map("stm_counters"),
    counter.map("stm_counters").lookup(encodeCountKey(ifindex, "tc-ingress")) ?? Buffer.alloc(32),
  );
  steps.countedPackets = counted.packets;
  steps.detached = detachPinnedLink(pin);
  steps.detachedAgain = detachPinnedLink(pin);

  // Live frames: the XDP counter on lo sees every injected frame, each run through the stack.
  const lo = mustGetLink("lo").index;
  const xdp = counter.program("stm_count_xdp");
  const xpin = `${a.pinRoot}/link_xdp_lo`;
  const xatt = attachXdp(xdp.fd, lo, { mode: "generic", pin: xpin });
  const frame = udpFrame({
    srcMac: "02:00:00:00:00:01",
    dstMac: "02:00:00:00:00:02",
    src: "127.0.0.2",
    dst: "127.0.0.1",
    sport: 9,
    dport: 9,
  });
  const before = sumCountValue(
    counter.map("stm_counters"),
    counter.map("stm_counters").lookup(encodeCountKey(lo, "xdp")) ?? Buffer.alloc(32),
  ).packets;
  const r = testRun(xdp.fd, { data: frame, repeat: 256, flags: BPF_F.TEST_XDP_LIVE_FRAMES, batchSize: 64 });
  const after = sumCountValue(
    counter.map("stm_counters"),
    counter.map("stm_counters").lookup(encodeCountKey(lo, "xdp")) ?? Buffer.alloc(32),
  ).packets;
  steps.live = { kind: xatt.kind, mode: xatt.xdpMode, retval: r.retval, counted: after - before };
  detachPinnedLink(xpin);
  return steps;
}
