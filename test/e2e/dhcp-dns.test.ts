/** The network's DHCP and DNS servers with real clients, on a real agent: dhclient
 * (isc-dhcp-client), udhcpc (busybox) and dhcpcd each get the profile address, router, DNS
 * server, domain and MTU from the agent, and renew; dig and kdig resolve endpoints (A, AAAA),
 * PTR (IPv4 and IPv6), user records (SRV, MX, TXT, CNAME), fall back to TCP when an answer
 * is truncated, and resolve an outside name through a forwarder played by unbound in another
 * namespace. Queries from outside the node's networks are refused, DHCP from the uplink is
 * dropped, and the servers' counters show in /metrics. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { PacketSocket } from "../../src/sys/os";
import { TestAgent } from "../helpers/agent";
import { bootp, udp4 } from "../helpers/frames";
import { Netns, run } from "../helpers/netns";
import { metricValue, parseExposition as parseMetrics } from "../helpers/prom";

const GW = "10.71.0.1";
const GW6 = "fd71::1";
const OUT = "10.71.0.200";
const FOREIGN = "192.0.2.10";
let A: TestAgent;
let dir: string;
const ns: Record<string, Netns> = {};
const eps: Record<string, { ip: string; mac: string; ip6?: string }> = {};
const procs: Subprocess[] = [];

/** A client hook that records each event as one line of KEY=VALUE pairs and configures
 * the interface the way the distribution's scripts would (address, MTU, default route). */
function hook(name: string, body: string): string {
  const p = join(dir, name);
  writeFileSync(p, `#!/bin/sh\n${body}\n`);
  chmodSync(p, 0o755);
  return p;
}

function events(file: string): Array<Record<string, string>> {
  let text = "";
  try {
    text = readFileSync(file, "utf8");
  } catch {}
  return text
    .split("\n")
    .filter(Boolean)
    .map((l) =>
      Object.fromEntries(l.split("|").map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)])),
    );
}

async function waitFor<T>(what: string, f: () => T | undefined, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${A.logText.slice(-3000)}`);
    await Bun.sleep(100);
  }
}

function spawnIn(n: Netns, cmd: string[]): Subprocess {
  const p = Bun.spawn(["ip", "netns", "exec", n.name, ...cmd], { stdout: "ignore", stderr: "ignore" });
  procs.push(p);
  return p;
}

function dig(from: Netns, args: string[]): string {
  const r = from.exec(["dig", "+time=2", "+tries=1", ...args]);
  return r.stdout;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "stm-dhcp-"));
  A = new TestAgent("dhd");
  for (const n of ["dhc", "udh", "dcd", "six", "bro", "out"]) ns[n] = new Netns(`dhd${n}`);
  const out = ns.out as Netns;
  A.ns.execOk(["ip", "link", "add", "upl0", "type", "veth", "peer", "name", "ext0", "netns", out.name]);
  out.execOk(["ip", "link", "set", "ext0", "up"]);
  out.execOk(["ip", "addr", "add", `${OUT}/24`, "dev", "ext0"]);
  out.execOk(["ip", "addr", "add", `${FOREIGN}/24`, "dev", "ext0"]);
  await A.start(["--uplink", "upl0"]);
  // The node's own address on the user bridge: a foreign host can reach the gateway (and be refused).
  A.ns.execOk(["ip", "addr", "add", "192.0.2.1/24", "dev", "cnv-user-br0"]);

  // unbound in the outside namespace plays the network's forwarder (the outside world).
  const conf = join(dir, "unbound.conf");
  writeFileSync(
    conf,
    `server:
  interface: ${OUT}
  port: 53
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "${dir}"
  pidfile: ""
  use-syslog: no
  logfile: ""
  access-control: 0.0.0.0/0 allow
  do-ip6: no
  local-zone: "example.test." static
  local-data: "www.example.test. 300 IN A 198.51.100.7"
  local-data: "example.test. 300 IN MX 10 mail.example.test."
remote-control:
  control-enable: no
`,
  );
  spawnIn(out, ["unbound", "-d", "-c", conf]);

  A.json(
    "network",
    "create",
    "--name",
    "n1",
    "--cidr",
    "10.71.0.0/24",
    "--gateway",
    GW,
    "--cidr6",
    "fd71::/64",
    "--gateway6",
    GW6,
    "--mtu",
    "1450",
    // The outside (unbound) has an address of the subnet: the network is extended onto its LAN.
    "--extend-to-lan",
    "--dns-forwarder",
    OUT,
    "--dhcp-lease-time",
    "10",
  );
  for (const e of ["dhc", "udh", "dcd", "six", "bro"]) {
    const v = A.json("network", "attach", "n1", "--name", e, "--netns", (ns[e] as Netns).name, "--ifname", `e${e}`);
    eps[e] = { ip: v.ip, mac: v.mac, ip6: v.ip6 };
  }
  await waitFor("unbound", () =>
    out.exec(["dig", `@${OUT}`, "+time=1", "+tries=1", "www.example.test"]).stdout.includes("198.51.100.7"),
  );
}, 60_000);

afterAll(() => {
  for (const p of procs) p.kill("SIGKILL");
  rmSync("/var/lib/dhcpcd/edcd.lease", { force: true });
  for (const n of Object.values(ns)) n.destroy();
  A?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

describe("DHCPv4 with real clients", () => {
  test("dhclient gets the profile address, router, DNS, domain and MTU, and renews", async () => {
    const n = ns.dhc as Netns;
    const log = join(dir, "dhclient.events");
    const script = hook(
      "dhclient-hook",
      `echo "reason=$reason|ip=$new_ip_address|mask=$new_subnet_mask|routers=$new_routers|dns=$new_domain_name_servers|domain=$new_domain_name|search=$new_domain_search|mtu=$new_interface_mtu|lease=$new_dhcp_lease_time|host=$new_host_name" >> ${log}
case $reason in BOUND|RENEW|REBIND|REBOOT)
  ip addr replace $new_ip_address/$new_subnet_mask dev $interface
  ip link set $interface mtu $new_interface_mtu up
  ip route replace default via $new_routers dev $interface ;;
esac`,
    );
    const conf = join(dir, "dhclient.conf");
    writeFileSync(
      conf,
      `option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
send host-name "dhc-host";
request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers, domain-search, host-name, interface-mtu, rfc3442-classless-static-routes;
`,
    );
    n.execOk(["ip", "link", "set", "edhc", "up"]);
    spawnIn(n, [
      "dhclient",
      "-4",
      "-d",
      "-cf",
      conf,
      "-sf",
      script,
      "-pf",
      join(dir, "dhclient.pid"),
      "-lf",
      join(dir, "dhclient.leases"),
      "edhc",
    ]);
    const bound = await waitFor("dhclient BOUND", () => events(log).find((e) => e.reason === "BOUND"));
    expect(bound).toMatchObject({
      ip: eps.dhc?.ip,
      mask: "255.255.255.0",
      routers: GW,
      dns: GW,
      domain: "n1.internal",
      search: "n1.internal.", // dhclient writes the search list as absolute names
      mtu: "1450",
      lease: "10",
      host: "dhc",
    });
    // Configured: the gateway answers a ping over the leased address.
    expect(n.exec(["ping", "-c", "1", "-W", "2", GW]).code).toBe(0);
    // T1 is half the 10 s lease.
    const renew = await waitFor("dhclient RENEW", () => events(log).find((e) => e.reason === "RENEW"));
    expect(renew.ip).toBe(eps.dhc?.ip);
    const leases = A.json("dhcp", "leases", "--network", "n1");
    expect(leases.find((l: any) => l.endpoint === "dhc")).toMatchObject({
      ip: eps.dhc?.ip,
      mac: eps.dhc?.mac,
      state: "bound",
      hostname: "dhc-host",
      active: true,
    });
  }, 30_000);

  test("udhcpc (busybox) gets the same and renews", async () => {
    const n = ns.udh as Netns;
    const log = join(dir, "udhcpc.events");
    const script = hook(
      "udhcpc-hook",
      `echo "reason=$1|ip=$ip|mask=$subnet|routers=$router|dns=$dns|domain=$domain|search=$search|mtu=$mtu|lease=$lease|host=$hostname" >> ${log}
case $1 in bound|renew)
  ip addr replace $ip/$subnet dev $interface
  ip link set $interface mtu $mtu up
  ip route replace default via $router dev $interface ;;
esac`,
    );
    n.execOk(["ip", "link", "set", "eudh", "up"]);
    spawnIn(n, [
      "udhcpc",
      "-f",
      "-i",
      "eudh",
      "-s",
      script,
      "-O",
      "mtu",
      "-O",
      "search",
      "-O",
      "staticroutes",
      "-t",
      "5",
      "-T",
      "1",
    ]);
    const bound = await waitFor("udhcpc bound", () => events(log).find((e) => e.reason === "bound"));
    expect(bound).toMatchObject({
      ip: eps.udh?.ip,
      mask: "255.255.255.0",
      routers: GW,
      dns: GW,
      domain: "n1.internal",
      search: "n1.internal",
      mtu: "1450",
      lease: "10",
      host: "udh",
    });
    const renew = await waitFor("udhcpc renew", () => events(log).find((e) => e.reason === "renew"));
    expect(renew.ip).toBe(eps.udh?.ip);
    expect(n.exec(["ping", "-c", "1", "-W", "2", GW]).code).toBe(0);
  }, 30_000);

  test("broadcast replies (the client asks for one; a NAK) leave on a node without a default route", async () => {
    // The agent's namespace has no default route: a broadcast reply must not need one. And the
    // bridge's first address is the node's own on the LAN (192.0.2.1), not the network's gateway:
    // a broadcast reply must still come from the gateway.
    expect(A.ns.execOk(["ip", "route", "show", "default"]).trim()).toBe("");
    expect(A.ns.execOk(["ip", "-4", "-o", "addr", "show", "cnv-user-br0"]).split("\n")[0]).toContain("192.0.2.1/24");
    const n = ns.bro as Netns;
    n.execOk(["ip", "link", "set", "ebro", "up"]);
    const log = join(dir, "udhcpc-b.events");
    const script = hook("udhcpc-b-hook", `echo "reason=$1|ip=$ip" >> ${log}`);
    // -B: the broadcast flag, so the OFFER and the ACK go to 255.255.255.255.
    const r = n.exec(["udhcpc", "-f", "-q", "-n", "-B", "-i", "ebro", "-s", script, "-t", "5", "-T", "1"]);
    expect(r.code).toBe(0);
    expect(events(log).find((e) => e.reason === "bound")).toMatchObject({ ip: eps.bro?.ip });
    // A REQUEST for an address that is not the client's: the NAK is broadcast, and arrives.
    const sock = new PacketSocket("ebro", { netns: n.path });
    try {
      const mac = eps.bro?.mac as string;
      const msg = bootp(1, { chaddr: mac });
      msg.writeUInt32BE(0x00c0ffee, 4); // xid
      const opts = Buffer.from([53, 1, 3, 50, 4, 10, 71, 0, 250, 255]); // REQUEST for 10.71.0.250
      const frame = udp4({
        mac,
        src: "0.0.0.0",
        dst: "255.255.255.255",
        sport: 68,
        dport: 67,
        payload: Buffer.concat([msg, opts]),
      });
      expect(sock.send(frame, 1)).toBe(1);
      let nak: Buffer | undefined;
      for (let i = 0; i < 40 && !nak; i++) {
        await Bun.sleep(50);
        nak = sock
          .drain()
          .find((f) => f.length > 282 && f.readUInt16BE(36) === 68 && f.readUInt32BE(46) === 0x00c0ffee);
      }
      expect(nak).toBeDefined();
      const dhcp = (nak as Buffer).subarray(42);
      expect(dhcp.subarray(240, 243)).toEqual(Buffer.from([53, 1, 6])); // DHCPNAK
      expect((nak as Buffer).subarray(30, 34)).toEqual(Buffer.from([255, 255, 255, 255]));
      expect((nak as Buffer).subarray(26, 30)).toEqual(Buffer.from([10, 71, 0, 1])); // from the gateway
    } finally {
      sock.close();
    }
  }, 30_000);

  test("dhcpcd gets the same and renews", async () => {
    const n = ns.dcd as Netns;
    const log = join(dir, "dhcpcd.events");
    const script = hook(
      "dhcpcd-hook",
      `echo "reason=$reason|ip=$new_ip_address|mask=$new_subnet_mask|routers=$new_routers|dns=$new_domain_name_servers|domain=$new_domain_name|mtu=$new_interface_mtu|lease=$new_dhcp_lease_time" >> ${log}`,
    );
    const conf = join(dir, "dhcpcd.conf");
    writeFileSync(
      conf,
      "option domain_name_servers, domain_name, domain_search, interface_mtu, classless_static_routes\nnoipv4ll\nnohook resolv.conf\n",
    );
    // dhcpcd keeps leases by interface name across runs; start from none (a DISCOVER).
    rmSync("/var/lib/dhcpcd/edcd.lease", { force: true });
    n.execOk(["ip", "link", "set", "edcd", "up"]);
    spawnIn(n, ["dhcpcd", "-B", "-4", "-f", conf, "-c", script, "-t", "10", "edcd"]);
    const bound = await waitFor("dhcpcd BOUND", () => events(log).find((e) => e.reason === "BOUND"));
    expect(bound).toMatchObject({
      ip: eps.dcd?.ip,
      mask: "255.255.255.0",
      routers: GW,
      dns: GW,
      domain: "n1.internal",
      mtu: "1450",
      lease: "10",
    });
    const renew = await waitFor("dhcpcd RENEW", () => events(log).find((e) => e.reason === "RENEW"));
    expect(renew.ip).toBe(eps.dcd?.ip);
    // dhcpcd configures the interface itself.
    const addrs = n.ipJson(["addr", "show", "dev", "edcd"]);
    expect(JSON.stringify(addrs)).toContain(eps.dcd?.ip as string);
  }, 30_000);

  test("a DHCP request from outside the node (the uplink) is dropped at the NIC", async () => {
    const out = ns.out as Netns;
    out.exec(["udhcpc", "-n", "-q", "-f", "-i", "ext0", "-t", "2", "-T", "1", "-s", "/bin/true"]);
    const m = parseMetrics(await (await fetch("http://stratum/metrics", { unix: A.sock } as RequestInit)).text());
    expect(metricValue(m, "stratum_drops_total", { device: "upl0", reason: "dhcp-outside" })).toBeGreaterThan(0);
  }, 15_000);
});

describe("IPv6", () => {
  test("the kernel's SLAAC takes the profile address, the default route and the MTU from the agent's RA", async () => {
    const n = ns.six as Netns;
    n.execOk(["sysctl", "-qw", "net.ipv6.conf.esix.accept_ra=2", "net.ipv6.conf.esix.autoconf=1"]);
    n.execOk(["ip", "link", "set", "esix", "up"]);
    const want = eps.six?.ip6 as string;
    await waitFor("SLAAC address", () =>
      JSON.stringify(n.ipJson(["-6", "addr", "show", "dev", "esix"])).includes(`"${want}"`),
    );
    const routes = n.ipJson(["-6", "route", "show", "default"]);
    expect(routes[0]?.gateway).toMatch(/^fe80:/);
    expect(n.execOk(["sysctl", "-n", "net.ipv6.conf.esix.mtu"]).trim()).toBe("1450");
    // And the gateway answers over it.
    expect(n.exec(["ping", "-6", "-c", "1", "-W", "2", GW6]).code).toBe(0);
  }, 30_000);

  test("dhclient -6 gets the profile address as IA_NA; the binding is listed with the leases", async () => {
    const n = ns.six as Netns;
    const envFile = join(dir, "dhc6.env");
    const script = hook("dhclient6-hook", `[ "$reason" = BOUND6 ] && env > ${envFile}; exit 0`);
    const conf = join(dir, "dhclient6.conf");
    writeFileSync(conf, "timeout 15;\nrequest dhcp6.name-servers, dhcp6.domain-search;\n");
    const pf = join(dir, "dhc6.pid");
    const r = n.exec([
      "dhclient",
      "-6",
      "-1",
      "-v",
      "-cf",
      conf,
      "-sf",
      script,
      "-pf",
      pf,
      "-lf",
      join(dir, "dhc6.leases"),
      "esix",
    ]);
    try {
      if (!existsSync(envFile)) {
        const m = await (await fetch("http://stratum/metrics", { unix: A.sock } as RequestInit)).text();
        throw new Error(
          `dhclient -6 got no lease (exit ${r.code}): ${r.stderr.slice(-1500)}\n${m
            .split("\n")
            .filter((l) => /dhcp6|ipv6_ra|service_up/.test(l) && !l.startsWith("#"))
            .join("\n")}\n${A.logText.slice(-1500)}`,
        );
      }
      const env = Object.fromEntries(
        readFileSync(envFile, "utf8")
          .split("\n")
          .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
      );
      expect(env.new_ip6_address).toBe(eps.six?.ip6 as string);
      expect(env.new_dhcp6_name_servers).toBe(GW6);
      expect(env.new_dhcp6_domain_search).toContain("n1.internal");
    } finally {
      try {
        process.kill(Number(readFileSync(pf, "utf8").trim()), "SIGTERM");
      } catch {}
    }
    const lease = await waitFor("the DHCPv6 binding in the store", () =>
      A.json("dhcp", "leases", "--network", "n1").find((l: any) => l.endpoint === "six" && l.family === 6),
    );
    expect(lease).toMatchObject({ ip: eps.six?.ip6, mac: eps.six?.mac, state: "bound", active: true });
  }, 40_000);
});

describe("DNS with dig and kdig", () => {
  test("endpoints resolve by name (A, AAAA) and address (PTR, IPv4 and IPv6), case-insensitively", () => {
    const n = ns.dhc as Netns;
    expect(dig(n, [`@${GW}`, "+short", "udh.n1.internal"]).trim()).toBe(eps.udh?.ip as string);
    expect(dig(n, [`@${GW}`, "+short", "UdH.N1.Internal"]).trim()).toBe(eps.udh?.ip as string);
    expect(dig(n, [`@${GW}`, "+short", "AAAA", "dcd.n1.internal"]).trim()).toBe(eps.dcd?.ip6 as string);
    expect(dig(n, [`@${GW}`, "+short", "-x", eps.dcd?.ip as string]).trim()).toBe("dcd.n1.internal.");
    expect(dig(n, [`@${GW}`, "+short", "-x", eps.udh?.ip6 as string]).trim()).toBe("udh.n1.internal.");
    const k = n.exec(["kdig", `@${GW}`, "+short", "dhc.n1.internal"]);
    expect(k.stdout.trim()).toBe(eps.dhc?.ip as string);
  });

  test("NXDOMAIN for a missing name, NODATA for a missing type; authoritative", () => {
    const n = ns.dhc as Netns;
    const nx = dig(n, [`@${GW}`, "nosuch.n1.internal"]);
    expect(nx).toContain("status: NXDOMAIN");
    expect(nx).toMatch(/flags: qr aa/);
    const nodata = dig(n, [`@${GW}`, "MX", "udh.n1.internal"]);
    expect(nodata).toContain("status: NOERROR");
    expect(nodata).toContain("ANSWER: 0");
    expect(nodata).toMatch(/n1\.internal\.\s+\d+\s+IN\s+SOA/);
  });

  test("user records: SRV with its target's address, MX, CNAME, TXT", () => {
    A.json("dns", "record", "add", "n1", "_http._tcp", "SRV", "10 5 8080 udh");
    A.json("dns", "record", "add", "n1", "@", "MX", "10 dcd");
    A.json("dns", "record", "add", "n1", "www", "CNAME", "udh");
    A.json("dns", "record", "add", "n1", "info", "TXT", "hello from stratum");
    const n = ns.dhc as Netns;
    const srv = dig(n, [`@${GW}`, "SRV", "_http._tcp.n1.internal"]);
    expect(srv).toMatch(/_http\._tcp\.n1\.internal\.\s+\d+\s+IN\s+SRV\s+10 5 8080 udh\.n1\.internal\./);
    expect(srv).toMatch(
      new RegExp(`udh\\.n1\\.internal\\.\\s+\\d+\\s+IN\\s+A\\s+${eps.udh?.ip?.replace(/\./g, "\\.")}`),
    );
    expect(dig(n, [`@${GW}`, "+short", "MX", "n1.internal"]).trim()).toBe("10 dcd.n1.internal.");
    expect(
      dig(n, [`@${GW}`, "+short", "www.n1.internal"])
        .trim()
        .split("\n"),
    ).toEqual(["udh.n1.internal.", eps.udh?.ip as string]);
    expect(dig(n, [`@${GW}`, "+short", "TXT", "info.n1.internal"]).trim()).toBe('"hello from stratum"');
    const list = A.json("dns", "record", "list", "n1");
    expect(list.map((r: any) => r.type).sort()).toEqual(["CNAME", "MX", "SRV", "TXT"]);
  });

  test("a truncated UDP answer makes dig and kdig retry over TCP", () => {
    for (let i = 0; i < 12; i++) A.json("dns", "record", "add", "n1", "big", "TXT", `${i}-${"x".repeat(200)}`);
    const n = ns.dhc as Netns;
    const udpOnly = dig(n, [`@${GW}`, "+ignore", "+noedns", "TXT", "big.n1.internal"]);
    expect(udpOnly).toMatch(/flags: qr tc aa|flags: qr aa tc/);
    const full = dig(n, [`@${GW}`, "+noedns", "TXT", "big.n1.internal"]);
    expect(full).toContain("Truncated, retrying in TCP mode");
    expect(full).toContain("ANSWER: 12");
    const k = n.exec(["kdig", `@${GW}`, "+noedns", "TXT", "big.n1.internal"]);
    expect(k.stdout).toMatch(/ANSWER: 12/);
  }, 30_000); // twelve CLI calls and three resolvers: seconds on a loaded machine

  test("an outside name resolves through the network's forwarder (unbound), then from the cache", async () => {
    const n = ns.dhc as Netns;
    expect(dig(n, [`@${GW}`, "+short", "www.example.test"]).trim()).toBe("198.51.100.7");
    expect(dig(n, [`@${GW}`, "+short", "MX", "example.test"]).trim()).toBe("10 mail.example.test.");
    expect(dig(n, [`@${GW}`, "+short", "www.example.test"]).trim()).toBe("198.51.100.7");
    const m = parseMetrics(await (await fetch("http://stratum/metrics", { unix: A.sock } as RequestInit)).text());
    expect(metricValue(m, "stratum_dns_events_total", { event: "forwarded" })).toBeGreaterThanOrEqual(2);
    expect(metricValue(m, "stratum_dns_events_total", { event: "cache-hit" })).toBeGreaterThanOrEqual(1);
  });

  test("a query from outside the node's networks is refused: never an open resolver", () => {
    const out = ns.out as Netns;
    const r = dig(out, [`@${GW}`, "-b", FOREIGN, "www.example.test"]);
    expect(r).toContain("status: REFUSED");
    expect(r).not.toContain("198.51.100.7");
  });
});

describe("metrics", () => {
  test("DHCP and DNS counters move", async () => {
    const m = parseMetrics(await (await fetch("http://stratum/metrics", { unix: A.sock } as RequestInit)).text());
    expect(metricValue(m, "stratum_dhcp_replies_total", { type: "offer" })).toBeGreaterThanOrEqual(3);
    expect(metricValue(m, "stratum_dhcp_replies_total", { type: "ack" })).toBeGreaterThanOrEqual(6);
    // The leases are 10 s: how many are still active depends on how long ago each client
    // stopped, so the gauge is checked against the agent's own list, read right after.
    const active = (A.json("dhcp", "leases") as Array<{ family: number; active: boolean }>).filter(
      (l) => l.family === 4 && l.active,
    ).length;
    expect(metricValue(m, "stratum_dhcp_leases_active", {})).toBe(active);
    expect(metricValue(m, "stratum_dns_queries_total", { transport: "udp" })).toBeGreaterThan(10);
    expect(metricValue(m, "stratum_dns_queries_total", { transport: "tcp" })).toBeGreaterThanOrEqual(2);
    expect(metricValue(m, "stratum_dns_responses_total", { rcode: "NXDOMAIN" })).toBeGreaterThanOrEqual(1);
    expect(metricValue(m, "stratum_dns_events_total", { event: "refused" })).toBeGreaterThanOrEqual(1);
    expect(metricValue(m, "stratum_service_up", { service: "dns" })).toBe(1);
    expect(metricValue(m, "stratum_service_up", { service: "dhcp" })).toBe(1);
  });
});

// Keep `run` referenced for ad-hoc debugging of a failing client.
void run;
