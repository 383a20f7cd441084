/** Port security under real attack traffic. A real agent with an uplink; two workloads in
 * network A (an attacker and its victim), one in network B, and an outside namespace beyond
 * the uplink. For each spoof class the attacker (or the outside) sends 10,000 frames from a
 * raw socket: none may show up on the victim, on the other network or on the uplink, and the
 * drop counter of that class must move by exactly the frames sent — while legitimate pings
 * of 64, 1400 and 8000 bytes (IPv4 and IPv6) run through the same ports with no loss. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { linkLocal } from "../../src/model/network";
import { PacketSocket } from "../../src/sys/os";
import { TestAgent } from "../helpers/agent";
import {
  arp,
  bootp,
  dhcp6,
  ETH_P,
  ethArp,
  ethernet,
  fragHeader,
  IPPROTO,
  icmp6,
  lla,
  ndBody,
  patch,
  raw6,
  tcp4,
  udp4,
  udp6,
  udp6Behind,
  vlanTag,
} from "../helpers/frames";
import { Netns, runOk } from "../helpers/netns";

/** Frames a flood sends: 3,000 in the suite (its time budget), 10,000 with STRATUM_LONG=1. */
const FRAMES = process.env.STRATUM_LONG === "1" ? 10_000 : 3_000;
const MARK = Buffer.from("STRATUM-ATTACK-");

let A: TestAgent;
let out: Netns;
let atkNs: Netns;
let vicNs: Netns;
let othNs: Netns;
interface Ep {
  name: string;
  ip: string;
  ip6: string;
  mac: string;
  interface: string;
}
let atk: Ep;
let vic: Ep;
let oth: Ep;
const sockets: PacketSocket[] = [];

/** A frame with the class marker appended (trailing bytes after the L3 datagram). */
const marked = (frame: Buffer, id: number) => Buffer.concat([frame, MARK, Buffer.from([id])]);

/** Frames of a class among those captured: the marker, or the template's bytes (the bridge
 * trims trailing bytes off IP datagrams when bridged traffic passes netfilter). */
function seen(frames: Buffer[], template: Buffer, id: number): number {
  const tag = Buffer.concat([MARK, Buffer.from([id])]);
  return frames.filter((f) => f.includes(tag) || (f.length >= 34 && template.subarray(0, f.length).equals(f))).length;
}

beforeAll(async () => {
  A = new TestAgent("atk");
  out = new Netns("atkout");
  atkNs = new Netns("atka");
  vicNs = new Netns("atkv");
  othNs = new Netns("atko");
  // Workloads ask for no routers (their solicitations would be background noise in the counters).
  for (const ns of [atkNs, vicNs, othNs])
    for (const scope of ["all", "default"])
      ns.execOk(["sysctl", "-qw", `net.ipv6.conf.${scope}.router_solicitations=0`]);
  // The outside: a namespace on the far side of the uplink, IPv4 only.
  for (const scope of ["all", "default"]) out.execOk(["sysctl", "-qw", `net.ipv6.conf.${scope}.disable_ipv6=1`]);
  A.ns.execOk(["ip", "link", "add", "upl0", "type", "veth", "peer", "name", "ext0", "netns", out.name]);
  out.execOk(["ip", "link", "set", "ext0", "up"]);
  await A.start(["--uplink", "upl0"]);

  A.json(
    "network",
    "create",
    "--name",
    "net-a",
    "--cidr",
    "10.61.0.0/24",
    "--gateway",
    "10.61.0.1",
    "--cidr6",
    "fd61::/64",
    "--gateway6",
    "fd61::1",
  );
  A.json(
    "network",
    "create",
    "--name",
    "net-b",
    "--cidr",
    "10.62.0.0/24",
    "--gateway",
    "10.62.0.1",
    "--cidr6",
    "fd62::/64",
    "--gateway6",
    "fd62::1",
  );
  atk = A.json("network", "attach", "net-a", "--name", "attacker", "--netns", atkNs.name, "--configure");
  vic = A.json("network", "attach", "net-a", "--name", "victim", "--netns", vicNs.name, "--configure");
  oth = A.json("network", "attach", "net-b", "--name", "other", "--netns", othNs.name, "--configure");
}, 60_000);

afterAll(() => {
  for (const s of sockets) s.close();
  for (const ns of [atkNs, vicNs, othNs, out]) ns?.destroy();
  A?.destroy();
});

const drops = (ep: string): Record<string, number> => A.json("endpoint", "show", ep).drops;
const uplinkDrops = async (): Promise<Record<string, number>> => (await A.api("/v1/status")).uplink.drops;

/** Waits until a counter stops moving (the workloads' start-up chatter is over). */
async function settle(read: () => number, quietMs = 1500): Promise<void> {
  let last = read();
  let since = Date.now();
  for (let i = 0; i < 100 && Date.now() - since < quietMs; i++) {
    await Bun.sleep(250);
    const now = read();
    if (now !== last) {
      last = now;
      since = Date.now();
    }
  }
}

function pingLoss(p: { proc: Subprocess; label: string }, text: string): { label: string; sent: number; lost: number } {
  const m = text.match(/(\d+) packets transmitted, (\d+) received/);
  if (!m) return { label: p.label, sent: 0, lost: -1 };
  return { label: p.label, sent: Number(m[1]), lost: Number(m[1]) - Number(m[2]) };
}

test("the endpoints carry their profiles and the uplink its filter", async () => {
  expect(atk.ip6).toMatch(/^fd61::/);
  expect(vic.ip6).toMatch(/^fd61::/);
  const st = await A.api("/v1/status");
  expect(st.uplink).toMatchObject({ name: "upl0" });
  expect(st.uplink.progId).toBeGreaterThan(0);
  const xdp = A.ns.ipJson(["-d", "link", "show", "upl0"])[0];
  expect(xdp.xdp?.prog?.id ?? xdp.xdp?.attached?.[0]?.prog?.id).toBe(st.uplink.progId);
  // Both families work between the two workloads of network A before anything else.
  atkNs.execOk(["ping", "-c", "2", "-i", "0.1", "-W", "2", vic.ip]);
  atkNs.execOk(["ping", "-6", "-c", "2", "-i", "0.1", "-W", "2", vic.ip6]);
  vicNs.execOk(["ping", "-c", "1", "-W", "2", atk.ip]);
  vicNs.execOk(["ping", "-6", "-c", "1", "-W", "2", atk.ip6]);
});

test("a legitimate broadcast reaches the victim, never the other network nor the LAN; unknown unicast reaches no workload and stays off the LAN", async () => {
  const send = new PacketSocket("eth0", { netns: atkNs.path });
  const capV = new PacketSocket("eth0", { netns: vicNs.path, rcvbuf: 32 << 20 });
  const capO = new PacketSocket("eth0", { netns: othNs.path, rcvbuf: 32 << 20 });
  const capU = new PacketSocket("ext0", { netns: out.path, rcvbuf: 32 << 20 });
  sockets.push(send, capV, capO, capU);
  const lanDirect = async () => (await uplinkDrops())["lan-direct"] as number;
  const before = await lanDirect();
  const f = marked(udp4({ mac: atk.mac, src: atk.ip, dst: "10.61.0.255", sport: 9999, dport: 9999 }), 0);
  expect(send.send(f, 1000)).toBe(1000);
  await Bun.sleep(200);
  // Gateway only: the network is not extended onto the LAN, so its broadcasts stay on its ports.
  expect({
    victim: seen(capV.drain(), f, 0),
    uplink: seen(capU.drain(), f, 0),
    other: seen(capO.drain(), f, 0),
  }).toEqual({ victim: 1000, uplink: 0, other: 0 });

  // Unknown unicast: flooded by the bridge, delivered to no workload port (only the agent adds
  // addresses to the bridge) and not onto the LAN either.
  const u = marked(
    udp4({ mac: atk.mac, dstMac: "02:99:99:99:99:99", src: atk.ip, dst: vic.ip, sport: 9999, dport: 9999 }),
    2,
  );
  expect(send.send(u, 1000)).toBe(1000);
  await Bun.sleep(200);
  expect({
    victim: seen(capV.drain(), u, 2),
    uplink: seen(capU.drain(), u, 2),
    other: seen(capO.drain(), u, 2),
  }).toEqual({
    victim: 0,
    uplink: 0,
    other: 0,
  });
  // Both floods were counted at the uplink's egress.
  expect((await lanDirect()) - before).toBeGreaterThanOrEqual(2000);
});

test(`other network: ${FRAMES} frames to another network's endpoint, none delivered, all counted`, async () => {
  const [send, capV, capO, capU] = sockets as [PacketSocket, PacketSocket, PacketSocket, PacketSocket];
  const count = () => drops("other")["other-network"] as number;
  await settle(count);
  const before = count();
  const f = marked(udp4({ mac: atk.mac, dstMac: oth.mac, src: atk.ip, dst: oth.ip, sport: 9999, dport: 9999 }), 1);
  for (const c of [capV, capO, capU]) c.drain();
  expect(send.send(f, FRAMES)).toBe(FRAMES);
  await Bun.sleep(200);
  expect({ seen: seen(capO.drain(), f, 1) + seen(capU.drain(), f, 1), counted: count() - before }).toEqual({
    seen: 0,
    counted: FRAMES,
  });
});

test(`${FRAMES} frames of every spoof class: none seen, every one counted, pings unharmed`, async () => {
  const [send, capV, capO, capU] = sockets as [PacketSocket, PacketSocket, PacketSocket, PacketSocket];
  const fromOut = new PacketSocket("ext0", { netns: out.path });
  sockets.push(fromOut);
  const me = { mac: atk.mac };
  const atkLl = linkLocal(atk.mac);
  const vicLl = linkLocal(vic.mac);
  const classes: Array<{ name: string; reason: string; frame: Buffer; from?: "out" }> = [
    {
      name: "MAC spoofing (the victim's MAC)",
      reason: "mac-spoof",
      frame: udp4({ mac: vic.mac, src: vic.ip, dst: "10.61.0.255", sport: 1, dport: 9 }),
    },
    {
      name: "IPv4 source spoofing",
      reason: "ip4-spoof",
      frame: udp4({ ...me, src: vic.ip, dst: "10.61.0.255", sport: 1, dport: 9 }),
    },
    {
      name: "IPv6 source spoofing",
      reason: "ip6-spoof",
      frame: udp6({ ...me, src: vic.ip6, dst: "ff02::1", sport: 1, dport: 9 }),
    },
    {
      name: "ARP poisoning (reply claiming the victim's address)",
      reason: "arp-spoof",
      frame: ethArp(
        atk.mac,
        "ff:ff:ff:ff:ff:ff",
        arp({ op: "reply", senderMac: atk.mac, senderIp: vic.ip, targetIp: vic.ip }),
      ),
    },
    {
      name: "ARP poisoning (claiming the gateway)",
      reason: "arp-spoof",
      frame: ethArp(
        atk.mac,
        vic.mac,
        arp({ op: "reply", senderMac: atk.mac, senderIp: "10.61.0.1", targetMac: vic.mac, targetIp: vic.ip }),
      ),
    },
    {
      name: "ARP into another network",
      reason: "arp-target",
      frame: ethArp(
        atk.mac,
        "ff:ff:ff:ff:ff:ff",
        arp({ op: "request", senderMac: atk.mac, senderIp: atk.ip, targetIp: oth.ip }),
      ),
    },
    {
      name: "ND spoofing (NA for the victim's address)",
      reason: "nd-spoof",
      frame: icmp6({ ...me, src: atkLl, dst: "ff02::1", type: 136, body: ndBody(vic.ip6, lla(2, atk.mac)) }),
    },
    {
      name: "ND spoofing (NS with a forged link-layer address)",
      reason: "nd-spoof",
      frame: icmp6({ ...me, src: atkLl, dst: "ff02::1:ff00:1", type: 135, body: ndBody("fd61::1", lla(1, vic.mac)) }),
    },
    {
      name: "rogue router advertisement",
      reason: "rogue-router",
      frame: icmp6({ ...me, src: atkLl, dst: "ff02::1", type: 134, body: new Uint8Array(8) }),
    },
    {
      name: "ICMPv6 redirect",
      reason: "rogue-router",
      frame: icmp6({ ...me, src: atkLl, dst: vicLl, dstMac: vic.mac, type: 137, body: new Uint8Array(32) }),
    },
    {
      name: "rogue DHCPv4 server",
      reason: "rogue-dhcp",
      frame: udp4({ ...me, src: atk.ip, dst: "255.255.255.255", sport: 67, dport: 68, payload: bootp(2) }),
    },
    {
      name: "rogue DHCPv6 server",
      reason: "rogue-dhcp6",
      frame: udp6({ ...me, src: atkLl, dst: vicLl, dstMac: vic.mac, sport: 547, dport: 546, payload: dhcp6(7) }),
    },
    {
      name: "VXLAN from a workload",
      reason: "rogue-vxlan",
      frame: udp4({
        ...me,
        src: atk.ip,
        dst: vic.ip,
        dstMac: vic.mac,
        sport: 40000,
        dport: 4789,
        payload: new Uint8Array(64),
      }),
    },
    {
      name: "truncated IPv4 header",
      reason: "malformed",
      frame: ethernet(
        { src: atk.mac, dst: vic.mac, type: ETH_P.IP },
        Buffer.from([0x45, 0, 0, 40, 0, 0, 0, 0, 64, 17]),
      ),
    },
    {
      name: "bad IHL",
      reason: "malformed",
      frame: patch(tcp4({ ...me, dstMac: vic.mac, src: atk.ip, dst: vic.ip }), 14, 0x43),
    },
    {
      name: "first fragment too short for its TCP header",
      reason: "malformed",
      frame: raw6({
        ...me,
        dstMac: vic.mac,
        src: atk.ip6,
        dst: vic.ip6,
        next: 44,
        payload: Buffer.concat([fragHeader(IPPROTO.TCP, 0, true), new Uint8Array(8)]),
      }),
    },
    {
      name: "IPv6 extension chain past the bound",
      reason: "ip6-ext-chain",
      frame: udp6Behind(8, { ...me, dstMac: vic.mac, src: atk.ip6, dst: vic.ip6 }),
    },
    {
      name: "VLAN hopping (802.1Q tag)",
      reason: "vlan-tagged",
      frame: vlanTag(udp4({ ...me, src: atk.ip, dst: "10.61.0.255", sport: 1, dport: 9 }), 62),
    },
    {
      name: "non-IP protocol",
      reason: "ethertype",
      frame: ethernet({ src: atk.mac, dst: "ff:ff:ff:ff:ff:ff", type: 0x88b5 }, new Uint8Array(46)),
    },
    {
      name: "uplink: outside frame with the victim's MAC",
      reason: "local-spoof",
      from: "out",
      frame: udp4({
        mac: vic.mac,
        dstMac: "ff:ff:ff:ff:ff:ff",
        src: "10.61.0.200",
        dst: "10.61.0.255",
        sport: 1,
        dport: 9,
      }),
    },
    {
      name: "uplink: outside frame with the victim's address",
      reason: "local-spoof",
      from: "out",
      frame: udp4({ mac: "02:77:00:00:00:01", dstMac: atk.mac, src: vic.ip, dst: atk.ip, sport: 1, dport: 9 }),
    },
    {
      name: "uplink: outside ARP claiming the gateway",
      reason: "local-spoof",
      from: "out",
      frame: ethArp(
        "02:77:00:00:00:01",
        "ff:ff:ff:ff:ff:ff",
        arp({ op: "reply", senderMac: "02:77:00:00:00:01", senderIp: "10.61.0.1", targetIp: vic.ip }),
      ),
    },
    {
      name: "uplink: blocklisted source",
      reason: "blocklist",
      from: "out",
      frame: udp4({ mac: "02:77:00:00:00:01", dstMac: vic.mac, src: "198.51.100.23", dst: vic.ip, sport: 1, dport: 9 }),
    },
  ];

  // The blocklist hook: a /24 written straight into the pinned trie (the firewall's CLI fills it later).
  runOk([
    "bpftool",
    "map",
    "update",
    "pinned",
    `${A.pins.path}/maps/stm_block4`,
    "key",
    "24",
    "0",
    "0",
    "0",
    "198",
    "51",
    "100",
    "0",
    "value",
    "0",
    "0",
    "0",
    "0",
  ]);

  // Legitimate pings through the same ports for the whole attack.
  const pings = [64, 1400, 8000].flatMap((size) =>
    (["4", "6"] as const).map((fam) => ({
      label: `IPv${fam} ${size} bytes`,
      proc: Bun.spawn(
        [
          "ip",
          "netns",
          "exec",
          atkNs.name,
          "ping",
          `-${fam}`,
          "-c",
          "60",
          "-i",
          "0.05",
          "-W",
          "2",
          "-s",
          String(size),
          fam === "4" ? vic.ip : vic.ip6,
        ],
        { stdout: "pipe", stderr: "pipe" },
      ),
    })),
  );

  const results: Array<{ name: string; sent: number; seen: number; counted: number }> = [];
  for (const [i, c] of classes.entries()) {
    const id = 10 + i;
    const frame = c.reason === "malformed" && c.name.startsWith("truncated") ? c.frame : marked(c.frame, id);
    const read =
      c.from === "out"
        ? async () => (await uplinkDrops())[c.reason] as number
        : async () => drops("attacker")[c.reason] as number;
    for (const s of [capV, capO, capU]) s.drain();
    const before = await read();
    const sent = (c.from === "out" ? fromOut : send).send(frame, FRAMES);
    await Bun.sleep(150);
    const counted = (await read()) - before;
    const n =
      seen(capV.drain(), frame, id) +
      seen(capO.drain(), frame, id) +
      (c.from === "out" ? 0 : seen(capU.drain(), frame, id));
    results.push({ name: c.name, sent, seen: n, counted });
  }
  expect(results).toEqual(classes.map((c) => ({ name: c.name, sent: FRAMES, seen: 0, counted: FRAMES })));

  const losses = await Promise.all(
    pings.map(async (p) => {
      await p.proc.exited;
      return pingLoss(p, await new Response(p.proc.stdout as ReadableStream).text());
    }),
  );
  expect(losses).toEqual(pings.map((p) => ({ label: p.label, sent: 60, lost: 0 })));
}, 120_000);
