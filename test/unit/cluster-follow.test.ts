/** What a batch from the cluster asks of a node: the mirror says what it changed (networks
 * created, the networks and nodes of endpoints changed, before and after), and from that the
 * node runs a reconcile limited to those networks, a whole one when something may have to
 * leave its kernel, or none. */
import { expect, test } from "bun:test";
import fc from "fast-check";
import type { ClusterChange } from "../../src/cluster/cluster";
import { clusterWork, mergeServed, mergeWork, served } from "../../src/cluster/follow";
import { K, parseKey } from "../../src/cluster/keys";
import {
  PROFILE_KEY_SIZE,
  PROFILE_SIZE,
  writeProfile,
  writeProfileKey,
  writeProfileKeyU32,
  writeProfileOf,
} from "../../src/datapath/port-maps";
import { profileMac } from "../../src/model/network";
import { macToBytes } from "../../src/netlink/codec";
import { MirrorWriter } from "../../src/store/mirror";
import { SqliteStore } from "../../src/store/sqlite";

const enc = new TextEncoder();
let rev = 1;
const put = (key: string, v: unknown) => ({ key, value: enc.encode(JSON.stringify(v)), revision: ++rev });
const del = (key: string) => ({ key, value: null, revision: ++rev });
const net = (name: string, id: number, cidr: string, extra: Record<string, unknown> = {}) =>
  put(K.network(name), {
    id,
    vni: 0x10000 + id,
    createdAt: "2026-12-06T00:00:00Z",
    spec: { cidr, gateway: cidr.replace(/0\/24$/, "1"), ...extra },
  });
const ep = (name: string, network: string, i: number, node: string) =>
  put(K.endpoint(name), {
    name,
    network,
    ip: `10.9.0.${i}`,
    mac: `02:00:00:00:00:${i.toString(16).padStart(2, "0")}`,
    hostIndex: i,
    kind: "tap",
    hostIf: `t-${name}`,
    createdAt: "2026-12-06T00:00:00Z",
    node,
  });

function mirror() {
  const s = new SqliteStore(":memory:");
  return { s, w: new MirrorWriter(s, parseKey) };
}

test("the mirror says which networks and nodes a batch touched, and whether a network changed", () => {
  const { s, w } = mirror();
  w.apply([net("a", 1, "10.9.0.0/24"), net("b", 2, "10.8.0.0/24")]);
  expect([...w.effects.networks].sort()).toEqual(["a", "b"]);
  expect(w.effects.networkChanged).toBe(false);
  expect([...w.effects.kinds]).toEqual(["network"]);

  w.apply([ep("x", "a", 5, "node2")]);
  expect([...w.effects.networks]).toEqual(["a"]);
  expect([...w.effects.served]).toEqual(["a"]);
  expect([...w.effects.nodes]).toEqual(["node2"]);
  expect(w.effects.networkChanged).toBe(false);

  // A deleted endpoint: its network and node come from the row it had.
  w.apply([del(K.endpoint("x"))]);
  expect([...w.effects.networks]).toEqual(["a"]);
  expect([...w.effects.nodes]).toEqual(["node2"]);
  expect(s.getEndpoint("x")).toBeNull();

  // An endpoint that moved: both nodes.
  w.apply([ep("y", "a", 6, "node2")]);
  w.apply([ep("y", "a", 6, "node3")]);
  expect([...w.effects.nodes].sort()).toEqual(["node2", "node3"]);

  // A network changed or deleted: something may have to leave the kernel.
  w.apply([net("b", 2, "10.8.0.0/24", { mtu: 1400 })]);
  expect(w.effects.networkChanged).toBe(true);
  w.apply([del(K.network("b"))]);
  expect(w.effects.networkChanged).toBe(true);

  // Records and membership touch no network.
  w.apply([
    put(K.dns(1), { records: [] }),
    put(K.member("node9"), { name: "node9", address: "10.0.0.9", mgmtAddress: null, joinedAt: "x" }),
  ]);
  expect(w.effects.networks.size).toBe(0);
  expect([...w.effects.kinds].sort()).toEqual(["dns", "member"]);
  expect([...w.effects.served]).toEqual(["a"]); // network id 1's records: its servers, not its kernel

  // A batch the mirror already has changes nothing.
  const again = ep("z", "a", 7, "node2");
  w.apply([again]);
  expect(w.apply([again])).toBe(0);
  s.close();
});

test("a change's kernel work: limited to its networks, the firewall when it changed, whole when asked", () => {
  const c = (kinds: ClusterChange["kinds"], networks: string[] | "all", served: string[] | "all" = []) => ({
    kinds,
    networks,
    served,
  });
  expect(clusterWork(c(["network"], ["a"]))).toEqual({ networks: new Set(["a"]), firewall: true, nodes: false });
  expect(clusterWork(c(["endpoint"], ["a"]))).toEqual({ networks: new Set(["a"]), firewall: false, nodes: false });
  expect(clusterWork(c(["rules"], []))).toEqual({ networks: new Set(), firewall: true, nodes: false });
  // A node joining or restarting: the overlay's node addresses.
  expect(clusterWork(c(["member", "node"], []))).toEqual({ networks: new Set(), firewall: false, nodes: true });
  expect(clusterWork(c(["dns"], []))).toBeUndefined();
  expect(clusterWork(c(["network"], "all"))).toBe("all");

  // What the servers rebuild: the networks named, all after a listing, none for the rest.
  expect(served(c(["dns"], [], ["a"]))).toEqual(new Set(["a"]));
  expect(served(c(["network", "endpoint"], "all", "all"))).toBe("all");
  expect(served(c(["rules", "member"], []))).toBeUndefined();
  expect(mergeServed(new Set(["a"]), new Set(["b"]))).toEqual(new Set(["a", "b"]));
  expect(mergeServed(undefined, new Set(["b"]))).toEqual(new Set(["b"]));
  expect(mergeServed(new Set(["a"]), "all")).toBe("all");
  expect(mergeServed(new Set(["a"]), undefined)).toEqual(new Set(["a"]));

  const one = clusterWork(c(["endpoint"], ["a"]));
  const two = clusterWork(c(["block"], []));
  if (!one || !two) throw new Error("work expected");
  expect(mergeWork(one, two)).toEqual({ networks: new Set(["a"]), firewall: true, nodes: false });
  const three = clusterWork(c(["node"], []));
  if (!three) throw new Error("work expected");
  expect(mergeWork(one, three)).toEqual({ networks: new Set(["a"]), firewall: false, nodes: true });
  expect(mergeWork(undefined, one)).toEqual(one);
  expect(mergeWork(one, "all")).toBe("all");
  expect(mergeWork("all", two)).toBe("all");
});

test("profiles written by bytes are those of profileMac and writeProfileKey, for any network and host", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 0xffff }),
      fc.integer({ min: 0, max: 0xffffff }),
      fc.integer({ min: 0, max: 3 }),
      fc.integer({ min: 0, max: 0xffffffff }),
      (netId, index, flags, ip) => {
        const a = Buffer.alloc(PROFILE_SIZE);
        const b = Buffer.alloc(PROFILE_SIZE);
        writeProfile(a, 0, macToBytes(profileMac(netId, index)), flags);
        writeProfileOf(b, 0, netId, index, flags);
        expect(b).toEqual(a);
        const ka = Buffer.alloc(PROFILE_KEY_SIZE);
        const kb = Buffer.alloc(PROFILE_KEY_SIZE);
        const ip4 = Buffer.alloc(4);
        ip4.writeUInt32BE(ip);
        writeProfileKey(ka, 0, netId, ip4);
        writeProfileKeyU32(kb, 0, netId, ip);
        expect(kb).toEqual(ka);
      },
    ),
  );
});

test("a listing written in parts is one transaction: finished, what it lacks is gone; aborted, nothing changed", () => {
  const { s, w } = mirror();
  w.replaceAll([net("a", 1, "10.9.0.0/24"), ep("x", "a", 5, "node2")], ++rev, "/stratum/v1/");
  const before = w.revision;

  const aborted = w.beginListing();
  aborted.add([net("b", 2, "10.8.0.0/24")]);
  aborted.add([ep("y", "b", 6, "node3")]);
  aborted.abort();
  expect(s.listNetworks().map((n) => n.name)).toEqual(["a"]);
  expect(s.getEndpoint("y")).toBeNull();
  expect(w.revision).toBe(before);
  expect(() => aborted.add([])).toThrow("the listing is over");

  const l = w.beginListing();
  l.add([net("a", 1, "10.9.0.0/24"), net("b", 2, "10.8.0.0/24")]);
  l.add([ep("y", "b", 6, "node3")]); // x is not listed: it went while the node was away
  const r = l.finish(++rev, "/stratum/v1/");
  expect(r.deleted).toBe(1);
  expect(s.getEndpoint("x")).toBeNull();
  expect(s.getEndpoint("y")?.network).toBe("b");
  expect(w.revision).toBe(rev);
  // The store takes other writes again once the listing is over.
  w.apply([ep("z", "a", 7, "node2")]);
  expect(s.getEndpoint("z")).not.toBeNull();
  s.close();
});
