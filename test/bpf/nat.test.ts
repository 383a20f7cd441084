/** Masquerading under BPF_PROG_TEST_RUN: the uplink's egress (stm_uplink_out) translates a
 * masqueraded network's TCP, UDP, ICMP echo and later fragments, IPv4 and IPv6, with every
 * checksum right; its ingress (stm_uplink_nat_in) translates the replies and ICMP errors (the
 * quoted packet too) back; a routed network's packets and the node's own pass untouched;
 * exhaustion, untranslatable packets and LAN packets to the network are dropped with their
 * reasons, each counter moving by one. Checksums are checked by recomputing them. */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { dropReasonCode } from "../../src/datapath/drops";
import { loadObject } from "../../src/datapath/objects";
import { checksum, IPPROTO, icmp, ipv4, ipv6, pseudoHeader, tcp, udp } from "../../src/datapath/packet";
import {
  encodeDropKey,
  encodeNatCfg,
  encodeNatNet,
  encodeSubnet,
  encodeSubnetKey,
  encodeVtepKey,
} from "../../src/datapath/port-maps";
import { bytesToIp } from "../../src/netlink/codec";
import type { BpfMap, BpfObject } from "../../src/sys/bpf";
import { alloc, SK_BUFF } from "../../src/sys/layout";
import { runFixture } from "../helpers/fixture";
import { eth4, eth6, readIp } from "../helpers/frames";

const TC_NEXT = -1;
const TC_DROP = 2;
const XDP_DROP = 1;
const XDP_PASS = 2;
const UPLINK = 1; // lo: a test run's device must exist
const NET = 7;
const ROUTED = 8;
const NAT4 = "192.0.2.10";
const NAT6 = "2001:db8::10";
const W4 = "10.71.1.5";
const W6 = "fd71:1::5";
const R4 = "10.71.2.5"; // an endpoint of a routed network
const S4 = "198.51.100.2";
const S6 = "2001:db8:5::2";
const LO = 20000;
const HI = 20015;
const MAC_W = "02:00:00:00:07:05";
const MAC_GW = "02:00:00:00:00:fe";

let obj: BpfObject;
let drops: BpfMap;
let nat: BpfMap;

beforeAll(() => {
  obj = loadObject("port");
  drops = obj.map("stm_drops");
  nat = obj.map("stm_nat");
  for (const [c, id] of [
    ["10.71.1.0/24", NET],
    ["fd71:1::/64", NET],
    ["10.71.2.0/24", ROUTED],
  ] as const)
    obj.map("stm_subnets").update(encodeSubnetKey(c), encodeSubnet({ netId: id, lan: false }));
  const k = Buffer.alloc(4);
  k.writeUInt32LE(NET);
  obj.map("stm_nat_nets").update(k, encodeNatNet({ addr4: NAT4, addr6: NAT6 }));
  obj.map("stm_nat_cfg").update(Buffer.alloc(4), encodeNatCfg({ lo: LO, hi: HI, on: true }));
  for (const a of [NAT4, NAT6]) obj.map("stm_nat_addrs").update(encodeVtepKey(a), Buffer.from([1, 0, 0, 0]));
});
afterAll(() => obj?.close());
beforeEach(() => {
  for (const key of [...nat.keys()]) nat.delete(key);
});

const dropKey = (reason: string) => encodeDropKey(UPLINK, dropReasonCode(reason)).toString("hex");

function tc(prog: "stm_uplink_out" | "stm_uplink_nat_in", frame: Buffer) {
  const ctx = alloc(SK_BUFF, { ifindex: UPLINK, ingress_ifindex: 0 });
  return runFixture(obj.program(prog).fd, { name: prog, input: frame, verdict: 0, ctx }, [drops]);
}

function xdp(frame: Buffer) {
  const ctx = Buffer.alloc(24);
  ctx.writeUInt32LE(frame.length, 4);
  ctx.writeUInt32LE(UPLINK, 12);
  return runFixture(obj.program("stm_uplink_in").fd, { name: "uplink", input: frame, verdict: 0, ctx }, [drops]);
}

const out4 = (
  proto: number,
  src: string,
  dst: string,
  l4: Buffer,
  o: { id?: number; frag?: number; mf?: boolean } = {},
) => eth4(MAC_W, MAC_GW, ipv4({ src, dst, proto, id: o.id, fragOffset: o.frag, moreFragments: o.mf }, l4));
const out6 = (next: number, src: string, dst: string, l4: Buffer) => eth6(MAC_W, MAC_GW, ipv6({ src, dst, next }, l4));

const parse = readIp;

describe("leaving: a masqueraded network's packets get the NAT address and a port of the range", () => {
  test("TCP, IPv4: translated, checksums right; the same flow keeps its port", () => {
    const f = out4(IPPROTO.TCP, W4, S4, tcp({ src: W4, dst: S4, sport: 40000, dport: 443, flags: 2 }));
    const r = tc("stm_uplink_out", f);
    expect(r.retval).toBe(TC_NEXT);
    expect(r.deltas.stm_drops).toEqual({});
    const p = parse(r.output);
    expect([p.src, p.dst, p.dport]).toEqual([NAT4, S4, 443]);
    expect(p.sport).toBeGreaterThanOrEqual(LO);
    expect(p.sport).toBeLessThanOrEqual(HI);
    expect(parse(tc("stm_uplink_out", f).output).sport).toBe(p.sport);
    expect([...nat.keys()].length).toBe(2);
  });

  test("the workload's own port, when it is in the range and free", () => {
    const f = out4(IPPROTO.UDP, W4, S4, udp({ src: W4, dst: S4, sport: 20005, dport: 53 }, Buffer.alloc(12)));
    expect(parse(tc("stm_uplink_out", f).output).sport).toBe(20005);
  });

  test("UDP and TCP, IPv6: translated, checksums right", () => {
    for (const [proto, l4] of [
      [IPPROTO.UDP, udp({ src: W6, dst: S6, sport: 5000, dport: 53 }, Buffer.alloc(20, 7))],
      [IPPROTO.TCP, tcp({ src: W6, dst: S6, sport: 40001, dport: 443, flags: 2 })],
    ] as const) {
      const r = tc("stm_uplink_out", out6(proto, W6, S6, l4));
      expect(r.retval).toBe(TC_NEXT);
      const p = parse(r.output);
      expect([p.src, p.dst]).toEqual([NAT6, S6]);
      expect(p.sport).toBeGreaterThanOrEqual(LO);
    }
  });

  test("ICMP echo: the identifier is the port", () => {
    const r = tc("stm_uplink_out", out4(IPPROTO.ICMP, W4, S4, icmp({ src: W4, dst: S4, type: 8, id: 777, seq: 1 })));
    const p = parse(r.output);
    expect(p.src).toBe(NAT4);
    const id = p.l4.readUInt16BE(4);
    expect(id).toBeGreaterThanOrEqual(LO);
    expect(id).toBeLessThanOrEqual(HI);
  });

  test("a later fragment takes the NAT address (its first fragment carried the ports)", () => {
    const f = out4(IPPROTO.UDP, W4, S4, Buffer.alloc(64, 1), { id: 99, frag: 1480 });
    const r = tc("stm_uplink_out", f);
    expect(r.retval).toBe(TC_NEXT);
    const p = parse(r.output);
    expect(p.src).toBe(NAT4);
    expect(r.output.subarray(34).equals(f.subarray(34))).toBe(true);
  });

  test("a routed network's packet, and the node's own, leave as they are", () => {
    for (const f of [
      out4(IPPROTO.TCP, R4, S4, tcp({ src: R4, dst: S4, sport: 40000, dport: 443, flags: 2 })),
      out4(IPPROTO.TCP, NAT4, S4, tcp({ src: NAT4, dst: S4, sport: 40000, dport: 443, flags: 2 })),
    ]) {
      const r = tc("stm_uplink_out", f);
      expect(r.retval).toBe(TC_NEXT);
      expect(r.output.toString("hex")).toBe(f.toString("hex"));
    }
    expect([...nat.keys()].length).toBe(0);
  });

  test("what cannot be translated is dropped (nat-untranslatable), never sent with the network's address", () => {
    for (const f of [
      out4(47, W4, S4, Buffer.alloc(24)), // GRE
      out4(IPPROTO.ICMP, W4, S4, icmp({ src: W4, dst: S4, type: 3, code: 3 }, Buffer.alloc(28))), // about no flow
    ]) {
      const r = tc("stm_uplink_out", f);
      expect(r.retval).toBe(TC_DROP);
      expect(r.deltas.stm_drops).toEqual({ [dropKey("nat-untranslatable")]: [1n] });
    }
  });

  test("the range in use toward a destination: new flows refused (nat-exhausted), counted, ports distinct", () => {
    const ports: number[] = [];
    let exhausted = 0n;
    for (let i = 0; i < 40; i++) {
      const f = out4(IPPROTO.UDP, W4, S4, udp({ src: W4, dst: S4, sport: 30000 + i, dport: 53 }, Buffer.alloc(8)));
      const r = tc("stm_uplink_out", f);
      if (r.retval === TC_NEXT) ports.push(parse(r.output).sport);
      else exhausted += r.deltas.stm_drops?.[dropKey("nat-exhausted")]?.[0] ?? 0n;
    }
    expect(new Set(ports).size).toBe(ports.length);
    expect(ports.every((p) => p >= LO && p <= HI)).toBe(true);
    expect(ports.length).toBeGreaterThanOrEqual(12);
    expect(ports.length).toBeLessThanOrEqual(16);
    expect(Number(exhausted)).toBe(40 - ports.length);
    // Toward another destination the same ports serve again.
    const other = out4(
      IPPROTO.UDP,
      W4,
      "198.51.100.3",
      udp({ src: W4, dst: "198.51.100.3", sport: 1, dport: 53 }, Buffer.alloc(8)),
    );
    expect(tc("stm_uplink_out", other).retval).toBe(TC_NEXT);
  });
});

describe("arriving: replies and ICMP errors get the workload's address back", () => {
  /** Sends W4:40000 → S4:443 out; the NAT port it got. */
  const open = (): number =>
    parse(
      tc("stm_uplink_out", out4(IPPROTO.TCP, W4, S4, tcp({ src: W4, dst: S4, sport: 40000, dport: 443, flags: 2 })))
        .output,
    ).sport;

  test("a TCP reply, IPv4: translated back, checksums right", () => {
    const port = open();
    const reply = out4(IPPROTO.TCP, S4, NAT4, tcp({ src: S4, dst: NAT4, sport: 443, dport: port, flags: 0x12 }));
    const r = tc("stm_uplink_nat_in", reply);
    expect(r.retval).toBe(TC_NEXT);
    const p = parse(r.output);
    expect([p.src, p.dst, p.sport, p.dport]).toEqual([S4, W4, 443, 40000]);
  });

  test("a UDP reply, IPv6", () => {
    const o = parse(
      tc(
        "stm_uplink_out",
        out6(IPPROTO.UDP, W6, S6, udp({ src: W6, dst: S6, sport: 5000, dport: 53 }, Buffer.alloc(8))),
      ).output,
    );
    const r = tc(
      "stm_uplink_nat_in",
      out6(IPPROTO.UDP, S6, NAT6, udp({ src: S6, dst: NAT6, sport: 53, dport: o.sport }, Buffer.alloc(30))),
    );
    const p = parse(r.output);
    expect([p.dst, p.dport]).toEqual([W6, 5000]);
  });

  test("an echo reply: the workload's identifier back", () => {
    const o = parse(
      tc("stm_uplink_out", out4(IPPROTO.ICMP, W4, S4, icmp({ src: W4, dst: S4, type: 8, id: 777 }))).output,
    );
    const id = o.l4.readUInt16BE(4);
    const r = tc("stm_uplink_nat_in", out4(IPPROTO.ICMP, S4, NAT4, icmp({ src: S4, dst: NAT4, type: 0, id })));
    const p = parse(r.output);
    expect(p.dst).toBe(W4);
    expect(p.l4.readUInt16BE(4)).toBe(777);
  });

  test("a router's TTL exceeded about the translated flow: outer and quoted packet translated, checksums right", () => {
    const port = open();
    const quoted = ipv4(
      { src: NAT4, dst: S4, proto: IPPROTO.TCP, ttl: 1 },
      tcp({ src: NAT4, dst: S4, sport: port, dport: 443, flags: 2 }),
    ).subarray(0, 28);
    const err = out4(IPPROTO.ICMP, "203.0.113.1", NAT4, icmp({ src: "203.0.113.1", dst: NAT4, type: 11 }, quoted));
    const r = tc("stm_uplink_nat_in", err);
    expect(r.retval).toBe(TC_NEXT);
    const p = parse(r.output);
    expect(p.dst).toBe(W4);
    const q = p.l4.subarray(8);
    expect(checksum(q.subarray(0, 20))).toBe(0);
    expect(bytesToIp(q.subarray(12, 16))).toBe(W4);
    expect(q.readUInt16BE(20)).toBe(40000);
  });

  test("a packet too big about a translated IPv6 flow: translated back, checksum right", () => {
    const o = parse(
      tc(
        "stm_uplink_out",
        out6(IPPROTO.UDP, W6, S6, udp({ src: W6, dst: S6, sport: 5001, dport: 53 }, Buffer.alloc(8))),
      ).output,
    );
    const quoted = ipv6(
      { src: NAT6, dst: S6, next: IPPROTO.UDP },
      udp({ src: NAT6, dst: S6, sport: o.sport, dport: 53 }, Buffer.alloc(8)),
    );
    const body = Buffer.concat([Buffer.from([0, 0, 5, 0]), quoted]); // MTU 1280, then the packet
    // Type 2, code 0, the checksum, then the MTU where an echo has its identifier.
    const msg = Buffer.concat([Buffer.from([2, 0, 0, 0]), body]);
    msg.writeUInt16BE(checksum(pseudoHeader("2001:db8:5::1", NAT6, IPPROTO.ICMPV6, msg.length), msg), 2);
    const f = out6(IPPROTO.ICMPV6, "2001:db8:5::1", NAT6, msg);
    const r = tc("stm_uplink_nat_in", f);
    const p = parse(r.output);
    expect(p.dst).toBe(W6);
    const q = p.l4.subarray(8);
    expect(bytesToIp(q.subarray(8, 24))).toBe(W6);
    expect(q.readUInt16BE(40)).toBe(5001);
  });

  test("a fragmented reply: the first fragment translated by its ports, the later ones by its id", () => {
    const o = parse(
      tc(
        "stm_uplink_out",
        out4(IPPROTO.UDP, W4, S4, udp({ src: W4, dst: S4, sport: 5353, dport: 53 }, Buffer.alloc(8))),
      ).output,
    );
    // The first fragment of a 2,000-byte answer: the UDP header (its checksum over the whole
    // datagram, not checked here) and the start of the payload.
    const first = Buffer.alloc(1480);
    first.writeUInt16BE(53, 0);
    first.writeUInt16BE(o.sport, 2);
    first.writeUInt16BE(2008, 4);
    const f1 = out4(IPPROTO.UDP, S4, NAT4, first, { id: 4242, mf: true });
    const r1 = tc("stm_uplink_nat_in", f1);
    expect(r1.retval).toBe(TC_NEXT);
    expect(bytesToIp(r1.output.subarray(30, 34))).toBe(W4);
    expect(r1.output.readUInt16BE(36)).toBe(5353);
    const f2 = out4(IPPROTO.UDP, S4, NAT4, Buffer.alloc(528, 9), { id: 4242, frag: 1480 });
    const r2 = tc("stm_uplink_nat_in", f2);
    expect(r2.retval).toBe(TC_NEXT);
    const p = parse(r2.output);
    expect(p.dst).toBe(W4);
    expect(r2.output.subarray(34).equals(f2.subarray(34))).toBe(true);
    // Another datagram's later fragment (another id) is not this flow's: left as it is.
    const f3 = out4(IPPROTO.UDP, S4, NAT4, Buffer.alloc(528, 9), { id: 4243, frag: 1480 });
    expect(tc("stm_uplink_nat_in", f3).output.toString("hex")).toBe(f3.toString("hex"));
  });

  test("to the NAT address but no flow of it: left as it is (the node's own traffic)", () => {
    const f = out4(IPPROTO.TCP, S4, NAT4, tcp({ src: S4, dst: NAT4, sport: 443, dport: 45000, flags: 0x12 }));
    const r = tc("stm_uplink_nat_in", f);
    expect(r.retval).toBe(TC_NEXT);
    expect(r.output.toString("hex")).toBe(f.toString("hex"));
  });
});

describe("the uplink filter (XDP)", () => {
  test("a LAN packet to a masqueraded network is dropped (nat-inbound); to a NAT address it goes on to tc", () => {
    const toNet = eth4(
      "02:00:00:00:99:01",
      MAC_GW,
      ipv4({ src: S4, dst: W4, proto: IPPROTO.ICMP }, icmp({ src: S4, dst: W4, type: 8 })),
    );
    const r = xdp(toNet);
    expect(r.retval).toBe(XDP_DROP);
    expect(r.deltas.stm_drops).toEqual({ [dropKey("nat-inbound")]: [1n] });
    const toNat = eth4(
      "02:00:00:00:99:01",
      MAC_GW,
      ipv4({ src: S4, dst: NAT4, proto: IPPROTO.ICMP }, icmp({ src: S4, dst: NAT4, type: 0 })),
    );
    expect(xdp(toNat).retval).toBe(XDP_PASS);
    // A routed network's address is not the masquerading's business.
    const toRouted = eth4(
      "02:00:00:00:99:01",
      MAC_GW,
      ipv4({ src: S4, dst: R4, proto: IPPROTO.ICMP }, icmp({ src: S4, dst: R4, type: 8 })),
    );
    expect(xdp(toRouted).retval).toBe(XDP_PASS);
  });
});
