/** The node's own MAC on the uplink's LAN (bpf/include/stm_uplink_mac.h), under
 * BPF_PROG_TEST_RUN of stm_uplink_out: with stm_uplink_mac on, the node's frames leave with the
 * uplink's MAC in place of the anycast gateway MAC, in the Ethernet source, the ARP sender and
 * the link-layer options of neighbour discovery (checksum right); a frame of another source
 * (a workload's, bridged) is untouched, and so is everything with the map off. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { loadObject } from "../../src/datapath/objects";
import { checksum, icmp, ipv4, ipv6, neighborAdvert, pseudoHeader } from "../../src/datapath/packet";
import { bytesToMac, macToBytes } from "../../src/netlink/codec";
import type { BpfObject } from "../../src/sys/bpf";
import { alloc, SK_BUFF } from "../../src/sys/layout";
import { runFixture } from "../helpers/fixture";
import { arp, eth4, eth6, ethArp } from "../helpers/frames";

const TC_NEXT = -1;
const UPLINK = 1;
const ANYCAST = "02:aa:bb:cc:dd:ee";
const OWN = "52:54:00:12:34:56";
const HOST = "02:00:00:00:00:50";

let obj: BpfObject;
beforeAll(() => {
  obj = loadObject("port");
});
afterAll(() => obj?.close());

function set(on: boolean) {
  const v = Buffer.alloc(16);
  if (on) {
    macToBytes(ANYCAST).copy(v, 0);
    macToBytes(OWN).copy(v, 6);
    v.writeUInt32LE(1, 12);
  }
  obj.map("stm_uplink_mac").update(Buffer.alloc(4), v);
}

function out(frame: Buffer) {
  const ctx = alloc(SK_BUFF, { ifindex: UPLINK, ingress_ifindex: 0 });
  const r = runFixture(obj.program("stm_uplink_out").fd, { name: "uplink-out", input: frame, verdict: 0, ctx }, []);
  expect(r.retval).toBe(TC_NEXT);
  return r.output;
}

const ping4 = (src: string) =>
  eth4(
    src,
    HOST,
    ipv4(
      { src: "192.0.2.1", dst: "192.0.2.50", proto: 1 },
      icmp({ src: "192.0.2.1", dst: "192.0.2.50", type: 8, id: 1, seq: 1 }),
    ),
  );
const arpReply = () =>
  ethArp(
    ANYCAST,
    HOST,
    arp({ op: "reply", senderMac: ANYCAST, senderIp: "192.0.2.1", targetMac: HOST, targetIp: "192.0.2.50" }),
  );
const na = () => eth6(ANYCAST, HOST, neighborAdvert(ANYCAST, "2001:db8::1", "2001:db8::50", { solicited: true }));

test("on: the node's IPv4 frame leaves with the uplink's MAC, nothing else changed", () => {
  set(true);
  const f = ping4(ANYCAST);
  const o = out(f);
  expect(bytesToMac(o.subarray(6, 12))).toBe(OWN);
  expect(o.subarray(12).equals(f.subarray(12))).toBe(true);
});

test("on: an ARP reply's sender MAC too", () => {
  set(true);
  const o = out(arpReply());
  expect(bytesToMac(o.subarray(6, 12))).toBe(OWN);
  expect(bytesToMac(o.subarray(14 + 8, 14 + 14))).toBe(OWN);
});

test("on: a neighbour advertisement's target link-layer option, its checksum still right", () => {
  set(true);
  const o = out(na());
  expect(bytesToMac(o.subarray(6, 12))).toBe(OWN);
  const l4 = o.subarray(14 + 40);
  expect(bytesToMac(l4.subarray(24 + 2, 24 + 8))).toBe(OWN);
  expect(checksum(pseudoHeader("2001:db8::1", "2001:db8::50", 58, l4.length), l4)).toBe(0);
});

test("on: a frame of another source (a workload's, bridged onto a LAN it is extended to) is untouched", () => {
  set(true);
  const f = ping4("02:00:00:00:07:05");
  expect(out(f).equals(f)).toBe(true);
});

test("off (a single node: the bridge's MAC is the node's own): nothing is rewritten", () => {
  set(false);
  for (const f of [ping4(ANYCAST), arpReply(), na()]) expect(out(f).equals(f)).toBe(true);
});

test("an IPv6 packet that is not neighbour discovery keeps its payload", () => {
  set(true);
  const f = eth6(
    ANYCAST,
    HOST,
    ipv6(
      { src: "2001:db8::1", dst: "2001:db8::50", next: 58 },
      icmp({ src: "2001:db8::1", dst: "2001:db8::50", type: 128, id: 1, seq: 1 }),
    ),
  );
  const o = out(f);
  expect(bytesToMac(o.subarray(6, 12))).toBe(OWN);
  expect(o.subarray(12).equals(f.subarray(12))).toBe(true);
});
