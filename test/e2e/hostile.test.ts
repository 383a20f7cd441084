/** docs/port-security.md's "What holds, from where an attacker stands", tried the way an attacker would.
 * One agent with an uplink into a LAN namespace (the node has an operator address on that LAN
 * and forwards, so workloads reach it routed through their gateway); network A (default deny,
 * a few allow rules) with a victim V, an attacker W and a client C that configures itself
 * (udhcpc, SLAAC); network B (default allow, no rules) with an attacker O; network X extended
 * onto the LAN with a workload E. Scapy (test/helpers/hostile.py, one long-lived process per
 * position: W, O and the LAN host, plus listeners in V and the node) sends every variant of a
 * class in one batch: extension headers, fragments, VLAN tags, unicast, broadcast, routed, both
 * families. Each test asserts what arrived where (raw captures on the workloads, the LAN and
 * the bridge; frames recognised by a marker in their IP header), the drop counters' exact
 * deltas by reason, and the effects (neighbour caches, routes, addresses, leases, connections).
 * A test's name starts with the guarantee tag it covers (test/unit/security-guarantees.test.ts
 * checks that every tag has one); "legit:" tests run the traffic that must keep working.
 *
 * With STRATUM_TEST_EXTENSIONS=1 (scripts/test runs the file a second time so) the agent's
 * bridges take 5 ports each: V and O are ports of cnv-user-br0, W, C and E of the extension
 * bridge cnv-user-br1, so every guarantee is tried again across the link between them
 * (docs/networks.md#capacity). */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { FileSink, Subprocess } from "bun";
import { bytesToIp } from "../../src/model/ip";
import { linkLocal } from "../../src/model/network";
import { PacketSocket } from "../../src/sys/os";
import { TestAgent } from "../helpers/agent";
import { Netns } from "../helpers/netns";

const PYTHON = "/usr/bin/python3"; // Debian's, with python3-scapy
/** The run with the workloads split over cnv-user-br0 and an extension bridge. */
const EXTENSIONS = process.env.STRATUM_TEST_EXTENSIONS === "1";
const HELPER = join(import.meta.dir, "../helpers/hostile.py");
/** Copies of each frame a batch sends. */
const N = 3;
const DENIED = 9001; // the global firewall denies TCP to it from the LAN
const ALLOWED = 9000;
const LAN = { ip: "192.168.80.2", ip6: "2001:db8:80::2", xip: "10.83.0.200", xip6: "fd83::200" };
const NODE = { ip: "192.168.80.1", ip6: "2001:db8:80::1" };
const NETS = {
  A: {
    name: "net-a",
    cidr: "10.81.0.0/24",
    gw4: "10.81.0.1",
    cidr6: "fd81::/64",
    gw6: "fd81::1",
    bcast: "10.81.0.255",
  },
  B: {
    name: "net-b",
    cidr: "10.82.0.0/24",
    gw4: "10.82.0.1",
    cidr6: "fd82::/64",
    gw6: "fd82::1",
    bcast: "10.82.0.255",
  },
  X: {
    name: "net-x",
    cidr: "10.83.0.0/24",
    gw4: "10.83.0.1",
    cidr6: "fd83::/64",
    gw6: "fd83::1",
    bcast: "10.83.0.255",
  },
};
const ROGUE = { prefix: "2001:db8:bad::", dns6: "2001:db8:bad::53", router4: "192.168.80.66", lease: "10.81.0.200" };

type Point = "V" | "W" | "C" | "O" | "E" | "LAN" | "BR";
const ENDPOINTS = { V: "victim", W: "attacker", C: "client", O: "other", E: "extended" } as const;
interface Ep {
  name: string;
  ip: string;
  ip6: string;
  mac: string;
  ll: string;
}

let A: TestAgent;
const ns: Partial<Record<"V" | "W" | "C" | "O" | "E" | "LAN", Netns>> = {};
const eps: Partial<Record<keyof typeof ENDPOINTS, Ep>> = {};
const caps: Partial<Record<Point, PacketSocket>> = {};
const procs: Subprocess[] = [];
let gwMac = "";
let gwLl = "";
let lanMac = "";
let lanLl = "";
let udhcpcLog = "";

const nsOf = (k: keyof typeof ns) => ns[k] as Netns;
const ep = (k: keyof typeof ENDPOINTS) => eps[k] as Ep;

// ---- the positions: hostile.py servers ----------------------------------------------------

class Position {
  readonly proc: Subprocess<"pipe", "pipe", "pipe">;
  #lines: string[] = [];
  #partial = "";
  #err = "";

  constructor(
    readonly name: string,
    where: Netns,
    base: number,
  ) {
    this.proc = Bun.spawn(["ip", "netns", "exec", where.name, PYTHON, HELPER, "serve", String(base)], {
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
    });
    procs.push(this.proc);
    void this.#pump(this.proc.stdout, (t) => {
      const parts = t.split("\n");
      this.#partial += parts.shift() ?? "";
      for (const p of parts) {
        this.#lines.push(this.#partial);
        this.#partial = p;
      }
    });
    void this.#pump(this.proc.stderr, (t) => {
      this.#err += t;
    });
  }

  async #pump(s: ReadableStream<Uint8Array>, on: (t: string) => void): Promise<void> {
    const dec = new TextDecoder();
    for await (const c of s) on(dec.decode(c));
  }

  async #next(ms: number): Promise<string> {
    const end = Date.now() + ms;
    while (this.#lines.length === 0) {
      if (Date.now() > end || this.proc.exitCode !== null)
        throw new Error(`${this.name}: no answer (exit ${this.proc.exitCode}): ${this.#err.slice(-2000)}`);
      await Bun.sleep(5);
    }
    return this.#lines.shift() as string;
  }

  async ready(): Promise<void> {
    await this.#next(20_000);
  }

  async req<T = any>(o: Record<string, unknown>, ms = 60_000): Promise<T> {
    const stdin = this.proc.stdin as FileSink;
    stdin.write(`${JSON.stringify(o)}\n`);
    stdin.flush();
    const r = JSON.parse(await this.#next(ms));
    if (!r.ok) throw new Error(`${this.name}: ${String(o.op)} ${String(o.batch ?? "")}: ${r.error}`);
    return r as T;
  }
}

const pos: Partial<Record<"W" | "O" | "LAN" | "V" | "NODE", Position>> = {};
const at = (k: keyof typeof pos) => pos[k] as Position;

// ---- what arrived: frames recognised by the marker in their IP header ------------------------

interface Sig {
  k: "ip4" | "ip6" | "arp";
  src?: string;
  dst?: string;
  m?: number;
  op?: number;
  sha?: string;
  spa?: string;
  tpa?: string;
}
interface SentPkt {
  sig: Sig | null;
  len: number;
  drops: Array<[string, string]>;
}
interface SentFrame {
  name: string;
  n: number;
  pkts: SentPkt[];
  inner: Sig | null;
  deliver: string[];
  maybe: string[];
}

/** The L3 header of a captured frame, after any VLAN tags left in it. */
function l3(f: Buffer): { type: number; off: number } {
  let off = 12;
  let type = f.length >= 14 ? f.readUInt16BE(12) : 0;
  while ((type === 0x8100 || type === 0x88a8) && f.length >= off + 6) {
    off += 4;
    type = f.readUInt16BE(off);
  }
  return { type, off: off + 2 };
}

function sigOf(f: Buffer): Sig | undefined {
  const { type, off } = l3(f);
  const hex = (o: number, n: number) => f.subarray(off + o, off + o + n).toString("hex");
  if (type === 0x0800 && f.length >= off + 20)
    return { k: "ip4", src: hex(12, 4), dst: hex(16, 4), m: f.readUInt16BE(off + 4) };
  if (type === 0x86dd && f.length >= off + 40)
    return { k: "ip6", src: hex(8, 16), dst: hex(24, 16), m: f.readUInt32BE(off) & 0xfffff };
  if (type === 0x0806 && f.length >= off + 28) {
    const sha = [...f.subarray(off + 8, off + 14)].map((x) => x.toString(16).padStart(2, "0")).join(":");
    return { k: "arp", op: f.readUInt16BE(off + 6), sha, spa: hex(14, 4), tpa: hex(24, 4) };
  }
  return undefined;
}

function sameSig(a: Sig, b: Sig): boolean {
  if (a.k !== b.k) return false;
  if (a.k === "arp") return a.op === b.op && a.sha === b.sha && a.spa === b.spa && a.tpa === b.tpa;
  return a.src === b.src && a.dst === b.dst && a.m === b.m;
}

function countSig(frames: Buffer[], sigs: Sig[]): number {
  let n = 0;
  for (const f of frames) {
    const s = sigOf(f);
    if (s && sigs.some((x) => sameSig(s, x))) n++;
  }
  return n;
}

/** The upper layer of a captured IPv4/IPv6 frame (no extension headers: what the node sends). */
function upper(f: Buffer): { proto: number; off: number; src: string; dst: string } | undefined {
  const { type, off } = l3(f);
  if (type === 0x0800 && f.length >= off + 20)
    return {
      proto: f[off + 9] as number,
      off: off + ((f[off] as number) & 15) * 4,
      src: f.subarray(off + 12, off + 16).join("."),
      dst: f.subarray(off + 16, off + 20).join("."),
    };
  if (type === 0x86dd && f.length >= off + 40) return { proto: f[off + 6] as number, off: off + 40, src: "", dst: "" };
  return undefined;
}

/** DHCPv4 replies in captured frames: message type (2 OFFER, 5 ACK, 6 NAK …), addresses, yiaddr. */
function dhcpReplies(frames: Buffer[]): Array<{ type: number; src: string; dst: string; yiaddr: string }> {
  const out: Array<{ type: number; src: string; dst: string; yiaddr: string }> = [];
  for (const f of frames) {
    const u = upper(f);
    if (!u || u.proto !== 17 || f.length < u.off + 8 + 240 || f.readUInt16BE(u.off) !== 67) continue;
    const b = u.off + 8;
    let o = b + 240;
    let type = 0;
    while (o + 2 <= f.length && f[o] !== 255) {
      if (f[o] === 0) {
        o++;
        continue;
      }
      if (f[o] === 53) type = f[o + 2] as number;
      o += 2 + (f[o + 1] as number);
    }
    out.push({ type, src: u.src, dst: u.dst, yiaddr: f.subarray(b + 16, b + 20).join(".") });
  }
  return out;
}

// ---- counters ----------------------------------------------------------------------------

async function counters(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const [p, name] of Object.entries(ENDPOINTS)) {
    const drops = (await A.api(`/v1/endpoints/${name}`)).drops as Record<string, number>;
    for (const [r, n] of Object.entries(drops)) out[`${p}:${r}`] = n;
  }
  for (const [r, n] of Object.entries((await A.api("/v1/status")).uplink.drops as Record<string, number>))
    out[`uplink:${r}`] = n;
  return out;
}

/** Waits until the counters stop moving (start-up chatter, earlier batches' stragglers). */
async function settle(quietMs = 600): Promise<void> {
  let last = JSON.stringify(await counters());
  let since = Date.now();
  for (let i = 0; i < 40 && Date.now() - since < quietMs; i++) {
    await Bun.sleep(150);
    const now = JSON.stringify(await counters());
    if (now !== last) {
      last = now;
      since = Date.now();
    }
  }
}

interface Result {
  frames: SentFrame[];
  got: Record<Point, Buffer[]>;
  delta: Record<string, number>;
}

const ALL_POINTS: Point[] = ["V", "W", "C", "O", "E", "LAN", "BR"];

function drainAll(): void {
  for (const p of ALL_POINTS) caps[p]?.drain();
}

/** Sends a batch from a position and collects what arrived and what was counted. */
async function attack(
  from: keyof typeof pos,
  batch: string,
  o: { iface?: string; args?: Record<string, unknown>; count?: number } = {},
): Promise<Result> {
  await settle();
  drainAll();
  const before = await counters();
  const r = await at(from).req<{ frames: SentFrame[] }>({
    op: "send",
    batch,
    iface: o.iface ?? (from === "LAN" ? "ext0" : "eth0"),
    count: o.count ?? N,
    args: o.args ?? {},
  });
  await Bun.sleep(400);
  const after = await counters();
  const got = {} as Record<Point, Buffer[]>;
  for (const p of ALL_POINTS) got[p] = caps[p]?.drain() ?? [];
  const delta: Record<string, number> = {};
  for (const k of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const d = (after[k] ?? 0) - (before[k] ?? 0);
    if (d) delta[k] = d;
  }
  return { frames: r.frames, got, delta };
}

/** Counters that other traffic moves too: floods from every workload reach the uplink, and the
 * LAN host's own kernel (ARP, neighbour solicitations) floods every port. For these a batch
 * must move them by at least its frames. */
const noisy = (key: string) => key.endsWith(":lan-direct");

/** What a batch must have done: each frame seen exactly where it is delivered (n copies of each
 * packet) and nowhere else among `points` (a tunnelled inner frame nowhere), and each counter
 * moved by exactly the frames that must hit it. */
function check(res: Result, points: Point[]): void {
  if (process.env.HOSTILE_DEBUG) console.log(JSON.stringify(res.delta));
  const seen = res.frames.map((f) => {
    const sigs = f.pkts.map((p) => p.sig).filter((s): s is Sig => s !== null);
    const s: Record<string, number> = {};
    for (const p of points) if (!f.maybe.includes(p)) s[p] = countSig(res.got[p], sigs);
    if (f.inner) s.inner = ALL_POINTS.reduce((a, p) => a + countSig(res.got[p], [f.inner as Sig]), 0);
    return { name: f.name, seen: s };
  });
  const want = res.frames.map((f) => {
    const s: Record<string, number> = {};
    for (const p of points) if (!f.maybe.includes(p)) s[p] = f.deliver.includes(p) ? f.n * f.pkts.length : 0;
    if (f.inner) s.inner = 0;
    return { name: f.name, seen: s };
  });
  const wantDrops: Record<string, number> = {};
  for (const f of res.frames)
    for (const p of f.pkts)
      for (const [where, reason] of p.drops)
        wantDrops[`${where}:${reason}`] = (wantDrops[`${where}:${reason}`] ?? 0) + f.n;
  const gotDrops: Record<string, number> = {};
  for (const [k, n] of Object.entries(wantDrops)) {
    const d = res.delta[k] ?? 0;
    gotDrops[k] = noisy(k) && d >= n ? n : d;
  }
  // One assertion: a failure shows what arrived and what was counted, side by side.
  expect({ seen, drops: gotDrops }).toEqual({ seen: want, drops: wantDrops });
}

/** The link-layer address a namespace's neighbour entry holds for `addr` (undefined: none). */
function neigh(where: Netns, addr: string, dev: string): string | undefined {
  const e = where.ipJson([addr.includes(":") ? "-6" : "-4", "neigh", "show", addr, "dev", dev])[0];
  return e?.lladdr;
}

function routes6(where: Netns): Array<{ dst: string; gateway?: string; protocol?: string }> {
  return where.ipJson(["-6", "route", "show"]);
}

function addrs(where: Netns, dev = "eth0"): string[] {
  return (where.ipJson(["addr", "show", "dev", dev])[0]?.addr_info ?? []).map((a: any) => a.local);
}

/** Nothing a rogue router or DHCP server offered took hold in `where`. */
function noRogueConfig(where: Netns): { rogueRoutes: unknown[]; rogueAddrs: string[] } {
  const bad = new Set([lanLl, ep("W").ll, ep("O").ll, LAN.ip6]);
  return {
    rogueRoutes: routes6(where).filter((r) => (r.gateway && bad.has(r.gateway)) || r.dst.startsWith("2001:db8:bad")),
    rogueAddrs: addrs(where).filter((a) => a.startsWith("2001:db8:bad") || a === ROGUE.lease),
  };
}

function udhcpcEvents(): string[] {
  return existsSync(udhcpcLog) ? readFileSync(udhcpcLog, "utf8").split("\n").filter(Boolean) : [];
}

/** udhcpc's leases in C that are not its profile's from the node. */
function foreignLeases(): string[] {
  const own = `ip=${ep("C").ip}|router=${NETS.A.gw4}|serverid=${NETS.A.gw4}`;
  return udhcpcEvents().filter((l) => /^reason=(bound|renew)/.test(l) && !l.endsWith(own));
}

async function waitFor<T>(what: string, f: () => T | undefined | false, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${A.logText.slice(-2000)}`);
    await Bun.sleep(100);
  }
}

// ---- the topology ------------------------------------------------------------------------

beforeAll(async () => {
  const tag = EXTENSIONS ? "hox" : "hos";
  A = new TestAgent(tag);
  for (const k of ["V", "W", "C", "O", "E", "LAN"] as const) ns[k] = new Netns(`${tag}${k.toLowerCase()}`);
  const lan = nsOf("LAN");
  // The node routes between its networks and the LAN (the operator's address on the bridge).
  A.ns.execOk(["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
  A.ns.execOk(["ip", "link", "add", "upl0", "type", "veth", "peer", "name", "ext0", "netns", lan.name]);
  // The LAN host: quiet (no router solicitations, no DAD), an address of its own LAN and one of
  // the extended network X, routes to A and B through the node.
  for (const s of ["all", "default"])
    lan.execOk(["sysctl", "-qw", `net.ipv6.conf.${s}.router_solicitations=0`, `net.ipv6.conf.${s}.accept_dad=0`]);
  lan.execOk(["ip", "link", "set", "ext0", "up"]);
  lan.execOk(["ip", "addr", "add", `${LAN.ip}/24`, "dev", "ext0"]);
  lan.execOk(["ip", "addr", "add", `${LAN.xip}/24`, "dev", "ext0"]);
  lan.execOk(["ip", "addr", "add", `${LAN.ip6}/64`, "dev", "ext0", "nodad"]);
  lan.execOk(["ip", "addr", "add", `${LAN.xip6}/64`, "dev", "ext0", "nodad"]);
  // Bridges of 5 ports: cnv-user-br0 takes 2 endpoints, the link and the uplink (a port kept for the overlay); cnv-user-br1 its
  // link and 3.
  await A.start(["--uplink", "upl0"], EXTENSIONS ? { STRATUM_BRIDGE_PORTS: "5" } : {});
  A.ns.execOk(["ip", "addr", "add", `${NODE.ip}/24`, "dev", "cnv-user-br0"]);
  A.ns.execOk(["ip", "addr", "add", `${NODE.ip6}/64`, "dev", "cnv-user-br0", "nodad"]);
  for (const n of [NETS.A, NETS.B]) {
    lan.execOk(["ip", "route", "add", n.cidr, "via", NODE.ip]);
    lan.execOk(["ip", "-6", "route", "add", n.cidr6, "via", NODE.ip6]);
  }
  const br = A.ns.ipJson(["link", "show", "cnv-user-br0"])[0];
  gwMac = br.address;
  gwLl = linkLocal(gwMac);
  lanMac = lan.ipJson(["link", "show", "ext0"])[0].address;
  lanLl = linkLocal(lanMac);

  const create = (n: typeof NETS.A, extra: string[]) =>
    A.json(
      "network",
      "create",
      "--name",
      n.name,
      "--cidr",
      n.cidr,
      "--gateway",
      n.gw4,
      "--cidr6",
      n.cidr6,
      "--gateway6",
      n.gw6,
      ...extra,
    );
  create(NETS.A, ["--default-action", "deny"]);
  create(NETS.B, []);
  create(NETS.X, ["--extend-to-lan"]);
  // A: TCP 8080 and echo both ways; 9090 from A's own subnet only; UDP 4789-8472 out of its
  // workloads (so tunnels' outer packets are ordinary traffic the rules let out).
  const rules: string[][] = [
    ["--priority", "100", "--proto", "tcp", "--dport", "8080"],
    ["--priority", "110", "--proto", "icmp", "--icmp-type", "8"],
    ["--priority", "111", "--proto", "icmpv6", "--icmp-type", "128"],
    ["--priority", "120", "--src", NETS.A.cidr, "--proto", "tcp", "--dport", "9090"],
    ["--priority", "121", "--src", NETS.A.cidr6, "--proto", "tcp", "--dport", "9090"],
    ["--priority", "130", "--direction", "egress", "--proto", "udp", "--dport", "4789-8472"],
  ];
  for (const r of rules) A.json("firewall", "rule", "add", NETS.A.name, ...r, "--action", "allow");
  A.json(
    "firewall",
    "rule",
    "add",
    "--global",
    "--priority",
    "10",
    "--direction",
    "ingress",
    "--proto",
    "tcp",
    "--dport",
    String(DENIED),
    "--action",
    "deny",
  );

  const attach = (net: string, k: keyof typeof ENDPOINTS, configure: boolean) => {
    const v = A.json(
      "network",
      "attach",
      net,
      "--name",
      ENDPOINTS[k],
      "--netns",
      nsOf(k).name,
      ...(configure ? ["--configure"] : []),
    );
    eps[k] = { name: v.name, ip: v.ip, ip6: v.ip6, mac: v.mac, ll: linkLocal(v.mac) };
  };
  if (EXTENSIONS) {
    // V and O fill cnv-user-br0; W, C and E go to cnv-user-br1.
    attach(NETS.A.name, "V", true);
    attach(NETS.B.name, "O", true);
    attach(NETS.A.name, "W", true);
    attach(NETS.A.name, "C", false);
    attach(NETS.X.name, "E", true);
    const master = (k: keyof typeof ENDPOINTS) =>
      A.ns.ipJson(["-d", "link", "show", A.json("endpoint", "show", ENDPOINTS[k]).interface])[0].master;
    expect(Object.fromEntries((["V", "O", "W", "C", "E"] as const).map((k) => [k, master(k)]))).toEqual({
      V: "cnv-user-br0",
      O: "cnv-user-br0",
      W: "cnv-user-br1",
      C: "cnv-user-br1",
      E: "cnv-user-br1",
    });
  } else {
    attach(NETS.A.name, "V", true);
    attach(NETS.A.name, "W", true);
    attach(NETS.A.name, "C", false);
    attach(NETS.B.name, "O", true);
    attach(NETS.X.name, "E", true);
  }
  // V and E take router advertisements (the node's, and a rogue's if one got through).
  for (const k of ["V", "E"] as const)
    nsOf(k).execOk(["sysctl", "-qw", "net.ipv6.conf.eth0.accept_ra=1", "net.ipv6.conf.eth0.autoconf=1"]);

  // C configures itself: udhcpc for IPv4, the kernel's SLAAC from the node's RA for IPv6.
  const c = nsOf("C");
  udhcpcLog = join(A.dir, "udhcpc.log");
  const script = join(A.dir, "udhcpc.sh");
  await Bun.write(
    script,
    `#!/bin/sh
echo "reason=$1|ip=$ip|router=$router|serverid=$serverid" >> ${udhcpcLog}
case $1 in bound|renew)
  ip addr replace $ip/$mask dev $interface
  ip route replace default via $router dev $interface ;;
esac
`,
  );
  A.ns.execOk(["chmod", "755", script]);
  c.execOk(["sysctl", "-qw", "net.ipv6.conf.eth0.accept_ra=1", "net.ipv6.conf.eth0.autoconf=1"]);
  c.execOk(["ip", "link", "set", "eth0", "up"]);
  const u = Bun.spawn(
    ["ip", "netns", "exec", c.name, "udhcpc", "-f", "-i", "eth0", "-s", script, "-t", "10", "-T", "1"],
    {
      stdout: "ignore",
      stderr: "ignore",
    },
  );
  procs.push(u);

  // The positions: attackers (W, O, the LAN host), listeners (V, the node, the LAN host).
  const positions: Array<[keyof typeof pos, Netns, number]> = [
    ["W", nsOf("W"), 0x1000],
    ["O", nsOf("O"), 0x5000],
    ["LAN", lan, 0x9000],
    ["V", nsOf("V"), 0xd000],
    ["NODE", A.ns, 0xe000],
  ];
  for (const [k, where, base] of positions) pos[k] = new Position(k, where, base);
  for (const k of Object.keys(pos) as Array<keyof typeof pos>) await at(k).ready();
  const topo = {
    V: ep("V"),
    W: ep("W"),
    C: ep("C"),
    O: ep("O"),
    E: ep("E"),
    A: NETS.A,
    B: NETS.B,
    X: NETS.X,
    gw_mac: gwMac,
    gw_ll: gwLl,
    lan: { ...LAN, mac: lanMac, ll: lanLl },
    node: NODE,
    rogue_prefix: ROGUE.prefix,
    rogue_dns6: ROGUE.dns6,
    rogue_router4: ROGUE.router4,
  };
  for (const k of ["W", "O", "LAN", "V"] as const) await at(k).req({ op: "topo", topo });
  await at("V").req({ op: "listen", host: ep("V").ip, ports: [8080, 9090] });
  await at("V").req({ op: "listen", host: ep("V").ip6, ports: [8080, 9090] });
  await at("NODE").req({ op: "listen", host: NODE.ip, ports: [ALLOWED, DENIED] });
  await at("NODE").req({ op: "listen", host: NODE.ip6, ports: [ALLOWED, DENIED] });
  await at("LAN").req({ op: "listen", host: LAN.ip, ports: [8080] });
  await at("LAN").req({ op: "listen", host: LAN.ip6, ports: [8080] });

  const big = { rcvbuf: 16 << 20 };
  for (const k of ["V", "W", "C", "O", "E"] as const)
    caps[k] = new PacketSocket("eth0", { netns: nsOf(k).path, ...big });
  caps.LAN = new PacketSocket("ext0", { netns: lan.path, ...big });
  caps.BR = new PacketSocket("cnv-user-br0", { netns: A.ns.path, ...big });
}, 90_000);

afterAll(() => {
  for (const s of Object.values(caps)) s?.close();
  for (const p of procs) p.kill("SIGKILL");
  for (const n of Object.values(ns)) n?.destroy();
  A?.destroy();
});

// ---- legitimate traffic --------------------------------------------------------------------

test("legit: C takes its profile address from udhcpc and its IPv6 address and default route from the node's RA (SLAAC)", async () => {
  const c = nsOf("C");
  const bound = await waitFor("udhcpc bound", () => udhcpcEvents().find((l) => l.startsWith("reason=bound")));
  expect(bound).toBe(`reason=bound|ip=${ep("C").ip}|router=${NETS.A.gw4}|serverid=${NETS.A.gw4}`);
  await waitFor("SLAAC address", () => addrs(c).includes(ep("C").ip6));
  const def = await waitFor("RA default route", () => routes6(c).find((r) => r.dst === "default"));
  expect(def.gateway).toBe(gwLl);
  expect(c.exec(["ping", "-c", "1", "-W", "2", NETS.A.gw4]).code).toBe(0);
  expect(c.exec(["ping", "-6", "-c", "1", "-W", "2", NETS.A.gw6]).code).toBe(0);
  const leases = A.json("dhcp", "leases", "--network", NETS.A.name);
  expect(JSON.stringify(leases)).toContain(ep("C").ip);
}, 30_000);

test("legit: ping, TCP and ND between V and W; the firewall's allowed and denied ports", async () => {
  const w = nsOf("W");
  for (const dst of [ep("V").ip, ep("V").ip6]) w.execOk(["ping", "-c", "2", "-i", "0.2", "-W", "2", dst]);
  nsOf("V").execOk(["ping", "-6", "-c", "1", "-W", "2", ep("W").ip6]);
  const tcp = async (host: string, port: number) =>
    (await at("W").req({ op: "connect", host, port, timeout: 1.5 })).connected as boolean;
  expect({
    v4_8080: await tcp(ep("V").ip, 8080),
    v6_8080: await tcp(ep("V").ip6, 8080),
    v4_9090: await tcp(ep("V").ip, 9090),
    v6_9090: await tcp(ep("V").ip6, 9090),
    v4_7000: await tcp(ep("V").ip, 7000),
  }).toEqual({ v4_8080: true, v6_8080: true, v4_9090: true, v6_9090: true, v4_7000: false });
  // Neighbour discovery on the link: each knows the other's profile MAC.
  expect(neigh(nsOf("V"), ep("W").ip6, "eth0")).toBe(ep("W").mac);
  expect(neigh(w, ep("V").ip6, "eth0")).toBe(ep("V").mac);
  expect(neigh(w, ep("V").ip, "eth0")).toBe(ep("V").mac);
}, 30_000);

test("legit: V reaches the LAN host routed through the gateway, and the LAN host reaches V's allowed port only", async () => {
  const v = nsOf("V");
  for (const dst of [LAN.ip, LAN.ip6]) v.execOk(["ping", "-c", "2", "-i", "0.2", "-W", "2", dst]);
  const conn = async (from: "V" | "LAN", host: string, port: number) =>
    (await at(from).req({ op: "connect", host, port, timeout: 1.5 })).connected as boolean;
  expect({
    v_to_lan4: await conn("V", LAN.ip, 8080),
    v_to_lan6: await conn("V", LAN.ip6, 8080),
    lan_to_v4_8080: await conn("LAN", ep("V").ip, 8080),
    lan_to_v6_8080: await conn("LAN", ep("V").ip6, 8080),
    lan_to_v4_9090: await conn("LAN", ep("V").ip, 9090),
    lan_to_v6_9090: await conn("LAN", ep("V").ip6, 9090),
  }).toEqual({
    v_to_lan4: true,
    v_to_lan6: true,
    lan_to_v4_8080: true,
    lan_to_v6_8080: true,
    lan_to_v4_9090: false,
    lan_to_v6_9090: false,
  });
  const lanSeen = (await at("LAN").req({ op: "accepted" })).accepted.map((a: any) => a.peer);
  expect(lanSeen).toEqual(expect.arrayContaining([ep("V").ip, ep("V").ip6]));
}, 30_000);

test("legit: the LAN host and E talk at L2 on the extended network", () => {
  const lan = nsOf("LAN");
  lan.execOk(["ping", "-c", "2", "-i", "0.2", "-W", "2", ep("E").ip]);
  lan.execOk(["ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", ep("E").ip6]);
  expect(neigh(lan, ep("E").ip, "ext0")).toBe(ep("E").mac);
  expect(neigh(nsOf("E"), LAN.xip, "eth0")).toBe(lanMac);
}, 20_000);

// ---- from a workload, against its own port ---------------------------------------------------

test("W1: spoofed MACs, addresses, ARP and NAs (behind hop-by-hop, destination options, routing, atomic and real fragments, VLAN tags) never leave W's port", async () => {
  const v = nsOf("V");
  // The neighbour entries the spoofs aim at exist before the attack.
  v.execOk(["ping", "-c", "1", "-W", "2", NETS.A.gw4]);
  v.execOk(["ping", "-6", "-c", "1", "-W", "2", NETS.A.gw6]);
  A.ns.execOk(["ping", "-c", "1", "-W", "2", ep("V").ip]);
  A.ns.execOk(["ping", "-6", "-c", "1", "-W", "2", ep("V").ip6]);
  const res = await attack("W", "w1_spoof");
  check(res, ["V", "C", "O", "E", "LAN", "BR"]);
  expect({
    vGw4: neigh(v, NETS.A.gw4, "eth0"),
    vGw6: neigh(v, NETS.A.gw6, "eth0"),
    nodeV4: neigh(A.ns, ep("V").ip, "cnv-user-br0"),
    nodeV6: neigh(A.ns, ep("V").ip6, "cnv-user-br0"),
  }).toEqual({ vGw4: gwMac, vGw6: gwMac, nodeV4: ep("V").mac, nodeV6: ep("V").mac });
}, 30_000);

test("W2: router advertisements, redirects, DHCP/DHCPv6 server messages and VXLAN from W are dropped at its port, however wrapped", async () => {
  const res = await attack("W", "w2_server");
  check(res, ["V", "C", "O", "E", "LAN", "BR"]);
  expect({ V: noRogueConfig(nsOf("V")), C: noRogueConfig(nsOf("C")) }).toEqual({
    V: { rogueRoutes: [], rogueAddrs: [] },
    C: { rogueRoutes: [], rogueAddrs: [] },
  });
  expect(foreignLeases()).toEqual([]);
}, 30_000);

test("W2: ICMP redirects, router advertisements and a router's errors about V's traffic from O (network B allows everything) are dropped at its port, routed or to all hosts", async () => {
  const res = await attack("O", "w2_redirect");
  check(res, ["LAN", "V", "BR"]);
}, 30_000);

test("W2: GENEVE, UDP 8472, VXLAN-GPE and GRE/TEB from W are ordinary traffic under the firewall; their inner frames appear nowhere", async () => {
  const res = await attack("W", "w2_tunnels");
  check(res, ["V", "C", "O", "LAN", "BR"]);
}, 30_000);

test("W3: W's frames to the LAN host's MAC, its broadcasts and multicasts never reach the LAN (lan-direct at the uplink)", async () => {
  const res = await attack("W", "w3_lan");
  check(res, ["LAN", "V"]);
}, 30_000);

test("W4: ICMP errors quoting W's allowed flow reach only the flow's peer; to anyone else they are denied like any packet", async () => {
  // The allowed flows the errors quote: W → V:8080, held open.
  const f4 = await at("W").req({ op: "connect", host: ep("V").ip, port: 8080, sport: 41080, hold: true });
  const f6 = await at("W").req({ op: "connect", host: ep("V").ip6, port: 8080, sport: 41081, hold: true });
  expect([f4.connected, f6.connected]).toEqual([true, true]);
  const res = await attack("W", "w4_errors", { args: { sport4: 41080, sport6: 41081 } });
  await at("W").req({ op: "close" });
  check(res, ["V", "C", "O", "LAN"]);
}, 30_000);

test("W5: DHCP INFORM and RENEW naming O's address, A's broadcast or 255.255.255.255 are answered to W's own address or not at all", async () => {
  const res = await attack("W", "w5_dhcp");
  check(res, []); // the chaddr and relay spoofs: dhcp-spoof
  const replies = Object.fromEntries(ALL_POINTS.map((p) => [p, dhcpReplies(res.got[p])]));
  // Only NAKs (broadcast, to the requests naming an address that is not W's) may land on A's
  // ports; nothing lands anywhere else.
  const notNak = (p: Point) => replies[p]?.filter((r) => r.type !== 6) ?? [];
  expect({ V: notNak("V"), C: notNak("C"), W: notNak("W"), O: replies.O, E: replies.E, LAN: replies.LAN }).toEqual({
    V: [],
    C: [],
    W: [],
    O: [],
    E: [],
    LAN: [],
  });
  // The control: an INFORM naming W's own address is answered, to that address, from its gateway.
  const own = await attack("W", "w5_inform_own");
  expect(dhcpReplies(own.got.W)).toEqual(
    Array(N).fill({ type: 5, src: NETS.A.gw4, dst: ep("W").ip, yiaddr: "0.0.0.0" }),
  );
  expect(dhcpReplies(own.got.V).filter((r) => r.type !== 6)).toEqual([]);
}, 30_000);

test("W5: the answers a client asks to have broadcast, and its NAK, reach it on its own network from its gateway, and stay off the LAN", async () => {
  const got: Record<string, unknown> = {};
  const want: Record<string, unknown> = {};
  for (const [who, gw] of [
    ["W", NETS.A.gw4],
    ["O", NETS.B.gw4],
  ] as const) {
    const res = await attack(who, "w5_broadcast", { args: { who } });
    const replies = Object.fromEntries(ALL_POINTS.map((p) => [p, dhcpReplies(res.got[p])]));
    const bcast = (type: number, yiaddr: string) => Array(N).fill({ type, src: gw, dst: "255.255.255.255", yiaddr });
    got[who] = { mine: replies[who], LAN: replies.LAN, E: replies.E };
    want[who] = { mine: [...bcast(2, ep(who).ip), ...bcast(5, ep(who).ip), ...bcast(6, "0.0.0.0")], LAN: [], E: [] };
  }
  expect(got).toEqual(want);
}, 30_000);

test("W5: a DHCPv6 RELEASE or DECLINE from W naming V's DUID and IAID leaves V's binding alone", async () => {
  const v6Binding = () =>
    (A.json("dhcp", "leases", "--network", NETS.A.name) as any[]).find(
      (l) => l.family === 6 && l.endpoint === ENDPOINTS.V,
    );
  await at("V").req({ op: "send", batch: "v6_bind", iface: "eth0", count: 1, args: {} });
  const bound = await waitFor("V's DHCPv6 binding", v6Binding, 5000);
  expect(bound).toMatchObject({ ip: ep("V").ip6, active: true });
  await attack("W", "w5_release6", { count: 1 });
  // The agent copies the service's bindings into the store every 2 s: past one copy, V's is there.
  await Bun.sleep(2500);
  expect(v6Binding()).toMatchObject({ ip: ep("V").ip6, active: true });
}, 30_000);

// ---- from a workload of another network ------------------------------------------------------

test("N1: O's unicast to A's MACs, its broadcasts, multicasts, NS and ARP reach no port of A (other-network)", async () => {
  const res = await attack("O", "n1_l2");
  check(res, ["V", "W", "C", "E"]);
}, 30_000);

test("N2: NS, NA, RS, MLDv1/v2 with extra bytes and DHCP routed from O into default-deny A, hop limits 255 and 64, are not delivered", async () => {
  const res = await attack("O", "n2_routed");
  check(res, ["V", "W", "C"]);
}, 30_000);

test("N2: the always-allowed ND is the link's own, even within A: data riding in nonce or link-layer address options is judged by the rules", async () => {
  const res = await attack("W", "n2_link");
  check(res, ["V", "C", "BR"]);
}, 30_000);

// ---- from a host on the LAN behind the uplink ------------------------------------------------

test("L1: an NA claiming a workload's or the gateway's address, behind hop-by-hop / destination options / routing / both / fragments, with VLAN tags, poisons no cache (local-spoof)", async () => {
  const v = nsOf("V");
  v.execOk(["ping", "-6", "-c", "1", "-W", "2", NETS.A.gw6]);
  v.execOk(["ping", "-c", "1", "-W", "2", NETS.A.gw4]);
  A.ns.execOk(["ping", "-6", "-c", "1", "-W", "2", ep("V").ip6]);
  A.ns.execOk(["ping", "-6", "-c", "1", "-W", "2", ep("C").ip6]);
  A.ns.execOk(["ping", "-c", "1", "-W", "2", ep("V").ip]);
  A.ns.execOk(["ping", "-6", "-c", "1", "-W", "2", LAN.ip6]);
  A.ns.execOk(["ping", "-6", "-c", "1", "-W", "2", `${lanLl}%cnv-user-br0`]);
  const res = await attack("LAN", "l1_na");
  check(res, ["V", "W", "C", "O", "E", "BR"]);
  expect({
    nodeV6: neigh(A.ns, ep("V").ip6, "cnv-user-br0"),
    nodeC6: neigh(A.ns, ep("C").ip6, "cnv-user-br0"),
    nodeV4: neigh(A.ns, ep("V").ip, "cnv-user-br0"),
    vGw6: neigh(v, NETS.A.gw6, "eth0"),
    vGw4: neigh(v, NETS.A.gw4, "eth0"),
    nodeA77: neigh(A.ns, "fd81::77", "cnv-user-br0"),
    nodeLan6: neigh(A.ns, LAN.ip6, "cnv-user-br0"),
    nodeLanLl: neigh(A.ns, lanLl, "cnv-user-br0"),
  }).toEqual({
    nodeLan6: lanMac,
    nodeLanLl: lanMac,
    nodeV6: ep("V").mac,
    nodeC6: ep("C").mac,
    nodeV4: ep("V").mac,
    vGw6: gwMac,
    vGw4: gwMac,
    nodeA77: undefined,
  });
}, 30_000);

test("L2: a LAN host using unclaimed addresses of A and B (gratuitous ARP, ARP, ND, IPv4/IPv6 to the node and to V) is a subnet spoof; 'allow from own subnet' lets nothing in", async () => {
  const res = await attack("LAN", "l2_subnet");
  check(res, ["V", "W", "C", "O", "BR"]);
  const gone = ["10.81.0.77", "fd81::77", "10.82.0.77", "fd82::77"];
  expect(Object.fromEntries(gone.map((a) => [a, neigh(A.ns, a, "cnv-user-br0") ?? null]))).toEqual(
    Object.fromEntries(gone.map((a) => [a, null])),
  );
  const peers = (await at("V").req({ op: "accepted" })).accepted.map((a: any) => a.peer);
  expect(peers.filter((p: string) => gone.includes(p))).toEqual([]);
}, 30_000);

test("L3: RAs, redirects, ND and DHCP/DHCPv6 server messages from the LAN, bridged, tagged or routed, reach no workload; C's lease and V's routes are untouched", async () => {
  // V takes RAs: the node's gave it a default route through the gateway's link-local.
  await waitFor("V's default route from the node's RA", () => JSON.stringify(routes6(nsOf("V"))).includes(gwLl));
  const res = await attack("LAN", "l3_lan");
  check(res, ["V", "W", "C", "O", "E"]);
  expect({ V: noRogueConfig(nsOf("V")), C: noRogueConfig(nsOf("C")), O: noRogueConfig(nsOf("O")) }).toEqual({
    V: { rogueRoutes: [], rogueAddrs: [] },
    C: { rogueRoutes: [], rogueAddrs: [] },
    O: { rogueRoutes: [], rogueAddrs: [] },
  });
  expect(foreignLeases()).toEqual([]);
  expect(addrs(nsOf("C"))).toContain(ep("C").ip);
  expect(nsOf("C").ipJson(["-4", "route", "show", "default"])[0]?.gateway).toBe(NETS.A.gw4);
}, 30_000);

test("L3: on a network extended onto the LAN, ordinary L2 traffic passes but a bridged RA, redirect, routed NS or DHCP/DHCPv6 server message does not", async () => {
  const res = await attack("LAN", "x_extended");
  check(res, ["E", "V", "W", "C"]);
  expect(noRogueConfig(nsOf("E"))).toEqual({ rogueRoutes: [], rogueAddrs: [] });
}, 30_000);

/** ARP and neighbour solicitations/advertisements among captured frames that name an address
 * of A or B (a gateway, a workload) or a workload's link-local address, described. */
function privateNames(frames: Buffer[]): string[] {
  const nets = [NETS.A, NETS.B];
  const v4 = (a: string) => nets.some((n) => a.startsWith(n.gw4.replace(/\.1$/, ".")));
  const lls = new Set((["V", "W", "C", "O"] as const).map((k) => ep(k).ll));
  const v6 = (a: string) => lls.has(a) || nets.some((n) => a.startsWith(n.gw6.replace(/1$/, "")));
  const out: string[] = [];
  for (const f of frames) {
    const { type, off } = l3(f);
    if (type === 0x0806 && f.length >= off + 28) {
      const spa = bytesToIp(f.subarray(off + 14, off + 18));
      const tpa = bytesToIp(f.subarray(off + 24, off + 28));
      if (v4(spa) || v4(tpa)) out.push(`arp op ${f.readUInt16BE(off + 6)}: ${spa} → ${tpa}`);
    }
    const u = upper(f);
    if (type === 0x86dd && u?.proto === 58 && f.length >= u.off + 24 && [135, 136].includes(f[u.off] as number)) {
      const target = bytesToIp(f.subarray(u.off + 8, u.off + 24));
      if (v6(target)) out.push(`icmp6 ${f[u.off]} target ${target}`);
    }
  }
  return out;
}

test("L6: the node's own ARP and neighbour discovery about A's and B's addresses (gateways, workloads) stay off the LAN (lan-leak); the node still reaches its workloads", async () => {
  await settle();
  drainAll();
  const before = await counters();
  // The node forgets V and O, then reaches them: its kernel resolves them on the bridge.
  for (const k of ["V", "O"] as const) {
    for (const a of [ep(k).ip, ep(k).ip6, ep(k).ll]) A.ns.exec(["ip", "neigh", "del", a, "dev", "cnv-user-br0"]);
    A.ns.execOk(["ping", "-c", "1", "-W", "2", ep(k).ip]);
    A.ns.execOk(["ping", "-6", "-c", "1", "-W", "2", ep(k).ip6]);
    A.ns.execOk(["ping", "-6", "-c", "1", "-W", "2", `${ep(k).ll}%cnv-user-br0`]);
  }
  // The LAN host asks for the gateways' addresses, by ARP and by NS: the node's kernel answers
  // for any address it holds on the bridge.
  const probe = [
    "from scapy.all import *",
    "import sys",
    "mac, lip, lll = sys.argv[1:4]",
    "for gw in sys.argv[4:6]:",
    "    sendp(Ether(src=mac, dst='ff:ff:ff:ff:ff:ff')/ARP(op=1, hwsrc=mac, psrc=lip, pdst=gw), iface='ext0', verbose=0)",
    "for gw in sys.argv[6:8]:",
    "    sn = inet_ntop(socket.AF_INET6, in6_getnsma(inet_pton(socket.AF_INET6, gw)))",
    "    sendp(Ether(src=mac, dst=in6_getnsmac(inet_pton(socket.AF_INET6, sn)))/IPv6(src=lll, dst=sn, hlim=255)/ICMPv6ND_NS(tgt=gw)/ICMPv6NDOptSrcLLAddr(lladdr=mac), iface='ext0', verbose=0)",
  ].join("\n");
  nsOf("LAN").execOk([PYTHON, "-c", probe, lanMac, LAN.ip, lanLl, NETS.A.gw4, NETS.B.gw4, NETS.A.gw6, NETS.B.gw6]);
  await Bun.sleep(500);
  const after = await counters();
  expect(privateNames(caps.LAN?.drain() ?? [])).toEqual([]);
  // At least: the node's ARP and NS (global, link-local) for V and O, and its four answers.
  expect((after["uplink:lan-leak"] ?? 0) - (before["uplink:lan-leak"] ?? 0)).toBeGreaterThanOrEqual(10);
  // The LAN learnt no link-layer address for the gateways.
  const lan = nsOf("LAN");
  expect([NETS.A.gw4, NETS.B.gw4, NETS.A.gw6, NETS.B.gw6].map((a) => neigh(lan, a, "ext0") ?? null)).toEqual([
    null,
    null,
    null,
    null,
  ]);
  // Routed, the networks stay reachable from the LAN.
  lan.execOk(["ping", "-c", "1", "-W", "2", NETS.A.gw4]);
  lan.execOk(["ping", "-6", "-c", "1", "-W", "2", ep("V").ip6]);
}, 30_000);

test("L4: SYNs from the LAN to a port the global firewall denies are dropped untagged, priority-tagged, 802.1Q or QinQ; a third tag or a long IPv6 chain is dropped too", async () => {
  const hits = async () =>
    ((await A.api("/v1/firewall/global/rules")).rules as any[]).find((r) => String(r.dport) === String(DENIED))?.hits
      .packets as number;
  const before = await hits();
  const res = await attack("LAN", "l4_tags", { args: { denied: DENIED, allowed: ALLOWED } });
  check(res, ["BR"]);
  const synAcks = (port: number) =>
    res.got.LAN.filter((f) => {
      const u = upper(f);
      return u && u.proto === 6 && f.readUInt16BE(u.off) === port && ((f[u.off + 13] as number) & 0x12) === 0x12;
    }).length;
  const denied = res.frames.filter((f) => f.pkts[0]?.drops.some(([, r]) => r === "fw-rule")).length * N;
  expect({ deniedSynAcks: synAcks(DENIED), ruleHits: (await hits()) - before }).toEqual({
    deniedSynAcks: 0,
    ruleHits: denied,
  });
  // The allowed port answers (untagged, both families at least).
  expect(synAcks(ALLOWED)).toBeGreaterThanOrEqual(2 * N);
  const accepted = (await at("NODE").req({ op: "accepted" })).accepted as Array<{ port: number }>;
  expect(accepted.filter((a) => a.port === DENIED)).toEqual([]);
  // And the LAN host's own kernel: the allowed port connects, the denied one does not.
  const conn = async (host: string, port: number) =>
    (await at("LAN").req({ op: "connect", host, port, timeout: 1 })).connected;
  expect([
    await conn(NODE.ip, ALLOWED),
    await conn(NODE.ip6, ALLOWED),
    await conn(NODE.ip, DENIED),
    await conn(NODE.ip6, DENIED),
  ]).toEqual([true, true, false, false]);
}, 30_000);

test("L5: DHCP and DHCPv6 requests from the LAN naming a claimed MAC, behind tags, IP options, extension headers and fragments, never reach the node's servers (dhcp-outside)", async () => {
  const res = await attack("LAN", "l5_dhcp");
  check(res, ["BR", "V", "W", "C"]);
  const serverReplies = res.got.LAN.filter((f) => {
    const u = upper(f);
    return u && u.proto === 17 && [67, 547].includes(f.readUInt16BE(u.off));
  });
  expect(serverReplies.length).toBe(0);
}, 30_000);
