/** The load balancer across a cluster (test/helpers/lab.ts): node1 is the gateway with an uplink
 * to a client outside, node2 is not; a VIP made on node2 has a backend on each node. The
 * client's requests reach both (node2's replies return through node1 over the overlay and get
 * the VIP back there); each node checks only the backends running on it and publishes what it
 * finds, so node1 takes node2's backend out of its table when node2's check fails, and puts it
 * back when it passes again. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { Lab, type LabNode, type LabWorkload, until } from "../helpers/lab";
import { Netns, ROOT } from "../helpers/netns";

const BACKEND = join(ROOT, "test/helpers/lb-backend.py");
const CLIENT = join(ROOT, "test/helpers/lb-client.py");
const GW_UPLINK = "192.0.2.1";
const CLI = "192.0.2.2";
const VIP = "203.0.113.50";

let lab: Lab;
let n1: LabNode;
let n2: LabNode;
let cli: Netns;
const w: Record<string, LabWorkload> = {};
const servers: Record<string, Subprocess> = {};

function serve(name: string): void {
  servers[name] = Bun.spawn(
    ["ip", "netns", "exec", (w[name] as LabWorkload).ns.name, "/usr/bin/python3", BACKEND, name, "8080", "5353"],
    { stdout: "ignore", stderr: "ignore" },
  );
}

async function stop(name: string): Promise<void> {
  servers[name]?.kill("SIGKILL");
  await servers[name]?.exited;
  delete servers[name];
}

function spread(n: number): { names: Record<string, number>; errors: number } {
  const r = cli.exec(["timeout", "60", "/usr/bin/python3", CLIENT, "spread", VIP, "80", String(n)]);
  return JSON.parse(r.stdout.trim().split("\n").at(-1) as string);
}

const backend = (node: LabNode, name: string) =>
  node.json("lb", "vip", "show", "web").backends.find((b: { endpoint: string }) => b.endpoint === name);

beforeAll(async () => {
  lab = await Lab.create({ nodes: 2, tag: "lbc" });
  [n1, n2] = lab.nodes as [LabNode, LabNode];
  cli = new Netns("lbccli");
  n1.ns.execOk(["ip", "link", "add", "upl0", "type", "veth", "peer", "name", "eth0", "netns", cli.name]);
  n1.ns.execOk(["ip", "link", "set", "upl0", "up"]);
  n1.ns.execOk(["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
  cli.execOk(["ip", "addr", "add", `${CLI}/24`, "dev", "eth0"]);
  cli.execOk(["ip", "link", "set", "eth0", "up"]);
  cli.execOk(["ip", "route", "add", `${VIP}/32`, "via", GW_UPLINK]);
  await n1.start([...n1.clusterArgs(), "--uplink", "upl0", "--gateway"]);
  n1.ns.execOk(["ip", "addr", "add", `${GW_UPLINK}/24`, "dev", "cnv-user-br0"]);
  await n2.start(n2.clusterArgs());
  n2.ns.execOk(["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
  n1.json("network", "create", "--name", "app", "--cidr", "10.77.1.0/24", "--gateway", "10.77.1.1");
  await until("the network on node2", () => n2.json<any[]>("network", "list").length === 1);
  w.a = n1.workload("a", "app");
  w.b = n2.workload("b", "app");
  for (const n of ["a", "b"]) serve(n);
  n2.json(
    "lb",
    "vip",
    "add",
    "web",
    "--address",
    VIP,
    "--port",
    "80",
    "--proto",
    "tcp",
    "--check",
    "http",
    "--check-interval",
    "200ms",
    "--check-fall",
    "2",
  );
  for (const n of ["a", "b"]) n2.json("lb", "backend", "add", "web", "--endpoint", n, "--port", "8080");
  await until("both backends healthy on node1", () => n1.json("lb", "vip", "show", "web").healthy === 2, 20_000);
}, 120_000);

afterAll(async () => {
  for (const n of Object.keys(servers)) await stop(n);
  lab?.destroy();
  cli?.destroy();
});

test("a client outside reaches the backends on both nodes through the gateway; each node checks its own", () => {
  const r = spread(40);
  expect(r.errors).toBe(0);
  expect(Object.keys(r.names).sort()).toEqual(["a", "b"]);
  // node1 knows b's health from node2 (the detail names the node that checked it).
  expect(backend(n1, "b")).toMatchObject({ health: "healthy", inTable: true });
  expect(backend(n1, "b").detail).toStartWith(`${n2.name}:`);
  expect(backend(n2, "a").detail).toStartWith(`${n1.name}:`);
}, 60_000);

test("node2's backend dies: node2's checks find it, node1 takes it out; back: in again", async () => {
  await stop("b");
  await until("node1 sees b unhealthy", () => backend(n1, "b").health === "unhealthy", 10_000);
  const r = spread(20);
  expect(r.errors).toBe(0);
  expect(r.names).toEqual({ a: 20 });
  serve("b");
  await until("node1 sees b healthy", () => backend(n1, "b").inTable === true, 10_000);
  expect(Object.keys(spread(40).names).sort()).toEqual(["a", "b"]);
}, 60_000);
