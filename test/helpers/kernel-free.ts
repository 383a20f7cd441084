/** The real NetworkService and FirewallService on an in-memory store with the kernel left out,
 * behind the real app: what API tests need to check the contract with real responses. The
 * datapath's maps are boundless and empty, netlink knows no links, the firewall's tables are
 * a FakeFwKernel. A fixture fills the store with one of everything a view can show. */

import { type AppOptions, type ClusterApi, createApp, type GatewayApi } from "../../src/api/app";
import type {
  ClusterStatusView,
  EndpointView,
  GatewayGroupBody,
  GatewayGroupView,
  GatewayStatusView,
  NodeView,
  TraceResult,
} from "../../src/api/contract";
import { type GatewayHolder, gatewayGroupView } from "../../src/api/gateway-groups";
import type { LbKernelVip } from "../../src/datapath/lb-tables";
import { MapFill } from "../../src/datapath/map-fill";
import type { PortDatapath } from "../../src/datapath/port-datapath";
import { StratumError } from "../../src/errors";
import { BgpService } from "../../src/gateway/bgp/service";
import { LbService } from "../../src/lb/service";
import { type GatewayGroup, validateGatewayGroup } from "../../src/model/gateway-group";
import { parseSubnet } from "../../src/model/ip";
import { compileMicroseg } from "../../src/model/microseg";
import { hostAddress, profileMac } from "../../src/model/network";
import type { Rtnl } from "../../src/netlink";
import { RecentLog, ReconcileLog } from "../../src/observe/runtime";
import { buildStatus } from "../../src/observe/status";
import { type AttachRequest, EndpointService } from "../../src/services/endpoint-service";
import type { FirewallService } from "../../src/services/firewall-service";
import { MicrosegService } from "../../src/services/microseg-service";
import { NetworkService } from "../../src/services/network-service";
import type { ServiceContext } from "../../src/services/service-context";
import { Services } from "../../src/services/services";
import { SqliteStore } from "../../src/store/sqlite";
import type { BpfMap } from "../../src/sys/bpf";
import { FakeFwKernel } from "./fake-fw";

/** Networks without netlink or BPF maps: apply and delete do the store's part only (the
 * real ones put gateway addresses on the bridge and take them off). */
class KernelFreeNetworks extends NetworkService {
  override apply(): void {}

  override delete(name: string, force = false): void {
    const n = this.must(name);
    const eps = this.store.listEndpoints(name);
    if (eps.length && !force) throw new StratumError("INVALID", `network ${name} has endpoints`);
    for (const ep of eps) this.store.releaseEndpoint(ep.name);
    this.fw.removeScope(n.id);
    this.store.deleteNetwork(name);
  }
}

/** Endpoints without devices: attach claims the profile only (a tap is made by an ioctl, not
 * through netlink). */
class KernelFreeEndpoints extends EndpointService {
  override attach(req: AttachRequest): EndpointView {
    const n = this.networks.must(req.network);
    if (this.store.getEndpoint(req.name)) throw new StratumError("CONFLICT", `endpoint ${req.name} already exists`);
    const index = Math.max(1, ...this.store.claimedIndexes(n.name)) + 1;
    this.store.claimEndpoint({
      name: req.name,
      network: n.name,
      ip: hostAddress(n.cidr, index),
      mac: profileMac(n.id, index),
      hostIndex: index,
      kind: req.tap !== undefined ? "tap" : "veth",
      hostIf: req.tap ?? `stm${req.name}`,
      netns: req.netns,
      ifname: req.netns !== undefined ? (req.ifname ?? "eth0") : undefined,
    });
    return this.show(req.name);
  }

  /** No tap to open and no socket to send on: the answer a handoff of every queue would give. */
  override handoff(name: string, o: { socket: string; queues?: number; vnetHdr?: boolean }) {
    const ep = this.store.getEndpoint(name);
    if (!ep) throw new StratumError("NOT_FOUND", `endpoint ${name} does not exist`);
    if (ep.kind === "veth") throw new StratumError("INVALID", `endpoint ${name} is a container's veth`);
    const queues = o.queues ?? ep.queues ?? 1;
    return {
      endpoint: name,
      kind: ep.kind,
      interface: ep.hostIf,
      socket: o.socket,
      queues,
      vnetHdr: o.vnetHdr ?? true,
    };
  }
}

/** The real services (firewall, DNS records, leases) with the kernel-free networks and endpoints. */
export class KernelFreeServices extends Services {
  protected override makeNetworks(ctx: ServiceContext, fw: FirewallService): NetworkService {
    return new KernelFreeNetworks(ctx, fw);
  }

  protected override makeEndpoints(ctx: ServiceContext, networks: NetworkService): EndpointService {
    return new KernelFreeEndpoints(ctx, networks);
  }

  /** The policy is compiled (so CAPACITY is as real) but written nowhere; entry 1 has hits. */
  protected override makeMicroseg(ctx: ServiceContext): MicrosegService {
    let gen = 0;
    return new MicrosegService(ctx, {
      state: () => ({ gen, on: gen > 0 }),
      inForce: () => false,
      apply: (doc) => {
        const c = compileMicroseg(doc);
        gen = (gen % 255) + 1;
        return { gen, groups: c.lines.size, keys: c.policy.size };
      },
      hits: () => new Map([[1, { packets: 3, bytes: 180 }]]),
      pruneHits: () => {},
    });
  }
}

const counts = { passed: { packets: 10, bytes: 15_000 }, dropped: { packets: 1, bytes: 1500 } };
/** An array map (its entries are not counted: no syscall) as the map-fill walk sees it. */
const arrayMap = { info: { type: 2, keySize: 4, valueSize: 8, maxEntries: 16 } } as unknown as BpfMap;

/** Every datapath call does nothing; maps are boundless and empty; cap counters are fixed. */
export const noDatapath = new Proxy(
  {},
  {
    get: (_t, k) =>
      k === "map"
        ? () => ({ info: { maxEntries: Number.MAX_SAFE_INTEGER }, lookup: () => null })
        : k === "capCounts"
          ? () => structuredClone(counts)
          : k === "drops"
            ? () => ({ "mac-spoof": 0 })
            : () => {},
  },
) as PortDatapath;

/** Netlink with no links: lookups find nothing, dumps are empty, requests do nothing. */
export const noNetlink = new Proxy(
  {},
  { get: (_t, k) => (k === "dump" ? () => [] : k === "get" ? () => null : () => {}) },
) as Rtnl;

export interface KernelFree {
  store: SqliteStore;
  lb: LbService;
  /** What the load balancer last wrote to its stand-in kernel. */
  lbKernel: { vips: LbKernelVip[] };
  svc: KernelFreeServices;
  kernel: FakeFwKernel;
  app: ReturnType<typeof createApp>;
  /** How often each provider (trace, reconcile, metrics) was called. */
  calls: Record<"trace" | "reconcile" | "metrics", number>;
}

/** A trace result as the agent builds one (every key present). */
export const TRACE_RESULT: TraceResult = {
  packet: {
    family: 4,
    proto: "icmp",
    srcMac: "02:00:01:00:00:02",
    dstMac: "02:00:01:00:00:03",
    src: "10.20.0.2",
    dst: "10.20.0.3",
    sport: null,
    dport: null,
    flags: null,
    bytes: 60,
  },
  stages: [
    {
      step: 1,
      stage: "bridge",
      device: null,
      program: null,
      verdict: "forward",
      reason: null,
      firewall: null,
      conntrack: null,
      translation: null,
      microseg: null,
      note: "cnv-user-br0: static FDB entry",
    },
  ],
  verdict: "delivered",
  to: "vm-1",
  summary: "delivered to vm-1 (10.20.0.3)",
  programs: { tag: "abc", liveTag: null, same: true },
};

/** A cluster as the API sees it: node-a (this node, ready), node-b (unreachable, one
 * endpoint), node-c (left). Removing a live node or this one is refused as the agent refuses it. */
export class FakeCluster implements ClusterApi {
  readonly list: NodeView[] = [
    {
      name: "node-a",
      state: "ready",
      address: "10.99.0.1",
      mgmtAddress: "10.98.0.1",
      version: "0.0.0-test",
      roles: [],
      joinedAt: "2026-12-01T10:00:00.000Z",
      startedAt: "2026-12-01T11:00:00.000Z",
      left: null,
      endpoints: 2,
      self: true,
    },
    {
      name: "node-b",
      state: "unreachable",
      address: "10.99.0.2",
      mgmtAddress: null,
      version: null,
      roles: [],
      joinedAt: "2026-12-01T10:00:01.000Z",
      startedAt: null,
      left: null,
      endpoints: 1,
      self: false,
    },
    {
      name: "node-c",
      state: "left",
      address: "10.99.0.3",
      mgmtAddress: "10.98.0.3",
      version: null,
      roles: [],
      joinedAt: "2026-12-01T10:00:02.000Z",
      startedAt: null,
      left: "2026-12-02T08:00:00.000Z",
      endpoints: 0,
      self: false,
    },
  ];

  nodes(): NodeView[] {
    return structuredClone(this.list);
  }

  node(name: string): NodeView {
    const n = this.list.find((x) => x.name === name);
    if (!n) throw new StratumError("NOT_FOUND", `node ${name} is not a member of this cluster`);
    return structuredClone(n);
  }

  removeNode(name: string) {
    const n = this.node(name);
    if (n.self) throw new StratumError("INVALID", `node ${name} is this node`);
    if (n.state === "ready") throw new StratumError("INVALID", `node ${name} is alive`);
    this.list.splice(
      this.list.findIndex((x) => x.name === name),
      1,
    );
    return {
      node: name,
      endpoints: n.endpoints ? [{ name: "db-9", network: "app-net", ip: "10.20.0.90", ip6: null }] : [],
    };
  }

  /** Moves asked for, by endpoint (none: the fake answers the request and keeps nothing). */
  readonly moving = new Map<string, { from: string; to: string; state: "requested" | "handed-off"; at: string }>();

  moveEndpoint(name: string, to: string) {
    const target = this.node(to);
    if (target.self) throw new StratumError("INVALID", `endpoint ${name} runs on node ${to} already`);
    return {
      endpoint: name,
      id: "m-1",
      from: "node-a",
      to,
      at: "2026-12-06T10:00:00.000Z",
      state: "requested" as const,
      forced: false,
    };
  }

  moves() {
    return new Map(this.moving);
  }

  async status(): Promise<ClusterStatusView> {
    return structuredClone(CLUSTER_STATUS);
  }
}

export const CLUSTER_STATUS: ClusterStatusView = {
  clusterId: "6c0f1a2e-0000-4000-8000-000000000001",
  node: "node-a",
  etcd: {
    endpoints: ["http://10.99.0.254:2379", "http://10.99.0.253:2379"],
    up: true,
    members: [
      {
        endpoint: "http://10.99.0.253:2379",
        healthy: false,
        version: null,
        leader: false,
        error: "connection refused",
      },
      { endpoint: "http://10.99.0.254:2379", healthy: true, version: "3.5.16", leader: true, error: null },
    ],
    leader: "http://10.99.0.254:2379",
    revision: 42,
  },
  mirror: { revision: 42, lag: 0, keys: 17, invalidKeys: 0, lastResync: "2026-12-06T09:00:00.500Z" },
  watch: { events: 12, resyncs: 1, connected: true },
  lease: { id: "694d8a7b3c2e1f00", ttl: 10, renewals: 55, missed: 0, reRegistered: 0 },
};

/** The gateway group a FakeGateway starts with: node-a (this node, priority 200) holds it. */
export const NORTH_GROUP: GatewayGroup = {
  name: "north",
  vips: { ipv4: "192.0.2.10", ipv6: "2001:db8::10" },
  nodes: ["node-a", "node-b"],
  priority: { "node-a": 200, "node-b": 100 },
  preempt: true,
  advertIntervalMs: 100,
  createdAt: "2026-12-06T09:00:00.000Z",
};

/** Gateway groups as the API sees them on node-a of FakeCluster: declarations checked by the
 * real model (the store's networks, the fake cluster's nodes), held in memory; north is held
 * by node-a, node-b heard 42 ms ago. */
export class FakeGateway implements GatewayApi {
  readonly list: GatewayGroup[] = [structuredClone(NORTH_GROUP)];
  readonly active = new Map<string, GatewayHolder>([
    ["north", { node: "node-a", epoch: 57, since: "2026-12-06T09:00:01.000Z", why: "highest priority" }],
  ]);

  constructor(
    readonly store: SqliteStore,
    readonly members = ["node-a", "node-b", "node-c"],
  ) {}

  #view(g: GatewayGroup): GatewayGroupView {
    return gatewayGroupView(g, this.active.get(g.name) ?? null);
  }

  groups(): GatewayGroupView[] {
    return this.list.map((g) => this.#view(g));
  }

  group(name: string): GatewayGroupView {
    const g = this.list.find((x) => x.name === name);
    if (!g) throw new StratumError("NOT_FOUND", `no gateway group ${name}`);
    return this.#view(g);
  }

  createGroup(body: GatewayGroupBody): GatewayGroupView {
    const subnets = this.store
      .listNetworks()
      .flatMap((n) =>
        [n.cidr, ...(n.cidr6 ? [n.cidr6] : [])].map((c) => ({ network: n.name, subnet: parseSubnet(c) })),
      );
    const g = {
      ...validateGatewayGroup(body, { existing: this.list, subnets, members: this.members }),
      createdAt: "2026-12-06T10:00:00.000Z",
    };
    this.list.push(g);
    return this.#view(g);
  }

  deleteGroup(name: string): void {
    const i = this.list.findIndex((x) => x.name === name);
    if (i < 0) throw new StratumError("NOT_FOUND", `no gateway group ${name}`);
    this.list.splice(i, 1);
    this.active.delete(name);
  }

  status(): GatewayStatusView {
    const self = "node-a";
    return {
      node: self,
      groups: this.list.map((g) => {
        const a = this.active.get(g.name) ?? null;
        const member = g.nodes.includes(self);
        return {
          name: g.name,
          vips: { ipv4: g.vips.ipv4 ?? null, ipv6: g.vips.ipv6 ?? null },
          member,
          role: !member ? "none" : a?.node === self ? "active" : a ? "standby" : "init",
          active: a?.node ?? null,
          epoch: a?.epoch ?? null,
          since: a?.since ?? null,
          why: a?.why ?? null,
          holdMs: a?.node === self ? 212.5 : null,
          nodes: member
            ? g.nodes.map((n) => ({
                name: n,
                priority: g.priority[n] as number,
                role: n === self ? (a?.node === self ? "active" : "standby") : a?.node === n ? "active" : "standby",
                lastHeardMs: n === self ? null : 42,
                etcd: n === self ? null : true,
                self: n === self,
              }))
            : [],
          counters: {
            transitions: 1,
            advertsSent: 1200,
            advertsReceived: 1180,
            advertsRejected: 0,
            advertsMissed: 2,
            renewals: 2400,
            renewFailures: 0,
          },
        };
      }),
    };
  }
}

/** The app on a kernel-free service, every provider present (status built by the real
 * buildStatus from a runtime of stand-ins); `o` overrides options. */
export function kernelFreeApp(o: AppOptions = {}): KernelFree {
  const store = new SqliteStore(":memory:");
  const kernel = new FakeFwKernel();
  const svc = new KernelFreeServices(store, noDatapath, noNetlink, () => {}, kernel);
  const calls = { trace: 0, reconcile: 0, metrics: 0 };
  const recent = new RecentLog(5);
  recent.add("warn", "a warning for status", "agent");
  recent.add("error", "an error without a tag");
  const reconciles = new ReconcileLog();
  reconciles.run(() => ({
    networks: 0,
    endpoints: 0,
    firewall: { scopes: 1, adopted: 1, blocklistAdded: 0 },
    collected: [],
    errors: [],
    pass: "whole",
    changes: ["add FDB entry"],
  }));
  const rt = {
    version: "0.0.0-test",
    startedAt: new Date(Date.now() - 5000),
    probe: { libbpf: "1.5.0", libbpfPath: "/usr/lib/libbpf.so.1", kernel: "6.12.0", features: { tcx: true } },
    pinRoot: "/sys/fs/bpf/stratum-test",
    stateDir: "/tmp/none",
    dbPath: ":memory:",
    svc,
    store,
    reconcile: reconciles,
    recent,
    mapFill: new MapFill(() => [{ name: "stm_counters", map: arrayMap }]),
  } as unknown as Parameters<typeof buildStatus>[0];
  const lbKernel = { vips: [] as LbKernelVip[] };
  const lb = new LbService(store, {
    apply: (vips) => {
      lbKernel.vips = vips;
      return { writes: 0, tables: 0 };
    },
    hits: () => new Map(),
    up: () => new Set<number>(),
  });
  const app = createApp(svc, {
    lb,
    status: () => buildStatus(rt),
    trace: () => {
      calls.trace++;
      return structuredClone(TRACE_RESULT);
    },
    reconcile: () => {
      calls.reconcile++;
      return reconciles.last as NonNullable<typeof reconciles.last>;
    },
    metrics: async () => {
      calls.metrics++;
      return { contentType: "text/plain; version=0.0.4; charset=utf-8", body: "# HELP x x\n# TYPE x gauge\nx 1\n" };
    },
    cluster: new FakeCluster(),
    bgp: new BgpService(store),
    gateway: new FakeGateway(store),
    ...o,
  });
  return { store, svc, kernel, app, calls, lb, lbKernel };
}

/** One of everything: two networks (one with IPv6 and a cap), a veth endpoint with a cap and
 * a tap, DNS records, leases, rules of a network and of the global scope, a blocklist. */
export function fillFixture(k: KernelFree): void {
  const { store, svc } = k;
  svc.networks.create({
    name: "app-net",
    cidr: "10.20.0.0/24",
    gateway: "10.20.0.1",
    cidr6: "fd20::/64",
    gateway6: "fd20::1",
    egress: { rate: 100_000_000 },
  });
  svc.networks.create({ name: "db-net", cidr: "10.30.0.0/24", gateway: "10.30.0.1" });
  const n = store.getNetwork("app-net");
  if (!n) throw new Error("fixture: no app-net");
  const claim = (name: string, i: number, kind: "veth" | "tap") =>
    store.claimEndpoint({
      name,
      network: "app-net",
      ip: `10.20.0.${i + 1}`,
      mac: `02:00:01:00:00:0${i + 1}`,
      hostIndex: i,
      kind,
      hostIf: kind === "tap" ? `tap${i}` : `stmtest${i}`,
      ...(kind === "veth" ? { netns: `ns${i}`, ifname: "eth0" } : {}),
    });
  claim("web-1", 1, "veth");
  claim("vm-1", 2, "tap");
  store.setEndpointEgress("web-1", { rate: 50_000_000, burst: 1 << 20 });
  svc.dnsRecords.add("app-net", { name: "api", type: "A", value: "10.20.0.50" });
  svc.dnsRecords.add("app-net", { name: "www", type: "CNAME", value: "web-1" });
  const now = Date.now();
  store.putLease({
    network: "app-net",
    mac: "02:00:01:00:00:02",
    family: 4,
    ip: "10.20.0.2",
    endpoint: "web-1",
    hostname: "web1",
    state: "bound",
    expiresAt: now + 3_600_000,
    updatedAt: now,
  });
  store.putLease({
    network: "app-net",
    mac: "02:00:01:00:00:03",
    family: 4,
    ip: "10.20.0.3",
    state: "released",
    expiresAt: now - 60_000,
    updatedAt: now - 120_000,
  });
  svc.firewall.addRule("app-net", { priority: 100, proto: "tcp", dport: "443", action: "allow" });
  svc.firewall.addRule("app-net", {
    priority: 200,
    proto: "udp",
    sport: "1000-2000",
    src: "10.9.0.0/16",
    action: "deny",
  });
  svc.firewall.addRule("global", { priority: 10, proto: "icmp", "icmp-type": "8/0", action: "allow", log: true });
  svc.firewall.blockAdd(["198.51.100.0/24", "2001:db8:bad::/48", "203.0.113.7", "10.0.0.0/8", "9.0.0.0/8"]);
  // The BGP speaker's settings (this agent is no gateway: no session).
  store.setBgpConfig({ asn: 65001, routerId: "10.0.0.1", restartTime: 120, importDefault: false });
  // Microsegmentation: a small tree, entries, an endpoint in a group.
  svc.microseg.createGroup({ name: "prod" });
  svc.microseg.createGroup({ name: "prod/web" });
  svc.microseg.createGroup({ name: "prod/db", description: "the databases" });
  svc.microseg.createGroup({ name: "spare" });
  svc.microseg.addRule({ from: "prod/web", to: "prod/db", action: "allow", proto: "tcp", dport: 5432, log: true });
  svc.microseg.addRule({ from: "untagged", to: "prod/web", action: "allow", proto: "tcp", dport: 443 });
  store.setEndpointGroup("web-1", "prod/web");
  store.addBgpPeer({ name: "r1", address: "10.0.0.2", asn: 65000, holdTime: 90, passwordFile: null });
  // The load balancer: a VIP with both endpoints as backends, and an empty one.
  k.lb.createVip({
    name: "web",
    address: "192.0.2.80",
    port: 80,
    proto: "tcp",
    check: { kind: "http", path: "/health" },
  });
  k.lb.addBackend("web", { endpoint: "web-1", port: 8080, weight: 2 });
  k.lb.addBackend("web", { endpoint: "vm-1", port: 8080 });
  k.lb.createVip({ name: "spare", address: "2001:db8:80::1", port: 443, proto: "tcp", tableSize: 251 });
}
