/** The overlay's programs and the answers the port programs make, under BPF_PROG_TEST_RUN:
 * ARP and neighbour solicitations for known endpoints (local or remote) answered from the
 * port, the ICMP errors for packets too large for the overlay, the overlay device's egress
 * (where a frame may go), its ingress without tunnel metadata, and the check of the outer
 * source before decapsulation (the underlay's tc program, the uplink filter's XDP). Each case: the verdict, the drop counter of its reason moving by one (and
 * no other), and the frame that comes out. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { dropReasonCode } from "../../src/datapath/drops";
import { loadObject } from "../../src/datapath/objects";
import { checksum, pseudoHeader } from "../../src/datapath/packet";
import {
  encodeDropKey,
  encodeIface,
  encodeIfindex,
  encodeLocal,
  encodeLocalKey,
  encodeMacKey,
  encodePort,
  encodeRemote,
  encodeVtep,
  encodeVtepKey,
  type PortConfig,
  PROFILE_F,
} from "../../src/datapath/port-maps";
import { linkLocal, profileIp6, profileMac } from "../../src/model/network";
import { ipToBytes, macToBytes } from "../../src/netlink/codec";
import type { BpfMap, BpfObject } from "../../src/sys/bpf";
import { alloc, SK_BUFF } from "../../src/sys/layout";
import { runFixture } from "../helpers/fixture";
import {
  arp,
  eth4,
  eth6,
  ethArp,
  IPPROTO,
  icmp,
  icmp6,
  ipv4,
  ipv6,
  lla,
  ndBody,
  optsHeader,
  udp,
} from "../helpers/frames";

const TC_NEXT = -1;
const TC_DROP = 2;
const TC_REDIRECT = 7;
const IPPROTO_DSTOPTS = 60;
const XDP_DROP = 1;
const XDP_PASS = 2;

const PORT = 1; // lo: a test run's device must exist
const OTHER_PORT = 902;
const OVERLAY = 906;

const mk = (net: number, i: number, ip: string) => ({
  mac: profileMac(net, i),
  ip,
  ip6: profileIp6("fd20::/64", profileMac(net, i)),
  ll: linkLocal(profileMac(net, i)),
});
const ME = mk(1, 4, "10.20.0.5");
/** An endpoint of network 1 on this node. */
const LOCAL = mk(1, 5, "10.20.0.6");
/** An endpoint of network 1 on another node. */
const REMOTE = mk(1, 6, "10.20.0.7");
/** An endpoint of network 2 on another node. */
const FOREIGN = { mac: profileMac(2, 1), ip: "10.30.0.2" };
/** A profile of network 1 nobody claimed. */
const FREE = mk(1, 9, "10.20.0.10");
const GW = "10.20.0.1";
const GW6 = "fd20::1";
const NODE2 = "10.99.0.2";
const VNI1 = 0x10001;

const port = (p: { ip: string; mac: string }, netId = 1): PortConfig => ({
  netId,
  ip4: p.ip,
  mac: p.mac,
  cidr4: "10.20.0.0/24",
  gw4: GW,
  ip6: profileIp6("fd20::/64", p.mac),
  cidr6: "fd20::/64",
  gw6: GW6,
});

let obj: BpfObject;
let drops: BpfMap;
beforeAll(() => {
  obj = loadObject("port");
  drops = obj.map("stm_drops");
  obj.map("stm_ports").update(encodeIfindex(PORT), encodePort(port(ME)));
  obj.map("stm_ports").update(encodeIfindex(OTHER_PORT), encodePort({ ...port(FOREIGN, 2), cidr4: "10.30.0.0/24" }));
  obj.map("stm_ifaces").update(encodeIfindex(OVERLAY), encodeIface({ kind: "overlay" }));
  // Profiles: LOCAL and REMOTE claimed, FREE not.
  const prof = obj.map("stm_profiles");
  for (const [p, flags] of [
    [LOCAL, PROFILE_F.CLAIMED],
    [REMOTE, PROFILE_F.CLAIMED],
    [FREE, 0],
  ] as const) {
    const k = Buffer.alloc(8);
    k.writeUInt32LE(1, 0);
    ipToBytes(p.ip).copy(k, 4);
    const v = Buffer.alloc(8);
    macToBytes(p.mac).copy(v, 0);
    v.writeUInt16LE(flags, 6);
    prof.update(k, v);
  }
  for (const a of [ME.mac, LOCAL.mac]) obj.map("stm_local").update(encodeLocalKey(a), encodeLocal(PORT, 1));
  obj
    .map("stm_remote")
    .update(
      encodeMacKey(REMOTE.mac),
      encodeRemote({ netId: 1, vni: VNI1, ip4: REMOTE.ip, ip6: REMOTE.ip6, node: NODE2 }),
    );
  obj
    .map("stm_remote")
    .update(encodeMacKey(FOREIGN.mac), encodeRemote({ netId: 2, vni: 0x10002, ip4: FOREIGN.ip, node: NODE2 }));
  obj.map("stm_vteps").update(encodeVtepKey(""), encodeVtep({ self: false, mtu: 1450 }));
  obj.map("stm_vteps").update(encodeVtepKey(NODE2), encodeVtep({ self: false }));
  obj.map("stm_vteps").update(encodeVtepKey("10.99.0.1"), encodeVtep({ self: true }));
});
afterAll(() => obj?.close());

const dropKey = (ifindex: number, reason: string) => encodeDropKey(ifindex, dropReasonCode(reason)).toString("hex");

function tc(prog: string, frame: Buffer, o: { ifindex?: number; from?: number } = {}) {
  const ctx = alloc(SK_BUFF, { ifindex: o.ifindex ?? PORT, ingress_ifindex: o.from ?? 0 });
  return runFixture(obj.program(prog).fd, { name: prog, input: frame, verdict: 0, ctx }, [drops]);
}

/** The uplink filter (XDP) on `frame`, received on ifindex PORT. */
function xdp(frame: Buffer) {
  const ctx = Buffer.alloc(24);
  ctx.writeUInt32LE(frame.length, 4);
  ctx.writeUInt32LE(PORT, 12);
  return runFixture(obj.program("stm_uplink_in").fd, { name: "uplink", input: frame, verdict: 0, ctx }, [drops]);
}

const arpRequest = (target: string) =>
  ethArp(ME.mac, "ff:ff:ff:ff:ff:ff", arp({ op: "request", senderMac: ME.mac, senderIp: ME.ip, targetIp: target }));
const ns = (target: string) =>
  icmp6({ mac: ME.mac, src: ME.ll, dst: "ff02::1:ff00:1", type: 135, body: ndBody(target, lla(1, ME.mac)) });

describe("neighbours answered on the node", () => {
  test("an ARP request for a claimed endpoint, local or remote, is answered back out of the port", () => {
    for (const peer of [LOCAL, REMOTE]) {
      const r = tc("stm_port_in", arpRequest(peer.ip));
      expect(r.retval).toBe(TC_REDIRECT);
      expect(r.deltas.stm_drops).toEqual({});
      const want = ethArp(
        peer.mac,
        ME.mac,
        arp({ op: "reply", senderMac: peer.mac, senderIp: peer.ip, targetMac: ME.mac, targetIp: ME.ip }),
      );
      expect(r.output.subarray(0, 42).toString("hex")).toBe(want.toString("hex"));
    }
  });

  test("an ARP request for a free address, the gateway or the port itself goes on unchanged", () => {
    for (const t of [FREE.ip, GW, ME.ip]) {
      const f = arpRequest(t);
      const r = tc("stm_port_in", f);
      expect({ t, v: r.retval }).toEqual({ t, v: TC_NEXT });
      expect(r.output.toString("hex")).toBe(f.toString("hex"));
    }
  });

  test("a neighbour solicitation for an endpoint's profile or link-local address is answered with a valid NA", () => {
    for (const [peer, target] of [
      [LOCAL, LOCAL.ip6],
      [REMOTE, REMOTE.ip6],
      [REMOTE, REMOTE.ll],
    ] as const) {
      const r = tc("stm_port_in", ns(target));
      expect(r.retval).toBe(TC_REDIRECT);
      const na = icmp({ src: target, dst: ME.ll, type: 136 }, Buffer.concat([ndBody(target), lla(2, peer.mac)]));
      na.writeUInt32BE(0x60000000, 4); // solicited, override
      na.writeUInt16BE(0, 2);
      na.writeUInt16BE(checksum(pseudoHeader(target, ME.ll, IPPROTO.ICMPV6, na.length), na), 2);
      const want = eth6(peer.mac, ME.mac, ipv6({ src: target, dst: ME.ll, next: IPPROTO.ICMPV6, hopLimit: 255 }, na));
      expect(r.output.toString("hex")).toBe(want.toString("hex"));
    }
  });

  test("a solicitation for a free profile, another network's endpoint, or from :: (DAD) goes on unchanged", () => {
    const dad = icmp6({ mac: ME.mac, src: "::", dst: "ff02::1:ff00:1", type: 135, body: ndBody(ME.ip6) });
    for (const f of [ns(FREE.ip6), ns(profileIp6("fd20::/64", FOREIGN.mac)), ns(GW6), dad]) {
      const r = tc("stm_port_in", f);
      expect(r.retval).toBe(TC_NEXT);
      expect(r.output.toString("hex")).toBe(f.toString("hex"));
    }
  });
});

describe("the overlay's MTU", () => {
  const big4 = (df: boolean, dstMac = REMOTE.mac) =>
    eth4(
      ME.mac,
      dstMac,
      ipv4(
        { src: ME.ip, dst: REMOTE.ip, proto: IPPROTO.UDP, dontFragment: df },
        udp({ src: ME.ip, dst: REMOTE.ip, sport: 1, dport: 2 }, new Uint8Array(1472)),
      ),
    );
  test("IPv4 with DF to a remote endpoint, larger than 1450: fragmentation needed (MTU 1450) from the gateway", () => {
    const f = big4(true);
    const r = tc("stm_port_in", f);
    expect(r.retval).toBe(TC_REDIRECT);
    expect(r.deltas.stm_drops).toEqual({ [dropKey(PORT, "overlay-mtu")]: [1n] });
    const quote = f.subarray(14, 14 + 28);
    const err = icmp({ src: GW, dst: ME.ip, type: 3, code: 4 }, quote);
    err.writeUInt16BE(0, 4);
    err.writeUInt16BE(1450, 6);
    err.writeUInt16BE(0, 2);
    err.writeUInt16BE(checksum(err), 2);
    const want = eth4(REMOTE.mac, ME.mac, ipv4({ src: GW, dst: ME.ip, proto: IPPROTO.ICMP, dontFragment: true }, err));
    expect(r.output.toString("hex")).toBe(want.toString("hex"));
  });

  test("without DF, to a local peer, or within the MTU: unchanged", () => {
    for (const f of [
      big4(false),
      big4(true, LOCAL.mac),
      eth4(
        ME.mac,
        REMOTE.mac,
        ipv4(
          { src: ME.ip, dst: REMOTE.ip, proto: IPPROTO.UDP, dontFragment: true },
          udp({ src: ME.ip, dst: REMOTE.ip, sport: 1, dport: 2 }, new Uint8Array(1400)),
        ),
      ),
    ]) {
      const r = tc("stm_port_in", f);
      expect(r.retval).toBe(TC_NEXT);
      expect(r.deltas.stm_drops).toEqual({});
    }
  });

  test("IPv6 to a remote endpoint, larger than 1450: packet too big (MTU 1450) from the gateway", () => {
    const pkt = ipv6(
      { src: ME.ip6, dst: REMOTE.ip6, next: IPPROTO.UDP },
      udp({ src: ME.ip6, dst: REMOTE.ip6, sport: 1, dport: 2 }, new Uint8Array(1452)),
    );
    const f = eth6(ME.mac, REMOTE.mac, pkt);
    const r = tc("stm_port_in", f);
    expect(r.retval).toBe(TC_REDIRECT);
    expect(r.deltas.stm_drops).toEqual({ [dropKey(PORT, "overlay-mtu")]: [1n] });
    const body = Buffer.concat([Buffer.alloc(0), pkt.subarray(0, 48)]);
    const err = icmp({ src: GW6, dst: ME.ip6, type: 2 }, body);
    err.writeUInt32BE(1450, 4);
    err.writeUInt16BE(0, 2);
    err.writeUInt16BE(checksum(pseudoHeader(GW6, ME.ip6, IPPROTO.ICMPV6, err.length), err), 2);
    const want = eth6(REMOTE.mac, ME.mac, ipv6({ src: GW6, dst: ME.ip6, next: IPPROTO.ICMPV6, hopLimit: 255 }, err));
    expect(r.output.toString("hex")).toBe(want.toString("hex"));
  });
});

describe("the overlay device's egress", () => {
  const to = (dstMac: string, dst = REMOTE.ip) =>
    eth4(ME.mac, dstMac, ipv4({ src: ME.ip, dst, proto: IPPROTO.ICMP }, icmp({ src: ME.ip, dst, type: 8 })));
  const cases: Array<{ name: string; frame: Buffer; from: number; drop?: string }> = [
    { name: "a workload's frame to an endpoint of its network on another node", frame: to(REMOTE.mac), from: PORT },
    {
      name: "another network's workload to that endpoint",
      frame: to(REMOTE.mac),
      from: OTHER_PORT,
      drop: "other-network",
    },
    {
      name: "to an endpoint of another network",
      frame: to(FOREIGN.mac, FOREIGN.ip),
      from: PORT,
      drop: "other-network",
    },
    { name: "broadcast", frame: to("ff:ff:ff:ff:ff:ff"), from: PORT, drop: "overlay-flood" },
    { name: "IPv6 multicast", frame: to("33:33:00:00:00:01"), from: PORT, drop: "overlay-flood" },
    { name: "unknown unicast", frame: to(FREE.mac), from: PORT, drop: "overlay-flood" },
    { name: "the node's own frame", frame: to(REMOTE.mac), from: 0, drop: "overlay-routed" },
    { name: "a frame from a device that is not a port", frame: to(REMOTE.mac), from: 903, drop: "overlay-routed" },
  ];
  for (const c of cases)
    test(`${c.name} → ${c.drop ?? "sent"}`, () => {
      // A test run's device must exist: lo stands for the overlay device (drops counted on it).
      const r = tc("stm_overlay_out", c.frame, { ifindex: PORT, from: c.from });
      expect(r.retval).toBe(c.drop ? TC_DROP : TC_NEXT);
      expect(r.deltas.stm_drops).toEqual(c.drop ? { [dropKey(PORT, c.drop)]: [1n] } : {});
    });

  test("its ingress drops a frame without tunnel metadata (vtep-unknown)", () => {
    const r = tc("stm_overlay_in", to(ME.mac));
    expect(r.retval).toBe(TC_DROP);
    expect(r.deltas.stm_drops).toEqual({ [dropKey(PORT, "vtep-unknown")]: [1n] });
  });

  test("a port delivers from the overlay only frames of an endpoint of its network", () => {
    const from = (mac: string, src: string) =>
      eth4(mac, ME.mac, ipv4({ src, dst: ME.ip, proto: IPPROTO.ICMP }, icmp({ src, dst: ME.ip, type: 8 })));
    expect(tc("stm_port_out", from(REMOTE.mac, REMOTE.ip), { from: OVERLAY }).retval).toBe(TC_NEXT);
    const r = tc("stm_port_out", from(FOREIGN.mac, FOREIGN.ip), { from: OVERLAY });
    expect(r.retval).toBe(TC_DROP);
    expect(r.deltas.stm_drops).toEqual({ [dropKey(PORT, "other-network")]: [1n] });
  });
});

describe("the check of the outer source before decapsulation", () => {
  const inner = eth4(
    REMOTE.mac,
    ME.mac,
    ipv4({ src: REMOTE.ip, dst: ME.ip, proto: IPPROTO.ICMP }, icmp({ src: REMOTE.ip, dst: ME.ip, type: 8 })),
  );
  const vxlanHdr = Buffer.from([8, 0, 0, 0, 0x01, 0x00, 0x01, 0]);
  /** A VXLAN packet from `src` to this node; `ext`: an IPv6 destination-options header first;
   * `tags`: 802.1ad/802.1Q tags (TPIDs) between the MACs and the IP header. */
  const vxlan = (src: string, o: { dport?: number; ext?: boolean; tags?: readonly number[] } = {}) => {
    const v6 = src.includes(":");
    const dst = v6 ? "fd99::1" : "10.99.0.1";
    const u = udp({ src, dst, sport: 40000, dport: o.dport ?? 4789 }, Buffer.concat([vxlanHdr, inner]));
    const f = v6
      ? eth6(
          "02:99:00:00:00:02",
          "02:99:00:00:00:01",
          o.ext
            ? ipv6({ src, dst, next: IPPROTO_DSTOPTS }, Buffer.concat([optsHeader(IPPROTO.UDP), u]))
            : ipv6({ src, dst, next: IPPROTO.UDP }, u),
        )
      : eth4("02:99:00:00:00:02", "02:99:00:00:00:01", ipv4({ src, dst, proto: IPPROTO.UDP }, u));
    const tags = (o.tags ?? []).map((tpid, i) => Buffer.from([tpid >> 8, tpid & 0xff, 0, 10 + i]));
    return Buffer.concat([f.subarray(0, 12), ...tags, f.subarray(12)]);
  };
  const UNDERLAY = PORT; // lo: a test run's device must exist
  const underlay = (frame: Buffer) => tc("stm_underlay_in", frame, { ifindex: UNDERLAY });
  const variants = [
    { what: "IPv4", o: {} },
    { what: "IPv4 under an 802.1Q tag", o: { tags: [0x8100] } },
    { what: "IPv4 under 802.1ad + 802.1Q", o: { tags: [0x88a8, 0x8100] } },
    { what: "IPv6", o: {}, v6: true },
    { what: "IPv6 after a destination-options header", o: { ext: true }, v6: true },
    { what: "IPv6 under an 802.1Q tag", o: { tags: [0x8100] }, v6: true },
  ];
  const NODE2_6 = "fd99::2";

  test("underlay (tc): VXLAN from a node passes; from anyone else, or claiming this node, is dropped (vtep-unknown)", () => {
    obj.map("stm_vteps").update(encodeVtepKey(NODE2_6), encodeVtep({ self: false }));
    obj.map("stm_vteps").update(encodeVtepKey("fd99::1"), encodeVtep({ self: true }));
    try {
      for (const v of variants) {
        const ok = underlay(vxlan(v.v6 ? NODE2_6 : NODE2, v.o));
        expect({ v: v.what, r: ok.retval }).toEqual({ v: v.what, r: TC_NEXT });
        expect(ok.deltas.stm_drops ?? {}).toEqual({});
        for (const src of v.v6 ? ["fd99::254", "fd99::1"] : ["10.99.0.254", "10.99.0.1"]) {
          const r = underlay(vxlan(src, v.o));
          expect({ v: v.what, src, r: r.retval }).toEqual({ v: v.what, src, r: TC_DROP });
          expect(r.deltas.stm_drops).toEqual({ [dropKey(UNDERLAY, "vtep-unknown")]: [1n] });
        }
      }
      // Other UDP is none of its business.
      expect(underlay(vxlan("10.99.0.254", { dport: 4790 })).retval).toBe(TC_NEXT);
      expect(underlay(vxlan("fd99::254", { dport: 4790 })).retval).toBe(TC_NEXT);
    } finally {
      obj.map("stm_vteps").delete(encodeVtepKey(NODE2_6));
      obj.map("stm_vteps").delete(encodeVtepKey("fd99::1"));
    }
  });

  test("uplink (XDP): the same check inside the uplink filter", () => {
    expect(xdp(vxlan(NODE2)).retval).toBe(XDP_PASS);
    expect(xdp(vxlan(NODE2, { tags: [0x8100] })).retval).toBe(XDP_PASS);
    for (const [src, o] of [
      ["10.99.0.254", {}],
      ["10.99.0.1", {}],
      ["fd99::254", {}],
      ["fd99::254", { ext: true }],
      ["10.99.0.254", { tags: [0x8100] }],
    ] as const) {
      const r = xdp(vxlan(src, o));
      expect({ src, o, v: r.retval }).toEqual({ src, o, v: XDP_DROP });
      expect(r.deltas.stm_drops).toEqual({ [dropKey(PORT, "vtep-unknown")]: [1n] });
    }
    expect(xdp(vxlan("10.99.0.254", { dport: 4790 })).retval).toBe(XDP_PASS);
  });

  test("with the overlay off (no switch entry) nothing is judged", () => {
    const sw = obj.map("stm_vteps");
    const saved = sw.lookup(encodeVtepKey("")) as Buffer;
    sw.delete(encodeVtepKey(""));
    try {
      for (const src of ["10.99.0.254", "10.99.0.1", "fd99::254"]) {
        expect(underlay(vxlan(src)).retval).toBe(TC_NEXT);
        expect(xdp(vxlan(src)).retval).toBe(XDP_PASS);
      }
    } finally {
      sw.update(encodeVtepKey(""), saved);
    }
  });
});
