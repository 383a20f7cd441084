/** The network's DHCP and DNS servers against the usual free servers, on namespaces of this
 * machine. Stratum: a real agent (the compiled binary) in its own namespace, a network
 * 10.80.0.0/24 and one veth endpoint (`client`, configured: 10.80.0.2) from which the load
 * generator runs, so every packet crosses the endpoint's port programs and the user bridge,
 * the product's real path. The others: the same shape without Stratum, a server namespace
 * with a bridge holding 10.80.0.1 and a veth to a client namespace whose eth0 has the same
 * MAC and address. Each server (the agent included: every thread) is pinned to one CPU and
 * the load generator to the other, alike for all.
 *
 * DHCP: perfdhcp, one client MAC (the endpoint's profile MAC), full DORA exchanges. perfdhcp
 * always writes its own address into giaddr and sends from port 67 (it plays a relay);
 * the endpoint's port drops both (a workload is a client, never a relay or a server), so
 * every server gets the same direct-client packets instead: DISCOVER and REQUEST templates
 * (-T) with giaddr 0 and hops 0, sent from port 68 (-L 68) to 255.255.255.255. The servers
 * answer by unicast to the offered address (10.80.0.2, reserved for that MAC everywhere).
 *
 * DNS: dnsperf with one query file (A of existing names, AAAA of the same names: NODATA,
 * A of missing names: NXDOMAIN) against the same zone, app.internal with 100 user A
 * records ep-N plus SOA, NS, ns, gateway and client, served by each.
 *
 * Rows: dhcp/dora-vs-{kea,dnsmasq}, completed DORA/s with perfdhcp offering 30,000/s;
 * dhcp/cpu-vs-{kea,dnsmasq}, the server's CPU time per completed DORA at 2,000/s (fair even
 * where perfdhcp, not the server, limits the throughput); dns/qps-vs-{dnsmasq,nsd,knot},
 * right answers (NOERROR, NXDOMAIN) per second from a saturating dnsperf; dns/p99-vs-…, the
 * 99th percentile latency at 20,000 q/s (a lost query counts as 2 s). Notes printed under a
 * benchmark: the servers' CPU use (below 100% while "saturated" means the client was the
 * limit), Stratum's ignored/refused counters, lost queries, unexpected rcodes.
 *
 * Everything (namespaces, processes, pins, temporary files) is removed afterwards, pass
 * or fail, and on exit or interrupt. STM_BENCH_SECONDS sets the length of one throughput
 * run (default 5; the fixed-load runs take 3/5 of it). */
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { ApiClient } from "../../src/api/api-client";
import { type Benchmark, BINARY, sh } from "./harness";

const SECONDS = Math.max(1, Number(process.env.STM_BENCH_SECONDS ?? 5) || 5);
const FIXED_SECONDS = Math.max(1, Math.round((SECONDS * 3) / 5));
/** Servers on one CPU, the load generator on another (the same one on a single-CPU machine). */
const SERVER_CPU = availableParallelism() > 1 ? "1" : "0";
const CLIENT_CPU = "0";
/** A load generator's command prefix: in namespace `ns`, pinned to the client CPU. */
const onClientCpu = (ns: string) => ["ip", "netns", "exec", ns, "taskset", "-c", CLIENT_CPU];

const CIDR = "10.80.0.0/24";
const GATEWAY = "10.80.0.1";
const CLIENT_IP = "10.80.0.2";
const ZONE = "app.internal";
const RECORDS = 100;
const recordIp = (n: number) => `10.80.0.${100 + n}`;

/** DHCP: offered DORA/s for the throughput runs (about what perfdhcp, single-threaded, can
 * offer from one CPU: a server completing nearly all of it is limited by the client, which
 * the notes show as server CPU below 100%), and the fixed load of the CPU-cost runs. */
const DORA_OFFERED = 30_000;
const DORA_FIXED = 2_000;
/** DNS: the fixed load of the latency runs, and dnsperf's sockets and outstanding queries. */
const QPS_FIXED = 20_000;
const DNSPERF_CLIENTS = "8";
const DNSPERF_OUTSTANDING = "200";

const TOOLS: Record<string, string> = {
  perfdhcp: "kea-admin",
  "kea-dhcp4": "kea-dhcp4-server",
  dnsmasq: "dnsmasq-base",
  dnsperf: "dnsperf",
  nsd: "nsd",
  knotd: "knot",
  dig: "bind9-dnsutils",
  taskset: "util-linux",
  nsenter: "util-linux",
};

function need(...tools: string[]): void {
  const missing = tools.filter((t) => !Bun.which(t, { PATH: `${process.env.PATH}:/usr/sbin:/sbin` }));
  if (missing.length)
    throw new Error(
      `missing ${missing.join(", ")}: install the Debian package(s) ${[...new Set(missing.map((t) => TOOLS[t]))].join(" ")}`,
    );
}

/** Runs to completion without blocking the event loop; a hard limit kills it. */
async function run(cmd: string[], limitSeconds: number): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = Bun.spawn(["timeout", "-s", "KILL", String(limitSeconds), ...cmd], { stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  return { code, stdout, stderr };
}

const CLK_TCK = Number(sh(["getconf", "CLK_TCK"]).trim()) || 100;

/** CPU seconds (user + system, every thread) used so far by the processes of a namespace. */
function nsCpuSeconds(ns: string): number {
  let ticks = 0;
  for (const pid of sh(["ip", "netns", "pids", ns]).split("\n").filter(Boolean)) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(f[11]) + Number(f[12]);
    } catch {} // exited meanwhile
  }
  return ticks / CLK_TCK;
}

/** Everything one benchmark creates; destroy() removes it all and may run more than once. */
class Lab {
  static #seq = 0;
  static readonly live = new Set<Lab>();
  readonly tag = `stmad${process.pid.toString(36)}${(Lab.#seq++).toString(36)}`;
  readonly dir = mkdtempSync(join(tmpdir(), "stm-bench-addr-"));
  readonly pins = `/sys/fs/bpf/${this.tag}`;
  readonly sock = join(this.dir, "api.sock");
  readonly api = new ApiClient(this.sock);
  readonly namespaces: string[] = [];
  readonly procs: Subprocess[] = [];
  readonly #logs: number[] = [];
  agentNs = "";

  constructor() {
    Lab.live.add(this);
    installExitHooks();
  }

  netns(name: string): string {
    const ns = `${this.tag}-${name}`;
    sh(["ip", "netns", "add", ns]);
    this.namespaces.push(ns);
    sh(["ip", "-n", ns, "link", "set", "lo", "up"]);
    return ns;
  }

  /** No IPv6 where we control it: router solicitations and MLD would be stray packets. */
  noIpv6(ns: string): void {
    for (const scope of ["all", "default"])
      sh(["ip", "netns", "exec", ns, "sysctl", "-qw", `net.ipv6.conf.${scope}.disable_ipv6=1`]);
  }

  log(name: string): number {
    const fd = openSync(join(this.dir, name), "a");
    this.#logs.push(fd);
    return fd;
  }

  logText(name: string): string {
    try {
      return readFileSync(join(this.dir, name), "utf8").slice(-3000);
    } catch {
      return "";
    }
  }

  /** Starts a process in a namespace (host mount namespace: `nsenter --net`), pinned to the server CPU. */
  spawnServer(ns: string, cmd: string[], logName: string, env: Record<string, string> = {}): Subprocess {
    const fd = this.log(logName);
    const p = Bun.spawn(["nsenter", `--net=/run/netns/${ns}`, "taskset", "-c", SERVER_CPU, ...cmd], {
      stdout: fd,
      stderr: fd,
      stdin: "ignore",
      env: { ...process.env, ...env },
    });
    this.procs.push(p);
    return p;
  }

  /** Re-pins every thread of every process in the namespace: some servers (knotd) pin their
   * workers to CPUs of their own choosing at start. */
  pinNamespace(ns: string): void {
    for (const pid of sh(["ip", "netns", "pids", ns]).split("\n").filter(Boolean))
      Bun.spawnSync(["taskset", "-a", "-p", "-c", SERVER_CPU, pid], { stdout: "ignore", stderr: "ignore" });
  }

  /** The agent with a network and the `client` endpoint (configured) in its own namespace. */
  async startAgent(): Promise<{ clientNs: string; mac: string }> {
    this.agentNs = this.netns("node");
    const p = this.spawnServer(
      this.agentNs,
      [BINARY, "agent", "--state-dir", join(this.dir, "state"), "--pin-root", this.pins, "--api-socket", this.sock],
      "agent.log",
    );
    let up = false;
    for (let i = 0; i < 200 && !up && p.exitCode === null; i++) {
      try {
        await this.api.listNetworks();
        up = true;
      } catch {
        await Bun.sleep(25);
      }
    }
    if (!up) throw new Error(`bench agent did not start:\n${this.logText("agent.log")}`);
    await this.api.createNetwork({ name: "app", cidr: CIDR, gateway: GATEWAY });
    const clientNs = this.netns("ep");
    this.noIpv6(clientNs);
    const ep = await this.api.attach("app", { name: "client", netns: clientNs, ip: CLIENT_IP, configure: true });
    if (ep.ip !== CLIENT_IP) throw new Error(`endpoint got ${ep.ip}, not ${CLIENT_IP}`);
    this.pinNamespace(this.agentNs);
    return { clientNs, mac: ep.mac };
  }

  /** The baseline's wiring: a server namespace with a bridge holding the gateway address
   * and a veth to a client namespace whose eth0 has `mac` and the client address. */
  baselineTopology(mac: string): { serverNs: string; clientNs: string } {
    const serverNs = this.netns("srv");
    const clientNs = this.netns("cli");
    for (const ns of [serverNs, clientNs]) this.noIpv6(ns);
    const s = (...a: string[]) => sh(["ip", "-n", serverNs, ...a]);
    const c = (...a: string[]) => sh(["ip", "-n", clientNs, ...a]);
    s("link", "add", "br0", "type", "bridge");
    s("addr", "add", `${GATEWAY}/24`, "dev", "br0");
    s("link", "set", "br0", "up");
    s("link", "add", "veth0", "type", "veth", "peer", "name", "eth0", "netns", clientNs);
    s("link", "set", "veth0", "master", "br0");
    s("link", "set", "veth0", "up");
    c("link", "set", "eth0", "address", mac);
    c("addr", "add", `${CLIENT_IP}/24`, "dev", "eth0");
    c("link", "set", "eth0", "up");
    c("route", "add", "default", "via", GATEWAY);
    return { serverNs, clientNs };
  }

  async destroy(): Promise<void> {
    this.destroySync();
    await Promise.all(this.procs.map((p) => p.exited));
  }

  /** Kills what runs in our namespaces (by pid), then removes namespaces, pins and files. */
  destroySync(): void {
    if (!Lab.live.has(this)) return;
    Lab.live.delete(this);
    // Our own children by handle (never a pid that may have been reused), then whatever else
    // runs in our namespaces now (servers that fork: nsd).
    for (const p of this.procs) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
    const pids = new Set<string>();
    for (const ns of this.namespaces) {
      const r = Bun.spawnSync(["ip", "netns", "pids", ns], { stdout: "pipe", stderr: "ignore" });
      for (const pid of r.stdout.toString().split("\n").filter(Boolean)) pids.add(pid);
    }
    for (const pid of pids)
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {}
    for (let i = 0; i < 100 && [...pids].some((pid) => existsSync(`/proc/${pid}/stat`) && !zombie(pid)); i++)
      Bun.sleepSync(20);
    for (const ns of this.namespaces) Bun.spawnSync(["ip", "netns", "del", ns], { stdout: "ignore", stderr: "ignore" });
    for (const fd of this.#logs) closeSync(fd);
    rmSync(this.pins, { recursive: true, force: true });
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function zombie(pid: string): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "Z";
  } catch {
    return true;
  }
}

let hooked = false;
function installExitHooks(): void {
  if (hooked) return;
  hooked = true;
  process.on("exit", () => {
    for (const lab of [...Lab.live]) lab.destroySync();
  });
  for (const sig of ["SIGINT", "SIGTERM"] as const)
    process.on(sig, () => {
      for (const lab of [...Lab.live]) lab.destroySync();
      process.exit(130);
    });
}

/** A benchmark whose setup builds a lab; a failing setup removes it before rethrowing (the
 * harness only tears down what set up successfully). */
function labBench(
  b: Omit<Benchmark, "setup" | "teardown"> & { setup: (lab: Lab) => Promise<void>; notes?: () => Promise<string[]> },
): Benchmark {
  let lab: Lab | undefined;
  return {
    name: b.name,
    unit: b.unit,
    candidate: b.candidate,
    baseline: b.baseline,
    async setup() {
      lab = new Lab();
      try {
        await b.setup(lab);
      } catch (e) {
        await lab.destroy();
        throw e;
      }
    },
    async teardown() {
      let notes: string[] = [];
      try {
        notes = (await b.notes?.()) ?? [];
      } catch (e) {
        notes = [`(no notes: ${(e as Error).message})`];
      }
      if (notes.length) process.stderr.write(`\n  ${notes.join("\n  ")}`);
      await lab?.destroy();
    },
  };
}

// ---------------------------------------------------------------------------------- DHCP

/** A DISCOVER and a REQUEST from a directly attached client (giaddr 0, hops 0, no broadcast
 * flag) with `mac` in chaddr and in the client identifier: perfdhcp templates, as hex. The
 * REQUEST's requested-address (50) and server-identifier (54) are placeholders perfdhcp
 * fills from the OFFER at the offsets returned. */
export function dhcpTemplates(mac: string): { discover: string; request: string; ipOffset: number; sidOffset: number } {
  const hw = Buffer.from(mac.replaceAll(":", ""), "hex");
  const header = () => {
    const h = Buffer.alloc(236);
    h[0] = 1; // BOOTREQUEST
    h[1] = 1; // Ethernet
    h[2] = 6;
    hw.copy(h, 28); // chaddr; xid (4), secs (8) are perfdhcp's
    return h;
  };
  const cookie = Buffer.from([99, 130, 83, 99]);
  const clientId = Buffer.concat([Buffer.from([61, 7, 1]), hw]);
  const prl = Buffer.from([55, 4, 1, 3, 6, 15]);
  const pad = (b: Buffer) => Buffer.concat([b, Buffer.alloc(Math.max(0, 300 - b.length))]);
  const discover = pad(Buffer.concat([header(), cookie, Buffer.from([53, 1, 1]), clientId, prl, Buffer.from([255])]));
  const reqOpts = Buffer.from([53, 1, 3, 50, 4, 0, 0, 0, 0, 54, 4, 0, 0, 0, 0]);
  const request = pad(Buffer.concat([header(), cookie, reqOpts, clientId, prl, Buffer.from([255])]));
  return {
    discover: discover.toString("hex"),
    request: request.toString("hex"),
    ipOffset: 240 + 3,
    sidOffset: 240 + 9,
  };
}

interface PerfdhcpResult {
  /** Completed DORA exchanges per second (perfdhcp's rate line: ACKs over the test period). */
  rate: number;
  acks: number;
  discovers: number;
  offers: number;
  requests: number;
  orphans: number;
}

/** The perfdhcp load generator in a client namespace, with the templates for the endpoint's MAC. */
class Perfdhcp {
  readonly disc: string;
  readonly req: string;
  readonly t: ReturnType<typeof dhcpTemplates>;
  constructor(
    dir: string,
    readonly mac: string,
  ) {
    this.t = dhcpTemplates(mac);
    this.disc = join(dir, "discover.hex");
    this.req = join(dir, "request.hex");
    writeFileSync(this.disc, this.t.discover);
    writeFileSync(this.req, this.t.request);
  }

  async run(ns: string, rate: number, seconds: number): Promise<PerfdhcpResult> {
    const r = await run(
      [
        ...onClientCpu(ns),
        "perfdhcp",
        "-4",
        "-g",
        "single", // on one CPU its receiver thread only competes with its sender
        "-l",
        "eth0",
        "-L",
        "68",
        "-b",
        `mac=${this.mac}`,
        "-R",
        "1",
        "-T",
        this.disc,
        "-T",
        this.req,
        "-O",
        "33",
        "-O",
        "33",
        "-I",
        String(this.t.ipOffset),
        "-S",
        String(this.t.sidOffset),
        "-r",
        String(rate),
        "-p",
        String(seconds),
      ],
      seconds + 30,
    );
    // Exit 3: some exchanges did not complete, the normal outcome of a saturating run.
    if (r.code !== 0 && r.code !== 3)
      throw new Error(`perfdhcp exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
    return parsePerfdhcp(r.stdout);
  }
}

export function parsePerfdhcp(out: string): PerfdhcpResult {
  const section = (title: string) => out.slice(out.indexOf(`Statistics for: ${title}`));
  const num = (text: string, label: string) => Number(text.match(new RegExp(`${label}: ([0-9.]+)`))?.[1] ?? Number.NaN);
  const doS = section("DISCOVER-OFFER");
  const raS = section("REQUEST-ACK");
  const res = {
    rate: Number(out.match(/Rate: ([0-9.]+) 4-way exchanges\/second/)?.[1] ?? Number.NaN),
    discovers: num(doS, "sent packets"),
    offers: num(doS, "received packets"),
    requests: num(raS, "sent packets"),
    acks: num(raS, "received packets"),
    orphans: num(doS, "orphans") + num(raS, "orphans"),
  };
  if (Object.values(res).some(Number.isNaN)) throw new Error(`perfdhcp printed no statistics:\n${out.slice(-2000)}`);
  return res;
}

function keaConfig(dir: string, mac: string): string {
  return JSON.stringify(
    {
      Dhcp4: {
        "interfaces-config": { interfaces: ["br0"], "dhcp-socket-type": "raw" },
        "lease-database": { type: "memfile", persist: true, name: join(dir, "kea-leases4.csv"), "lfc-interval": 0 },
        "valid-lifetime": 3600,
        "renew-timer": 1800,
        "rebind-timer": 3150,
        subnet4: [
          {
            id: 1,
            subnet: CIDR,
            pools: [{ pool: "10.80.0.2 - 10.80.0.254" }],
            "option-data": [
              { name: "routers", data: GATEWAY },
              { name: "domain-name-servers", data: GATEWAY },
              { name: "domain-name", data: ZONE },
            ],
            reservations: [{ "hw-address": mac, "ip-address": CLIENT_IP }],
          },
        ],
        loggers: [{ name: "kea-dhcp4", output_options: [{ output: join(dir, "kea.log") }], severity: "WARN" }],
      },
    },
    null,
    2,
  );
}

type DhcpRival = "kea" | "dnsmasq";

/** Starts a DHCP server in the baseline's server namespace (br0). */
function startDhcpRival(lab: Lab, rival: DhcpRival, ns: string, mac: string): void {
  if (rival === "kea") {
    const conf = join(lab.dir, "kea-dhcp4.json");
    writeFileSync(conf, keaConfig(lab.dir, mac));
    lab.spawnServer(ns, ["kea-dhcp4", "-c", conf], "kea.out", {
      KEA_LOCKFILE_DIR: lab.dir,
      KEA_PIDFILE_DIR: lab.dir,
    });
  } else {
    lab.spawnServer(
      ns,
      [
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--port=0", // DHCP only
        "--interface=br0",
        "--bind-interfaces",
        `--dhcp-range=10.80.0.2,10.80.0.254,255.255.255.0,1h`,
        `--dhcp-host=${mac},${CLIENT_IP}`,
        `--dhcp-option=option:router,${GATEWAY}`,
        `--dhcp-option=option:dns-server,${GATEWAY}`,
        `--domain=${ZONE}`,
        "--dhcp-authoritative",
        "--no-ping", // like the others: no ICMP probe before an offer
        "--quiet-dhcp", // like the others: no log line per packet
        `--dhcp-leasefile=${join(lab.dir, "dnsmasq.leases")}`,
        `--pid-file=${join(lab.dir, "dnsmasq.pid")}`,
        `--log-facility=${join(lab.dir, "dnsmasq.log")}`,
        "--user=root",
        "--group=root",
      ],
      "dnsmasq.out",
    );
  }
}

/** A few exchanges at a low rate until one completes (servers take a moment to open their sockets). */
async function dhcpReady(p: Perfdhcp, ns: string, who: string, diag: () => string): Promise<void> {
  for (let i = 0; i < 10; i++) {
    const r = await p.run(ns, 10, 1);
    if (r.acks > 0) return;
    await Bun.sleep(300);
  }
  throw new Error(`${who} completes no DHCP exchange with perfdhcp:\n${diag()}`);
}

async function agentMetrics(lab: Lab, prefix: string): Promise<Map<string, number>> {
  const text = await fetch("http://stratum/metrics", { unix: lab.sock } as RequestInit).then((r) => r.text());
  const m = new Map<string, number>();
  for (const line of text.split("\n"))
    if (line.startsWith(prefix)) {
      const i = line.lastIndexOf(" ");
      m.set(line.slice(0, i), Number(line.slice(i + 1)));
    }
  return m;
}

const nonZero = (m: Map<string, number>, pattern: RegExp) =>
  [...m].filter(([k, v]) => pattern.test(k) && v > 0).map(([k, v]) => `${k} ${v}`);

/** A run's result and the CPU the server used during it (seconds, every process and thread). */
interface Seen<R> {
  r: R;
  cpu: number;
}

const medianOf = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s[s.length >> 1] as number) : Number.NaN;
};

/** DORA/s (throughput) or server CPU µs per completed DORA (at a fixed load), Stratum vs `rival`. */
function dhcpBench(rival: DhcpRival, metric: "dora" | "cpu"): Benchmark {
  let agent: { clientNs: string; mac: string } | undefined;
  let base: { serverNs: string; clientNs: string } | undefined;
  let perf: Perfdhcp | undefined;
  let lab: Lab | undefined;
  const seen: Record<string, Seen<PerfdhcpResult>[]> = { stratum: [], [rival]: [] };
  const seconds = metric === "dora" ? SECONDS : FIXED_SECONDS;
  const measure = async (who: string): Promise<number> => {
    const clientNs = who === "stratum" ? agent?.clientNs : base?.clientNs;
    const serverNs = who === "stratum" ? lab?.agentNs : base?.serverNs;
    if (!clientNs || !serverNs || !perf) throw new Error("not set up");
    const cpu0 = nsCpuSeconds(serverNs);
    const r = await perf.run(clientNs, metric === "dora" ? DORA_OFFERED : DORA_FIXED, seconds);
    const cpu = nsCpuSeconds(serverNs) - cpu0;
    seen[who]?.push({ r, cpu });
    if (metric === "dora") return r.rate;
    if (r.acks < r.discovers * 0.9) throw new Error(`${who} completed ${r.acks} of ${r.discovers} at ${DORA_FIXED}/s`);
    return (cpu * 1e6) / r.acks;
  };
  return labBench({
    name: `dhcp/${metric}-vs-${rival}`,
    unit: metric === "dora" ? "DORA/s" : "µs CPU/DORA",
    async setup(l) {
      need("perfdhcp", rival === "kea" ? "kea-dhcp4" : "dnsmasq", "taskset", "nsenter");
      lab = l;
      agent = await l.startAgent();
      base = l.baselineTopology(agent.mac);
      startDhcpRival(l, rival, base.serverNs, agent.mac);
      perf = new Perfdhcp(l.dir, agent.mac);
      await dhcpReady(perf, agent.clientNs, "stratum", () => l.logText("agent.log"));
      await dhcpReady(perf, base.clientNs, rival, () => l.logText(`${rival}.out`) + l.logText(`${rival}.log`));
      l.pinNamespace(base.serverNs);
    },
    async notes() {
      const notes: string[] = [];
      if (lab) {
        const m = nonZero(await agentMetrics(lab, "stratum_dhcp_"), /ignored_total|malformed|send/);
        if (m.length) notes.push(`stratum's DHCP server ignored: ${m.join(", ")}`);
      }
      const cpu: string[] = [];
      for (const [who, rs] of Object.entries(seen)) {
        if (!rs.length) continue;
        const orphans = rs.reduce((a, s) => a + s.r.orphans, 0);
        const offered = rs.reduce((a, s) => a + s.r.discovers, 0);
        const acks = rs.reduce((a, s) => a + s.r.acks, 0);
        if (orphans) notes.push(`${who}: perfdhcp counted ${orphans} orphan replies`);
        if (metric === "cpu" && acks < offered * 0.999)
          notes.push(`${who}: ${offered - acks} of ${offered} exchanges incomplete`);
        if (metric === "dora") {
          const offersLost = rs.reduce((a, s) => a + s.r.discovers - s.r.offers, 0);
          cpu.push(
            `${who} ${(100 * medianOf(rs.map((s) => s.cpu / seconds))).toFixed(0)}% (${((100 * offersLost) / offered).toFixed(0)}% of DISCOVERs unanswered)`,
          );
        }
      }
      if (cpu.length) notes.push(`server CPU busy while saturated (median): ${cpu.join(", ")}`);
      return notes;
    },
    candidate: {
      label: `stratum (perfdhcp ${metric === "dora" ? `offering ${DORA_OFFERED}/s` : `at ${DORA_FIXED}/s`})`,
      measure: () => measure("stratum"),
    },
    baseline: {
      label: rival === "kea" ? "kea-dhcp4 (memfile, raw socket)" : "dnsmasq",
      measure: () => measure(rival),
    },
  });
}

// ----------------------------------------------------------------------------------- DNS

/** The zone every server serves, as a zone file (Stratum's own data: SOA, NS, ns, gateway,
 * the client endpoint, and the 100 records added through the API). */
export function zoneFile(): string {
  const lines = [
    `$ORIGIN ${ZONE}.`,
    "$TTL 30",
    `@ 300 IN SOA ns.${ZONE}. hostmaster.${ZONE}. 1 3600 600 86400 30`,
    `@ 300 IN NS ns.${ZONE}.`,
    `ns 300 IN A ${GATEWAY}`,
    `gateway 300 IN A ${GATEWAY}`,
    `client 30 IN A ${CLIENT_IP}`,
  ];
  for (let n = 1; n <= RECORDS; n++) lines.push(`ep-${n} 30 IN A ${recordIp(n)}`);
  return `${lines.join("\n")}\n`;
}

/** The same names as a hosts file, for dnsmasq. */
function hostsFile(): string {
  const lines = [`${GATEWAY} ns.${ZONE}`, `${GATEWAY} gateway.${ZONE}`, `${CLIENT_IP} client.${ZONE}`];
  for (let n = 1; n <= RECORDS; n++) lines.push(`${recordIp(n)} ep-${n}.${ZONE}`);
  return `${lines.join("\n")}\n`;
}

/** 120 queries, replayed in a loop: every ep-N A (100), ep-N AAAA for one name in ten
 * (NODATA), nx-N A for one in ten (NXDOMAIN). */
export function queryFile(): string {
  const q: string[] = [];
  for (let n = 1; n <= RECORDS; n++) {
    q.push(`ep-${n}.${ZONE} A`);
    if (n % 10 === 4) q.push(`ep-${n}.${ZONE} AAAA`);
    if (n % 10 === 8) q.push(`nx-${n}.${ZONE} A`);
  }
  return `${q.join("\n")}\n`;
}
const EXPECTED_NX = 10 / 120;

type DnsRival = "dnsmasq" | "nsd" | "knot";

function startDnsRival(lab: Lab, rival: DnsRival, ns: string): void {
  const d = lab.dir;
  writeFileSync(join(d, `${ZONE}.zone`), zoneFile());
  if (rival === "dnsmasq") {
    writeFileSync(join(d, "hosts"), hostsFile());
    lab.spawnServer(
      ns,
      [
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        `--listen-address=${GATEWAY}`,
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        `--addn-hosts=${join(d, "hosts")}`,
        `--local=/${ZONE}/`, // authoritative for the zone: unknown names are NXDOMAIN, never forwarded
        `--domain=${ZONE}`,
        "--local-ttl=30",
        `--pid-file=${join(d, "dnsmasq.pid")}`,
        `--log-facility=${join(d, "dnsmasq.log")}`,
        "--user=root",
        "--group=root",
      ],
      "dnsmasq.out",
    );
  } else if (rival === "nsd") {
    const conf = join(d, "nsd.conf");
    writeFileSync(
      conf,
      `server:
  ip-address: ${GATEWAY}
  port: 53
  server-count: 1
  username: ""
  chroot: ""
  zonesdir: "${d}"
  database: ""
  zonelistfile: "${d}/nsd.zonelist"
  xfrdfile: "${d}/nsd.xfrd"
  xfrdir: "${d}"
  pidfile: "${d}/nsd.pid"
  logfile: "${d}/nsd.log"
  verbosity: 0
  hide-version: yes
  do-ip6: no
  # Like the others: no NS in the authority section of positive answers, no rate limit
  # (NSD's default RRL drops most of a benchmark's answers: they all come from one /24).
  minimal-responses: yes
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: ${ZONE}
  zonefile: ${ZONE}.zone
`,
    );
    lab.spawnServer(ns, ["nsd", "-d", "-c", conf], "nsd.out");
  } else {
    const conf = join(d, "knot.conf");
    writeFileSync(
      conf,
      `server:
    listen: ${GATEWAY}@53
    rundir: "${d}"
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: "${d}/knot.log"
    any: warning
database:
    storage: "${d}/knot-db"
template:
  - id: default
    storage: "${d}"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: ${ZONE}
    file: "${ZONE}.zone"
`,
    );
    lab.spawnServer(ns, ["knotd", "-c", conf], "knot.out");
  }
}

/** dig from a namespace: the rcode and the answer section's data. */
function dig(ns: string, name: string, type: string): { status: string; answers: string[] } {
  const r = Bun.spawnSync(
    [
      "ip",
      "netns",
      "exec",
      ns,
      "dig",
      "+time=1",
      "+tries=1",
      "+noall",
      "+comments",
      "+answer",
      `@${GATEWAY}`,
      name,
      type,
    ],
    { stdout: "pipe", stderr: "pipe" },
  );
  const out = r.stdout.toString();
  const status = out.match(/status: ([A-Z]+)/)?.[1] ?? "no answer";
  const answers = out
    .split("\n")
    .filter((l) => l && !l.startsWith(";"))
    .map((l) => l.trim().split(/\s+/).at(-1) ?? "");
  return { status, answers };
}

/** The server answers the zone as expected (waiting for it to come up). */
async function dnsReady(ns: string, who: string, diag: () => string): Promise<void> {
  const checks: Array<[string, string, (r: { status: string; answers: string[] }) => boolean]> = [
    [`ep-5.${ZONE}`, "A", (r) => r.status === "NOERROR" && r.answers.join() === recordIp(5)],
    [`ep-100.${ZONE}`, "A", (r) => r.status === "NOERROR" && r.answers.join() === recordIp(100)],
    [`ep-4.${ZONE}`, "AAAA", (r) => r.status === "NOERROR" && r.answers.length === 0],
    [`nx-8.${ZONE}`, "A", (r) => r.status === "NXDOMAIN"],
    [`client.${ZONE}`, "A", (r) => r.status === "NOERROR" && r.answers.join() === CLIENT_IP],
  ];
  let bad = "";
  for (let i = 0; i < 50; i++) {
    bad = "";
    for (const [name, type, ok] of checks) {
      const r = dig(ns, name, type);
      if (!ok(r)) {
        bad = `${name} ${type}: ${r.status} ${r.answers.join(" ")}`;
        break;
      }
    }
    if (!bad) return;
    await Bun.sleep(100);
  }
  throw new Error(`${who} does not serve the zone as expected (${bad}):\n${diag()}`);
}

interface DnsperfResult {
  sent: number;
  completed: number;
  lost: number;
  rcodes: Record<string, number>;
  runTime: number;
  /** Per-query latencies in seconds (verbose runs only). */
  latencies?: Float64Array;
}

export function parseDnsperf(out: string, verbose: boolean): DnsperfResult {
  const num = (label: string) => Number(out.match(new RegExp(`${label}:\\s+([0-9.]+)`))?.[1] ?? Number.NaN);
  const rcodes: Record<string, number> = {};
  for (const m of (out.match(/Response codes:\s+(.*)/)?.[1] ?? "").matchAll(/([A-Z]+) (\d+)/g))
    rcodes[m[1] as string] = Number(m[2]);
  const res: DnsperfResult = {
    sent: num("Queries sent"),
    completed: num("Queries completed"),
    lost: num("Queries lost"),
    rcodes,
    runTime: num("Run time \\(s\\)"),
  };
  if ([res.sent, res.completed, res.lost, res.runTime].some(Number.isNaN))
    throw new Error(`dnsperf printed no statistics:\n${out.slice(-2000)}`);
  if (verbose) {
    const lat: number[] = [];
    for (const line of out.split("\n"))
      if (line.startsWith("> ")) lat.push(Number(line.slice(line.lastIndexOf(" ") + 1)));
    res.latencies = Float64Array.from(lat);
  }
  return res;
}

async function dnsperf(ns: string, seconds: number, qfile: string, rate?: number): Promise<DnsperfResult> {
  const verbose = rate !== undefined;
  const r = await run(
    [
      ...onClientCpu(ns),
      "dnsperf",
      "-s",
      GATEWAY,
      "-d",
      qfile,
      "-l",
      String(seconds),
      "-c",
      DNSPERF_CLIENTS,
      "-q",
      DNSPERF_OUTSTANDING,
      "-T",
      "1",
      "-t",
      "2",
      ...(verbose ? ["-Q", String(rate), "-v"] : []),
    ],
    seconds + 30,
  );
  if (r.code !== 0) throw new Error(`dnsperf exited ${r.code}: ${r.stderr.trim().slice(-2000)}`);
  return parseDnsperf(r.stdout, verbose);
}

/** The 99th percentile in µs, a lost query counting as the timeout (2 s). */
export function p99Micros(r: DnsperfResult): number {
  const lat = (r.latencies ?? new Float64Array()).slice().sort();
  const total = lat.length + r.lost;
  if (total === 0) return Number.NaN;
  const i = Math.ceil(total * 0.99) - 1;
  return (i < lat.length ? (lat[i] as number) : 2) * 1e6;
}

/** Queries/s (saturating dnsperf) or p99 latency µs (dnsperf at a fixed rate), Stratum vs `rival`. */
function dnsBench(rival: DnsRival, metric: "qps" | "p99"): Benchmark {
  let agentClient = "";
  let base: { serverNs: string; clientNs: string } | undefined;
  let qfile = "";
  let lab: Lab | undefined;
  const seen: Record<string, Seen<DnsperfResult>[]> = { stratum: [], [rival]: [] };
  const measure = async (who: string): Promise<number> => {
    const clientNs = who === "stratum" ? agentClient : base?.clientNs;
    const serverNs = who === "stratum" ? lab?.agentNs : base?.serverNs;
    if (!clientNs || !serverNs) throw new Error("not set up");
    const cpu0 = nsCpuSeconds(serverNs);
    const r =
      metric === "qps"
        ? await dnsperf(clientNs, SECONDS, qfile)
        : await dnsperf(clientNs, FIXED_SECONDS, qfile, QPS_FIXED);
    const cpu = nsCpuSeconds(serverNs) - cpu0;
    if (r.latencies && metric === "p99") seen[who]?.push({ r: { ...r, latencies: undefined }, cpu });
    else seen[who]?.push({ r, cpu });
    if (metric === "p99") return p99Micros(r);
    // Only right answers count: NOERROR (A, or NODATA for AAAA) and NXDOMAIN.
    return ((r.rcodes.NOERROR ?? 0) + (r.rcodes.NXDOMAIN ?? 0)) / r.runTime;
  };
  return labBench({
    name: `dns/${metric}-vs-${rival}`,
    unit: metric === "qps" ? "queries/s" : "µs p99",
    async setup(l) {
      need("dnsperf", "dig", rival === "knot" ? "knotd" : rival, "taskset", "nsenter");
      lab = l;
      const agent = await l.startAgent();
      agentClient = agent.clientNs;
      // The same 100 names in Stratum's zone, through the API (one request each).
      for (let n = 1; n <= RECORDS; n++)
        await l.api.addDnsRecord("app", { name: `ep-${n}`, type: "A", value: recordIp(n), ttl: 30 });
      base = l.baselineTopology(agent.mac);
      startDnsRival(l, rival, base.serverNs);
      qfile = join(l.dir, "queries.txt");
      writeFileSync(qfile, queryFile());
      await dnsReady(agentClient, "stratum", () => l.logText("agent.log"));
      await dnsReady(base.clientNs, rival, () => l.logText(`${rival}.out`) + l.logText(`${rival}.log`));
      l.pinNamespace(base.serverNs);
    },
    async notes() {
      const notes: string[] = [];
      if (lab) {
        const m = nonZero(await agentMetrics(lab, "stratum_dns_events_total"), /./);
        if (m.length) notes.push(`stratum's DNS server: ${m.join(", ")}`);
      }
      const cpu: string[] = [];
      for (const [who, rs] of Object.entries(seen)) {
        if (!rs.length) continue;
        const sum = (f: (r: DnsperfResult) => number) => rs.reduce((a, s) => a + f(s.r), 0);
        const sent = sum((r) => r.sent);
        const lost = sum((r) => r.lost);
        const nx = sum((r) => r.rcodes.NXDOMAIN ?? 0);
        const done = sum((r) => r.completed);
        const other = new Map<string, number>();
        for (const { r } of rs)
          for (const [k, v] of Object.entries(r.rcodes))
            if (k !== "NOERROR" && k !== "NXDOMAIN") other.set(k, (other.get(k) ?? 0) + v);
        if (lost > sent * 0.001) notes.push(`${who}: ${lost} of ${sent} queries lost (no answer within 2 s)`);
        if (other.size) notes.push(`${who}: unexpected rcodes ${[...other].map(([k, v]) => `${k} ${v}`).join(", ")}`);
        if (done && Math.abs(nx / done - EXPECTED_NX) > 0.01)
          notes.push(
            `${who}: ${((100 * nx) / done).toFixed(1)}% NXDOMAIN, the query mix has ${(100 * EXPECTED_NX).toFixed(1)}%`,
          );
        cpu.push(
          metric === "qps"
            ? `${who} ${(100 * medianOf(rs.map((s) => s.cpu / s.r.runTime))).toFixed(0)}%`
            : `${who} ${medianOf(rs.map((s) => (s.cpu * 1e6) / s.r.completed)).toFixed(1)} µs`,
        );
      }
      notes.push(
        metric === "qps"
          ? `server CPU busy while saturated (median): ${cpu.join(", ")}`
          : `server CPU per query at ${QPS_FIXED} q/s (median): ${cpu.join(", ")}`,
      );
      return notes;
    },
    candidate: {
      label: metric === "qps" ? "stratum (dnsperf, saturating)" : `stratum (dnsperf at ${QPS_FIXED} q/s)`,
      measure: () => measure("stratum"),
    },
    baseline: {
      label: rival === "nsd" ? "NSD" : rival === "knot" ? "Knot DNS" : "dnsmasq",
      measure: () => measure(rival),
    },
  });
}

export const ADDRESSING_BENCHMARKS: Record<string, () => Benchmark> = {
  "dhcp/dora-vs-kea": () => dhcpBench("kea", "dora"),
  "dhcp/dora-vs-dnsmasq": () => dhcpBench("dnsmasq", "dora"),
  "dhcp/cpu-vs-kea": () => dhcpBench("kea", "cpu"),
  "dhcp/cpu-vs-dnsmasq": () => dhcpBench("dnsmasq", "cpu"),
  "dns/qps-vs-dnsmasq": () => dnsBench("dnsmasq", "qps"),
  "dns/qps-vs-nsd": () => dnsBench("nsd", "qps"),
  "dns/qps-vs-knot": () => dnsBench("knot", "qps"),
  "dns/p99-vs-dnsmasq": () => dnsBench("dnsmasq", "p99"),
  "dns/p99-vs-nsd": () => dnsBench("nsd", "p99"),
  "dns/p99-vs-knot": () => dnsBench("knot", "p99"),
};
