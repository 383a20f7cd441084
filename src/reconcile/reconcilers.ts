/** Makes the kernel match the store: restore first (bridges, every network's gateway and
 * profiles, the firewall's scopes and blocklist, every endpoint's port, programs and FDB
 * entry, the uplink's filter), garbage-collect after (port entries, gateway addresses,
 * firewall generations and scopes nothing in the store asks for; a port's programs go with
 * its device). Idempotent: on a kernel that is already right it changes nothing, and its
 * report's `changes` (every kernel change it made, in order) is empty. */

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import type { Attachment } from "../datapath/attach";
import { encodeSubnetKey, formatSubnetKey } from "../datapath/port-maps";
import { encodeShapeSrc, SHAPE_KIND, type ShapeKind } from "../datapath/shape-maps";
import { StratumError } from "../errors";
import { linkLocal } from "../model/network";
import { MGMT_BRIDGE, USER_BRIDGE } from "../model/topology";
import { createBridge, deleteAddress, getLink, listAddresses, listFdb, STRATUM_ADDR_PROTO, setLink } from "../netlink";
import { endpointLocals, fdbMacs, type NetworkService } from "../services/network-service";
import { recordMutations } from "../sys/mutations";

export interface ReconcileReport {
  networks: number;
  endpoints: number;
  /** Firewall scopes restored (the global one included), and those already right. */
  firewall: { scopes: number; adopted: number; blocklistAdded: number };
  /** What garbage collection removed. */
  collected: string[];
  /** Endpoints that could not be restored (e.g. their namespace is gone), with why. */
  errors: string[];
  /** Every kernel change this run made, in order: none when the kernel was already right. */
  changes: string[];
  /** The uplink, when the agent has one: its filter as attached (or found) by this run. */
  uplink?: { name: string; ifindex: number; attach: Attachment };
}

export interface ReconcileOptions {
  /** The uplink NIC: its filter goes on, then it joins the user bridge. */
  uplink?: string;
}

/** The MAC a bridge of this node always has: derived from the machine id, so it is stable
 * across restarts and distinct between nodes. Left to itself a bridge takes the lowest MAC
 * of its ports and changes it as ports come and go, and every workload's ARP entry for the
 * gateway would go stale. */
export function bridgeMac(name: string): string {
  let id = "";
  for (const f of ["/etc/machine-id", "/var/lib/dbus/machine-id", "/proc/sys/kernel/random/boot_id"]) {
    try {
      id = readFileSync(f, "utf8").trim();
      if (id) break;
    } catch {}
  }
  const h = createHash("sha256").update(`${id}/${hostname()}/${name}`).digest();
  return [0x02, h[0], h[1], h[2], h[3], h[4]].map((x) => (x as number).toString(16).padStart(2, "0")).join(":");
}

export function ensureBridge(svc: NetworkService, name: string): void {
  const l = getLink(name, svc.nl);
  const mac = bridgeMac(name);
  if (!l) createBridge(name, { up: true, mac }, svc.nl);
  else if (l.kind !== "bridge")
    throw new StratumError("INVALID", `${name} exists but is a ${l.kind ?? "non-bridge"} device`);
  else if (!l.up || l.mac !== mac) setLink(name, { up: true, mac }, svc.nl);
}

export function reconcile(svc: NetworkService, o: ReconcileOptions = {}): ReconcileReport {
  const { result, changes } = recordMutations(() => reconcileOnce(svc, o));
  result.changes = changes;
  return result;
}

function reconcileOnce(svc: NetworkService, o: ReconcileOptions): ReconcileReport {
  const report: ReconcileReport = {
    networks: 0,
    endpoints: 0,
    firewall: { scopes: 0, adopted: 0, blocklistAdded: 0 },
    collected: [],
    errors: [],
    changes: [],
  };
  ensureBridge(svc, MGMT_BRIDGE);
  ensureBridge(svc, USER_BRIDGE);

  // Restore.
  const networks = svc.store.listNetworks();
  for (const n of networks) {
    svc.applyNetwork(n);
    report.networks++;
  }
  // Rules before ports: a port restored into a network finds its scope in place. (The
  // firewall's own garbage collection runs inside, after its restore.)
  const fw = svc.fw.restore();
  report.firewall = { scopes: fw.scopes, adopted: fw.adopted, blocklistAdded: fw.blocklist.added };
  report.errors.push(...fw.errors);
  report.collected.push(...fw.collected);
  const endpoints = svc.store.listEndpoints();
  const fdbs = fdbMacs(listFdb({ bridge: USER_BRIDGE }, svc.nl));
  const eps = svc.restoreEndpoints(endpoints, fdbs);
  report.endpoints = eps.restored;
  report.errors.push(...eps.errors);

  // The gateway's own MAC and link-local address: nobody outside may claim them either. In
  // place before the uplink joins the bridge, as everything the uplink's filter reads.
  const br = getLink(USER_BRIDGE, svc.nl);
  const bridgeLocals = br?.mac ? [br.mac, linkLocal(br.mac)] : [];
  for (const a of bridgeLocals) svc.dp.setLocal(a, br?.index ?? 0, 0);
  if (o.uplink) {
    const up = getLink(o.uplink, svc.nl);
    if (!up) throw new StratumError("NOT_FOUND", `uplink ${o.uplink} does not exist`);
    // The filter goes on before the NIC joins the bridge: nothing from outside reaches a port
    // unfiltered, and a port knows a frame bridged from it came straight from the LAN.
    svc.dp.setIface(up.index, { kind: "uplink" });
    const attach = svc.dp.attachUplink(up.index);
    if (up.master !== br?.index || !up.up) setLink(o.uplink, { master: USER_BRIDGE, up: true }, svc.nl);
    report.uplink = { name: o.uplink, ifindex: up.index, attach };
  }

  // Garbage-collect what nothing in the store asks for.
  const wantedIndex = new Set(
    endpoints.map((e) => getLink(e.hostIf, svc.nl)?.index).filter((x): x is number => x !== undefined),
  );
  for (const ifindex of svc.dp.portIfindexes())
    if (!wantedIndex.has(ifindex)) {
      svc.dp.deletePort(ifindex);
      report.collected.push(`port entry of ifindex ${ifindex}`);
    }
  // Egress caps and the source prefixes of network caps nothing asks for any more.
  const wantedCaps = new Set<string>();
  const wantedSources = new Set<string>();
  for (const n of networks)
    if (n.egress) {
      wantedCaps.add(`${SHAPE_KIND.NETWORK}/${n.id}`);
      for (const c of [n.cidr, ...(n.cidr6 ? [n.cidr6] : [])]) wantedSources.add(encodeShapeSrc(c).toString("hex"));
    }
  for (const ep of endpoints) {
    const i = ep.egress ? getLink(ep.hostIf, svc.nl)?.index : undefined;
    if (i !== undefined) wantedCaps.add(`${SHAPE_KIND.ENDPOINT}/${i}`);
  }
  for (const src of svc.dp.capSources())
    if (!wantedSources.has(src.key.toString("hex"))) {
      svc.dp.deleteCapSourceKey(src.key);
      report.collected.push(`egress cap source of network id ${src.netId}`);
    }
  for (const c of svc.dp.caps())
    if (!wantedCaps.has(`${c.kind}/${c.id}`)) {
      svc.dp.deleteCap(c.kind as ShapeKind, c.id);
      report.collected.push(`egress cap ${c.kind === SHAPE_KIND.NETWORK ? "of network id" : "of ifindex"} ${c.id}`);
    }
  // The uplink's entry goes with it; a network's subnets with the network.
  const uplinkIndex = report.uplink?.ifindex;
  for (const i of svc.dp.ifaceIndexes())
    if (i !== uplinkIndex) {
      svc.dp.deleteIface(i);
      report.collected.push(`interface entry of ifindex ${i}`);
    }
  const wantedSubnets = new Set<string>();
  for (const n of networks)
    for (const c of [n.cidr, ...(n.cidr6 ? [n.cidr6] : [])]) wantedSubnets.add(encodeSubnetKey(c).toString("hex"));
  for (const k of svc.dp.subnetKeys())
    if (!wantedSubnets.has(k.toString("hex"))) {
      svc.dp.deleteSubnetKey(k);
      report.collected.push(`subnet entry ${formatSubnetKey(k)}`);
    }
  const wantedLocal = new Set<string>(bridgeLocals);
  for (const n of networks) for (const g of svc.gateways(n)) wantedLocal.add(g.ip);
  for (const ep of endpoints) {
    const n = networks.find((x) => x.name === ep.network);
    if (n) for (const a of endpointLocals(ep, n)) wantedLocal.add(a);
  }
  for (const a of svc.dp.localAddresses())
    if (!wantedLocal.has(a)) {
      svc.dp.deleteLocal(a);
      report.collected.push(`local address ${a}`);
    }
  const gateways = new Set<string>();
  for (const n of networks) for (const g of svc.gateways(n)) gateways.add(g.cidr);
  // Only addresses Stratum added: the node's own address on the bridge is the operator's.
  for (const a of listAddresses({ dev: USER_BRIDGE }, svc.nl))
    if (a.proto === STRATUM_ADDR_PROTO && !gateways.has(a.cidr)) {
      deleteAddress(USER_BRIDGE, a.cidr, svc.nl);
      report.collected.push(`address ${a.cidr} on ${USER_BRIDGE}`);
    }
  return report;
}
