/** In a cluster a node's maps hold its own endpoints' ports, addresses and caps, not the other
 * nodes': the capacity check counts those only (else a cluster of 65,536 endpoints would
 * refuse every attach on every node). A single node counts every endpoint, as before. */
import { expect, test } from "bun:test";
import { validateCap } from "../../src/model/egress-cap";
import { hostAddress, profileMac, validateNetwork } from "../../src/model/network";
import { BRIDGE_LOCALS, inUse } from "../../src/services/capacity";
import { SqliteStore } from "../../src/store/sqlite";
import type { Store } from "../../src/store/store";

function world() {
  const s = new SqliteStore(":memory:");
  const n = s.createNetwork(validateNetwork({ name: "app", cidr: "10.1.0.0/24", gateway: "10.1.0.1" }));
  const claim = (name: string, i: number, node: string, capped = false) => {
    s.claimEndpoint({
      name,
      network: "app",
      ip: hostAddress(n.cidr, i),
      hostIndex: i,
      mac: profileMac(n.id, i),
      kind: "tap",
      hostIf: `t${name}`,
      node,
    });
    if (capped) s.setEndpointEgress(name, validateCap({ rate: 10_000_000 }));
  };
  claim("a1", 1, "a", true);
  claim("a2", 2, "a");
  claim("b1", 3, "b", true);
  claim("b2", 4, "b");
  claim("b3", 5, "b");
  return s;
}

const as = (s: SqliteStore, node: string | undefined): Store =>
  ({
    node,
    listNetworks: () => s.listNetworks(),
    listEndpoints: (n?: string, node?: string) => s.listEndpoints(n, node),
    claimedIndexes: (n: string) => s.claimedIndexes(n),
    endpointCount: (n: string) => s.endpointCount(n),
  }) as unknown as Store;

test("a cluster node counts its own endpoints' ports, addresses and caps; a single node counts all", () => {
  const s = world();
  const a = inUse(as(s, "a"));
  expect(a.stm_ports).toBe(2);
  expect(a.stm_local).toBe(BRIDGE_LOCALS + 1 + 2 * 3); // the gateway, and three per IPv4 endpoint
  expect(a.stm_shape_cfg).toBe(1);
  const b = inUse(as(s, "b"), ["stm_ports"]);
  expect(b.stm_ports).toBe(3);
  const single = inUse(as(s, undefined), ["stm_ports", "stm_local"]);
  expect(single.stm_ports).toBe(5);
  expect(single.stm_local).toBe(BRIDGE_LOCALS + 1 + 5 * 3);
  // Profiles are every address of every network, wherever its endpoint runs.
  expect(inUse(as(s, "a")).stm_profiles).toBe(inUse(as(s, undefined)).stm_profiles);
  s.close();
});
