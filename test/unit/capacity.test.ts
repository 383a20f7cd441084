/** Capacity checks of the network and endpoint services on the real port object: a request that would overfill
 * stm_profiles, stm_local, stm_ports or the egress cap maps fails with CAPACITY and a message
 * naming the map, and the store and the kernel (links, bridge addresses and FDB, programs,
 * every map) are exactly as before; a request that fits goes through, up to the map's last
 * entry (so the counts are the kernel's, not off by one). Maps are sized down with
 * BpfObject.setMaxEntries so a few entries fill them; one test runs the real sizes. The
 * agent's side lives in a namespace of its own with its own cnv-user-br0, endpoints in a
 * second one; both, and each pin root, go when a test ends, pass or fail. */
import { afterAll, afterEach, expect, test } from "bun:test";
import { type PinnedMap, PortDatapath } from "../../src/datapath/port-datapath";
import { encodeIface, encodeIfindex } from "../../src/datapath/port-maps";
import { StratumError } from "../../src/errors";
import { validateCap } from "../../src/model/egress-cap";
import { linkLocal, type NetworkSpec, validateNetwork } from "../../src/model/network";
import { BRIDGE_PORTS_MAX, USER_BRIDGE } from "../../src/model/topology";
import { getLink, Rtnl } from "../../src/netlink";
import { BRIDGE_LOCALS, endpointEntries, networkEntries, ROOM_MAPS } from "../../src/services/capacity";
import { endpointLocals } from "../../src/services/port-config";
import { Services } from "../../src/services/services";
import { SqliteStore } from "../../src/store/sqlite";
import { inNetns } from "../../src/sys/os";
import { FakeFwKernel } from "../helpers/fake-fw";
import { kernelState } from "../helpers/kernel-state";
import { Netns, PinRoot } from "../helpers/netns";

/** The port object with some maps sized down, opened and pinned as the agent does. libbpf's
 * tc calls act in the calling thread's namespace, so ports attach inside the agent's
 * namespace for that one synchronous call (as Rtnl opens its socket there). */
class SizedDatapath extends PortDatapath {
  constructor(
    pinRoot: string,
    sizes: Partial<Record<PinnedMap, number>>,
    readonly netns: string,
  ) {
    super(pinRoot, { maxEntries: sizes });
  }

  load(): void {
    this.open();
  }

  override attachPort(...a: Parameters<PortDatapath["attachPort"]>): void {
    inNetns(this.netns, () => super.attachPort(...a));
  }

  override detachPort(...a: Parameters<PortDatapath["detachPort"]>): void {
    inNetns(this.netns, () => super.detachPort(...a));
  }
}

interface World {
  store: SqliteStore;
  dp: PortDatapath;
  svc: Services;
  agent: Netns;
  eps: Netns;
  pin: PinRoot;
}

/** What the tests made, undone in reverse; each thing is registered as soon as it exists. */
const made: Array<() => void> = [];
function keep<T>(thing: T, undo: (t: T) => void): T {
  made.push(() => undo(thing));
  return thing;
}

/** A store, a datapath (`sizes` applied; the real one with `real`), and the namespaces, with the
 * bridge's own addresses marked local as reconcile does. */
function world(sizes: Partial<Record<PinnedMap, number>>, real = false): World {
  const agent = keep(new Netns("capa"), (n) => n.destroy());
  const eps = keep(new Netns("cape"), (n) => n.destroy());
  const pin = keep(new PinRoot("cap"), (p) => p.destroy());
  agent.execOk(["ip", "link", "add", USER_BRIDGE, "type", "bridge"]);
  agent.execOk(["ip", "link", "set", USER_BRIDGE, "up"]);
  const nl = keep(new Rtnl({ netns: agent.name }), (r) => r.close());
  const store = keep(new SqliteStore(":memory:"), (s) => s.close());
  let dp: PortDatapath;
  if (real) {
    dp = keep(new PortDatapath(pin.path), (d) => d.close());
    dp.open();
  } else {
    const sized = keep(new SizedDatapath(pin.path, sizes, agent.path), (d) => d.close());
    sized.load();
    dp = sized;
  }
  const br = getLink(USER_BRIDGE, nl);
  if (!br?.mac) throw new Error(`${USER_BRIDGE} has no MAC`);
  for (const a of [br.mac, linkLocal(br.mac)]) dp.setLocal(a, br.index, 0);
  return { store, dp, svc: new Services(store, dp, nl), agent, eps, pin };
}

function teardown(): void {
  delete process.env.STRATUM_BRIDGE_PORTS;
  for (const undo of made.splice(0).reverse()) {
    try {
      undo();
    } catch (e) {
      console.error(`cleanup: ${(e as Error).message}`);
    }
  }
}
afterEach(teardown);
afterAll(teardown);

function entries(dp: PortDatapath, m: PinnedMap): number {
  let n = 0;
  for (const _ of dp.map(m).keys()) n++;
  return n;
}

/** Everything a refused request must leave alone. */
function snapshot(w: World): unknown {
  const networks = w.store.listNetworks();
  return {
    networks,
    endpoints: w.store.listEndpoints(),
    kernel: kernelState(w.agent, w.pin.path, new Map(networks.map((n) => [n.id, n.name]))),
    endpointLinks: w.eps.ipJson(["link", "show"]).map((l: { ifname: string }) => l.ifname),
    // kernelState leaves buckets out (their fill moves with traffic); their number must not.
    entries: Object.fromEntries(ROOM_MAPS.map((m) => [m, entries(w.dp, m)])),
  };
}

/** `fn` fails with CAPACITY and exactly `message`, and changes nothing. */
function refused(w: World, fn: () => unknown, message: string): void {
  const before = snapshot(w);
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(StratumError);
  expect({ code: (err as StratumError).code, message: (err as StratumError).message }).toEqual({
    code: "CAPACITY",
    message,
  });
  expect(snapshot(w)).toEqual(before);
}

const CAP = validateCap({ rate: 100_000_000 });
const CAP2 = validateCap({ rate: 200_000_000 });
const net = (name: string, cidr: string, extra: Partial<NetworkSpec> = {}): NetworkSpec =>
  ({ name, cidr, gateway: cidr.replace(/0\/\d+$/, "1"), ...extra }) as NetworkSpec;
const dual = (name: string, i: number, extra: Partial<NetworkSpec> = {}) =>
  net(name, `10.${i}.0.0/24`, { cidr6: `fd00:${i}::/64`, gateway6: `fd00:${i}::1`, ...extra });

test("network profiles fit beside every other network's, to the last entry of stm_profiles", () => {
  const w = world({ stm_profiles: 300 });
  w.svc.networks.create(net("a", "10.1.0.0/24")); // 254 profiles
  refused(
    w,
    () => w.svc.networks.create(net("b", "10.2.0.0/26")),
    "create network b: the endpoint profile table stm_profiles holds 300; 254 are in use and 62 more do not fit: nothing was changed",
  );
  w.svc.networks.create(net("c", "10.3.0.0/27")); // 30
  w.svc.networks.create(net("d", "10.4.0.0/28")); // 14
  w.svc.networks.create(net("e", "10.5.0.0/30")); // 2: 300, full
  expect(entries(w.dp, "stm_profiles")).toBe(300);
  refused(
    w,
    () => w.svc.networks.create(net("f", "10.6.0.0/30")),
    "create network f: the endpoint profile table stm_profiles holds 300; 300 are in use and 2 more do not fit: nothing was changed",
  );
});

test("a network's firewall scope must fit in stm_fw_scopes beside the global scope's", () => {
  const w = world({ stm_fw_scopes: 3 });
  w.svc.networks.create(net("a", "10.1.0.0/24"));
  w.svc.networks.create(net("b", "10.2.0.0/24")); // global, a, b: full
  refused(
    w,
    () => w.svc.networks.create(net("c", "10.3.0.0/24")),
    "create network c: the firewall scope table stm_fw_scopes holds 3; 3 are in use and 1 more do not fit: nothing was changed",
  );
  w.svc.networks.delete("b");
  w.svc.networks.create(net("c", "10.3.0.0/24"));
});

test("a network's gateways take stm_local; a cap its bucket and a source prefix per subnet", () => {
  const w = world({ stm_local: BRIDGE_LOCALS + 5, stm_shape_src: 2, stm_shape_cfg: 3, stm_shape_state: 3 });
  w.svc.networks.create(dual("a", 1, { egress: CAP })); // 2 gateways, 1 cap, 2 sources
  w.svc.networks.create(dual("b", 2)); // 2 gateways
  refused(
    w,
    () => w.svc.networks.create(dual("c", 3)),
    "create network c: the local address table stm_local holds 7; 6 are in use and 2 more do not fit: nothing was changed",
  );
  refused(
    w,
    () => w.svc.networks.create(net("c", "10.3.0.0/24", { egress: CAP })),
    "create network c: the capped source prefix table stm_shape_src holds 2; 2 are in use and 1 more do not fit: nothing was changed",
  );
  refused(
    w,
    () => w.svc.networks.set("b", { egress: CAP }),
    "set network b: the capped source prefix table stm_shape_src holds 2; 2 are in use and 2 more do not fit: nothing was changed",
  );
  w.svc.networks.create(net("c", "10.3.0.0/24")); // 1 gateway: stm_local full
  expect(entries(w.dp, "stm_local")).toBe(BRIDGE_LOCALS + 5);
  // A cap changed in place takes nothing more; removed, it makes room for another.
  w.svc.networks.set("a", { egress: CAP2 });
  w.svc.networks.set("a", { egress: null });
  w.svc.networks.set("b", { egress: CAP });
  expect(w.store.getNetwork("b")?.egress?.rate).toBe(CAP.rate);
  expect([entries(w.dp, "stm_shape_cfg"), entries(w.dp, "stm_shape_src")]).toEqual([1, 2]);
});

test("attach: an endpoint's local addresses must fit in stm_local; a refused attach creates no interface", () => {
  const w = world({ stm_local: BRIDGE_LOCALS + 1 + 3 + 3 });
  w.svc.networks.create(net("a", "10.1.0.0/24"));
  w.svc.endpoints.attach({ network: "a", name: "e1", netns: w.eps.name, ifname: "eth1" });
  w.svc.endpoints.attach({ network: "a", name: "e2", netns: w.eps.name, ifname: "eth2" }); // stm_local full
  expect(entries(w.dp, "stm_local")).toBe(BRIDGE_LOCALS + 7);
  refused(
    w,
    () => w.svc.endpoints.attach({ network: "a", name: "e3", netns: w.eps.name, ifname: "eth3" }),
    "attach e3 to a: the local address table stm_local holds 9; 9 are in use and 3 more do not fit: nothing was changed",
  );
});

test("attach: a port must fit in stm_ports; a detach makes room again", () => {
  const w = world({ stm_ports: 1 });
  w.svc.networks.create(net("a", "10.1.0.0/24"));
  w.svc.endpoints.attach({ network: "a", name: "e1", netns: w.eps.name, ifname: "eth1" });
  refused(
    w,
    () => w.svc.endpoints.attach({ network: "a", name: "e2", netns: w.eps.name, ifname: "eth2" }),
    "attach e2 to a: the port table stm_ports holds 1; 1 are in use and 1 more do not fit: nothing was changed",
  );
  w.svc.endpoints.detach("a", "e1");
  w.svc.endpoints.attach({ network: "a", name: "e2", netns: w.eps.name, ifname: "eth2" });
  expect(w.store.listEndpoints().map((e) => e.name)).toEqual(["e2"]);
  expect(entries(w.dp, "stm_ports")).toBe(1);
});

test("a Linux bridge takes 1,023 ports: the kernel refuses the next (EXFULL)", () => {
  const w = world({});
  const batch = ["link add br-limit type bridge"];
  for (let i = 0; i <= BRIDGE_PORTS_MAX; i++)
    batch.push(`link add lv${i} type veth peer name lp${i}`, `link set lv${i} master br-limit`);
  const r = w.agent.exec(["ip", "-force", "-batch", "-"], { input: batch.join("\n") });
  expect(r.stderr).toContain("Exchange full");
  expect(w.agent.ipJson(["link", "show", "master", "br-limit"]).length).toBe(BRIDGE_PORTS_MAX);
});

test("attach: the node's bridges must have a port free beside the links and the uplink's and overlay's", () => {
  // Bridges of 8 ports: cnv-user-br0 (3 endpoints, 3 links, 2 kept for the uplink and the
  // overlay) and 3 extensions (7 endpoints and a link each): 24 endpoints.
  process.env.STRATUM_BRIDGE_PORTS = "8";
  const w = world({});
  w.svc.networks.create(net("a", "10.1.0.0/21"));
  // 24 endpoints in the store (their ports counted as the agent counts them).
  for (let i = 0; i < 24; i++)
    w.store.claimEndpoint({
      name: `s${i}`,
      network: "a",
      ip: `10.1.${(i + 2) >> 8}.${(i + 2) & 255}`,
      mac: `02:00:00:01:${((i + 2) >> 8).toString(16).padStart(2, "0")}:${((i + 2) & 255).toString(16).padStart(2, "0")}`,
      hostIndex: i + 2,
      kind: "veth",
      hostIf: `stms${i}`,
    });
  refused(
    w,
    () => w.svc.endpoints.attach({ network: "a", name: "e1", netns: w.eps.name, ifname: "eth1" }),
    "attach e1 to a: this node holds at most 24 endpoints (cnv-user-br0 and 3 extension bridges of 8 ports each, less the links between them and 2 ports kept for the uplink and the overlay); 24 are attached: nothing was changed",
  );
  // Whether an uplink is there or not: its port is kept either way.
  w.dp.map("stm_ifaces").update(encodeIfindex(4242), encodeIface({ kind: "uplink" }));
  expect(() => w.svc.endpoints.attach({ network: "a", name: "e1", netns: w.eps.name, ifname: "eth1" })).toThrow(
    "this node holds at most 24 endpoints",
  );
  w.dp.map("stm_ifaces").delete(encodeIfindex(4242));
  // One endpoint fewer: the next fits.
  w.store.releaseEndpoint("s23");
  w.svc.endpoints.attach({ network: "a", name: "e1", netns: w.eps.name, ifname: "eth1" });
  expect(w.store.getEndpoint("e1")?.network).toBe("a");
});

test("egress caps: one more must fit in stm_shape_state as well as stm_shape_cfg", () => {
  // stm_shape passes every packet of a cap it has no bucket for: more caps than buckets is never configured.
  const w = world({ stm_shape_cfg: 2, stm_shape_state: 1 });
  w.svc.networks.create(net("a", "10.1.0.0/24", { egress: CAP }));
  w.svc.endpoints.attach({ network: "a", name: "e1", netns: w.eps.name, ifname: "eth1" });
  refused(
    w,
    () => w.svc.endpoints.setEgress("e1", CAP),
    "set endpoint e1: the egress bucket table stm_shape_state holds 1; 1 are in use and 1 more do not fit: nothing was changed",
  );
  w.svc.networks.set("a", { egress: null });
  w.svc.endpoints.setEgress("e1", CAP);
  w.svc.endpoints.setEgress("e1", CAP2); // in place: no more room needed
  expect(w.store.getEndpoint("e1")?.egress?.rate).toBe(CAP2.rate);
  expect(entries(w.dp, "stm_shape_cfg")).toBe(1);
  refused(
    w,
    () => w.svc.networks.set("a", { egress: CAP }),
    "set network a: the egress bucket table stm_shape_state holds 1; 1 are in use and 1 more do not fit: nothing was changed",
  );
  // Removing a cap needs no room.
  w.svc.endpoints.setEgress("e1", null);
  expect(entries(w.dp, "stm_shape_cfg")).toBe(0);
});

test("egress caps: a cap table smaller than the bucket table is named itself", () => {
  const w = world({ stm_shape_cfg: 1, stm_shape_state: 2 });
  w.svc.networks.create(net("a", "10.1.0.0/24", { egress: CAP }));
  refused(
    w,
    () => w.svc.networks.create(net("b", "10.2.0.0/24", { egress: CAP })),
    "create network b: the egress cap table stm_shape_cfg holds 1; 1 are in use and 1 more do not fit: nothing was changed",
  );
});

test("real sizes: the checks read the maps' max_entries and count every stored network", () => {
  const w = world({}, true);
  expect(ROOM_MAPS.map((m) => w.dp.map(m).info.maxEntries)).toEqual([
    1 << 20,
    1 << 18,
    65536,
    65536,
    65536,
    65536,
    65536,
  ]);
  // Sixteen /16 networks in the store (their profiles left out of the kernel: the count is the store's).
  for (let i = 0; i < 16; i++) w.store.createNetwork(validateNetwork(net(`n${i}`, `10.${i}.0.0/16`)));
  refused(
    w,
    () => w.svc.networks.create(net("big", "10.16.0.0/16")),
    "create network big: the endpoint profile table stm_profiles holds 1048576; 1048544 are in use and 65534 more do not fit: nothing was changed",
  );
  w.svc.networks.create(net("small", "10.16.0.0/27")); // 30: two entries to spare
  expect(entries(w.dp, "stm_profiles")).toBe(30);
});

test("the counts are what the service writes: endpointLocals and gateways", () => {
  const svc = new Services(
    keep(new SqliteStore(":memory:"), (s) => s.close()),
    {} as PortDatapath,
    {} as Rtnl,
    () => {},
    new FakeFwKernel(),
  );
  for (const n of [validateNetwork(net("v4", "10.1.0.0/24")), validateNetwork(dual("v6", 2))]) {
    const ep = { ip: n.gateway.replace(/1$/, "9"), mac: "02:00:01:00:00:09" };
    expect(endpointEntries({}, n).stm_local).toBe(endpointLocals(ep, { ...n, id: 1, createdAt: "" }).length);
    expect(networkEntries(n).stm_local).toBe(svc.networks.gateways(n).length);
  }
});
