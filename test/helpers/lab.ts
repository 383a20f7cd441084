/** The N-node lab: the machines of a fabric, on this one. Each node is a network namespace with
 * its own agent (a TestAgent: pin root, state directory and API socket of its own, and a UTS
 * namespace whose host name is the node's name, as a machine of its own has: the agent derives
 * its bridges' MACs from the host name, and without one per node every node's bridges would
 * share a MAC). A "switch" namespace joins the nodes through two Linux bridges, two LANs:
 *
 *   underlay    br-und  ── und0 of node i: 10.99.0.i/24, fd99::i/64, the node's underlay (VTEP)
 *                          address, what --node-address names. The switch is 10.99.0.254,
 *                          fd99::254 there, and etcd listens on 10.99.0.254:2379.
 *   management  br-mgmt ── mgmt0 of node i, the port of the node's cnv-mgmt-br0, which holds
 *                          10.98.0.i/24, fd98::i/64 (the management address the agent records).
 *                          The switch is 10.98.0.254, fd98::254 there.
 *
 * A management address must answer whether the agent runs or not (an agent killed, a node
 * restarted while etcd is down), so the lab does what a host's own network configuration does:
 * it creates cnv-mgmt-br0 with mgmt0 as its port and the address on the bridge, with the MAC
 * the node's agent will give it (bridgeMac with the node's host name). The agent adopts a
 * bridge that exists (it sets only its MAC and up state), so starting it changes nothing on
 * the management LAN. Nothing of the lab is in the host namespace: every veth is made in a
 * node namespace, its peer in the switch's.
 *
 * Cluster: the agent has no cluster flags yet, and refuses flags it does not know, so a node's
 * agent starts in single-node mode unless the test passes more. node.clusterArgs() is what the
 * cluster tests will pass to node.start(): --cluster <etcd's URL> --node-name nodeI
 * --node-address <underlay IPv4>.
 *
 * Cleanup: destroy() ends every process by its PID (agents, etcd) and waits until it has ended,
 * then removes the namespaces (their veths and bridges go with them), the pin roots and the
 * directories; on process exit too, pass or fail, and on SIGINT or SIGTERM. */
import { MGMT_BRIDGE } from "../../src/model/topology";
import { bridgeMac } from "../../src/reconcile/bridges";
import { killAndWait, TestAgent } from "./agent";
import { EtcdServer } from "./etcd-server";
import { BINARY, Netns, type RunResult, run } from "./netns";

/** The node side of the underlay. */
export const UNDERLAY_DEV = "und0";
/** The node side of the management LAN: a port of cnv-mgmt-br0. */
export const MGMT_PORT = "mgmt0";
const SWITCH_UNDERLAY = "br-und";
const SWITCH_MGMT = "br-mgmt";

/** Node i's underlay addresses (1 ≤ i ≤ 253); the switch, where etcd listens, is 254. The IPv6
 * address spells i as the IPv4 one does (node 12: 10.99.0.12, fd99::12). */
export const underlayAddress = (i: number) => ({ ipv4: `10.99.0.${i}`, ipv6: `fd99::${i}` });
/** Node i's management addresses; the switch is 254. */
export const mgmtAddress = (i: number) => ({ ipv4: `10.98.0.${i}`, ipv6: `fd98::${i}` });
/** The switch's addresses on both LANs. */
export const SWITCH_INDEX = 254;

export interface LabOptions {
  /** How many nodes (1 to 253). */
  nodes: number;
  /** Run etcd in the switch namespace, on the underlay at 10.99.0.254:2379; default true. */
  etcd?: boolean;
  /** Extra etcd flags (e.g. "--auto-compaction-retention=1"). */
  etcdArgs?: string[];
  /** The start of every name the lab makes (at most 3 characters are kept); default "lab". */
  tag?: string;
}

/** Runs `ip` commands in one process in a namespace: a node is a handful of commands. */
function ipBatch(ns: Netns, lines: string[]): void {
  const r = run(["ip", "-n", ns.name, "-batch", "-"], { input: `${lines.join("\n")}\n` });
  if (r.code !== 0) throw new Error(`ip -n ${ns.name} -batch: exit ${r.code}: ${r.stderr.trim()}`);
}

/** Polls `fn` (sync or async) every 20 ms until it gives something truthy (returned), or throws
 * after `ms`. */
export async function until<T>(
  what: string,
  fn: () => T | null | undefined | false | Promise<T | null | undefined | false>,
  ms = 10_000,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

/** A request to a node's API socket (the CLI's process per call is too slow for a race). */
export async function apiCall(
  n: LabNode,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: any }> {
  const res = await fetch(`http://stratum${path}`, {
    method,
    unix: n.agent.sock,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  } as RequestInit);
  return { status: res.status, body: await res.json().catch(() => null) };
}

/** One echo reply within a second or two. */
export function pingFrom(ns: Netns, address: string, count = 1): boolean {
  return ns.exec(["ping", "-n", "-q", "-c", String(count), "-i", "0.2", "-W", "2", address]).code === 0;
}

const b64 = (s: string) => Buffer.from(s).toString("base64");

/** The lab's etcd: one member in the switch namespace, asked from inside a node (or the switch)
 * through its v3 JSON gateway. stop/kill/resume take it down under traffic and bring it back on
 * its data. */
export class LabEtcd {
  readonly server: EtcdServer;

  constructor(server: EtcdServer) {
    this.server = server;
  }

  /** What an agent is given: http://10.99.0.254:2379. */
  get url(): string {
    return this.server.url;
  }

  get pid(): number | undefined {
    return this.server.pid;
  }

  /** A clean stop (SIGTERM), waited for. */
  stop(): Promise<void> {
    return this.server.stop("SIGTERM");
  }

  /** A crash (SIGKILL), waited for. */
  kill(): Promise<void> {
    return this.server.stop("SIGKILL");
  }

  /** Starts the member again on its data and waits until it answers. */
  resume(): Promise<void> {
    return this.server.resume();
  }

  #curl(from: Netns | LabNode, path: string, body?: unknown): RunResult {
    const ns = from instanceof LabNode ? from.ns : from;
    const data = body === undefined ? [] : ["-X", "POST", "-d", JSON.stringify(body)];
    return ns.enter(["curl", "-sSf", "-m", "2", ...data, `${this.url}${path}`]);
  }

  /** GET /health from inside `from` answers {"health":"true"}. */
  healthyFrom(from: Netns | LabNode): boolean {
    const r = this.#curl(from, "/health");
    return r.code === 0 && r.stdout.includes('"true"');
  }

  /** Puts a key from inside `from`; the revision it made. Throws when etcd does not answer. */
  put(key: string, value: string, from: Netns | LabNode): number {
    const r = this.#curl(from, "/v3/kv/put", { key: b64(key), value: b64(value) });
    if (r.code !== 0) throw new Error(`etcd put ${key} from ${from.name}: ${r.stderr.trim()}`);
    return Number(JSON.parse(r.stdout).header.revision);
  }

  /** A key's value read from inside `from` (undefined: no such key). Throws when etcd does not answer. */
  get(key: string, from: Netns | LabNode): string | undefined {
    const r = this.#curl(from, "/v3/kv/range", { key: b64(key) });
    if (r.code !== 0) throw new Error(`etcd get ${key} from ${from.name}: ${r.stderr.trim()}`);
    const kv = (JSON.parse(r.stdout) as { kvs?: Array<{ value?: string }> }).kvs?.[0];
    return kv ? Buffer.from(kv.value ?? "", "base64").toString() : undefined;
  }
}

/** A container of a node: a namespace whose eth0 the node's agent attached and configured. */
export class LabWorkload {
  readonly name: string;
  readonly node: LabNode;
  readonly ns: Netns;
  /** The attach's view (`network attach … -o json`): ip, mac, interface, network… */
  readonly endpoint: any;

  constructor(name: string, node: LabNode, ns: Netns, endpoint: any) {
    this.name = name;
    this.node = node;
    this.ns = ns;
    this.endpoint = endpoint;
  }

  get ip(): string {
    return this.endpoint.ip;
  }

  ping(address: string, count = 1): boolean {
    return pingFrom(this.ns, address, count);
  }

  exec(cmd: string[]): RunResult {
    return this.ns.exec(cmd);
  }
}

export interface Addresses {
  /** The device that holds them, in the node's namespace. */
  dev: string;
  ipv4: string;
  ipv6: string;
}

/** One node: its namespace, its addresses on both LANs, its agent (started on demand). */
export class LabNode {
  /** 1-based: node1 is lab.nodes[0]. */
  readonly index: number;
  /** nodeI: its agent's host name, the --node-name it will be given. */
  readonly name: string;
  readonly ns: Netns;
  readonly underlay: Addresses;
  /** On cnv-mgmt-br0, whose port on the management LAN is mgmt0. */
  readonly mgmt: Addresses;
  /** cnv-mgmt-br0's MAC: the one the node's agent gives it. */
  readonly mgmtMac: string;
  /** Pin root, state directory, API socket; its process runs between start() and stop()/kill(). */
  readonly agent: TestAgent;
  readonly workloads: LabWorkload[] = [];
  readonly #lab: Lab;
  #flags: string[] = [];

  constructor(lab: Lab, index: number, ns: Netns, tag: string) {
    this.#lab = lab;
    this.index = index;
    this.name = `node${index}`;
    this.ns = ns;
    this.underlay = { dev: UNDERLAY_DEV, ...underlayAddress(index) };
    this.mgmt = { dev: MGMT_BRIDGE, ...mgmtAddress(index) };
    this.mgmtMac = bridgeMac(MGMT_BRIDGE, this.name);
    this.agent = new TestAgent(tag, { ns, hostname: this.name });
  }

  /** The flags that will join this node to the lab's cluster once the agent has them (not
   * passed by default: today's agent refuses them): `node.start(node.clusterArgs())`. */
  clusterArgs(): string[] {
    return ["--cluster", this.#lab.etcd.url, "--node-name", this.name, "--node-address", this.underlay.ipv4];
  }

  /** Starts the agent with extra agent arguments `flags` (passed as they are, after the
   * node's own --state-dir, --pin-root and --api-socket) and waits for its API. */
  async start(flags: string[] = []): Promise<void> {
    if (this.running) throw new Error(`${this.name}: the agent runs already (pid ${this.agent.pid})`);
    this.#flags = [...flags];
    await this.agent.start(this.#flags);
  }

  /** SIGTERM to the agent's PID, waited for: the agent's clean stop. */
  stop(): Promise<void> {
    return this.agent.kill("SIGTERM");
  }

  /** SIGKILL to the agent's PID, waited for: a crash. */
  kill(): Promise<void> {
    return this.agent.kill("SIGKILL");
  }

  /** Stops the agent (if it runs) and starts it again with the flags of the last start, or `flags`. */
  async restart(flags: string[] = this.#flags): Promise<void> {
    await this.stop();
    await this.start(flags);
  }

  get running(): boolean {
    return this.agent.pid !== undefined;
  }

  /** The CLI run inside the node's network namespace, against its agent's API socket. */
  cli(...args: string[]): RunResult {
    return this.ns.enter([BINARY, ...args, "--api-socket", this.agent.sock]);
  }

  /** `cli(...args, "-o", "json")`, parsed; throws with stderr on failure. */
  json<T = any>(...args: string[]): T {
    const r = this.cli(...args, "-o", "json");
    // status exits 1 when degraded, with its whole document on stdout.
    const ok = r.code === 0 || (args[0] === "status" && r.code === 1 && r.stdout.length > 0);
    if (!ok) throw new Error(`${this.name}: ${args.join(" ")}: exit ${r.code}: ${r.stderr.trim()}`);
    return JSON.parse(r.stdout) as T;
  }

  exec(cmd: string[]): RunResult {
    return this.ns.exec(cmd);
  }

  ping(address: string, count = 1): boolean {
    return pingFrom(this.ns, address, count);
  }

  /** A container attached by this node's agent to `network`, its eth0 configured (address,
   * route, MTU): `network attach NETWORK --name NAME --netns NS --configure ATTACHARGS…`;
   * with `configure: false` eth0 is left as it comes (down, no address: DHCP's to set up). */
  workload(name: string, network: string, attachArgs: string[] = [], o: { configure?: boolean } = {}): LabWorkload {
    const ns = new Netns(`w${this.index}`);
    try {
      const view = this.json(
        "network",
        "attach",
        network,
        "--name",
        name,
        "--netns",
        ns.name,
        ...(o.configure === false ? [] : ["--configure"]),
        ...attachArgs,
      );
      const w = new LabWorkload(name, this, ns, view);
      this.workloads.push(w);
      return w;
    } catch (e) {
      ns.destroy();
      throw e;
    }
  }
}

const live = new Set<Lab>();
// Before the helpers' own exit handlers: a lab ends its processes before anything they use goes.
process.prependListener("exit", () => {
  for (const lab of [...live]) lab.destroy();
});
// SIGINT and SIGTERM (a run interrupted, a timeout's kill) would end the process without its
// exit handlers, and a lab leaves the most behind: end as an exit does, so every cleanup runs.
// Only while a lab is alive; otherwise the signal's default stands.
const onSignal = (signal: NodeJS.Signals) => {
  for (const lab of [...live]) lab.destroy();
  process.exit(128 + (signal === "SIGINT" ? 2 : 15));
};
function watchSignals(on: boolean): void {
  for (const signal of ["SIGINT", "SIGTERM"] as const)
    if (on) process.on(signal, onSignal);
    else process.off(signal, onSignal);
}

export class Lab {
  readonly tag: string;
  #switch: Netns | undefined;
  readonly #nodes: LabNode[] = [];
  #etcd: LabEtcd | undefined;
  #alive = true;
  /** Milliseconds Lab.create took (namespaces, links, addresses, etcd answering). */
  createMs = 0;

  private constructor(tag: string) {
    this.tag = tag.slice(0, 3);
    if (live.size === 0) watchSignals(true);
    live.add(this);
  }

  /** Builds the switch, the nodes and their links, starts etcd (in parallel with the nodes)
   * and returns when etcd answers. On any failure everything made so far is removed. */
  static async create(o: LabOptions): Promise<Lab> {
    if (!Number.isInteger(o.nodes) || o.nodes < 1 || o.nodes > 253) throw new Error(`nodes: 1 to 253, not ${o.nodes}`);
    const t0 = performance.now();
    const lab = new Lab(o.tag ?? "lab");
    let etcd: Promise<EtcdServer> | undefined;
    try {
      const sw = new Netns(`${lab.tag}sw`);
      lab.#switch = sw;
      ipBatch(sw, [
        `link add ${SWITCH_UNDERLAY} type bridge mcast_snooping 0`,
        `link add ${SWITCH_MGMT} type bridge mcast_snooping 0`,
        `addr add ${underlayAddress(SWITCH_INDEX).ipv4}/24 dev ${SWITCH_UNDERLAY}`,
        `addr add ${underlayAddress(SWITCH_INDEX).ipv6}/64 dev ${SWITCH_UNDERLAY} nodad`,
        `addr add ${mgmtAddress(SWITCH_INDEX).ipv4}/24 dev ${SWITCH_MGMT}`,
        `addr add ${mgmtAddress(SWITCH_INDEX).ipv6}/64 dev ${SWITCH_MGMT} nodad`,
        `link set ${SWITCH_UNDERLAY} up`,
        `link set ${SWITCH_MGMT} up`,
      ]);
      // etcd boots while the nodes are built: spawning it is synchronous, only the wait is not.
      if (o.etcd !== false)
        etcd = EtcdServer.start({ netns: sw.name, host: underlayAddress(SWITCH_INDEX).ipv4, args: o.etcdArgs });
      const ports: string[] = [];
      for (let i = 1; i <= o.nodes; i++) {
        const ns = new Netns(`${lab.tag}n${i}`);
        const node = new LabNode(lab, i, ns, `${lab.tag}${i}`);
        lab.#nodes.push(node);
        ipBatch(ns, [
          `link add ${UNDERLAY_DEV} type veth peer name und${i} netns ${sw.name}`,
          `link add ${MGMT_PORT} type veth peer name mgmt${i} netns ${sw.name}`,
          `link add ${MGMT_BRIDGE} address ${node.mgmtMac} type bridge`,
          `link set ${MGMT_PORT} master ${MGMT_BRIDGE} up`,
          `addr add ${node.underlay.ipv4}/24 dev ${UNDERLAY_DEV}`,
          `addr add ${node.underlay.ipv6}/64 dev ${UNDERLAY_DEV} nodad`,
          `link set ${UNDERLAY_DEV} up`,
          `addr add ${node.mgmt.ipv4}/24 dev ${MGMT_BRIDGE}`,
          `addr add ${node.mgmt.ipv6}/64 dev ${MGMT_BRIDGE} nodad`,
          `link set ${MGMT_BRIDGE} up`,
        ]);
        ports.push(`link set und${i} master ${SWITCH_UNDERLAY} up`, `link set mgmt${i} master ${SWITCH_MGMT} up`);
      }
      ipBatch(sw, ports);
      if (etcd) lab.#etcd = new LabEtcd(await etcd);
    } catch (e) {
      await etcd?.then(
        (s) => s.destroy(),
        () => {},
      );
      lab.destroy();
      throw e;
    }
    lab.createMs = performance.now() - t0;
    return lab;
  }

  /** The namespace of both switch bridges; etcd runs in it. */
  get switch(): Netns {
    if (!this.#switch) throw new Error("the lab is gone");
    return this.#switch;
  }

  get nodes(): readonly LabNode[] {
    return this.#nodes;
  }

  /** Node i, 1-based. */
  node(i: number): LabNode {
    const n = this.#nodes[i - 1];
    if (!n) throw new Error(`no node ${i}: the lab has ${this.#nodes.length}`);
    return n;
  }

  get etcd(): LabEtcd {
    if (!this.#etcd) throw new Error("this lab runs no etcd (created with etcd: false)");
    return this.#etcd;
  }

  /** Every namespace the lab made: the switch, the nodes, the workloads. */
  get namespaces(): string[] {
    return [
      ...(this.#switch ? [this.#switch.name] : []),
      ...this.#nodes.flatMap((n) => [n.ns.name, ...n.workloads.map((w) => w.ns.name)]),
    ];
  }

  /** The nodes' pin roots under /sys/fs/bpf. */
  get pinRoots(): string[] {
    return this.#nodes.map((n) => n.agent.pins.path);
  }

  /** The nodes' directories (state, API socket, log) and etcd's data. */
  get dirs(): string[] {
    return [...this.#nodes.map((n) => n.agent.dir), ...(this.#etcd ? [this.#etcd.server.dataDir] : [])];
  }

  /** The processes the lab runs now: the agents that run, etcd if it runs. */
  get pids(): number[] {
    return [...this.#nodes.map((n) => n.agent.pid), this.#etcd?.pid].filter((p): p is number => p !== undefined);
  }

  /** Synchronous: safe in afterAll and on exit. Processes first, by PID, waited for; then the
   * namespaces (with every veth and bridge in them), pin roots and directories. */
  destroy(): void {
    if (!this.#alive) return;
    this.#alive = false;
    live.delete(this);
    if (live.size === 0) watchSignals(false);
    for (const n of this.#nodes) n.agent.destroy(); // kills and waits, then its pins and directory
    // `ip netns exec` execs etcd: the PID is etcd's. Ended before its data and namespace go.
    const etcdPid = this.#etcd?.pid;
    if (etcdPid) killAndWait(etcdPid);
    this.#etcd?.server.destroy();
    for (const n of this.#nodes) {
      for (const w of n.workloads) w.ns.destroy();
      n.ns.destroy();
    }
    this.#switch?.destroy();
  }
}
