/** rtnetlink against the real kernel: a scenario creates and changes links, addresses,
 * routes, neighbours and FDB entries inside a namespace through Stratum's own code; the
 * test cross-checks each with iproute2's JSON output. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { NL, RTPROT_STRATUM } from "../../src/netlink";
import { Netns } from "../helpers/netns";

let ns: Netns;
let peer: Netns;
let r: any;

beforeAll(() => {
  ns = new Netns("nl");
  peer = new Netns("nlp");
  r = ns.scenario(join(import.meta.dir, "scenarios/netlink-links.ts"), { peerNs: peer.name });
});
afterAll(() => {
  ns?.destroy();
  peer?.destroy();
});

describe("links", () => {
  test("bridge, veth, tap, macvtap and vxlan exist with the kinds iproute2 reports", () => {
    const ip = Object.fromEntries(ns.ipJson(["-d", "link", "show"]).map((l: any) => [l.ifname, l]));
    expect(ip.br0?.linkinfo?.info_kind).toBe("bridge");
    expect(ip.v0?.linkinfo?.info_kind).toBe("veth");
    expect(ip.tap0).toBeUndefined(); // moved into the peer namespace at the end
    expect(ip.vx0?.linkinfo?.info_kind).toBe("vxlan");
    for (const name of ["br0", "v0", "vx0", "up0"]) expect(r.links[name]?.kind).toBe(ip[name]?.linkinfo?.info_kind);
    expect(r.links.tap0.kind).toBe("tun");
    expect(r.links.mvt0.kind).toBe("macvtap");
    expect(r.links.mvt0.macvlanMode).toBe(NL.MACVLAN_MODE_BRIDGE);
    expect(r.links.mvt0.link).toBe(r.links.up0.index);
  });

  test("MAC, MTU, up state and master were applied", () => {
    expect(r.links.v0).toMatchObject({ mac: "02:00:00:00:01:01", mtu: 1400, up: true, master: r.links.br0.index });
    expect(r.links.tap0).toMatchObject({ mac: "02:00:00:00:02:01", master: r.links.br0.index, up: true });
    expect(r.links.br0.mtu).toBe(1400);
    const v0 = ns.ipJson(["link", "show", "v0"])[0];
    expect(v0.master).toBeUndefined(); // released at the end of the scenario
  });

  test("the veth peer was created directly in the other namespace with its MAC", () => {
    const p = peer.ipJson(["link", "show", "v0peer"])[0];
    expect(p.address).toBe("02:00:00:00:01:02");
    expect(peer.ipJson(["link", "show", "tap0"])[0]?.ifname).toBe("tap0");
  });

  test("bridge port flags: learning and unicast flooding off", () => {
    expect(r.links.v0.bridgePort).toMatchObject({ learning: false, unicastFlood: false });
    expect(r.links.tap0.bridgePort).toMatchObject({ learning: true, unicastFlood: true });
  });

  test("vxlan options: VNI, port, local, no learning, GBP", () => {
    expect(r.links.vx0.vxlan).toEqual({
      vni: 4242,
      port: 4789,
      local: "10.31.0.1",
      learning: false,
      gbp: true,
      ttl: 0,
      link: undefined,
      external: false,
    });
    const ip = ns.ipJson(["-d", "link", "show", "vx0"])[0].linkinfo.info_data;
    expect(ip).toMatchObject({ id: 4242, port: 4789, local: "10.31.0.1", learning: false, gbp: true });
  });
});

describe("addresses, routes, neighbours, FDB", () => {
  test("addresses, v4 and v6", () => {
    expect(r.addresses).toContain("10.31.0.1/24");
    expect(r.addresses).toContain("fd31::1/64");
    const ip = ns.ipJson(["addr", "show", "br0"])[0].addr_info.map((a: any) => `${a.local}/${a.prefixlen}`);
    expect(ip).toContain("10.31.0.1/24");
    expect(ip).not.toContain("fd31::1/64"); // deleted at the end
  });

  test("routes carry Stratum's protocol and replace is idempotent", () => {
    const mine = r.routes.filter((x: any) => x.dst === "10.32.0.0/16");
    expect(mine).toEqual([
      { dst: "10.32.0.0/16", gateway: "10.31.0.253", protocol: RTPROT_STRATUM, oif: r.links.br0.index },
    ]);
    const ip = ns.ipJson(["route", "show", "10.32.0.0/16"]);
    expect(ip).toEqual([expect.objectContaining({ dst: "10.32.0.0/16", gateway: "10.31.0.253", dev: "br0" })]);
    expect(r.routes6).toContain("fd32::/64");
    expect(ns.ipJson(["-6", "route", "show", "fd32::/64"])).toEqual([]);
  });

  test("permanent neighbour entry", () => {
    expect(r.neighbours).toContainEqual({ ip: "10.31.0.9", mac: "02:00:00:00:09:09", state: NL.NUD_PERMANENT });
    expect(ns.ipJson(["neigh", "show", "dev", "br0"]).some((n: any) => n.dst === "10.31.0.9")).toBe(false);
  });

  test("static FDB entries on a bridge port and on the VXLAN device", () => {
    expect(r.fdbBridge).toContainEqual({ mac: "02:00:00:00:01:02", state: NL.NUD_NOARP, master: r.links.br0.index });
    const vx = r.fdbVxlan
      .filter((f: any) => f.mac === "00:00:00:00:00:00")
      .map((f: any) => f.ip)
      .sort();
    expect(vx).toEqual(["10.31.0.2", "10.31.0.3"]);
    const ip = JSON.parse(ns.execOk(["bridge", "-j", "fdb", "show", "dev", "vx0"]));
    expect(
      ip
        .filter((f: any) => f.mac === "00:00:00:00:00:00")
        .map((f: any) => f.dst)
        .sort(),
    ).toEqual(["10.31.0.2", "10.31.0.3"]);
  });
});

test("errors carry errno and context", () => {
  expect(r.errors.duplicate).toBe("create bridge br0: EEXIST (File exists)");
  expect(r.errors.badName).toContain("invalid interface name");
  expect(r.errors.missingMaster).toBe("link nope0 does not exist");
  expect(r.errors.badVni).toContain("outside 0..16777215");
  expect(r.errors.deleteMissing).toBe("delete link nope0: ENODEV (No such device)");
  expect(r.deletedTwice).toEqual([true, false]);
});

describe("cls_bpf filters", () => {
  test("the program id of a port's filter asked on Stratum's socket is libbpf's answer, in every state, one or many at a time", () => {
    const q = new Netns("nlq");
    try {
      const { states, ids } = q.scenario(join(import.meta.dir, "scenarios/cls-query.ts"));
      const both = (ingress: number, egress: number) => ({
        ingress: { netlink: ingress, libbpf: ingress, many: true },
        egress: { netlink: egress, libbpf: egress, many: true },
      });
      expect(ids.empty).toBeGreaterThan(0);
      expect(ids.drop).toBeGreaterThan(0);
      expect(states).toEqual({
        none: both(0, 0), // no clsact qdisc
        ingress: both(ids.empty, 0), // the qdisc, one filter
        both: both(ids.empty, ids.drop),
        egressOnly: both(0, ids.drop),
      });
    } finally {
      q.destroy();
    }
  });
});
