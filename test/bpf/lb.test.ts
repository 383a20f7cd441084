/** The load balancer under BPF_PROG_TEST_RUN, on the real port object with its maps written by
 * LbTables: the backend the datapath picks for a flow is the one the TypeScript Maglev table and
 * flow hash name (src/lb/maglev.ts); the destination rewrite (XDP by hand, tc through the
 * kernel's helpers) leaves every checksum right, IPv4 and IPv6, TCP and UDP; replies get the VIP
 * back at the uplink and at the client's port; a flow keeps its backend while the table changes
 * and moves when its backend goes down; what is not a VIP's passes untouched, and what a VIP
 * cannot take is dropped with its reason. Checksums are checked by recomputing them. */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { dropReasonCode } from "../../src/datapath/drops";
import { type LbKernelVip, LbTables, lbAddr } from "../../src/datapath/lb-tables";
import { loadObject } from "../../src/datapath/objects";
import { checksum, IPPROTO, ipv4, ipv6, pseudoHeader, tcp, udp } from "../../src/datapath/packet";
import {
  encodeDropKey,
  encodeIface,
  encodeIfindex,
  encodePort,
  encodeSubnet,
  encodeSubnetKey,
} from "../../src/datapath/port-maps";
import { buildMaglev, flowHash } from "../../src/lb/maglev";
import { withTable } from "../../src/lb/state";
import { bytesToIp } from "../../src/netlink/codec";
import type { BpfMap, BpfObject } from "../../src/sys/bpf";
import { alloc, SK_BUFF } from "../../src/sys/layout";
import { runFixture } from "../helpers/fixture";
import { eth4, eth6, fragHeader, readIp } from "../helpers/frames";
import { prng } from "../helpers/prng";

const TC_NEXT = -1;
const XDP_DROP = 1;
const XDP_PASS = 2;
const UPLINK = 1; // lo: a test run's device must exist
const VIP4 = "203.0.113.10";
const VIP6 = "2001:db8:77::10";
const B4 = ["10.72.0.11", "10.72.0.12", "10.72.0.13", "10.72.0.14"];
const B6 = ["fd72::11", "fd72::12", "fd72::13"];
const C4 = "198.51.100.7";
const C6 = "2001:db8:5::7";
const MAC_R = "02:00:00:00:99:01"; // the LAN's router
const MAC_N = "02:00:00:00:99:02"; // the node
const SIZE = 251;

let obj: BpfObject;
let lb: LbTables;
let drops: BpfMap;

function vips(o: { down?: number[]; extra?: boolean; none?: boolean } = {}): LbKernelVip[] {
  const b4 = (o.extra ? [...B4, "10.72.0.15"] : B4).map((address, i) => ({
    id: 100 + i,
    address,
    port: 8080,
    weight: 1,
    up: !o.none && !o.down?.includes(100 + i),
  }));
  const all: Omit<LbKernelVip, "table">[] = [
    { id: 1, address: VIP4, port: 80, proto: "tcp", size: SIZE, backends: b4 },
    {
      id: 2,
      address: VIP4,
      port: 53,
      proto: "udp",
      size: 13,
      backends: [{ id: 200, address: B4[0] as string, port: 5353, weight: 1, up: !o.none }],
    },
    {
      id: 3,
      address: VIP6,
      port: 443,
      proto: "tcp",
      size: SIZE,
      backends: B6.map((address, i) => ({ id: 300 + i, address, port: 8443, weight: i + 1, up: !o.none })),
    },
  ];
  return all.map(withTable);
}

beforeAll(() => {
  obj = loadObject("port");
  lb = new LbTables({ map: (n) => obj.map(n) });
  drops = obj.map("stm_drops");
  lb.apply(vips());
});
afterAll(() => obj?.close());
beforeEach(() => {
  const ct = obj.map("stm_lb_ct");
  for (const k of [...ct.keys()]) ct.delete(k);
  lb.apply(vips());
});

const dropKey = (reason: string, ifindex = UPLINK) => encodeDropKey(ifindex, dropReasonCode(reason)).toString("hex");

function xdp(frame: Buffer, prog = "stm_xdp_lb") {
  const ctx = Buffer.alloc(24);
  ctx.writeUInt32LE(frame.length, 4);
  ctx.writeUInt32LE(UPLINK, 12);
  return runFixture(obj.program(prog).fd, { name: prog, input: frame, verdict: 0, ctx }, [drops]);
}

function tcRun(prog: string, frame: Buffer, ifindex = UPLINK, from = 0) {
  const ctx = alloc(SK_BUFF, { ifindex, ingress_ifindex: from });
  return runFixture(obj.program(prog).fd, { name: prog, input: frame, verdict: 0, ctx }, [drops]);
}

function pkt(o: { src: string; dst: string; sport: number; dport: number; udp?: boolean; mac?: [string, string] }) {
  const v6 = o.src.includes(":");
  const proto = o.udp ? IPPROTO.UDP : IPPROTO.TCP;
  const l4 = o.udp
    ? udp(o, Buffer.from("stratum lb datagram"))
    : tcp({ ...o, flags: 2, seq: 1000 }, Buffer.from("GET / HTTP/1.1\r\n\r\n"));
  const [s, d] = o.mac ?? [MAC_R, MAC_N];
  return v6
    ? eth6(s, d, ipv6({ src: o.src, dst: o.dst, next: proto }, l4))
    : eth4(s, d, ipv4({ src: o.src, dst: o.dst, proto }, l4));
}

const parse = readIp;

/** The backend the TypeScript side says a flow gets. */
function expected(v: LbKernelVip, client: string, sport: number): string {
  const live = v.backends
    .filter((b) => b.up)
    .map((b) => ({ key: `${b.address}|${b.port}`, weight: b.weight, id: b.id }));
  const table = buildMaglev(live, v.size);
  // The hash's client address: IPv6 as it is, IPv4 as ::ffff:a.b.c.d.
  const mapped = lbAddr(client);
  if (!client.includes(":")) {
    mapped.copy(mapped, 12, 0, 4);
    mapped.fill(0, 0, 10);
    mapped.fill(0xff, 10, 12);
  }
  const id = table[flowHash(mapped, sport, v.port, v.proto === "tcp" ? 6 : 17) % v.size];
  return v.backends.find((b) => b.id === id)?.address as string;
}

describe("the table: the datapath picks what the TypeScript Maglev names", () => {
  test("the kernel's table is buildMaglev's, slot for slot", () => {
    const v = vips()[0] as LbKernelVip;
    const want = buildMaglev(
      v.backends.map((b) => ({ key: `${b.address}|${b.port}`, weight: b.weight, id: b.id })),
      SIZE,
    );
    expect([...(lb.table(1) ?? [])]).toEqual([...want]);
  });

  test("300 random flows, IPv4 and IPv6 clients, TCP and UDP: the same backend as the reference", () => {
    const rnd = prng(27);
    const r = () => Math.floor(rnd() * 2 ** 32);
    const seen = new Set<string>();
    for (let i = 0; i < 300; i++) {
      const v6 = i % 3 === 2;
      const v = vips()[v6 ? 2 : i % 3] as LbKernelVip;
      const client = v6 ? `2001:db8:5::${(r() % 0xffff).toString(16)}` : `198.51.${r() % 256}.${r() % 256}`;
      const sport = 1024 + (r() % 60000);
      const f = pkt({ src: client, dst: v.address, sport, dport: v.port, udp: v.proto === "udp" });
      const out = xdp(f);
      expect(out.retval).toBe(XDP_PASS);
      const p = parse(out.output);
      const want = expected(v, client, sport);
      expect({ i, client, sport, backend: p.dst }).toEqual({ i, client, sport, backend: want });
      seen.add(p.dst);
    }
    expect(seen.size).toBe(B4.length + B6.length);
  });
});

describe("the rewrite: destination to the backend, checksums right", () => {
  for (const [name, o] of [
    ["TCP, IPv4", { src: C4, dst: VIP4, sport: 40001, dport: 80 }],
    ["UDP, IPv4", { src: C4, dst: VIP4, sport: 40002, dport: 53, udp: true }],
    ["TCP, IPv6", { src: C6, dst: VIP6, sport: 40003, dport: 443 }],
  ] as const)
    for (const prog of ["stm_xdp_lb", "stm_uplink_in"])
      test(`${name} through ${prog}: address, port and payload; the source untouched`, () => {
        const f = pkt(o);
        const r = xdp(f, prog);
        expect(r.retval).toBe(XDP_PASS);
        expect(r.deltas.stm_drops).toEqual({});
        const p = parse(r.output);
        expect(p.src).toBe(o.src);
        expect(p.sport).toBe(o.sport);
        expect(p.dport).toBe(o.dport === 80 ? 8080 : o.dport === 53 ? 5353 : 8443);
        expect([...B4, ...B6]).toContain(p.dst);
        expect(p.payload.toString()).toBe(parse(f).payload.toString());
        expect(r.output.length).toBe(f.length);
      });

  test("IPv4 with options (the general parse): translated, checksums right", () => {
    const f = pkt({ src: C4, dst: VIP4, sport: 40006, dport: 80 });
    // Four bytes of options (NOPs) after the 20-byte header: IHL 6, the total length 4 more.
    const ip = Buffer.concat([f.subarray(14, 34), Buffer.from([1, 1, 1, 0]), f.subarray(34)]);
    ip[0] = 0x46;
    ip.writeUInt16BE(ip.length, 2);
    ip.writeUInt16BE(0, 10);
    ip.writeUInt16BE(checksum(ip.subarray(0, 24)), 10);
    const r = xdp(Buffer.concat([f.subarray(0, 14), ip]));
    expect(r.retval).toBe(XDP_PASS);
    const out = r.output.subarray(14);
    expect(checksum(out.subarray(0, 24))).toBe(0);
    const dst = bytesToIp(out.subarray(16, 20));
    expect(B4).toContain(dst);
    const l4 = out.subarray(24);
    expect(l4.readUInt16BE(2)).toBe(8080);
    expect(checksum(pseudoHeader(C4, dst, IPPROTO.TCP, l4.length), l4)).toBe(0);
  });

  test("a UDP/IPv4 datagram without a checksum keeps none", () => {
    const f = pkt({ src: C4, dst: VIP4, sport: 40004, dport: 53, udp: true });
    f.writeUInt16BE(0, 14 + 20 + 6);
    const r = xdp(f);
    expect(r.retval).toBe(XDP_PASS);
    expect(r.output.readUInt16BE(14 + 20 + 6)).toBe(0);
    expect(parse(r.output).dst).toBe(B4[0] as string);
  });

  test("the flow is recorded both ways, and the stats count one new flow", () => {
    const before = lb.stats();
    const r = xdp(pkt({ src: C4, dst: VIP4, sport: 40005, dport: 80 }));
    const backend = parse(r.output).dst;
    expect(lb.stats().new).toBe(before.new + 1);
    expect([...obj.map("stm_lb_ct").keys()].length).toBe(2);
    const hits = lb.hits();
    const id = (vips()[0] as LbKernelVip).backends.find((b) => b.address === backend)?.id as number;
    expect(hits.get(id)?.flows).toBeGreaterThanOrEqual(1);
  });
});

describe("replies: the VIP back as their source", () => {
  for (const [name, o] of [
    ["TCP, IPv4", { src: C4, dst: VIP4, sport: 41001, dport: 80 }],
    ["UDP, IPv4", { src: C4, dst: VIP4, sport: 41002, dport: 53, udp: true }],
    ["TCP, IPv6", { src: C6, dst: VIP6, sport: 41003, dport: 443 }],
  ] as const)
    test(`${name}: stm_uplink_out translates the backend's reply`, () => {
      const fwd = parse(xdp(pkt(o)).output);
      const reply = pkt({
        src: fwd.dst,
        dst: o.src,
        sport: fwd.dport,
        dport: o.sport,
        udp: "udp" in o,
        mac: [MAC_N, MAC_R],
      });
      const before = lb.stats().rev;
      const r = tcRun("stm_uplink_out", reply);
      expect(r.retval).toBe(TC_NEXT);
      const p = parse(r.output);
      expect([p.src, p.sport, p.dst, p.dport]).toEqual([o.dst, o.dport, o.src, o.sport]);
      expect(lb.stats().rev).toBe(before + 1);
    });

  test("a packet from a backend's address that belongs to no translated flow passes untouched", () => {
    const f = pkt({ src: B4[0] as string, dst: C4, sport: 8080, dport: 45000, mac: [MAC_N, MAC_R] });
    const r = tcRun("stm_uplink_out", f);
    expect(r.retval).toBe(TC_NEXT);
    expect(r.output.toString("hex")).toBe(f.toString("hex"));
  });
});

describe("an endpoint reaching a VIP: its port translates, its port translates the reply back", () => {
  const PORT = 1;
  const NET = 7;
  const MAC = "02:00:00:00:48:05";
  const GW_MAC = "02:00:00:00:48:fe";
  const ME = "10.48.0.5";
  beforeAll(() => {
    obj
      .map("stm_ports")
      .update(
        encodeIfindex(PORT),
        encodePort({ netId: NET, ip4: ME, mac: MAC, cidr4: "10.48.0.0/24", gw4: "10.48.0.1", group: 0 }),
      );
  });
  afterAll(() => {
    obj.map("stm_ports").delete(encodeIfindex(PORT));
  });

  test("a backend of the endpoint's own network: the frame goes to its MAC (bridged, over the overlay when remote)", () => {
    const same = vips().map((v) =>
      v.id === 1
        ? withTable({ ...v, backends: v.backends.map((b) => ({ ...b, mac: "02:00:00:00:72:0b", netId: NET })) })
        : v,
    );
    lb.apply(same);
    const r = tcRun("stm_port_in", pkt({ src: ME, dst: VIP4, sport: 42001, dport: 80, mac: [MAC, GW_MAC] }), PORT);
    expect(r.retval).toBe(TC_NEXT);
    expect(r.output.subarray(0, 6).toString("hex")).toBe("02000000720b");
    expect(parse(r.output).dport).toBe(8080);
  });

  test("stm_port_in: to the backend (TCP/IPv4), checksums right; stm_port_out: the reply from the VIP", () => {
    const f = pkt({ src: ME, dst: VIP4, sport: 42000, dport: 80, mac: [MAC, GW_MAC] });
    const r = tcRun("stm_port_in", f, PORT);
    expect(r.deltas.stm_drops).toEqual({});
    expect(r.retval).toBe(TC_NEXT);
    const p = parse(r.output);
    expect(p.dst).toBe(expected(vips()[0] as LbKernelVip, ME, 42000));
    expect(p.dport).toBe(8080);
    // The backend is of another network: the frame goes to the gateway, to be routed.
    expect(r.output.subarray(0, 6).toString("hex")).toBe(GW_MAC.replaceAll(":", ""));
    const reply = pkt({ src: p.dst, dst: ME, sport: 8080, dport: 42000, mac: [GW_MAC, MAC] });
    const back = tcRun("stm_port_out", reply, PORT, 0);
    expect(back.deltas.stm_drops).toEqual({});
    expect(back.retval).toBe(TC_NEXT);
    const q = parse(back.output);
    expect([q.src, q.sport, q.dst, q.dport]).toEqual([VIP4, 80, ME, 42000]);
  });
});

describe("DSR: the frame goes to the backend's MAC, the VIP kept; the backend answers from the VIP", () => {
  const PORT = 1; // the port under test (lo: a test run's device must exist)
  const LAN_IF = 4242; // the uplink, as the bridge's frames name it (ingress_ifindex)
  const CLIENT_IF = 4243; // an endpoint of another network
  const D4 = "203.0.113.20";
  const D6 = "2001:db8:77::20";
  const BE = [
    { ip4: "10.72.0.21", ip6: "fd72::21", mac: "02:00:00:00:72:21" },
    { ip4: "10.72.0.22", ip6: "fd72::22", mac: "02:00:00:00:72:22" },
  ];
  const OTHER = { ip4: "10.72.0.23", ip6: "fd72::23", mac: "02:00:00:00:72:23" }; // no backend
  const dsrVips = (): LbKernelVip[] =>
    [
      ...vips(),
      {
        id: 4,
        address: D4,
        port: 80,
        proto: "tcp" as const,
        size: 13,
        dsr: true,
        backends: BE.map((b, i) => ({
          id: 400 + i,
          address: b.ip4,
          port: 80,
          weight: 1,
          up: true,
          mac: b.mac,
          netId: 8,
        })),
      },
      {
        id: 5,
        address: D6,
        port: 443,
        proto: "tcp" as const,
        size: 13,
        dsr: true,
        backends: BE.map((b, i) => ({
          id: 500 + i,
          address: b.ip6,
          port: 443,
          weight: 1,
          up: true,
          mac: b.mac,
          netId: 8,
        })),
      },
    ].map(withTable);
  const asPort = (e: { ip4: string; ip6: string; mac: string }, net = 8, lan = false) =>
    obj.map("stm_ports").update(
      encodeIfindex(PORT),
      encodePort({
        netId: net,
        ip4: e.ip4,
        ip6: e.ip6,
        mac: e.mac,
        cidr4: "10.72.0.0/24",
        gw4: "10.72.0.1",
        cidr6: "fd72::/64",
        group: 0,
        ...(lan ? { lan: true } : {}),
      }),
    );
  beforeAll(() => {
    obj.map("stm_ifaces").update(encodeIfindex(LAN_IF), encodeIface({ kind: "uplink" }));
    obj.map("stm_ports").update(
      encodeIfindex(CLIENT_IF),
      encodePort({
        netId: 7,
        ip4: "10.48.0.9",
        mac: "02:00:00:00:48:09",
        cidr4: "10.48.0.0/24",
        gw4: "10.48.0.1",
        group: 0,
      }),
    );
  });
  beforeEach(() => lb.apply(dsrVips()));
  afterAll(() => {
    obj.map("stm_ifaces").delete(encodeIfindex(LAN_IF));
    obj.map("stm_ports").delete(encodeIfindex(CLIENT_IF));
    obj.map("stm_ports").delete(encodeIfindex(PORT));
    lb.apply(vips());
  });
  const hex = (m: string) => m.replaceAll(":", "");

  test("from outside (XDP), IPv4 and IPv6: only the destination MAC changes, to the backend the table names; no reply entry", () => {
    for (const [vip, dst, port] of [
      [4, D4, 80],
      [5, D6, 443],
    ] as const) {
      const ct = obj.map("stm_lb_ct");
      for (const k of [...ct.keys()]) ct.delete(k);
      const client = vip === 4 ? C4 : C6;
      const f = pkt({ src: client, dst, sport: 41000 + vip, dport: port });
      const r = xdp(f);
      expect(r.deltas.stm_drops).toEqual({});
      expect(r.retval).toBe(XDP_PASS);
      const want = expected(dsrVips()[vip - 1] as LbKernelVip, client, 41000 + vip);
      const be = BE.find((b) => b.ip4 === want || b.ip6 === want);
      expect(r.output.subarray(0, 6).toString("hex")).toBe(hex(be?.mac as string));
      expect(r.output.subarray(6).toString("hex")).toBe(f.subarray(6).toString("hex"));
      expect([...ct.keys()].length).toBe(1); // the flow, no reply entry: nothing to translate back
      // The flow's next packet: the same backend.
      expect(xdp(f).output.subarray(0, 6).toString("hex")).toBe(hex(be?.mac as string));
    }
  });

  test("an endpoint of another network reaching the VIP: its port sends the frame to the backend's MAC, addresses untouched", () => {
    obj.map("stm_ports").update(
      encodeIfindex(PORT),
      encodePort({
        netId: 7,
        ip4: "10.48.0.5",
        mac: "02:00:00:00:48:05",
        cidr4: "10.48.0.0/24",
        gw4: "10.48.0.1",
        group: 0,
      }),
    );
    const f = pkt({
      src: "10.48.0.5",
      dst: D4,
      sport: 42100,
      dport: 80,
      mac: ["02:00:00:00:48:05", "02:00:00:00:48:fe"],
    });
    const r = tcRun("stm_port_in", f, PORT);
    expect(r.deltas.stm_drops).toEqual({});
    expect(r.retval).toBe(TC_NEXT);
    const want = expected(dsrVips()[3] as LbKernelVip, "10.48.0.5", 42100);
    expect(r.output.subarray(0, 6).toString("hex")).toBe(hex(BE.find((b) => b.ip4 === want)?.mac as string));
    expect(r.output.subarray(6).toString("hex")).toBe(f.subarray(6).toString("hex"));
  });

  /** Opens the flow client:sport → vip:port through the load balancer (XDP): the backend it
   * gets, and the other. */
  const open = (client: string, vip: string, port: number, sport = 41000) => {
    const r = xdp(pkt({ src: client, dst: vip, sport, dport: port }));
    const mac = r.output.subarray(0, 6).toString("hex");
    const chosen = BE.find((b) => hex(b.mac) === mac) as (typeof BE)[0];
    return { chosen, other: BE.find((b) => b !== chosen) as (typeof BE)[0] };
  };

  test("the backend's port: its answer to the flow it was given passes, IPv4 and IPv6; not another's, not an unasked one", () => {
    for (const [src, sport] of [
      [D4, 80],
      [D6, 443],
    ] as const) {
      const dst = src === D4 ? C4 : C6;
      const { chosen, other } = open(dst, src, sport);
      const answer = (e: (typeof BE)[0], dport = 41000) => {
        asPort(e);
        const f = pkt({ src, dst, sport, dport, mac: [e.mac, "02:00:00:00:72:fe"] });
        const r = tcRun("stm_port_in", f, PORT);
        return { drops: Object.keys(r.deltas.stm_drops ?? {}), retval: r.retval, same: r.output.equals(f) };
      };
      expect({ src, ...answer(chosen) }).toEqual({ src, drops: [], retval: TC_NEXT, same: true });
      const spoof = [dropKey(src === D4 ? "ip4-spoof" : "ip6-spoof", PORT)];
      // The other backend answering this flow, and the chosen one answering a flow nobody opened.
      expect(answer(other).drops).toEqual(spoof);
      expect(answer(chosen, 41001).drops).toEqual(spoof);
    }
  });

  test("from the VIP otherwise: another port of the VIP's address, UDP, or a port that serves no DSR VIP is a spoof", () => {
    const spoof = (e: (typeof BE)[0], src: string, sport: number, udpToo = false) => {
      asPort(e);
      const dst = src.includes(":") ? C6 : C4;
      const f = pkt({ src, dst, sport, dport: 41000, udp: udpToo, mac: [e.mac, "02:00:00:00:72:fe"] });
      const r = tcRun("stm_port_in", f, PORT);
      return Object.keys(r.deltas.stm_drops ?? {});
    };
    const v4 = [dropKey("ip4-spoof", PORT)];
    const v6 = [dropKey("ip6-spoof", PORT)];
    expect(spoof(BE[0] as (typeof BE)[0], D4, 81)).toEqual(v4);
    expect(spoof(BE[0] as (typeof BE)[0], D4, 80, true)).toEqual(v4);
    expect(spoof(OTHER, D4, 80)).toEqual(v4);
    expect(spoof(OTHER, D6, 443)).toEqual(v6);
    expect(spoof(BE[0] as (typeof BE)[0], D6, 80)).toEqual(v6);
    // A NAT VIP's address is no source for anyone.
    expect(spoof(BE[0] as (typeof BE)[0], VIP4, 80)).toEqual(v4);
  });

  test("the backend's port admits the frames of the flows it was given, from the LAN and another network; nothing else", () => {
    const at = (e: { ip4: string; ip6: string; mac: string }, from: number, dst: string, dport: number) => {
      asPort(e);
      const src = from === LAN_IF ? (dst.includes(":") ? C6 : C4) : "10.48.0.9";
      const f = pkt({ src, dst, sport: 41000, dport, mac: [MAC_R, e.mac] });
      const r = tcRun("stm_port_out", f, PORT, from);
      return { drops: Object.keys(r.deltas.stm_drops ?? {}), retval: r.retval };
    };
    const ok = { drops: [], retval: TC_NEXT };
    const lanDirect = { drops: [dropKey("lan-direct", PORT)], retval: 2 };
    const otherNet = { drops: [dropKey("other-network", PORT)], retval: 2 };
    const f4 = open(C4, D4, 80);
    const f6 = open(C6, D6, 443);
    const fc = open("10.48.0.9", D4, 80);
    expect(at(f4.chosen, LAN_IF, D4, 80)).toEqual(ok);
    expect(at(f6.chosen, LAN_IF, D6, 443)).toEqual(ok);
    expect(at(fc.chosen, CLIENT_IF, D4, 80)).toEqual(ok);
    // Another backend's flow, another port of the VIP's address, the backend's own address, a
    // port serving no DSR VIP.
    expect(at(f4.other, LAN_IF, D4, 80)).toEqual(lanDirect);
    expect(at(f4.chosen, LAN_IF, D4, 22)).toEqual(lanDirect);
    expect(at(f4.chosen, LAN_IF, f4.chosen.ip4, 80)).toEqual(lanDirect);
    expect(at(OTHER, LAN_IF, D4, 80)).toEqual(lanDirect);
    expect(at(fc.other, CLIENT_IF, D4, 80)).toEqual(otherNet);
    expect(at(fc.chosen, CLIENT_IF, fc.chosen.ip4, 80)).toEqual(otherNet);
    expect(at(OTHER, CLIENT_IF, D4, 80)).toEqual(otherNet);
    // A network extended onto the LAN: the flow's frames from the LAN too; others of the VIP's
    // address are not the network's (other-network).
    const lan = (e: (typeof BE)[0], dport: number) => {
      asPort(e, 8, true);
      const r = tcRun(
        "stm_port_out",
        pkt({ src: C4, dst: D4, sport: 41000, dport, mac: [MAC_R, e.mac] }),
        PORT,
        LAN_IF,
      );
      return { drops: Object.keys(r.deltas.stm_drops ?? {}), retval: r.retval };
    };
    expect(lan(f4.chosen, 80)).toEqual(ok);
    expect(lan(f4.other, 80)).toEqual(otherNet);
    expect(lan(f4.chosen, 22)).toEqual(otherNet);
  });

  test("the tables: flags, the serving ports, no reply sources; a second apply writes nothing; NAT again clears them", () => {
    expect(lb.apply(dsrVips())).toEqual({ writes: 0, tables: 0 });
    expect([...obj.map("stm_lb_dsr").keys()].length).toBe(4);
    const bsrc = [...obj.map("stm_lb_bsrc").keys()].map((k) => bytesToIp(k.subarray(0, k[19] === 4 ? 4 : 16)));
    for (const b of BE) expect(bsrc).not.toContain(b.ip4);
    lb.apply(vips());
    expect([...obj.map("stm_lb_dsr").keys()].length).toBe(0);
  });
});

describe("flows keep their backend; a backend that goes takes its flows with it", () => {
  test("a backend added: every existing flow keeps its backend, some new flows go to the new one", () => {
    const flows = Array.from({ length: 64 }, (_, i) => ({ src: C4, dst: VIP4, sport: 43000 + i, dport: 80 }));
    const first = flows.map((o) => parse(xdp(pkt(o)).output).dst);
    lb.apply(vips({ extra: true }));
    expect(flows.map((o) => parse(xdp(pkt(o)).output).dst)).toEqual(first);
    const fresh = Array.from(
      { length: 64 },
      (_, i) => parse(xdp(pkt({ src: C4, dst: VIP4, sport: 44000 + i, dport: 80 })).output).dst,
    );
    expect(fresh).toContain("10.72.0.15");
  });

  test("a backend down: its flows get another at their next packet (counted), the others stay", () => {
    const flows = Array.from({ length: 64 }, (_, i) => ({ src: C4, dst: VIP4, sport: 45000 + i, dport: 80 }));
    const first = flows.map((o) => parse(xdp(pkt(o)).output).dst);
    const victim = first[0] as string;
    const id = (vips()[0] as LbKernelVip).backends.find((b) => b.address === victim)?.id as number;
    lb.apply(vips({ down: [id] }));
    const before = lb.stats().repick;
    const after = flows.map((o) => parse(xdp(pkt(o)).output).dst);
    const moved = first.filter((b) => b === victim).length;
    expect(after).not.toContain(victim);
    expect(after.filter((b, i) => b !== first[i]).length).toBe(moved);
    expect(lb.stats().repick).toBe(before + moved);
  });
});

describe("what is not a VIP's passes untouched; what a VIP cannot take is dropped", () => {
  test("another destination, and a VIP's address on a foreign family: untouched", () => {
    for (const f of [
      pkt({ src: C4, dst: "203.0.113.11", sport: 1, dport: 80 }),
      pkt({ src: C6, dst: "2001:db8:77::11", sport: 1, dport: 443 }),
    ]) {
      const r = xdp(f);
      expect(r.retval).toBe(XDP_PASS);
      expect(r.output.toString("hex")).toBe(f.toString("hex"));
      expect(r.deltas.stm_drops).toEqual({});
    }
  });

  test("from the LAN with a source inside a network: subnet-spoof at the uplink, before any translation", () => {
    const key = encodeSubnetKey("10.72.0.0/16");
    obj.map("stm_subnets").update(key, encodeSubnet({ netId: 9, lan: false }));
    try {
      const r = xdp(pkt({ src: "10.72.0.99", dst: VIP4, sport: 47000, dport: 80 }), "stm_uplink_in");
      expect(r.retval).toBe(XDP_DROP);
      expect(r.deltas.stm_drops).toEqual({ [dropKey("subnet-spoof")]: [1n] });
      expect([...obj.map("stm_lb_ct").keys()].length).toBe(0);
    } finally {
      obj.map("stm_subnets").delete(key);
    }
  });

  test("an unpublished port and protocol of a VIP's address: lb-unpublished", () => {
    for (const f of [
      pkt({ src: C4, dst: VIP4, sport: 1, dport: 81 }),
      pkt({ src: C4, dst: VIP4, sport: 1, dport: 80, udp: true }),
    ]) {
      const r = xdp(f);
      expect(r.retval).toBe(XDP_DROP);
      expect(r.deltas.stm_drops).toEqual({ [dropKey("lb-unpublished")]: [1n] });
    }
  });

  test("fragments to a VIP: lb-fragment (IPv4 first and later, IPv6 fragment header)", () => {
    const l4 = tcp({ src: C4, dst: VIP4, sport: 1, dport: 80, flags: 2 });
    const first = eth4(MAC_R, MAC_N, ipv4({ src: C4, dst: VIP4, proto: IPPROTO.TCP, id: 7, moreFragments: true }, l4));
    const later = eth4(MAC_R, MAC_N, ipv4({ src: C4, dst: VIP4, proto: IPPROTO.TCP, id: 7, fragOffset: 8 }, l4));
    const six = eth6(
      MAC_R,
      MAC_N,
      ipv6(
        { src: C6, dst: VIP6, next: 44 },
        Buffer.concat([fragHeader(IPPROTO.TCP, 0, true), tcp({ src: C6, dst: VIP6, sport: 1, dport: 443, flags: 2 })]),
      ),
    );
    for (const f of [first, later, six]) {
      const r = xdp(f);
      expect(r.retval).toBe(XDP_DROP);
      expect(r.deltas.stm_drops).toEqual({ [dropKey("lb-fragment")]: [1n] });
    }
  });

  test("no backend up: lb-no-backend, and no flow recorded", () => {
    lb.apply(vips({ none: true }));
    expect(lb.table(1)).toBeNull();
    const r = xdp(pkt({ src: C4, dst: VIP4, sport: 46000, dport: 80 }));
    expect(r.retval).toBe(XDP_DROP);
    expect(r.deltas.stm_drops).toEqual({ [dropKey("lb-no-backend")]: [1n] });
    expect([...obj.map("stm_lb_ct").keys()].length).toBe(0);
  });

  test("a second apply of the same state writes nothing; removing every VIP leaves no entry", () => {
    expect(lb.apply(vips())).toEqual({ writes: 0, tables: 0 });
    lb.apply([]);
    for (const m of ["stm_lb_vips", "stm_lb_backends", "stm_lb_hits"] as const)
      expect([...obj.map(m).keys()].length).toBe(0);
    for (const id of [1, 2, 3]) expect(lb.table(id)).toBeNull();
    const f = pkt({ src: C4, dst: VIP4, sport: 1, dport: 80 });
    expect(xdp(f).output.toString("hex")).toBe(f.toString("hex"));
  });
});
