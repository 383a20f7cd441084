/** VIP fencing under BPF_PROG_TEST_RUN (bpf/include/stm_vip.h): while a node's hold on a VIP
 * runs (deadline in the future) the uplink passes ARP, neighbour discovery and traffic for it
 * both ways; once it has lapsed (or was never given: 0) the uplink's XDP filter drops ARP and
 * neighbour solicitations for the VIP and packets to it, and its tc egress drops ARP, neighbour
 * advertisements and packets from it, each counted as vip-fenced. An address not in the map is
 * no VIP and passes. */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { dropReasonCode } from "../../src/datapath/drops";
import { loadObject } from "../../src/datapath/objects";
import { announcement, icmp, ipv4, ipv6, neighborAdvert, udp } from "../../src/datapath/packet";
import { encodeDropKey, mappedAddr } from "../../src/datapath/port-maps";
import { ipToBytes, macToBytes } from "../../src/netlink/codec";
import type { BpfMap, BpfObject } from "../../src/sys/bpf";
import { alloc, SK_BUFF } from "../../src/sys/layout";
import { monotonicNs } from "../../src/sys/os";
import { runFixture } from "../helpers/fixture";
import { arp, eth4, eth6, ethArp } from "../helpers/frames";

const TC_NEXT = -1;
const TC_DROP = 2;
const XDP_DROP = 1;
const XDP_PASS = 2;
const UPLINK = 1; // lo: a test run's device must exist
const VIP4 = "192.0.2.100";
const VIP6 = "2001:db8::100";
const OTHER4 = "192.0.2.1"; // the node's own address on the LAN: no VIP
const CLIENT4 = "192.0.2.50";
const CLIENT6 = "2001:db8::50";
const MAC_NODE = "02:00:00:00:00:01";
const MAC_CLIENT = "02:00:00:00:00:50";

let obj: BpfObject;
let drops: BpfMap;
let vips: BpfMap;

beforeAll(() => {
  obj = loadObject("port");
  drops = obj.map("stm_drops");
  vips = obj.map("stm_vip");
});
afterAll(() => obj?.close());

function hold(addr: string, deadline: bigint) {
  const v = Buffer.alloc(8);
  v.writeBigUInt64LE(deadline);
  vips.update(mappedAddr(addr), v);
}
const held = () => {
  for (const a of [VIP4, VIP6]) hold(a, monotonicNs() + 60_000_000_000n);
};
const lapsed = () => {
  for (const a of [VIP4, VIP6]) hold(a, monotonicNs() - 1n);
};
beforeEach(() => {
  for (const k of [...vips.keys()]) vips.delete(k);
});

const fenced = encodeDropKey(UPLINK, dropReasonCode("vip-fenced")).toString("hex");

function xdp(frame: Buffer) {
  const ctx = Buffer.alloc(24);
  ctx.writeUInt32LE(frame.length, 4);
  ctx.writeUInt32LE(UPLINK, 12);
  return runFixture(obj.program("stm_uplink_in").fd, { name: "uplink-in", input: frame, verdict: 0, ctx }, [drops]);
}
function out(frame: Buffer) {
  const ctx = alloc(SK_BUFF, { ifindex: UPLINK, ingress_ifindex: 0 });
  return runFixture(obj.program("stm_uplink_out").fd, { name: "uplink-out", input: frame, verdict: 0, ctx }, [drops]);
}

/** A neighbour solicitation for `target` from the client, to its solicited-node group. */
function ns(target: string): Buffer {
  const t = ipToBytes(target);
  const group = `ff02::1:ff${t[13]?.toString(16).padStart(2, "0")}:${Buffer.from(t.subarray(14)).toString("hex")}`;
  const body = Buffer.alloc(24);
  t.copy(body, 0);
  body[16] = 1; // source link-layer address
  body[17] = 1;
  macToBytes(MAC_CLIENT).copy(body, 18);
  return eth6(
    MAC_CLIENT,
    "33:33:ff:00:01:00",
    ipv6({ src: CLIENT6, dst: group, next: 58, hopLimit: 255 }, icmp({ src: CLIENT6, dst: group, type: 135 }, body)),
  );
}

const inbound = {
  "ARP request for the VIP": () =>
    ethArp(
      MAC_CLIENT,
      "ff:ff:ff:ff:ff:ff",
      arp({ op: "request", senderMac: MAC_CLIENT, senderIp: CLIENT4, targetIp: VIP4 }),
    ),
  "neighbour solicitation for the VIP": () => ns(VIP6),
  "UDP to the IPv4 VIP": () =>
    eth4(
      MAC_CLIENT,
      MAC_NODE,
      ipv4(
        { src: CLIENT4, dst: VIP4, proto: 17 },
        udp({ src: CLIENT4, dst: VIP4, sport: 5000, dport: 53 }, Buffer.alloc(8)),
      ),
    ),
  "ping to the IPv6 VIP": () =>
    eth6(
      MAC_CLIENT,
      MAC_NODE,
      ipv6({ src: CLIENT6, dst: VIP6, next: 58 }, icmp({ src: CLIENT6, dst: VIP6, type: 128, id: 1, seq: 1 })),
    ),
};
const outbound = {
  "gratuitous ARP for the VIP": () => announcement({ mac: MAC_NODE, ip4: VIP4 })[0] as Buffer,
  "ARP reply from the VIP": () =>
    ethArp(
      MAC_NODE,
      MAC_CLIENT,
      arp({ op: "reply", senderMac: MAC_NODE, senderIp: VIP4, targetMac: MAC_CLIENT, targetIp: CLIENT4 }),
    ),
  "solicited neighbour advertisement for the VIP": () =>
    eth6(MAC_NODE, MAC_CLIENT, neighborAdvert(MAC_NODE, VIP6, CLIENT6, { solicited: true })),
  "ping reply from the IPv4 VIP": () =>
    eth4(
      MAC_NODE,
      MAC_CLIENT,
      ipv4({ src: VIP4, dst: CLIENT4, proto: 1 }, icmp({ src: VIP4, dst: CLIENT4, type: 0, id: 1, seq: 1 })),
    ),
  "ping reply from the IPv6 VIP": () =>
    eth6(
      MAC_NODE,
      MAC_CLIENT,
      ipv6({ src: VIP6, dst: CLIENT6, next: 58 }, icmp({ src: VIP6, dst: CLIENT6, type: 129, id: 1, seq: 1 })),
    ),
};

describe("held: the node answers for its VIPs", () => {
  for (const [what, frame] of Object.entries(inbound))
    test(`in: ${what} passes`, () => {
      held();
      const r = xdp(frame());
      expect(r.retval).toBe(XDP_PASS);
      expect(r.deltas.stm_drops).toEqual({});
    });
  for (const [what, frame] of Object.entries(outbound))
    test(`out: ${what} passes`, () => {
      held();
      const r = out(frame());
      expect(r.retval).toBe(TC_NEXT);
      expect(r.deltas.stm_drops).toEqual({});
    });
});

describe("lapsed: the node no longer speaks for them", () => {
  for (const [what, frame] of Object.entries(inbound))
    test(`in: ${what} is dropped, vip-fenced +1`, () => {
      lapsed();
      const r = xdp(frame());
      expect(r.retval).toBe(XDP_DROP);
      expect(r.deltas.stm_drops).toEqual({ [fenced]: [1n] });
    });
  for (const [what, frame] of Object.entries(outbound))
    test(`out: ${what} is dropped, vip-fenced +1`, () => {
      lapsed();
      const r = out(frame());
      expect(r.retval).toBe(TC_DROP);
      expect(r.deltas.stm_drops).toEqual({ [fenced]: [1n] });
    });

  test("a VIP never held (deadline 0) is fenced too", () => {
    hold(VIP4, 0n);
    expect(xdp(inbound["ARP request for the VIP"]()).retval).toBe(XDP_DROP);
  });
});

test("an address that is no VIP is not judged: the node's own LAN address, with the VIPs lapsed", () => {
  lapsed();
  const req = ethArp(
    MAC_CLIENT,
    "ff:ff:ff:ff:ff:ff",
    arp({ op: "request", senderMac: MAC_CLIENT, senderIp: CLIENT4, targetIp: OTHER4 }),
  );
  expect(xdp(req).retval).toBe(XDP_PASS);
  const reply = ethArp(
    MAC_NODE,
    MAC_CLIENT,
    arp({ op: "reply", senderMac: MAC_NODE, senderIp: OTHER4, targetMac: MAC_CLIENT, targetIp: CLIENT4 }),
  );
  const r = out(reply);
  expect(r.retval).toBe(TC_NEXT);
  expect(r.deltas.stm_drops).toEqual({});
});

test("the hold ends at its deadline: the same ARP passes before it and is dropped after it", async () => {
  hold(VIP4, monotonicNs() + 150_000_000n);
  const req = inbound["ARP request for the VIP"]();
  expect(xdp(req).retval).toBe(XDP_PASS);
  await Bun.sleep(200);
  expect(xdp(req).retval).toBe(XDP_DROP);
});
