/** The SRv6 carrier of microsegmentation groups on a real device: SRv6 packets crafted with
 * scapy cross a node's underlay interface (a veth) with stm_srv6_in and stm_srv6_out attached
 * (tcx). Arriving from a node of the cluster, the SRH tag becomes the packet's mark (nftables in
 * the node counts by mark); from another host it does not. Leaving with a port's stamp in the
 * mark (SO_MARK on the sending socket), the tag on the wire is the group (tcpdump on the other
 * end); a tag written by the sender is replaced. Packets without an SRH pass as they are. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { MSEG, msegStamp } from "../../src/model/microseg";
import { BUN, Netns, ROOT } from "../helpers/netns";

const PYTHON = "/usr/bin/python3"; // Debian's, with python3-scapy
const SEND = join(import.meta.dir, "../helpers/srv6-send.py");
const ATTACH = join(ROOT, "test/helpers/srv6-attach.ts");
let node: Netns;
let peer: Netns;
let carrier: Subprocess | undefined;
let nodeMac: string;
let peerMac: string;

const mac = (ns: Netns, dev: string) => ns.ipJson<any>(["link", "show", dev])[0].address as string;
function send(ns: Netns, o: Record<string, unknown>): void {
  const r = ns.exec([PYTHON, SEND, JSON.stringify({ count: 3, ...o })]);
  if (r.code !== 0) throw new Error(`srv6-send: ${r.stderr}`);
}
/** Packets the node's nftables counted per mark rule. */
function counted(): Record<string, number> {
  const out = JSON.parse(node.execOk(["nft", "-j", "list", "chain", "inet", "stmsrv6", "pre"]));
  const r: Record<string, number> = {};
  for (const x of out.nftables)
    if (x.rule) r[x.rule.comment as string] = x.rule.expr.find((e: any) => e.counter)?.counter.packets ?? 0;
  return r;
}

beforeAll(async () => {
  node = new Netns("s6n");
  peer = new Netns("s6p");
  node.execOk(["ip", "link", "add", "und0", "type", "veth", "peer", "name", "und1", "netns", peer.name]);
  for (const [ns, dev, addrs] of [
    [node, "und0", ["fd98::1/64"]],
    [peer, "und1", ["fd98::2/64", "fd98::3/64"]],
  ] as const) {
    for (const a of addrs) ns.execOk(["ip", "addr", "add", a, "dev", dev, "nodad"]);
    ns.execOk(["ip", "link", "set", dev, "up"]);
  }
  nodeMac = mac(node, "und0");
  peerMac = mac(peer, "und1");
  const stamp = (g: number) => `0x${msegStamp(g).toString(16)}`;
  const rules = `table inet stmsrv6 {
  chain pre {
    type filter hook prerouting priority -300;
    ip6 saddr fd98::2 meta mark ${stamp(0x42)} counter comment "node-tag"
    ip6 saddr fd98::2 meta mark 0 counter comment "node-none"
    ip6 saddr fd98::3 meta mark 0 counter comment "stranger-none"
    ip6 saddr fd98::3 meta mark != 0 counter comment "stranger-marked"
  }
}
`;
  const r = node.exec(["nft", "-f", "/dev/stdin"], { input: rules });
  if (r.code !== 0) throw new Error(`nft: ${r.stderr}`);
  const proc = Bun.spawn(["ip", "netns", "exec", node.name, BUN, ATTACH, "und0", "fd98::2"], {
    stdout: "pipe",
    stderr: "pipe",
  });
  carrier = proc;
  const first = new TextDecoder().decode((await proc.stdout.getReader().read()).value);
  if (!first.startsWith("ready")) throw new Error(`srv6-attach: ${first} ${await new Response(proc.stderr).text()}`);
}, 30_000);

afterAll(() => {
  carrier?.kill("SIGKILL");
  node?.destroy();
  peer?.destroy();
});

test("arriving from a node, the SRH tag becomes the mark; from another host, nothing", () => {
  const to = { dev: "und1", src_mac: peerMac, dst_mac: nodeMac, dst: "fd98::1" };
  send(peer, { ...to, src: "fd98::2", tag: 0x42, count: 3 });
  send(peer, { ...to, src: "fd98::2", tag: 0, count: 2 });
  send(peer, { ...to, src: "fd98::3", tag: 0x42, count: 4 });
  expect(counted()).toEqual({ "node-tag": 3, "node-none": 2, "stranger-none": 4, "stranger-marked": 0 });
}, 30_000);

test("leaving, the sender's group replaces the tag on the wire; an unstamped packet carries 0", async () => {
  const file = `/tmp/stm-srv6-${process.pid}.pcap`;
  const cap = Bun.spawn(
    [
      "ip",
      "netns",
      "exec",
      peer.name,
      "tcpdump",
      "--immediate-mode",
      "-i",
      "und1",
      "-nn",
      "-w",
      file,
      "ip6 and ip6[6] = 43",
    ],
    { stdout: "ignore", stderr: "ignore" },
  );
  try {
    await Bun.sleep(500);
    const from = { dev: "und0", src_mac: nodeMac, dst_mac: peerMac, src: "fd98::1", dst: "fd98::2" };
    send(node, { ...from, tag: 0xbeef, mark: msegStamp(0x0123), count: 2 });
    send(node, { ...from, tag: 0xbeef, mark: msegStamp(MSEG.UNTAGGED), count: 1 });
    await Bun.sleep(300);
  } finally {
    cap.kill("SIGINT");
    await cap.exited;
  }
  try {
    // The SRH follows the IPv6 header: its tag is at bytes 46-47 of the IPv6 packet.
    const count = (tag: number) =>
      peer
        .exec(["tcpdump", "-r", file, "-nn", `ip6 and ip6[6] = 43 and ip6[46:2] = ${tag}`])
        .stdout.split("\n")
        .filter((l) => l.trim()).length;
    expect({ group: count(0x0123), untagged: count(0), senders: count(0xbeef) }).toEqual({
      group: 2,
      untagged: 1,
      senders: 0,
    });
  } finally {
    rmSync(file, { force: true });
  }
}, 30_000);
