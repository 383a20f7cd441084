/** The IPv6 address service against real kernels and a real client: the service runs inside a
 * namespace holding a bridge with two networks' gateways; workload interfaces in a second namespace
 * get their profile address and default route from the kernel's own SLAAC after soliciting (the
 * periodic RA is too slow to be what configured them), only their own network's prefix, the RA on
 * the wire is unicast to their link-local, and ISC dhclient gets the profile address (stateful)
 * and the DNS server (stateless). An unclaimed interface gets nothing. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Ipv6Stats, V6Binding, V6Lease, V6Network } from "../../src/dhcp/ipv6-service";
import { decodeRa } from "../../src/dhcp/ra";
import { type Dhcp6Message, type Dhcp6Option, decodeDhcp6, duidLl, encodeDhcp6, MSG } from "../../src/dhcp/v6";
import { linkLocal, profileIp6 } from "../../src/model/network";
import { BUN, Netns, ROOT, uniqueName } from "../helpers/netns";

const BRIDGE_MAC = "02:aa:00:00:00:01";
const NETS: V6Network[] = [
  { name: "net1", cidr6: "fd00:77::/64", gateway6: "fd00:77::1", mtu: 1400, dnsZone: "net1.internal", leaseTime: 3600 },
  { name: "net2", cidr6: "fd00:88::/64", gateway6: "fd00:88::1", mtu: 1500, dnsZone: "net2.internal", leaseTime: 3600 },
];
/** Workload interfaces in namespace B: two claimed endpoints of different networks, one stranger. */
const IFS = [
  { dev: "eth0", mac: "02:00:01:00:00:05", network: "net1" as string | null },
  { dev: "eth1", mac: "02:00:02:00:00:07", network: "net2" as string | null },
  { dev: "eth2", mac: "02:00:09:00:00:09", network: null },
];
const BINDINGS: V6Binding[] = IFS.filter((i) => i.network).map((i, n) => {
  const net = NETS.find((x) => x.name === i.network) as V6Network;
  return {
    endpoint: `ep${n}`,
    network: net.name,
    mac: i.mac,
    ip6: profileIp6(net.cidr6, i.mac),
    linkLocal: linkLocal(i.mac),
  };
});

/** Runs the service in the namespace it is started in; answers "stats" on stdin with one JSON line. */
const DAEMON = `
import { Ipv6Service } from ${JSON.stringify(join(ROOT, "src/dhcp/ipv6-service.ts"))};
const cfg = JSON.parse(process.argv[2]);
const svc = new Ipv6Service({ bridge: cfg.bridge, raIntervalMs: cfg.raIntervalMs, log: (l, m) => console.error(l, m) });
await svc.start();
svc.update(cfg.networks, cfg.bindings);
console.log("ready");
for await (const line of console) {
  if (line.trim() === "stats") console.log(JSON.stringify({ stats: svc.stats(), leases: svc.leases() }));
}
svc.close();
process.exit(0);
`;

/** Sends router solicitations from B's eth0 and prints the first RA with its destination and hop limit. */
const CAPTURE = `
import json, socket, struct, sys
dev = sys.argv[1]
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.SOL_SOCKET, 25, dev.encode() + b"\\0")
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
f = bytearray(b"\\xff" * 32)
f[134 >> 3] &= ~(1 << (134 & 7)) & 0xff
s.setsockopt(socket.IPPROTO_ICMPV6, 1, bytes(f))
idx = socket.if_nametoindex(dev)
s.settimeout(1.5)
for attempt in range(4):
    s.sendto(bytes([133, 0, 0, 0, 0, 0, 0, 0]), ("ff02::2", 0, 0, idx))
    try:
        data, anc, _, addr = s.recvmsg(4096, 1024)
    except socket.timeout:
        continue
    out = {"ra": data.hex(), "src": addr[0].split("%")[0]}
    for lvl, typ, d in anc:
        if typ == socket.IPV6_PKTINFO:
            out["dst"] = socket.inet_ntop(socket.AF_INET6, d[:16])
        if typ == socket.IPV6_HOPLIMIT:
            out["hops"] = struct.unpack("i", d[:4])[0]
    print(json.dumps(out))
    sys.exit(0)
sys.exit(1)
`;

/** Sends DHCPv6 datagrams (argv: JSON [{dev, hex}]) from port 546 of each device to ff02::1:2 and
 * prints every datagram that came back within a second, by device. */
const PROBE = `
import json, select, socket, sys, time
msgs = json.loads(sys.argv[1])
socks = {}
for m in msgs:
    if m["dev"] not in socks:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, 25, m["dev"].encode() + b"\\0")
        s.bind(("::", 546))
        socks[m["dev"]] = s
for m in msgs:
    socks[m["dev"]].sendto(bytes.fromhex(m["hex"]), ("ff02::1:2", 547, 0, socket.if_nametoindex(m["dev"])))
got = {d: [] for d in socks}
end = time.time() + 1.0
while time.time() < end:
    r, _, _ = select.select(list(socks.values()), [], [], max(0, end - time.time()))
    for s in r:
        data, addr = s.recvfrom(4096)
        got[[d for d, x in socks.items() if x is s][0]].append(data.hex())
print(json.dumps(got))
`;

let A: Netns;
let B: Netns;
let dir: string;
let bridge: string;
let daemon: ReturnType<typeof Bun.spawn> | undefined;
const daemonLines: string[] = [];
let daemonErr = "";
const clientPids: number[] = [];

async function waitFor<T>(
  what: string,
  fn: () => T | undefined | false | Promise<T | undefined | false>,
  ms = 12_000,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; service stderr: ${daemonErr.trim()}`);
    await Bun.sleep(100);
  }
}

async function readDaemonLines(stream: ReadableStream<Uint8Array>): Promise<void> {
  let buf = "";
  for await (const chunk of stream) {
    buf += new TextDecoder().decode(chunk);
    const parts = buf.split("\n");
    buf = parts.pop() ?? "";
    daemonLines.push(...parts);
  }
}

async function serviceState(): Promise<{ stats: Ipv6Stats; leases: V6Lease[] }> {
  const before = daemonLines.length;
  const stdin = daemon?.stdin as import("bun").FileSink;
  stdin.write("stats\n");
  stdin.flush();
  const line = await waitFor("service stats", () => daemonLines.slice(before).find((l) => l.startsWith("{")), 5000);
  return JSON.parse(line);
}

const globals = (dev: string): string[] =>
  B.ipJson(["-6", "addr", "show", "dev", dev, "scope", "global"])[0]?.addr_info?.map((a: any) => a.local) ?? [];

/** Signals one of this test's dhclients, only while that pid still is one (pids get reused). */
function stopClient(pid: number, signal: NodeJS.Signals): void {
  try {
    if (readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(dir)) process.kill(pid, signal);
  } catch {}
}

/** Runs dhclient once in B on `dev`; returns the environment its script saw for `reason` (ISC
 * dhclient reports a stateful lease as BOUND6 and a stateless answer as RENEW6). */
function dhclient(tag: string, args: string[], dev: string, reason: string): Record<string, string> {
  for (const f of readdirSync(dir)) if (f.startsWith("env-")) rmSync(join(dir, f));
  const pf = join(dir, `${tag}.pid`);
  const lf = join(dir, `${tag}.leases`);
  const r = B.exec([
    "dhclient",
    "-6",
    "-1",
    "-v",
    "-cf",
    join(dir, "dhclient.conf"),
    "-pf",
    pf,
    "-lf",
    lf,
    "-sf",
    join(dir, "script.sh"),
    ...args,
    dev,
  ]);
  // On success dhclient leaves a daemon behind: stop it (by its pid) before the next client binds port 546.
  if (existsSync(pf)) {
    const pid = Number(readFileSync(pf, "utf8").trim());
    if (pid > 0) {
      clientPids.push(pid);
      stopClient(pid, "SIGTERM");
    }
  }
  const env = join(dir, `env-${reason}`);
  if (!existsSync(env)) {
    const seen = readdirSync(dir).filter((f) => f.startsWith("env-"));
    throw new Error(`dhclient ${args.join(" ")} gave no ${reason} (scripts run: ${seen}; exit ${r.code}): ${r.stderr}`);
  }
  const out = Object.fromEntries(
    readFileSync(env, "utf8")
      .split("\n")
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
  return out;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "stm-ipv6-"));
  writeFileSync(join(dir, "daemon.ts"), DAEMON);
  writeFileSync(join(dir, "capture.py"), CAPTURE);
  writeFileSync(join(dir, "probe.py"), PROBE);
  writeFileSync(join(dir, "dhclient.conf"), "timeout 15;\nrequest dhcp6.name-servers, dhcp6.domain-search;\n");
  writeFileSync(join(dir, "script.sh"), `#!/bin/sh\nenv > "${dir}/env-$reason"\n`);
  chmodSync(join(dir, "script.sh"), 0o755);

  A = new Netns("v6a");
  B = new Netns("v6b");
  bridge = uniqueName("v6br");
  // No DAD on the gateway side: the bridge's link-local, the RA source, is usable the moment it has carrier.
  for (const scope of ["all", "default"]) A.execOk(["sysctl", "-qw", `net.ipv6.conf.${scope}.accept_dad=0`]);
  A.execOk(["ip", "link", "add", bridge, "address", BRIDGE_MAC, "type", "bridge"]);
  for (const [i, f] of IFS.entries()) {
    A.execOk(["ip", "link", "add", `p${i}`, "type", "veth", "peer", "name", f.dev, "netns", B.name]);
    A.execOk(["ip", "link", "set", `p${i}`, "master", bridge, "up"]);
    B.execOk(["ip", "link", "set", f.dev, "address", f.mac]);
    B.execOk(["sysctl", "-qw", `net.ipv6.conf.${f.dev}.accept_ra=2`, `net.ipv6.conf.${f.dev}.autoconf=1`]);
    // One solicitation each: the count of ignored ones is then exact.
    B.execOk(["sysctl", "-qw", `net.ipv6.conf.${f.dev}.router_solicitations=1`]);
  }
  A.execOk(["ip", "link", "set", bridge, "up"]);
  for (const n of NETS) A.execOk(["ip", "addr", "add", `${n.gateway6}/64`, "dev", bridge, "nodad"]);

  // Periodic RAs every ~60 s: within this test, only the solicited ones can configure anything.
  const cfg = { bridge, raIntervalMs: 60_000, networks: NETS, bindings: BINDINGS };
  daemon = Bun.spawn(["nsenter", `--net=${A.path}`, BUN, "run", join(dir, "daemon.ts"), JSON.stringify(cfg)], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  readDaemonLines(daemon.stdout as ReadableStream<Uint8Array>);
  const stderr = daemon.stderr as ReadableStream<Uint8Array>;
  (async () => {
    for await (const c of stderr) daemonErr += new TextDecoder().decode(c);
  })();
  await waitFor("the service to start", () => daemonLines.includes("ready") || daemon?.exitCode !== null);
  if (!daemonLines.includes("ready")) throw new Error(`service did not start: ${daemonErr}`);
  // The workloads come up only now: each solicits once its link-local is ready.
  for (const f of IFS) B.execOk(["ip", "link", "set", f.dev, "up"]);
}, 60_000);

afterAll(() => {
  if (process.env.V6_DEBUG) console.log("service log:", daemonErr); // the service's warnings, when debugging
  daemon?.kill("SIGKILL");
  for (const pid of clientPids) stopClient(pid, "SIGKILL");
  B?.destroy();
  A?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("router advertisements", () => {
  test("SLAAC gives each endpoint exactly its profile address, the gateway as default router and the MTU", async () => {
    const want0 = profileIp6("fd00:77::/64", IFS[0]!.mac);
    const want1 = profileIp6("fd00:88::/64", IFS[1]!.mac);
    await waitFor(
      `${want0} on eth0 and ${want1} on eth1`,
      () => globals("eth0").includes(want0) && globals("eth1").includes(want1),
    );
    expect(globals("eth0")).toEqual([want0]);
    expect(globals("eth1")).toEqual([want1]); // net2's endpoint never saw net1's prefix, nor the reverse
    const routes = B.ipJson(["-6", "route", "show", "default", "dev", "eth0"]);
    expect(routes.map((r: any) => r.gateway)).toEqual([linkLocal(BRIDGE_MAC)]);
    expect(B.execOk(["sysctl", "-n", "net.ipv6.conf.eth0.mtu"]).trim()).toBe("1400");
    expect(B.execOk(["sysctl", "-n", "net.ipv6.conf.eth1.mtu"]).trim()).toBe("1500");
  });

  test("an interface that is no claimed endpoint is ignored: counted, no address, no route", async () => {
    await waitFor("the solicitation from eth2", async () => (await serviceState()).stats.rsIgnored > 0);
    // Other ICMPv6 to the bridge (echo, neighbour solicitations) must never reach the RS socket.
    for (const dev of ["eth0", "eth2"])
      B.exec(["ping", "-6", "-c", "2", "-i", "0.2", "-W", "1", `${linkLocal(BRIDGE_MAC)}%${dev}`]);
    const { stats } = await serviceState();
    expect(stats.rsIgnored).toBe(1); // eth2 solicits once (router_solicitations=1)
    expect(stats.rsReceived).toBeGreaterThanOrEqual(3);
    expect(globals("eth2")).toEqual([]);
    expect(B.ipJson(["-6", "route", "show", "default", "dev", "eth2"])).toEqual([]);
  });

  test("the RA on the wire: unicast to the endpoint's link-local, hop limit 255, M/O, RDNSS and DNSSL", () => {
    const r = B.exec(["python3", join(dir, "capture.py"), "eth0"]);
    expect(r.code, r.stderr).toBe(0);
    const got = JSON.parse(r.stdout);
    expect(got.dst).toBe(linkLocal(IFS[0]!.mac));
    expect(got.src).toBe(linkLocal(BRIDGE_MAC));
    expect(got.hops).toBe(255);
    const ra = decodeRa(Buffer.from(got.ra, "hex"));
    expect(ra).toMatchObject({ managed: true, other: true, routerLifetime: 1800 });
    expect(ra.options).toEqual(
      expect.arrayContaining([
        { kind: "sourceLinkAddr", mac: BRIDGE_MAC },
        { kind: "mtu", mtu: 1400 },
        { kind: "rdnss", lifetime: 1800, servers: ["fd00:77::1"] },
        { kind: "dnssl", lifetime: 1800, domains: ["net1.internal"] },
        expect.objectContaining({
          kind: "prefixInfo",
          prefix: "fd00:77::",
          prefixLength: 64,
          onLink: true,
          autonomous: true,
        }),
      ]),
    );
  });
});

describe("DHCPv6 with ISC dhclient", () => {
  test("stateful: the profile address as an IA_NA, with the lease in the service's list", async () => {
    const env = dhclient("stateful", [], "eth0", "BOUND6");
    expect(env.new_ip6_address).toBe(profileIp6("fd00:77::/64", IFS[0]!.mac));
    expect(env.new_dhcp6_name_servers).toBe("fd00:77::1");
    expect(env.new_max_life).toBe("3600");
    const { stats, leases } = await serviceState();
    expect(leases).toEqual([expect.objectContaining({ endpoint: "ep0", network: "net1", ip6: env.new_ip6_address })]);
    expect(stats.dhcp6.replies.ADVERTISE).toBeGreaterThanOrEqual(1);
    expect(stats.dhcp6.replies.REPLY).toBeGreaterThanOrEqual(1);
  });

  test("release ends the lease", async () => {
    const r = B.exec([
      "dhclient",
      "-6",
      "-r",
      "-v",
      "-cf",
      join(dir, "dhclient.conf"),
      "-pf",
      join(dir, "release.pid"),
      "-lf",
      join(dir, "stateful.leases"),
      "-sf",
      join(dir, "script.sh"),
      "eth0",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const { leases } = await serviceState();
    expect(leases).toEqual([]);
  });

  test("stateless: the DNS server and search domain from an Information-request", async () => {
    const env = dhclient("stateless", ["-S"], "eth0", "RENEW6");
    expect(env.new_dhcp6_name_servers).toBe("fd00:77::1");
    expect(env.new_dhcp6_domain_search).toBe("net1.internal.");
    expect(env.new_ip6_address).toBeUndefined();
    const { stats, leases } = await serviceState();
    expect(leases).toEqual([]);
    expect(stats.dhcp6.malformed).toBe(0);
  });

  test("only claimed endpoints get answers; relayed and malformed messages are refused and counted", async () => {
    const before = (await serviceState()).stats.dhcp6;
    const solicit = (mac: string) =>
      encodeDhcp6({
        type: MSG.SOLICIT,
        transactionId: 0x123456,
        options: [
          { kind: "clientId", duid: duidLl(mac) },
          { kind: "iaNa", iaid: 1, t1: 0, t2: 0, options: [] },
        ],
      });
    const relay = encodeDhcp6({
      type: MSG.RELAY_FORW,
      hopCount: 0,
      linkAddress: "fd00:77::1",
      peerAddress: linkLocal(IFS[0]!.mac),
      options: [{ kind: "relayMsg", data: solicit(IFS[0]!.mac) }],
    });
    const msgs = [
      { dev: "eth1", hex: solicit(IFS[1]!.mac).toString("hex") }, // claimed (net2): the control
      { dev: "eth2", hex: solicit(IFS[2]!.mac).toString("hex") }, // no endpoint
      { dev: "eth2", hex: relay.toString("hex") },
      { dev: "eth2", hex: "0100" }, // truncated header
    ];
    const r = B.exec(["python3", join(dir, "probe.py"), JSON.stringify(msgs)]);
    expect(r.code, r.stderr).toBe(0);
    const got = JSON.parse(r.stdout) as Record<string, string[]>;
    expect(got.eth2).toEqual([]);
    expect(got.eth1).toHaveLength(1);
    const adv = decodeDhcp6(Buffer.from(got.eth1![0]!, "hex")) as Dhcp6Message;
    expect(adv.type).toBe(MSG.ADVERTISE);
    expect(adv.transactionId).toBe(0x123456);
    const ia = adv.options.find((o) => o.kind === "iaNa") as Extract<Dhcp6Option, { kind: "iaNa" }>;
    expect(ia.options[0]).toMatchObject({ kind: "iaAddr", address: profileIp6("fd00:88::/64", IFS[1]!.mac) });
    const after = await waitFor("the counters", async () => {
      const d = (await serviceState()).stats.dhcp6;
      return d.received - before.received >= 4 && d;
    });
    expect(after.received - before.received).toBe(4);
    expect(after.ignored - before.ignored).toBe(1);
    expect(after.relayRefused - before.relayRefused).toBe(1);
    expect(after.malformed - before.malformed).toBe(1);
    expect((after.replies.ADVERTISE ?? 0) - (before.replies.ADVERTISE ?? 0)).toBe(1);
  });
});
