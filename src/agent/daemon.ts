/** The resident agent: smoke check (PERMISSION when not root), the claim on its network
 * namespace and the checks of its paths (nothing is changed before they pass), bpffs, the
 * locks on the pin root and the state directory, state store, datapath (loaded and pinned), reconcile (restore, then
 * garbage-collect), then the API on its unix socket, READY=1 to systemd (Type=notify), and
 * from then on the reconcile loop (on rtnetlink notices of drift, and a periodic full pass).
 * Stopping it (SIGTERM, SIGINT or SIGKILL) leaves bridges, ports and programs in place:
 * enforcement never depends on this process being alive. */

import { chmodSync, existsSync, mkdirSync, unlinkSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { consola } from "consola";
import pkg from "../../package.json" with { type: "json" };
import type { GatewayApi } from "../api/app";
import { auditLine, type ClusterApi, createApp } from "../api/app";
import { clusterGatewayGroups } from "../api/gateway-groups";
import { type ApiHandler, loadApiToken, serveTcp, serveUnix } from "../api/serve";
import { Cluster, type ClusterChange } from "../cluster/cluster";
import { type EtcdCredentialFlags, readEtcdCredentials } from "../cluster/flags";
import { type ClusterWork, clusterWork, mergeServed, mergeWork, served } from "../cluster/follow";
import { HaLease } from "../cluster/ha-lease";
import { vniOf } from "../cluster/keys";
import { LbTables } from "../datapath/lb-tables";
import { MapFill } from "../datapath/map-fill";
import { PortDatapath } from "../datapath/port-datapath";
import { ensureBpffs, smokeCheck } from "../datapath/probe";
import { StratumError } from "../errors";
import { BgpService } from "../gateway/bgp/service";
import { BgpSpeaker } from "../gateway/bgp/speaker";
import { type GroupSource, groupStatus, HaService } from "../gateway/ha/service";
import { LbService } from "../lb/service";
import { MGMT_BRIDGE, USER_BRIDGE } from "../model/topology";
import {
  addRoute,
  deleteRoute,
  getLink,
  listAddresses,
  listLinks,
  RtnlMonitor,
  rtnl,
  VIP_ADDR_PROTO,
} from "../netlink";
import { clusterStatusView } from "../observe/cluster";
import { AgentMetrics, readSnapshot } from "../observe/metrics";
import { portNames } from "../observe/port-names";
import { type AgentRuntime, RecentLog, ReconcileLog, type ReconcileRun, type UplinkRuntime } from "../observe/runtime";
import { buildStatus } from "../observe/status";
import { claimNetns, describeAgent, netnsAgent } from "../ops/netns-owner";
import { Tracer } from "../ops/packet-trace";
import { type DesiredState, DriftWatch } from "../reconcile/drift";
import { ReconcileLoop, type ReconcileTrigger } from "../reconcile/loop";
import { overlayMtu } from "../reconcile/overlay";
import {
  bridgeMac,
  type OverlayOptions,
  type ReconcileReport,
  type ReconcileScope,
  reconcile,
  useAnycastGateway,
} from "../reconcile/reconcile";
import { Seal } from "../reconcile/seal";
import { Addressing } from "../services/addressing";
import { natPortRange } from "../services/nat";
import { Services } from "../services/services";
import { checkWritableStore, SqliteStore } from "../store/sqlite";
import { isLocalEndpoint, localEndpoints, type Store } from "../store/store";
import { mutationCount } from "../sys/mutations";
import { Notifier } from "../sys/notify";
import { lockDirectory } from "../sys/os";
import { pathError, writableDir } from "../sys/paths";
import { LiveFeed } from "../web/feed";
import { CounterHistory } from "../web/history";
import { serveWeb, withWeb } from "../web/web";
import { fileBlockMark } from "./block-mark";
import { addLogSink, configureLogging } from "./logging";

export interface AgentOptions {
  stateDir: string;
  pinRoot: string;
  apiSocket: string;
  uplink?: string;
  /** A gateway: runs the BGP speaker (docs/gateway.md). */
  gateway?: boolean;
  /** A gateway's stop withdraws its routes instead of leaving them to graceful restart. */
  withdrawOnStop?: boolean;
  /** The NAT port range "LO-HI" (default: outside the kernel's ephemeral ports). */
  natPorts?: string;
  apiListen?: string;
  apiTokenFile?: string;
  /** The read-only web view on TCP, HOST:PORT (with the API's token). */
  webListen?: string;
  /** Seconds between full reconcile passes; 0: none (notices of drift still make runs). */
  reconcileInterval?: number;
  /** A cluster node: the state is etcd's at these client URLs, mirrored into the store. */
  cluster?: ClusterJoin;
}

export interface ClusterJoin extends EtcdCredentialFlags {
  endpoints: string[];
  nodeName: string;
  nodeAddress: string;
}

import { DEFAULT_RECONCILE_INTERVAL } from "./defaults";

export { DEFAULT_RECONCILE_INTERVAL };

const log = consola.withTag("agent");

/** This node's endpoints' ports (host-side interface → profile MAC), looked up in the store as
 * notices name them and kept until the next change: not every endpoint read again after each
 * change (thousands of endpoints: milliseconds an attach). */
function portsOf(store: Store): Pick<ReadonlyMap<string, string>, "get" | "has"> {
  const seen = new Map<string, string | null>();
  const get = (hostIf: string): string | undefined => {
    let mac = seen.get(hostIf);
    if (mac === undefined) {
      const e = store.getEndpointByHostIf(hostIf, store.node);
      mac = e && isLocalEndpoint(store, e) ? e.mac.toLowerCase() : null;
      seen.set(hostIf, mac);
    }
    return mac ?? undefined;
  };
  return { get, has: (hostIf) => get(hostIf) !== undefined };
}
/** rtnetlink's protocol number for BGP ("proto bgp"), and the metric of an imported default route. */
const RTPROT_BGP = 186;
const BGP_DEFAULT_METRIC = 200;
/** One line per change through the API: who, what, the result. */
const audit = consola.withTag("audit");
const addrLog = consola.withTag("addressing");

async function socketInUse(path: string): Promise<boolean> {
  try {
    await fetch("http://stratum/v1/status", { unix: path } as RequestInit);
    return true;
  } catch {
    return false;
  }
}

/** Refuses when another agent runs in this network namespace: it shares the bridges, their
 * addresses and the uplink, whatever its pin root. Holds the namespace from then on. */
function claimNamespace(o: AgentOptions, startedAt: Date): { stop(): void } {
  const id = {
    pid: process.pid,
    version: pkg.version,
    pinRoot: resolve(o.pinRoot),
    stateDir: resolve(o.stateDir),
    apiSocket: resolve(o.apiSocket),
    startedAt: startedAt.toISOString(),
  };
  for (let attempt = 0; attempt < 3; attempt++) {
    const claim = claimNetns(id);
    if (claim) return claim;
    const other = netnsAgent();
    if (!other) continue; // it exited meanwhile: try again
    if (other.identity && resolve(other.identity.pinRoot) === id.pinRoot)
      throw new StratumError(
        "INVALID",
        `another agent owns the pin root ${o.pinRoot} (${describeAgent(other)}): stop it first, or give this one its own --pin-root`,
      );
    throw new StratumError(
      "CONFLICT",
      `another agent runs in this network namespace (${describeAgent(other)}): its bridges, gateway addresses and uplink are this namespace's, one agent each; stop it first, or run this one in its own network namespace (nsenter --net=/run/netns/NAME)`,
    );
  }
  throw new StratumError(
    "INTERNAL",
    "could not claim this network namespace for the agent: its marker kept changing hands",
  );
}

/** --api-listen (or --web-listen) and its token file, checked before anything is changed (the
 * listener itself opens last, once the API is ready). */
function checkApiListen(
  o: AgentOptions,
  flag: "--api-listen" | "--web-listen" = "--api-listen",
): ApiListen | undefined {
  const at = flag === "--api-listen" ? o.apiListen : o.webListen;
  if (!at) return undefined;
  if (!o.apiTokenFile) throw new StratumError("INVALID", `${flag} needs --api-token-file`);
  const m = at.match(/^(.*):(\d+)$/);
  if (!m) throw new StratumError("INVALID", `${flag} ${at} is not HOST:PORT`);
  const { token, name } = loadApiToken(o.apiTokenFile);
  return { hostname: (m[1] as string).replace(/^\[|\]$/g, ""), port: Number(m[2]), token, tokenName: name };
}

interface ApiListen {
  hostname: string;
  port: number;
  token: string;
  tokenName: string;
}

/** Runs the agent until a signal. A start that fails exits once the error is reported, even
 * when something it opened (the API socket, the DHCP and DNS listeners) would keep the
 * process alive: under systemd a failed start must fail, not hang until TimeoutStartSec. */
export async function runAgent(o: AgentOptions): Promise<void> {
  try {
    await serve(o);
  } catch (e) {
    setTimeout(() => process.exit(), 1000).unref();
    throw e;
  }
}

async function serve(o: AgentOptions): Promise<void> {
  const started = performance.now();
  const startedAt = new Date();
  const interval = o.reconcileInterval ?? DEFAULT_RECONCILE_INTERVAL;
  if (!Number.isFinite(interval) || interval < 0)
    throw new StratumError(
      "INVALID",
      `--reconcile-interval ${o.reconcileInterval} is not a number of seconds (0: no periodic pass)`,
    );
  configureLogging();
  // Before anything can warn: status shows the last warnings and errors.
  const recent = new RecentLog(20);
  addLogSink(recent.reporter);
  // systemd's Type=notify: STATUS while starting, READY=1 once the API answers, STOPPING=1.
  const systemd = new Notifier();
  const tell = (...fields: string[]) => {
    try {
      systemd.notify(...fields);
    } catch (e) {
      log.warn(`cannot tell systemd ${fields.join(", ")}: ${(e as Error).message}`);
    }
  };
  tell("STATUS=checking the kernel and this process's privileges");
  let probe = smokeCheck("the agent");
  log.info(`stratum ${pkg.version}, libbpf ${probe.libbpf}, kernel ${probe.kernel}`);
  // Nothing is changed before these pass: one agent per network namespace, and paths it can write.
  const listen = checkApiListen(o);
  const webListen = checkApiListen(o, "--web-listen");
  const credentials = o.cluster ? readEtcdCredentials(o.cluster) : undefined;
  const owner = claimNamespace(o, startedAt);
  const dbPath = join(o.stateDir, "stratum.db");
  checkWritableStore(dbPath);
  writableDir(dirname(o.apiSocket), "API socket directory", "give the agent another --api-socket", 0o755);
  // bpffs before the pin root: on a machine without it, /sys/fs/bpf is a sysfs directory.
  if (ensureBpffs(o.pinRoot)) {
    log.info("mounted bpffs on /sys/fs/bpf (nothing was mounted there)");
    probe = smokeCheck("the agent"); // status shows bpffs among the features now
  }
  // One agent per pin root: a second would fight the first over the same maps and links.
  try {
    mkdirSync(o.pinRoot, { recursive: true });
  } catch (e) {
    throw pathError(e, `cannot create the pin root ${o.pinRoot}`, o.pinRoot, "give the agent another --pin-root");
  }
  if (lockDirectory(o.pinRoot) === undefined)
    throw new StratumError(
      "INVALID",
      `another agent owns the pin root ${o.pinRoot} (stop it first, or give this one its own --pin-root)`,
    );
  // One agent per state directory too, whatever its namespace or pin root; and none while
  // `cluster init` uploads the state (it takes the same lock).
  if (lockDirectory(o.stateDir) === undefined)
    throw new StratumError(
      "INVALID",
      `another process holds the state directory ${o.stateDir} (an agent, or a cluster init uploading it): stop it first, or give this one its own --state-dir`,
    );
  if (existsSync(o.apiSocket)) {
    if (await socketInUse(o.apiSocket)) throw new StratumError("INVALID", `another agent is serving ${o.apiSocket}`);
    unlinkSync(o.apiSocket); // stale, from an agent that was killed
  }
  tell(`STATUS=opening the state database ${dbPath}`);
  const store = new SqliteStore(dbPath);
  // Rows that failed validation are out of service, not fatal: each one is worth a warning.
  for (const q of store.quarantinedAtOpen())
    log.warn(`store: ${q.what} quarantined (${q.reason}): kept in table quarantine, not in service`);
  let cluster: Cluster | undefined;
  if (o.cluster) {
    const c = o.cluster;
    tell(`STATUS=joining the cluster at ${c.endpoints.join(",")}`);
    const clog = consola.withTag("cluster");
    try {
      cluster = await Cluster.open(store, {
        endpoints: c.endpoints,
        nodeName: c.nodeName,
        nodeAddress: c.nodeAddress,
        mgmtAddress: mgmtAddressOf(),
        version: pkg.version,
        // The other nodes send their north-south traffic to a gateway over the overlay.
        roles: o.gateway ? ["gateway"] : [],
        ...credentials,
        log: (level, msg) => clog[level](msg),
      });
    } catch (e) {
      store.close();
      throw e;
    }
    useAnycastGateway(cluster.clusterId);
  }
  const data: Store = cluster?.store ?? store;
  tell(`STATUS=loading the datapath (pin root ${o.pinRoot})`);
  const dp = new PortDatapath(o.pinRoot);
  let opened: ReturnType<PortDatapath["open"]>;
  try {
    const t0 = performance.now();
    opened = dp.open();
    const ms = (performance.now() - t0).toFixed(0);
    log.info(
      dp.fromPins
        ? `datapath: this build's programs taken from their pins (${ms} ms, no load)`
        : `datapath: programs loaded and verified (${ms} ms)`,
    );
  } catch (e) {
    if (!(e instanceof StratumError)) throw e;
    throw new StratumError(
      e.code,
      `${e.message} (nothing pinned was changed: the previous build's datapath keeps running)`,
      { errno: e.errno, detail: e.detail, cause: e },
    );
  }
  if (opened.resumed.length)
    log.warn(
      `an upgrade was cut short: its staged maps ${opened.resumed.join(", ")} are taken over as they are and the upgrade goes on`,
    );
  if (opened.discarded.length)
    log.warn(`staged maps of another build (an upgrade cut short) discarded: ${opened.discarded.join(", ")}`);
  if (opened.staged.length)
    log.warn(
      `pinned maps of another layout (another build): ${opened.staged.join(", ")}; this build's are filled${opened.migrated.length ? ` (entries of ${opened.migrated.join(", ")} copied)` : ""} and take their place once every program is swapped`,
    );
  if (opened.restarted.length)
    log.warn(`state in ${opened.restarted.join(", ")} cannot be carried over: it starts empty`);
  const svc = new Services(data, dp, rtnl(), (m) => log.warn(m));
  // A single node's blocklist changes only through the agent: a start may trust its mark.
  if (!o.cluster) svc.firewall.useBlockMark(fileBlockMark(join(o.stateDir, "blocklist.mark"), dbPath));
  // A cluster node's new networks fit the overlay unless they say otherwise.
  if (o.cluster) svc.ctx.defaultMtu = overlayMtu(svc.nl, o.cluster.nodeAddress);
  svc.ctx.natPorts = natPortRange(o.natPorts);
  // A gateway's masqueraded networks translate to its groups' VIPs: their flows move with them.
  if (cluster && o.cluster && o.gateway) {
    const self = o.cluster.nodeName;
    const c = cluster;
    svc.ctx.groupVips = () => {
      const gs = c
        .gatewayGroups()
        .filter((g) => g.nodes.includes(self))
        .sort((a, b) => a.name.localeCompare(b.name));
      return { v4: gs.find((g) => g.vips.ipv4)?.vips.ipv4, v6: gs.find((g) => g.vips.ipv6)?.vips.ipv6 };
    };
  }

  // Notices are read from before the start run: drift made while it runs is not missed.
  let monitor: RtnlMonitor | undefined;
  try {
    monitor = new RtnlMonitor();
  } catch (e) {
    log.warn(`reconcile loop: ${(e as Error).message}: drift is found by the periodic pass only`);
  }
  const reconciles = new ReconcileLog();
  // The load balancer: VIPs in the datapath, this node's checks of their backends, and (on a
  // gateway) a VIP's announcement while one of its backends is healthy.
  const lbLog = consola.withTag("lb");
  let speakerRef: BgpSpeaker | undefined;
  const lb = new LbService(data, new LbTables(dp), {
    taken: (address) => {
      if (listAddresses({}, svc.nl).some((a) => a.ip === address)) return "an address of this node";
      for (const g of cluster?.gatewayGroups() ?? [])
        if (g.vips.ipv4 === address || g.vips.ipv6 === address) return `gateway group "${g.name}"'s VIP`;
      for (const n of data.listNetworks())
        if (n.nat?.addresses.includes(address)) return `network "${n.name}"'s NAT address`;
      return undefined;
    },
    onAnnounce: () => speakerRef?.sync(),
    log: (m) => lbLog.info(m),
    // In a cluster each node checks the backends that run on it and publishes what it finds.
    ...(cluster && o.cluster
      ? {
          cluster: {
            node: o.cluster.nodeName,
            publish: (id, rec) => (cluster as Cluster).publishLbHealth(id, rec),
            read: (id) => (cluster as Cluster).lbHealth(id),
            live: (node) => (cluster as Cluster).nodeAddresses().some((m) => m.name === node && m.state === "ready"),
          },
        }
      : {}),
  });
  // A cluster node's overlay: this node's underlay address, the members' from the mirror.
  const overlay: OverlayOptions | undefined =
    cluster && o.cluster
      ? {
          address: o.cluster.nodeAddress,
          nodes: () => (cluster as Cluster).nodeAddresses(),
          vniOf,
          gateway: o.gateway === true,
          serving: (node) => servesNorthSouth(cluster as Cluster, node),
        }
      : undefined;
  // The loop: what Stratum keeps in the kernel, as notices can show it; kept while the store
  // does not change (every change of networks and endpoints tells svc.onChange).
  const bridgeMacs = new Map([MGMT_BRIDGE, USER_BRIDGE].map((b) => [b, bridgeMac(b)]));
  let desired: DesiredState | undefined;
  /** Changes of networks and endpoints so far: the seal below compares them. */
  let storeChanges = 0;
  svc.onChange(() => {
    desired = undefined;
    storeChanges++;
  });
  const watch = new DriftWatch(() => {
    desired ??= {
      bridges: bridgeMacs,
      ports: portsOf(data),
      uplink: o.uplink,
      gateways: new Set(store.listNetworks().flatMap((n) => svc.networks.gateways(n).map((g) => g.cidr))),
    };
    return desired;
  });
  // A whole run that finds the kernel right seals it; a quick pass needs the notices to tell
  // what touched the ports since (none without the monitor). docs/operations.md#quick-reconcile
  const seal = monitor
    ? new Seal({
        mutations: mutationCount,
        storeChanges: () => storeChanges,
        touched: () => watch.touched,
        untouch: () => watch.untouch(),
        fingerprint: (m) => dp.map(m).fingerprint(),
      })
    : undefined;
  /** The last run's errors: a run of the loop logs only new ones (the same failure every 30 s is one warning). */
  let lastErrors = new Set<string>();
  let lastFailure = "";
  const runReconcile = (
    trigger: ReconcileTrigger,
    only?: ReconcileScope,
    opts: { full?: boolean } = {},
  ): ReconcileReport => {
    const quiet = trigger === "event" || trigger === "periodic";
    const r = reconciles.run(() => {
      // Only an operator's run may be quick; drift, the periodic backstop and start-up check
      // every port. The seal's check (the maps read) is part of the run's time.
      const asked = trigger === "api" && !opts.full && !only;
      const wholeBecause = asked ? (seal ? seal.broken() : "the agent gets no rtnetlink notices") : undefined;
      const quick = asked && seal !== undefined && wholeBecause === undefined;
      const rep = reconcile(svc, { uplink: o.uplink, only, overlay, lb, quick });
      if (wholeBecause) rep.wholeBecause = wholeBecause;
      // Sealed right after the run, before anything else can change the kernel.
      if (seal && !only) {
        if (rep.changes.length || rep.errors.length) seal.drop();
        else if (!quick)
          try {
            seal.take();
          } catch (e) {
            seal.drop();
            log.warn(
              `reconcile: the kernel could not be sealed (every run checks every port): ${(e as Error).message}`,
            );
          }
      }
      return rep;
    }, trigger);
    lastFailure = "";
    const fresh = quiet ? r.errors.filter((e) => !lastErrors.has(e)) : r.errors;
    for (const e of fresh) log.warn(`restore: ${e}`);
    lastErrors = new Set(r.errors);
    for (const c of r.collected) log.info(`garbage-collected ${c}`);
    if (r.changes.length && quiet)
      log.warn(`drift repaired: ${r.changes.join("; ")} [${trigger} run, ${reconciles.last?.durationMs} ms]`);
    else if (r.changes.length)
      log.info(
        `reconcile made ${r.changes.length} kernel change(s) [${trigger} run${r.only ? ` of ${r.only.join(", ")}` : ""}, ${reconciles.last?.durationMs} ms]`,
      );
    // Only a whole run knows every port swapped to this build's maps.
    if (dp.upgrading && !only) {
      if (r.errors.length) {
        // A port not swapped still runs on the old maps: they stay pinned, the new ones staged.
        if (fresh.length)
          log.warn(
            `upgrade not finished: the reconcile reported ${r.errors.length} error(s); the new maps stay under maps-next until a reconcile without errors (cenvero-str-ctl reconcile)`,
          );
      } else {
        // Every program now runs with this build's maps: the new pins take the old ones' place.
        const moved = dp.commitMaps();
        log.info(`upgrade complete: ${moved.length} map(s) replaced (${moved.join(", ")})`);
      }
    }
    return r;
  };
  /** A run of the loop: a failure is logged (once while it stays the same), never thrown. */
  const loopRun = (
    trigger: ReconcileTrigger,
    only?: ReconcileScope,
    opts?: { full?: boolean },
  ): ReconcileReport | { changes: string[] } => {
    if (trigger === "start" || trigger === "api") return runReconcile(trigger, undefined, opts);
    try {
      return runReconcile(trigger, only);
    } catch (e) {
      const m = (e as Error).message;
      if (m !== lastFailure) log.error(`reconcile (${trigger}) failed: ${m}`);
      lastFailure = m;
      return { changes: [] };
    }
  };
  tell("STATUS=reconciling the kernel to the store");
  const report = runReconcile("start");
  // Backends are checked from now on; an endpoint that comes or goes changes what is checked.
  lb.startHealth();
  svc.onChange(() => {
    try {
      lb.applyChange();
    } catch (e) {
      lbLog.warn(`the datapath did not take the endpoints' change: ${(e as Error).message}`);
    }
  });
  const uplink: UplinkRuntime | undefined = report.uplink;
  if (uplink)
    log.info(
      `uplink ${uplink.name}: XDP ${uplink.attach.xdpMode ?? ""} program ${uplink.attach.progId}`.replace("  ", " "),
    );

  const reseed = () => watch.seed(listLinks(svc.nl));
  reseed();
  const loop = new ReconcileLoop({
    run: (trigger, opts) => loopRun(trigger, undefined, opts),
    monitor,
    watch,
    reseed,
    intervalMs: interval * 1000,
    log: (level, msg) => log[level](msg),
  });

  // Address and name services: failures are logged and shown in status, never fatal.
  const addressing = new Addressing({
    store: data,
    nl: svc.nl,
    log: (level, msg) => (level === "warn" ? addrLog.warn(msg) : addrLog.info(msg)),
  });
  await addressing.start();
  svc.onChange((networks, endpoint) => addressing.refresh(networks, endpoint));

  // A gateway's BGP speaker: every network's prefixes to the peers, next hop self. It ran before
  // this start when its settings exist: the peers kept the routes (graceful restart) and get
  // the table again, then End-of-RIB.
  const bgpLog = consola.withTag("bgp");
  // A gateway cluster node's gateway groups (made below, once the speaker exists).
  let ha: HaService | undefined;
  const speaker = o.gateway
    ? new BgpSpeaker({
        config: () => store.bgpConfig(),
        peers: () => store.bgpPeers(),
        // A masqueraded network is reached through its NAT address: not announced.
        // And every VIP of the load balancer while one of its backends is healthy.
        prefixes: () => [
          ...data
            .listNetworks()
            .filter((n) => !n.nat)
            .flatMap((n) => [n.cidr, ...(n.cidr6 ? [n.cidr6] : [])]),
          ...lb.announced(),
        ],
        // Next hop self: the node's own address, never a gateway group's VIP (it moves).
        addresses: () => listAddresses({}, svc.nl).filter((a) => a.proto !== VIP_ADDR_PROTO),
        ...(o.uplink
          ? {
              uplinkUp: () => {
                const l = getLink(o.uplink as string, svc.nl);
                if (!l) return { up: false, why: `the uplink ${o.uplink} is gone` };
                if (!l.up) return { up: false, why: `the uplink ${o.uplink} is down (administratively)` };
                if (!l.lowerUp) return { up: false, why: `the uplink ${o.uplink} has no carrier` };
                return { up: true, why: "" };
              },
            }
          : {}),
        // bgp config --import-default: a peer's default route in the main table, proto bgp, after
        // any the operator set (metric 200).
        installDefault: (family, gateway) => {
          const dst = family === 4 ? "default" : "default6";
          if (gateway)
            addRoute({ dst, gateway, protocol: RTPROT_BGP, metric: BGP_DEFAULT_METRIC }, { replace: true }, svc.nl);
          else
            try {
              deleteRoute({ dst, protocol: RTPROT_BGP, metric: BGP_DEFAULT_METRIC }, svc.nl);
            } catch {} // gone already
        },
        restarting: store.bgpConfig() !== null,
        // A standby of gateway groups announces a worse path: the routers prefer the active node.
        prepend: () => ha?.prepend() ?? 0,
        log: (level, msg) => bgpLog[level](msg),
      })
    : undefined;
  speakerRef = speaker;
  await speaker?.reload();
  svc.onChange(() => speaker?.sync());
  const bgp = new BgpService(store, speaker);

  // A gateway cluster node's gateway groups: heartbeat, lease, VIPs (docs/gateway.md).
  const groups: GroupSource | undefined = cluster && {
    groups: () => cluster.gatewayGroups(),
    active: (g) => cluster.gatewayActive(g),
  };
  const haLog = consola.withTag("ha");
  let haLease: HaLease | undefined;
  if (cluster && groups && o.cluster && o.gateway) {
    const lease = new HaLease({ endpoints: o.cluster.endpoints, ...credentials }, o.cluster.nodeName);
    haLease = lease;
    ha = new HaService({
      source: groups,
      mgmtAddresses: () => new Map(cluster.nodes().map((n) => [n.name, n.mgmtAddress])),
      mgmtAddress: mgmtAddressOf(),
      fence: (g) => lease.fence(g),
      node: o.cluster.nodeName,
      changed: () => speaker?.sync(),
      dp: dp.haMaps(),
      nl: svc.nl,
      log: (level, msg) => haLog[level](msg),
    });
  }

  const rt: AgentRuntime = {
    version: pkg.version,
    startedAt,
    probe,
    pinRoot: o.pinRoot,
    stateDir: o.stateDir,
    dbPath,
    svc,
    store,
    uplink,
    reconcile: reconciles,
    loop,
    recent,
    mapFill: new MapFill(() => dp.pinnedMaps()),
    addressing,
    cluster,
    overlayAddress: overlay?.address,
    bgp: speaker,
    ha,
    lb,
  };
  const metrics = new AgentMetrics(() => readSnapshot(rt), {
    cluster: cluster !== undefined,
    gateway: speaker !== undefined,
  });
  // The trace instance of the programs stays loaded: a trace then costs milliseconds, not a load.
  const tracer = new Tracer(store, o.pinRoot, { keepLoaded: true });
  const app = createApp(svc, {
    status: () => buildStatus(rt),
    metrics: () => metrics.scrape(),
    trace: (req) => tracer.trace(req),
    reconcile: ({ full }) => {
      loop.runNow("api", { full });
      return reconciles.last as ReconcileRun;
    },
    audit: (e) => audit.info(auditLine(e)),
    bgp,
    lb,
    ...(cluster && o.cluster
      ? {
          gateway: gatewayApi(cluster, groups as GroupSource, o.cluster.nodeName, ha, () => loop.runNow("api")),
        }
      : {}),
    ...(cluster
      ? {
          cluster: clusterApi(
            cluster,
            svc,
            () => runMoves(),
            (network) => loopRun("cluster", { networks: new Set([network]), firewall: false }),
          ),
        }
      : {}),
  });
  // A request that may change the kernel never has a reconcile run in its middle, whatever
  // it awaits: reads go straight through.
  const guarded: ApiHandler = {
    fetch: (req, env) =>
      req.method === "GET" || req.method === "HEAD"
        ? app.fetch(req, env)
        : loop.exclusive(async () => app.fetch(req, env)),
  };

  // Changes from other nodes: the address and name servers follow what they serve (networks,
  // endpoints, records), the kernel is reconciled for what it holds (networks, endpoints,
  // rules, defaults, the blocklist): one run at a time, never in the middle of an API
  // request; what comes while one runs makes one more, for all of it. A run restores only
  // the networks a change touched (and the firewall when it changed) unless the change
  // removed something from this kernel. Membership, counters and claims change neither.
  // The kernel first, the servers after (rebuilding what hundreds of networks serve takes
  // longer than restoring what one change touched).
  let clusterRun: "idle" | "running" = "idle";
  let pending: { work?: ClusterWork; serve?: "all" | Set<string>; moves?: boolean } | undefined;
  const clusterChanged = (c: ClusterChange) => {
    const work = clusterWork(c);
    const serve = served(c);
    const moves = c.kinds.includes("move");
    if (!work && !serve && !moves) return;
    desired = undefined; // what the drift watch expects follows the store at once
    pending = {
      work: work ? mergeWork(pending?.work, work) : pending?.work,
      serve: mergeServed(pending?.serve, serve),
      moves: moves || pending?.moves,
    };
    if (clusterRun !== "idle") return;
    clusterRun = "running";
    void (async () => {
      while (pending) {
        const { work: w, serve: s, moves: m } = pending;
        pending = undefined;
        if (w)
          await loop.exclusive(async () => {
            loopRun("cluster", w === "all" ? undefined : w);
          });
        // This node's steps of the moves under way, once its kernel has the change.
        if (m) await runMoves();
        if (s) svc.ctx.changed(s === "all" ? undefined : s);
      }
      clusterRun = "idle";
    })();
  };

  // Moves (docs/overlay.md#moving-an-endpoint): the node an endpoint runs on hands it over
  // (its connection tracking into the move's record, its port unplugged, the endpoint the new
  // node's), the new node takes it (port, flows, addresses, a gratuitous ARP and NA) and
  // ends the move. Each step once; a step cut short by a crash is taken again at start.
  const moving = new Set<string>();
  const runMoves = async (): Promise<void> => {
    if (!cluster || !o.cluster) return;
    const self = o.cluster.nodeName;
    for (const { name, move } of cluster.moves()) {
      const mine =
        (move.state === "requested" && move.from === self) || (move.state === "handed-off" && move.to === self);
      if (!mine || moving.has(move.id)) continue;
      moving.add(move.id);
      try {
        await loop.exclusive(async () => {
          const ep = data.getEndpoint(name);
          if (!ep || ep.node !== self) return;
          if (move.state === "requested") {
            const carried = svc.endpoints.handOver(name);
            if (cluster.handOff(name, move.id, carried))
              log.info(`endpoint ${name} handed over to node ${move.to}: ${carried.ct.length} flow(s) carried`);
            // Either way its network once more: now another node's endpoint (the overlay's
            // entries for it), or, the move having changed meanwhile, still this node's (its port back).
            loopRun("cluster", { networks: new Set([ep.network]), firewall: false });
          } else {
            const t0 = performance.now();
            const r = svc.endpoints.takeOver(name, move);
            cluster.finishMove(name, move.id);
            log.info(
              `endpoint ${name} taken over from node ${move.from}${move.forced ? " (forced: it was not alive)" : ""}: ${r.flows} flow(s), ${Math.round(performance.now() - t0)} ms`,
            );
          }
        });
      } catch (e) {
        log.warn(`move of endpoint ${name} to node ${move.to}: ${(e as Error).message}`);
      } finally {
        moving.delete(move.id);
      }
    }
  };
  cluster?.start((c) => {
    clusterChanged(c);
    if (ha && (c.networks === "all" || c.kinds.includes("gatewayGroup"))) ha.sync();
  });
  if (cluster) void runMoves();
  await ha?.start();

  // The web view (docs/web.md): on the API socket under /web/, and on --web-listen.
  const history = new CounterHistory(async () => {
    const snap = await readSnapshot(rt);
    const drops = new Map<string, Record<string, number>>();
    for (const d of snap.drops) {
      if (!d.endpoint) continue;
      const m = drops.get(d.endpoint) ?? {};
      m[d.reason] = (m[d.reason] ?? 0) + d.packets;
      drops.set(d.endpoint, m);
    }
    return snap.endpoints.map((e) => ({
      network: e.network,
      endpoint: e.endpoint,
      fromPackets: e.fromEndpoint.packets,
      toPackets: e.toEndpoint.packets,
      drops: drops.get(e.endpoint) ?? {},
    }));
  });
  const feed = new LiveFeed(
    () => ({ cfg: dp.map("stm_mon_cfg"), ring: dp.map("stm_mon_ring") }),
    () => portNames(store),
  );
  const web = { history, feed };
  const server = await serveUnix(withWeb(guarded, web), o.apiSocket);
  chmodSync(o.apiSocket, 0o600);
  const tcp = listen ? serveTcp(guarded, listen) : undefined;
  const webTcp = webListen ? serveWeb(guarded, web, webListen) : undefined;
  loop.start();
  log.info(
    `reconcile loop: ${monitor ? "on rtnetlink notices of drift" : "no notices"}, ${interval > 0 ? `a full pass every ${interval} s` : "no periodic pass"}`,
  );
  log.success(
    `ready in ${Math.round(performance.now() - started)} ms: ${report.networks} network(s), ${report.endpoints} endpoint(s), ${report.firewall.scopes} firewall scope(s) (${report.firewall.adopted} unchanged); API on ${o.apiSocket}${tcp ? ` and ${o.apiListen}` : ""}${webTcp ? `; web view on http://${o.webListen}/web/` : ""}`,
  );
  // Only now: the first reconcile is done and the API answers.
  tell(
    "READY=1",
    `STATUS=ready: ${report.networks} network(s), ${report.endpoints} endpoint(s); API on ${o.apiSocket}${report.errors.length ? `; ${report.errors.length} restore error(s), see status` : ""}`,
  );

  const stop = async (sig: string) => {
    tell("STOPPING=1", "STATUS=stopping: bridges, ports and programs stay in place");
    log.info(`${sig}: stopping; bridges, ports and programs stay in place`);
    loop.stop();
    lb.stopHealth();
    // Active groups let go first: a standby takes over at once.
    await ha?.stop();
    haLease?.close();
    await speaker?.stop({ withdraw: o.withdrawOnStop === true });
    await cluster?.stop({ leave: true });
    monitor?.close();
    server.close();
    tcp?.stop(true);
    webTcp?.stop(true);
    feed.close();
    history.stop();
    owner.stop();
    addressing.close();
    try {
      unlinkSync(o.apiSocket);
    } catch {}
    store.close();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
  await new Promise(() => {}); // serve until a signal
}

/** A gateway node serves north-south traffic unless it is in gateway groups and holds none. */
function servesNorthSouth(cluster: Cluster, node: string): boolean {
  const groups = cluster.gatewayGroups().filter((g) => g.nodes.includes(node));
  return !groups.length || groups.some((g) => cluster.gatewayActive(g.name)?.node === node);
}

/** The gateway routes: the groups in the cluster, and this node's view of them (its HA
 * engine's on a gateway). */
function gatewayApi(
  cluster: Cluster,
  source: GroupSource,
  node: string,
  ha: HaService | undefined,
  reconcile: () => void,
): GatewayApi {
  const groups = clusterGatewayGroups(cluster);
  // This node's own writes come back from the watch as nothing new: its engine and its kernel
  // (masquerading to the VIPs, the overlay's gateways) follow here.
  const follow = () => {
    ha?.sync();
    reconcile();
  };
  return {
    ...groups,
    createGroup: (body) => {
      const v = groups.createGroup(body);
      follow();
      return v;
    },
    deleteGroup: (name) => {
      groups.deleteGroup(name);
      follow();
    },
    status: () => ({ node, groups: ha ? ha.status() : groupStatus(source, node) }),
  };
}

/** The cluster routes of the API, on this node's part in the cluster. */
function clusterApi(
  cluster: Cluster,
  svc: Services,
  runMoves: () => Promise<void>,
  moved: (network: string) => void,
): ClusterApi {
  return {
    nodes: () => cluster.nodes(),
    node: (name) => cluster.node(name),
    removeNode: (name) => {
      // What is freed, read before it goes: the removal answers names only.
      const theirs = svc.endpoints.list().filter((e) => e.node === name);
      const gone = new Set(cluster.removeNode(name).endpoints);
      return {
        node: name,
        endpoints: theirs
          .filter((e) => gone.has(e.name))
          .map((e) => ({ name: e.name, network: e.network, ip: e.ip, ip6: e.ip6 })),
      };
    },
    moveEndpoint: (name, to) => {
      const m = cluster.requestMove(name, to);
      // This node's own write comes back from the watch as nothing new: what it changes here is
      // done here. Taken without its old node, the endpoint is now `to`'s: this node's overlay
      // entries for it follow at once; and this node's step of the move, if it has one.
      const ep = svc.store.getEndpoint(name);
      if (m.forced && ep) moved(ep.network);
      setTimeout(() => void runMoves(), 0);
      return { endpoint: name, id: m.id, from: m.from, to: m.to, at: m.at, state: m.state, forced: m.forced === true };
    },
    moves: () =>
      new Map(
        cluster
          .moves()
          .map(({ name, move }) => [name, { from: move.from, to: move.to, state: move.state, at: move.at }]),
      ),
    status: async () => clusterStatusView(await cluster.status()),
  };
}

/** The node's address on the management bridge, when it has one: what the cluster records. */
function mgmtAddressOf(): string | null {
  try {
    if (!listLinks(rtnl()).some((x) => x.name === MGMT_BRIDGE)) return null;
    return listAddresses({ dev: MGMT_BRIDGE }, rtnl()).find((x) => x.scope === 0)?.ip ?? null;
  } catch {
    return null;
  }
}
