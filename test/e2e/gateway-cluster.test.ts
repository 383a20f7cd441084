/** A gateway in a cluster: node1 of a two-node lab runs with --gateway and peers with BIRD 2 in a
 * router namespace; a network created through node2's API reaches BIRD's RIB through node1's
 * speaker (the cluster's change feed), and its delete on node2 withdraws it. node2 keeps BGP
 * settings of its own and, not being a gateway, runs no session. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bird, type Peer } from "../helpers/bgp-peers";
import { Lab, type LabNode, until } from "../helpers/lab";
import { Netns, run } from "../helpers/netns";

const GW4 = "10.94.0.1";
const RT4 = "10.94.0.2";

let lab: Lab;
let n1: LabNode;
let n2: LabNode;
let rt: Netns;
let dir: string;
let peer: Peer;

beforeAll(async () => {
  lab = await Lab.create({ nodes: 2, tag: "gwc" });
  n1 = lab.node(1);
  n2 = lab.node(2);
  rt = new Netns("gcr");
  dir = mkdtempSync(join(tmpdir(), "stm-gwc-"));
  run(["ip", "-n", n1.ns.name, "link", "add", "rtr0", "type", "veth", "peer", "name", "gw0", "netns", rt.name]);
  n1.ns.execOk(["ip", "addr", "add", `${GW4}/24`, "dev", "rtr0"]);
  n1.ns.execOk(["ip", "link", "set", "rtr0", "up"]);
  rt.execOk(["ip", "addr", "add", `${RT4}/24`, "dev", "gw0"]);
  rt.execOk(["ip", "link", "set", "gw0", "up"]);
  peer = bird({ rt, dir, routerAddress: RT4, speakerAddress: GW4, speakerAs: 65001, peerAs: 65000 });
  await peer.start();
  await n1.start([...n1.clusterArgs(), "--gateway"]);
  await n2.start(n2.clusterArgs());
}, 90_000);

afterAll(async () => {
  await peer?.stop();
  lab?.destroy();
  rt?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("a network made on node2 reaches the router through node1's speaker, and leaves it", async () => {
  expect(n1.cli("bgp", "config", "--asn", "65001").code).toBe(0);
  expect(n1.cli("bgp", "peer", "add", "tor1", "--address", RT4, "--asn", "65000").code).toBe(0);
  await until("established", () => peer.established(), 20_000);

  const r = n2.cli("network", "create", "--name", "far", "--cidr", "10.66.0.0/24", "--gateway", "10.66.0.1");
  expect(r.code).toBe(0);
  await until("BIRD has node2's network", () => peer.routes()["10.66.0.0/24"] === GW4, 15_000);

  // node2 keeps settings of its own, and runs no session: it is no gateway.
  expect(n2.json("bgp", "config", "--asn", "65002")).toMatchObject({ asn: 65002, gateway: false, running: false });
  expect(n2.cli("bgp", "peer", "add", "tor1", "--address", RT4, "--asn", "65000").code).toBe(0);
  expect(n2.json<any[]>("bgp", "peer", "list")[0]).toMatchObject({
    state: "idle",
    lastError: expect.stringContaining("not a gateway"),
  });
  expect(n1.json("bgp", "config").asn).toBe(65001);

  expect(n2.cli("network", "delete", "far").code).toBe(0);
  await until("withdrawn", () => peer.routes()["10.66.0.0/24"] === undefined, 15_000);
}, 90_000);
