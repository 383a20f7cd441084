/** Gateway groups in a real etcd, without agents: a group is created once (a node whose mirror
 * is behind is checked again against what etcd holds: a name or VIP taken is refused), its
 * heartbeat key is kept in etcd only, the holder's record is mirrored with its revision as the
 * epoch while the heartbeat key never is, a full listing keeps both, and a delete takes the
 * group, its holder record and its heartbeat key at once. */
import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import { Cluster } from "../../src/cluster/cluster";
import { EtcdClient } from "../../src/cluster/etcd-client";
import { HA_BEAT_PREFIX, K, PREFIX } from "../../src/cluster/keys";
import { StratumError } from "../../src/errors";
import { validateNetwork } from "../../src/model/network";
import { SqliteStore } from "../../src/store/sqlite";
import { EtcdServer } from "../helpers/etcd-server";

let etcd: EtcdServer;
let client: EtcdClient;
const open: Cluster[] = [];
const dec = new TextDecoder();

beforeAll(async () => {
  etcd = await EtcdServer.start();
  client = new EtcdClient({ endpoints: [etcd.url] });
});
afterEach(async () => {
  for (const c of open.splice(0)) {
    await c.stop();
    c.store.mirror.close();
  }
  await client.delete(PREFIX, { prefix: true });
  await client.delete(HA_BEAT_PREFIX, { prefix: true });
});
afterAll(() => {
  client.close();
  etcd.destroy();
});

const quiet = () => {};
async function node(name: string, o: { start?: boolean } = {}): Promise<Cluster> {
  const c = await Cluster.open(new SqliteStore(":memory:"), {
    endpoints: [etcd.url],
    nodeName: name,
    nodeAddress: `10.99.0.${open.length + 1}`,
    version: "test",
    leaseTtl: 2,
    log: quiet,
  });
  open.push(c);
  if (o.start !== false) c.start(quiet);
  return c;
}

async function until<T>(what: string, fn: () => T | null | undefined | false, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}

function refusal(fn: () => unknown): { code: string; message: string } | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    if (!(e instanceof StratumError)) throw e;
    return { code: e.code, message: e.message };
  }
}

/** Node a (which makes the cluster), and two gateway nodes the cluster knows (their member
 * records, whatever runs), in a's mirror. */
async function first(): Promise<Cluster> {
  const a = await node("a");
  for (const n of ["gw1", "gw2"])
    await client.put(
      K.member(n),
      JSON.stringify({ name: n, address: "10.99.0.9", mgmtAddress: null, joinedAt: "2026-12-06T09:00:00.000Z" }),
    );
  await until("the members on a", () => a.nodes().filter((n) => n.name.startsWith("gw")).length === 2);
  return a;
}

test("created once, checked again by a node whose mirror is behind; the key stays in etcd", async () => {
  const a = await first();
  // b and c list now and watch nothing: their mirrors will not see north being created.
  const b = await node("b", { start: false });
  const c = await node("c", { start: false });
  const spec = { name: "north", vips: ["192.0.2.10", "2001:db8::10"], nodes: ["gw1", "gw2"] };
  const g = a.createGatewayGroup({ ...spec, priority: { gw1: 200 } });
  expect(g).toMatchObject({
    name: "north",
    vips: { ipv4: "192.0.2.10", ipv6: "2001:db8::10" },
    priority: { gw1: 200, gw2: 100 },
    preempt: true,
    advertIntervalMs: 100,
  });
  expect(g).not.toHaveProperty("key");
  const kv = await client.get(K.gatewayGroup("north"));
  const stored = JSON.parse(dec.decode(kv?.value)) as { key: string; createdAt: string };
  expect(Buffer.from(stored.key, "base64")).toHaveLength(32);
  expect(stored.createdAt).toBe(g.createdAt);
  // In a's mirror at once, with the key (the HA engine needs it), at etcd's revision.
  expect(a.gatewayGroups()).toEqual([{ ...g, key: stored.key }]);
  expect(a.writer.get(K.gatewayGroup("north"))?.revision).toBe(kv?.modRevision as number);

  // b has not seen north: the VIP is checked again against what etcd holds.
  expect(b.gatewayGroups()).toEqual([]);
  expect(refusal(() => b.createGatewayGroup({ ...spec, name: "south", vips: ["192.0.2.10"] }))).toEqual({
    code: "CONFLICT",
    message: "--vip 192.0.2.10 is already gateway group north's",
  });
  expect(b.gatewayGroups().map((x) => x.name)).toEqual(["north"]);
  // c has not seen it either: the name is decided once, in etcd.
  expect(refusal(() => c.createGatewayGroup({ ...spec, vips: ["192.0.2.99"] }))).toEqual({
    code: "CONFLICT",
    message: "gateway group north already exists",
  });
  expect((await client.get(K.gatewayGroup("north")))?.modRevision).toBe(kv?.modRevision as number);
  // A group that takes nothing of north's goes in from the stale node too.
  expect(b.createGatewayGroup({ ...spec, name: "south", vips: ["198.51.100.10"] }).name).toBe("south");
  await until("south on a", () => a.gatewayGroups().length === 2);

  // A VIP in a network's subnet, a node the cluster does not know.
  a.store.createNetwork(validateNetwork({ name: "app", cidr: "10.20.0.0/24", gateway: "10.20.0.1" }));
  expect(refusal(() => a.createGatewayGroup({ ...spec, name: "east", vips: ["10.20.0.7"] }))?.message).toBe(
    "--vip 10.20.0.7 is inside network app: a VIP is a north-side address (on the uplink's LAN)",
  );
  expect(
    refusal(() => a.createGatewayGroup({ ...spec, name: "east", vips: ["198.51.100.20"], nodes: ["gw1", "b"] })),
  ).toEqual({
    code: "INVALID",
    message: "--nodes: b is not a node of this cluster (cenvero-str-ctl node list shows them)",
  });
});

test("the holder's record is mirrored with its epoch; the heartbeat key never is; a listing keeps both groups and holders", async () => {
  const a = await first();
  a.createGatewayGroup({ name: "north", vips: ["192.0.2.10"], nodes: ["gw1", "gw2"] });
  const holder = { node: "gw1", since: "2026-12-06T09:00:01.000Z", why: "no node held the lease" };
  const { revision } = await client.put(K.gatewayActive("north"), JSON.stringify(holder));
  await client.put(K.haBeat("north"), "beat");
  expect(await until("the holder on a", () => a.gatewayActive("north"))).toEqual({ ...holder, epoch: revision });
  // Something after the beat went through the watch: the beat did not.
  const { revision: later } = await client.put(K.gatewayActive("north"), JSON.stringify({ ...holder, node: "gw2" }));
  await until("the new holder on a", () => a.gatewayActive("north")?.epoch === later);
  expect(a.writer.get(K.haBeat("north"))).toBeUndefined();
  expect(a.writer.keys("/stratum/ha/")).toEqual([]);

  // A full listing: the groups and holders are listed again, nothing of them removed.
  const r = await a.resync();
  expect(r.deleted).toBe(0);
  expect(a.gatewayGroups().map((g) => g.name)).toEqual(["north"]);
  expect(a.gatewayActive("north")).toEqual({ ...holder, node: "gw2", epoch: later });
  expect(a.writer.get(K.haBeat("north"))).toBeUndefined();
  // A node that joins lists them too.
  const b = await node("b", { start: false });
  expect(b.gatewayActive("north")?.epoch).toBe(later);
  expect(b.gatewayGroups()).toEqual(a.gatewayGroups());
});

test("delete takes the group, its holder record and its heartbeat key at once; a group made again starts clean", async () => {
  const a = await first();
  const b = await node("b", { start: false });
  a.createGatewayGroup({ name: "north", vips: ["192.0.2.10"], nodes: ["gw1", "gw2"] });
  await client.put(
    K.gatewayActive("north"),
    JSON.stringify({ node: "gw1", since: "2026-12-06T09:00:01.000Z", why: "x" }),
  );
  await client.put(K.haBeat("north"), "beat");
  await until("the holder on a", () => a.gatewayActive("north"));
  // b's mirror never saw north: the delete is etcd's to decide.
  b.deleteGatewayGroup("north");
  for (const key of [K.gatewayGroup("north"), K.gatewayActive("north"), K.haBeat("north")])
    expect({ key, kv: await client.get(key) }).toEqual({ key, kv: undefined });
  await until("north gone from a", () => a.gatewayGroups().length === 0 && a.gatewayActive("north") === null);
  expect(refusal(() => b.deleteGatewayGroup("north"))).toEqual({
    code: "NOT_FOUND",
    message: "no gateway group north",
  });

  // A holder record left behind (written as the group went) goes when the group is made again.
  await client.put(
    K.gatewayActive("north"),
    JSON.stringify({ node: "gw2", since: "2026-12-06T09:00:02.000Z", why: "y" }),
  );
  await client.put(K.haBeat("north"), "beat");
  await until("the stale holder on a", () => a.gatewayActive("north"));
  a.createGatewayGroup({ name: "north", vips: ["192.0.2.10"], nodes: ["gw1", "gw2"] });
  expect(a.gatewayActive("north")).toBeNull();
  expect(await client.get(K.gatewayActive("north"))).toBeUndefined();
  expect(await client.get(K.haBeat("north"))).toBeUndefined();
});
