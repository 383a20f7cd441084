/** The demo, as a user on a fresh machine runs it, in CI: in a private mount namespace with
 * every bpffs unmounted from /sys/fs/bpf (the agent must mount it), `scripts/demo --no-build`
 * (the suite's run has built the binary) must finish with exit 0 and show what it promises.
 * Its own trap removes its namespaces, pins and state, in that mount namespace; when it
 * overruns, its whole session is killed by id, its mount namespace (and the bpffs the agent
 * mounted there) goes with it, and the namespace names it left in /run/netns are removed. */
import { afterAll, expect, test } from "bun:test";
import { readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { ROOT, run } from "../helpers/netns";
import { privateMountScript, UNMOUNT_BPFFS } from "../helpers/private-mount";

let tag = "";

afterAll(() => {
  if (!tag) return;
  // Only after a run that was killed: the demo's namespaces are bind mounts of its private
  // mount namespace; what is left on the host is their names.
  for (const f of readdirSync("/run/netns"))
    if (f.startsWith("stm-demo-") && f.endsWith(`-${tag}`)) {
      run(["ip", "netns", "del", f]);
      rmSync(join("/run/netns", f), { force: true });
    }
});

test("the demo runs to the end on a machine without bpffs mounted", async () => {
  const r = await privateMountScript(
    `${UNMOUNT_BPFFS}
cd "$ROOT"
exec bash scripts/demo --no-build`,
    // A minute or two on a loaded 2-core machine; the cap is for a hung run, not a timing claim.
    { timeoutMs: 600_000, env: { ROOT } },
  );
  tag = r.stdout.match(/stm-demo-node-(\d+)/)?.[1] ?? "";
  const out = r.stdout;
  const tail = `${out.slice(-4000)}\n--- stderr ---\n${r.stderr.slice(-4000)}`;
  expect({ code: r.code, timedOut: r.timedOut }, tail).toEqual({ code: 0, timedOut: false });
  expect(out).toContain("unmounted bpffs: ");
  expect(out).toContain("(bpffs is not mounted on /sys/fs/bpf: the agent mounts it)");
  expect(out).toContain("mounted bpffs on /sys/fs/bpf");
  for (const line of [
    "web-1 reaches web-2 and its gateway",
    "no reply: its ARP and ICMP never left the port",
    "db-1 -> 10.20.0.2: no reply",
    "unknown flag --sorce (did you mean --src?)",
    "exit 2; app-net's rules:",
    'reason="local-spoof"',
    "web-1 -> web-2 (prod/web -> prod/db): no reply, no entry lets prod/web reach prod/db",
    "microseg: prod/web (2) → prod/db (3): no entry → deny",
    "web-1 -> web-2 (prod/web -> prod/db): replies",
    "is on cnv-user-br0 again",
    // The fabric as a document: a plan, an apply, a second apply and the export's round trip.
    "change  dns-record  app-net: api CNAME web-1.app-net.internal  value: web-2.app-net.internal → web-1.app-net.internal",
    "diff exit 1 (1: the fabric differs)",
    "applied: 3 steps",
    "fabric.yaml says",
    "every field, applies back unchanged:\n$ cenvero-str-ctl diff -f",
    "exported.yaml says",
    "  <title>Stratum</title>",
    "  content-security-policy: default-src 'none'; script-src 'self'",
    "endpoints sampled every 5 s",
    "tor1  10.96.0.2  65000  established",
    "a new network reaches the router at once:\n  10.40.0.0/24",
    "192.0.2.1 > 192.0.2.2: ICMP echo request",
    "masquerade: 10.30.0.2:40000 → 192.0.2.1:",
    "the router no longer has db-net (10.30.0.0/16): 0 route(s)",
    // The load balancer: the LAN host's requests spread, the router has the VIP.
    "the router has the VIP while a backend is healthy:\n  203.0.113.80/32",
    "the VIP kept serving through the restart (its healthy backend stayed in the table):\n  web-1",
    // db-net masqueraded, not announced: app-net, web-dmz, app-net's IPv6 and the two VIPs.
    "the router kept the networks' routes through the restart (graceful restart):\n  Total: 5 of 5 routes",
    // The DSR VIP's backend was reached at the VIP and answered from it.
    "  web-1 203.0.113.90",
    "load balancer (DSR): VIP edge (203.0.113.90:8080/tcp) → backend web-1",
    "agent killed; the datapath keeps running",
    "  datapath: this build's programs taken from their pins (",
    "40 packets transmitted, 40 received, 0% packet loss",
    "kernel changes: none",
    // The cluster part: three nodes, one etcd.
    "node3              ready  10.99.0.3",
    "web-1 -> db-1: no reply (node3 enforces: no entry lets prod/web reach prod/db)",
    "VXLAN packets with the G flag and group policy id 2 (prod/web)",
    "node3 cnv-user-br0: 10.30.0.1/24",
    "web-1 asks node1's DNS: db-1.app-net.internal -> 10.30.0.3",
    "is already claimed by endpoint race-",
    "db-1 (node2) -> the server behind node1: 2 packets transmitted, 2 received",
    "north-south: this node is not a gateway; to a gateway node through cnv-vxlan0",
    "exit 12",
    "etcd is back: node2 created network later",
    "web-1 -> db-1 (node3): 3 packets transmitted, 3 received",
    'node1 underlay check: "vtep-unknown": 3',
    "moved db-1 to node2",
    "node2              unreachable",
    "web-1 reaches db-1 on node3 again",
    "removed node node2; freed ",
    "demo: cluster done",
    "demo: done",
  ])
    expect(out, tail).toContain(line);
  expect(out.trimEnd().endsWith("demo: done")).toBe(true);
}, 660_000);
