/** Inside a fresh namespace: creates one of every link type Stratum uses through its own
 * rtnetlink code, changes them, and reports what its own listing sees. */
import * as nl from "../../../src/netlink";

export default function (args: { peerNs: string }) {
  nl.setLink("lo", { up: true });
  nl.createBridge("br0", { up: true, mtu: 1400 });
  nl.createVeth("v0", "v0peer", {
    peerNetns: args.peerNs,
    master: "br0",
    mac: "02:00:00:00:01:01",
    peerMac: "02:00:00:00:01:02",
  });
  nl.setBridgePort("v0", { learning: false, unicastFlood: false });
  nl.setLink("v0", { up: true, mtu: 1400 });
  nl.createTap("tap0", { master: "br0", mac: "02:00:00:00:02:01", up: true });
  nl.createVeth("up0", "up1", { up: true });
  nl.createMacvtap("mvt0", "up0", { mode: "bridge", mac: "02:00:00:00:03:01" });
  nl.addAddress("br0", "10.31.0.1/24");
  nl.addAddress("br0", "10.31.0.1/24", { replace: true }); // idempotent
  nl.addAddress("br0", "fd31::1/64", { noDad: true });
  nl.createVxlan("vx0", { vni: 4242, local: "10.31.0.1", port: 4789, gbp: true, master: "br0", up: true });
  nl.addRoute({ dst: "10.32.0.0/16", gateway: "10.31.0.254" });
  nl.addRoute({ dst: "10.32.0.0/16", gateway: "10.31.0.253" }, { replace: true });
  nl.addRoute({ dst: "fd32::/64", dev: "br0" });
  nl.setNeighbour("br0", "10.31.0.9", "02:00:00:00:09:09");
  nl.addFdb({ dev: "v0", mac: "02:00:00:00:01:02" });
  nl.addFdb({ dev: "vx0", mac: "00:00:00:00:00:00", dst: "10.31.0.2", table: "self" }, { append: true });
  nl.addFdb({ dev: "vx0", mac: "00:00:00:00:00:00", dst: "10.31.0.3", table: "self" }, { append: true });

  const errors: Record<string, string> = {};
  const capture = (k: string, f: () => unknown) => {
    try {
      f();
      errors[k] = "no error";
    } catch (e) {
      errors[k] = (e as Error).message;
    }
  };
  capture("duplicate", () => nl.createBridge("br0"));
  capture("badName", () => nl.createBridge("this-name-is-too-long"));
  capture("missingMaster", () => nl.setLink("v0", { master: "nope0" }));
  capture("badVni", () => nl.createVxlan("vx9", { vni: 1 << 24 }));
  capture("deleteMissing", () => nl.deleteLink("nope0"));

  const links = nl.listLinks();
  const byName = Object.fromEntries(links.map((l) => [l.name, l]));
  const result = {
    links: byName,
    addresses: nl.listAddresses({ dev: "br0" }).map((a) => a.cidr),
    routes: nl.listRoutes().map((r) => ({ dst: r.dst, gateway: r.gateway, protocol: r.protocol, oif: r.oif })),
    routes6: nl.listRoutes({ family: nl.NL.AF_INET6 }).map((r) => r.dst),
    neighbours: nl.listNeighbours({ dev: "br0" }).map((n) => ({ ip: n.ip, mac: n.mac, state: n.state })),
    fdbBridge: nl.listFdb({ dev: "v0" }).map((f) => ({ mac: f.mac, state: f.state, master: f.master })),
    fdbVxlan: nl.listFdb({ dev: "vx0" }).map((f) => ({ mac: f.mac, ip: f.ip })),
    errors,
    deletedTwice: [nl.deleteLinkIfExists("mvt0"), nl.deleteLinkIfExists("mvt0")],
  };
  nl.deleteAddress("br0", "fd31::1/64");
  nl.deleteRoute({ dst: "fd32::/64", dev: "br0" });
  nl.deleteFdb({ dev: "v0", mac: "02:00:00:00:01:02" });
  nl.deleteNeighbour("br0", "10.31.0.9");
  nl.setLink("v0", { master: null });
  nl.setLink("tap0", { netns: args.peerNs });
  return result;
}
