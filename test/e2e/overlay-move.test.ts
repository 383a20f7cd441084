/** Endpoints moving between the nodes of the three-node lab (docs/overlay.md#moving-an-endpoint):
 * `endpoint move` under traffic (a ping every 10 ms and a long-lived TCP stream in a
 * default-deny network, whose replies pass on the new node only because the connection
 * tracking came along), the same IP and MAC, two moves of one endpoint at once (one wins),
 * detach on one node and attach on another with the same address, and a node killed (its
 * endpoints shown down, one moved away from it without its help). */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { apiCall, Lab, type LabNode, until } from "../helpers/lab";

let lab: Lab;
let n1: LabNode;
let n2: LabNode;
let n3: LabNode;

beforeAll(async () => {
  lab = await Lab.create({ nodes: 3, tag: "mv" });
  [n1, n2, n3] = lab.nodes as [LabNode, LabNode, LabNode];
  for (const n of lab.nodes) await n.start(n.clusterArgs());
  const made = n1.cli(
    "network",
    "create",
    "--name",
    "locked",
    "--cidr",
    "10.74.0.0/24",
    "--gateway",
    "10.74.0.1",
    "--cidr6",
    "fd74::/64",
    "--gateway6",
    "fd74::1",
    "--default-action",
    "deny",
  );
  expect(made.stderr).toBe("");
  // Echo both ways, and TCP to port 5300 only towards the server.
  for (const args of [
    ["--priority", "10", "--proto", "icmp", "--action", "allow"],
    ["--priority", "11", "--proto", "icmpv6", "--action", "allow"],
    ["--priority", "20", "--direction", "ingress", "--proto", "tcp", "--dport", "5300", "--action", "allow"],
    ["--priority", "21", "--direction", "egress", "--proto", "tcp", "--dport", "5300", "--action", "allow"],
  ])
    expect(n1.cli("firewall", "rule", "add", "locked", ...args).code).toBe(0);
  for (const n of [n2, n3])
    await until(
      `locked's rules on ${n.name}`,
      () => n.json<any>("firewall", "rule", "list", "locked").rules?.length === 4,
    );
}, 90_000);
afterAll(() => lab?.destroy());

/** Gaps in a `ping -D -i 0.01` log: the longest time between two replies, and the sequence numbers lost. */
function pingGaps(out: string): { maxGapMs: number; received: number; lost: number } {
  const times: number[] = [];
  const seqs = new Set<number>();
  for (const m of out.matchAll(/^\[(\d+\.\d+)\].*icmp_seq=(\d+)/gm)) {
    times.push(Number(m[1]) * 1000);
    seqs.add(Number(m[2]));
  }
  let maxGapMs = 0;
  for (let i = 1; i < times.length; i++) maxGapMs = Math.max(maxGapMs, (times[i] as number) - (times[i - 1] as number));
  const last = Math.max(...seqs);
  return { maxGapMs, received: seqs.size, lost: last - seqs.size };
}

test("endpoint move under traffic: same IP and MAC, the 10 ms ping comes back, the TCP stream of a default-deny network goes on", async () => {
  const mover = n1.workload("mover", "locked");
  const peer = n3.workload("peer", "locked");
  await until("peer → mover", () => peer.ping(mover.ip));
  const before = n1.json<any>("endpoint", "show", "mover");
  // The TCP stream: the mover is the client, the peer serves on 5300 (replies pass by conntrack).
  const srv = Bun.spawn(["ip", "netns", "exec", peer.ns.name, "iperf3", "-s", "-1", "-p", "5300"], {
    stdout: "ignore",
  });
  await Bun.sleep(300);
  const stream = Bun.spawn(
    [
      "ip",
      "netns",
      "exec",
      mover.ns.name,
      "iperf3",
      "-c",
      peer.ip,
      "-p",
      "5300",
      "-t",
      "6",
      "-i",
      "0.5",
      "-b",
      "20M",
      "-J",
    ],
    { stdout: "pipe", stderr: "pipe" },
  );
  const ping = Bun.spawn(["ip", "netns", "exec", peer.ns.name, "ping", "-D", "-n", "-i", "0.01", "-w", "5", mover.ip], {
    stdout: "pipe",
  });
  try {
    await Bun.sleep(1500);
    const moved = n2.cli("endpoint", "move", "mover", "--to", "node2", "-o", "json");
    expect(moved.stderr).toBe("");
    const after = JSON.parse(moved.stdout);
    expect(after).toMatchObject({ node: "node2", ip: before.ip, mac: before.mac, moving: null });
    const out = await new Response(ping.stdout).text();
    await ping.exited;
    const gaps = pingGaps(out);
    console.log(
      `move under a 10 ms ping: longest gap ${gaps.maxGapMs.toFixed(0)} ms, ${gaps.lost} lost of ${gaps.received + gaps.lost}`,
    );
    expect(gaps.received).toBeGreaterThan(200);
    expect(gaps.maxGapMs).toBeLessThan(1000);
    const res = JSON.parse(await new Response(stream.stdout).text());
    await stream.exited;
    expect(res.error).toBeUndefined();
    expect(stream.exitCode).toBe(0);
    // Bytes in the intervals after the move too: the stream kept going.
    const tail = res.intervals.slice(-4).map((i: any) => i.sum.bytes);
    expect(Math.min(...tail)).toBeGreaterThan(0);
  } finally {
    ping.kill();
    stream.kill();
    srv.kill();
  }
  // Where it runs now, from every node; its old port is gone; the flows came along.
  for (const n of lab.nodes) expect(n.json<any>("endpoint", "show", "mover").node).toBe("node2");
  expect(n1.exec(["ip", "link", "show", before.interface]).code).not.toBe(0);
  expect(n2.exec(["ip", "link", "show", before.interface]).code).toBe(0);
  expect(mover.ns.ipJson<any>(["addr", "show", "eth0"])[0].address).toBe(before.mac);
  expect(peer.ping(mover.ip)).toBe(true);
  expect(peer.exec(["ping", "-6", "-n", "-c", "1", "-W", "2", before.ip6]).code).toBe(0);
}, 60_000);

test("two moves of one endpoint at once: one wins in etcd, the other is refused", async () => {
  const w = n1.workload("racer", "locked");
  const [a, b] = await Promise.all([
    apiCall(n2, "POST", "/v1/endpoints/racer/move", { to: "node2" }),
    apiCall(n3, "POST", "/v1/endpoints/racer/move", { to: "node3" }),
  ]);
  const codes = [a.status, b.status].sort();
  expect(codes).toEqual([200, 409]);
  const winner = a.status === 200 ? "node2" : "node3";
  const loser = a.status === 200 ? b : a;
  expect(loser.body.message).toMatch(/moving to node|changed while its move/);
  await until("the winner has it", () => {
    const e = n1.json<any>("endpoint", "show", "racer");
    return e.node === winner && e.moving === null;
  });
  expect(w.ns.ipJson<any>(["addr", "show", "eth0"])[0].address).toBe(w.endpoint.mac);
}, 30_000);

test("detach on one node and attach on another with the same --ip: the same MAC", async () => {
  const w = n1.workload("hopper", "locked");
  expect(n1.cli("network", "detach", "locked", "--name", "hopper").code).toBe(0);
  await until("the detach on node3", () => !n3.json<any[]>("endpoint", "list").some((e) => e.name === "hopper"));
  const again = n3.workload("hopper2", "locked", ["--ip", w.ip]);
  expect(again.endpoint.mac).toBe(w.endpoint.mac);
  const peer = n2.workload("peer2", "locked");
  await until("peer2 → hopper2", () => peer.ping(again.ip));
}, 30_000);

test("a node killed: its endpoints are shown down; one moved away from it comes back on another node", async () => {
  const w = n1.workload("orphan", "locked");
  const peer = n2.json<any>("endpoint", "show", "peer2");
  await n1.kill();
  // Its lease runs out (10 s): the node is unreachable, its endpoints say so.
  await until(
    "node1 unreachable",
    () => n2.json<any>("endpoint", "show", "orphan").nodeState === "unreachable",
    20_000,
  );
  const listed = n2.cli("endpoint", "list");
  expect(listed.stdout).toMatch(/orphan .* node1 \(unreachable\)/);
  // Moved without it: the new node takes it at once (no flows: its old node cannot hand them over).
  const moved = n3.cli("endpoint", "move", "orphan", "--to", "node3");
  if (moved.code !== 0) console.log(moved.stderr, n3.agent.logText.split("\n").slice(-30).join("\n"));
  expect(moved.code).toBe(0);
  expect(moved.stderr).toContain("not alive");
  await until("orphan answers from node3", () => w.ping(peer.ip));
  expect(n3.json<any>("endpoint", "show", "orphan")).toMatchObject({ node: "node3", nodeState: "ready", moving: null });
}, 60_000);
