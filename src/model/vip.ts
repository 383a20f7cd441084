/** The L4 load balancer's desired state: VIPs (address, port, protocol) with their backends
 * (endpoints, a port each, a weight) and health checks, as one document, and what the datapath
 * gets from it (src/datapath/lb-tables.ts). Pure. A change reads the document, changes it and
 * writes it back in one transaction, as the microsegmentation policy does. */
import { StratumError } from "../errors";
import { contains, formatIp, overlaps, parseIp, parseSubnet } from "./ip";
import { RESERVED_RANGES } from "./network";

/** Maglev table sizes: a prime; 65,537 by default (as Katran). The largest prime below 2^20
 * keeps offset + skip below 2^21 and a table at 4 MiB. */
export const MAGLEV_DEFAULT_SIZE = 65537;
export const MAGLEV_MAX_SIZE = 1_048_573;

export function isPrime(n: number): boolean {
  if (!Number.isSafeInteger(n) || n < 2) return false;
  if (n < 4) return true;
  if (n % 2 === 0 || n % 3 === 0) return false;
  for (let d = 5; d * d <= n; d += 6) if (n % d === 0 || n % (d + 2) === 0) return false;
  return true;
}

/** As bpf/include/stm_abi.h STM_LB_VIPS_MAX: a VIP's id is its table's slot. */
export const LB_VIPS_MAX = 1024;
export const LB_BACKENDS_MAX = 65536;
export const LB_WEIGHT_MAX = 1000;
/** A table at least this many times larger than its backends spreads flows evenly. */
export const LB_SLOTS_PER_BACKEND = 10;
export const LB_PROTOS = ["tcp", "udp"] as const;
export type LbProto = (typeof LB_PROTOS)[number];
/** nat: the destination becomes the backend's and its replies get the VIP back. dsr (direct
 * server return): the frame goes to the backend's MAC with the VIP kept, the backend (the VIP on
 * its loopback) answers from the VIP itself; a node's table holds the backends running on it. */
export const LB_MODES = ["nat", "dsr"] as const;
export type LbMode = (typeof LB_MODES)[number];

export interface LbCheck {
  kind: "tcp" | "http" | "none";
  /** http: the path and the status that means healthy. */
  path?: string;
  expect?: number;
  intervalMs: number;
  timeoutMs: number;
  rise: number;
  fall: number;
}

export const DEFAULT_CHECK: LbCheck = { kind: "tcp", intervalMs: 2000, timeoutMs: 1000, rise: 2, fall: 3 };

export interface LbBackend {
  /** Stable and never reused: the datapath's backend id. */
  id: number;
  endpoint: string;
  port: number;
  weight: number;
  createdAt: string;
}

export interface LbVip {
  name: string;
  /** 1 … LB_VIPS_MAX, the smallest free when created. */
  id: number;
  address: string;
  port: number;
  proto: LbProto;
  mode: LbMode;
  tableSize: number;
  check: LbCheck;
  backends: LbBackend[];
  description?: string;
  createdAt: string;
}

/** A backend's health as the node its endpoint runs on checks it, published to the cluster. */
export interface LbHealthRecord {
  healthy: boolean;
  /** When it last changed (RFC 3339). */
  since: string;
  /** The last check's result. */
  detail: string;
  /** The node that checks it. */
  node: string;
}

export interface LbDoc {
  vips: LbVip[];
  nextBackendId: number;
}

export const emptyLb = (): LbDoc => ({ vips: [], nextBackendId: 1 });

const NAME_RE = /^[a-z](?:[a-z0-9-]{0,30}[a-z0-9])?$/;
const invalid = (m: string) => new StratumError("INVALID", m);

/** What the VIP's address must not be: the node's own, a gateway group's, a NAT address. */
export interface VipContext {
  networks: ReadonlyArray<{ name: string; cidr: string; cidr6?: string | null }>;
  /** Another use of the address, named ("gateway group g1's VIP"), or undefined. */
  taken?: (address: string) => string | undefined;
}

export function checkVipName(name: string): string {
  if (!NAME_RE.test(name))
    throw invalid(
      `"${name}" is not a valid VIP name: lowercase letters, digits and '-', starting with a letter, at most 32`,
    );
  return name;
}

function checkPort(p: number, flag: string): number {
  if (!Number.isInteger(p) || p < 1 || p > 65535) throw invalid(`${flag} ${p}: a port is 1 to 65535`);
  return p;
}

/** The address, canonical: unicast, outside every network's subnets and reserved ranges. */
export function checkVipAddress(address: string, ctx: VipContext): string {
  const ip = parseIp(address);
  const canon = formatIp(ip);
  const host = parseSubnet(`${canon}/${ip.family === 4 ? 32 : 128}`);
  const r = RESERVED_RANGES.find((x) => overlaps(host, parseSubnet(x.cidr)));
  if (r) throw invalid(`--address ${canon} is in ${r.cidr} (${r.why}): not an address to publish`);
  for (const n of ctx.networks)
    for (const c of [n.cidr, n.cidr6])
      if (c && contains(parseSubnet(c), ip))
        throw invalid(
          `--address ${canon} is inside network "${n.name}" (${c}): a VIP is an address outside every network, routed to the node`,
        );
  const other = ctx.taken?.(canon);
  if (other) throw new StratumError("CONFLICT", `--address ${canon} is ${other} already`);
  return canon;
}

export function checkCheck(c: LbCheck): LbCheck {
  if (!["tcp", "http", "none"].includes(c.kind)) throw invalid(`--check ${c.kind}: tcp, http or none`);
  const int = (v: number, lo: number, hi: number, flag: string) => {
    if (!Number.isInteger(v) || v < lo || v > hi) throw invalid(`${flag} ${v}: from ${lo} to ${hi}`);
  };
  int(c.intervalMs, 100, 3_600_000, "--check-interval (ms)");
  int(c.timeoutMs, 50, 60_000, "--check-timeout (ms)");
  if (c.timeoutMs > c.intervalMs) throw invalid(`--check-timeout ${c.timeoutMs} ms is longer than the interval`);
  int(c.rise, 1, 20, "--check-rise");
  int(c.fall, 1, 20, "--check-fall");
  if (c.kind === "http") {
    const path = c.path ?? "/";
    if (!/^\/[\x21-\x7e]*$/.test(path) || path.length > 1024) throw invalid(`--check-path ${path}: a path from /`);
    int(c.expect ?? 200, 100, 599, "--check-expect");
    return { ...c, path, expect: c.expect ?? 200 };
  }
  const { path: _p, expect: _e, ...rest } = c;
  return rest;
}

export function vipKey(v: Pick<LbVip, "address" | "port" | "proto">): string {
  return `${v.address.includes(":") ? `[${v.address}]` : v.address}:${v.port}/${v.proto}`;
}

export interface VipSpec {
  name: string;
  address: string;
  port: number;
  proto: LbProto;
  mode?: LbMode;
  tableSize?: number;
  check?: Partial<LbCheck>;
  description?: string;
}

export function addVip(
  doc: LbDoc,
  spec: VipSpec,
  ctx: VipContext,
  now = new Date().toISOString(),
): { doc: LbDoc; vip: LbVip } {
  const name = checkVipName(spec.name);
  if (doc.vips.some((v) => v.name === name)) throw new StratumError("CONFLICT", `VIP "${name}" exists already`);
  if (!LB_PROTOS.includes(spec.proto)) throw invalid(`--proto ${spec.proto}: tcp or udp`);
  const mode = spec.mode ?? "nat";
  if (!LB_MODES.includes(mode)) throw invalid(`--mode ${mode}: nat or dsr`);
  const address = checkVipAddress(spec.address, ctx);
  const port = checkPort(spec.port, "--port");
  // A DSR frame reaches the backend with the VIP's port: UDP to a DHCP client's port would
  // reach the workloads' DHCP clients, which only the node's servers may speak to.
  if (mode === "dsr" && spec.proto === "udp" && (port === 68 || port === 546))
    throw invalid(`--port ${port}/udp: a DHCP client's port cannot be a DSR VIP's (use --mode nat)`);
  const dup = doc.vips.find((v) => v.address === address && v.port === port && v.proto === spec.proto);
  if (dup)
    throw new StratumError("CONFLICT", `${vipKey({ address, port, proto: spec.proto })} is VIP "${dup.name}" already`);
  const tableSize = spec.tableSize ?? MAGLEV_DEFAULT_SIZE;
  if (!Number.isInteger(tableSize) || !isPrime(tableSize) || tableSize < 7 || tableSize > MAGLEV_MAX_SIZE)
    throw invalid(`--table-size ${tableSize}: a prime from 7 to ${MAGLEV_MAX_SIZE} (65537 by default)`);
  if (doc.vips.length >= LB_VIPS_MAX) throw new StratumError("CAPACITY", `at most ${LB_VIPS_MAX} VIPs`);
  const used = new Set(doc.vips.map((v) => v.id));
  let id = 1;
  while (used.has(id)) id++;
  if (spec.description !== undefined && spec.description.length > 200)
    throw invalid("a description is at most 200 characters");
  const vip: LbVip = {
    name,
    id,
    address,
    port,
    proto: spec.proto,
    mode,
    tableSize,
    // A short interval given alone brings the timeout down with it.
    check: checkCheck({
      ...DEFAULT_CHECK,
      ...(spec.check?.intervalMs !== undefined && spec.check.timeoutMs === undefined
        ? { timeoutMs: Math.min(DEFAULT_CHECK.timeoutMs, spec.check.intervalMs) }
        : {}),
      ...spec.check,
    } as LbCheck),
    backends: [],
    ...(spec.description ? { description: spec.description } : {}),
    createdAt: now,
  };
  return { doc: { ...doc, vips: [...doc.vips, vip] }, vip };
}

function find(doc: LbDoc, name: string): LbVip {
  const v = doc.vips.find((x) => x.name === name);
  if (!v) throw new StratumError("NOT_FOUND", `no VIP "${name}"`);
  return v;
}

export function removeVip(doc: LbDoc, name: string): LbDoc {
  find(doc, name);
  return { ...doc, vips: doc.vips.filter((v) => v.name !== name) };
}

export interface BackendSpec {
  endpoint: string;
  port?: number;
  weight?: number;
}

/** `endpointAddress` gives the endpoint's address of a family (undefined: no such endpoint, or
 * it has none of that family). */
export function addBackend(
  doc: LbDoc,
  vipName: string,
  spec: BackendSpec,
  endpoint: (name: string) => { ip4?: string; ip6?: string } | undefined,
  now = new Date().toISOString(),
): { doc: LbDoc; backend: LbBackend } {
  const vip = find(doc, vipName);
  const ep = endpoint(spec.endpoint);
  if (!ep) throw new StratumError("NOT_FOUND", `no endpoint "${spec.endpoint}": a backend is an endpoint of a network`);
  const v6 = vip.address.includes(":");
  if (!(v6 ? ep.ip6 : ep.ip4))
    throw invalid(
      `endpoint "${spec.endpoint}" has no IPv${v6 ? 6 : 4} address: VIP "${vip.name}" (${vip.address}) needs one of its family`,
    );
  const port = checkPort(spec.port ?? vip.port, "--port");
  if (vip.mode === "dsr" && port !== vip.port)
    throw invalid(
      `--port ${port}: VIP "${vip.name}" is DSR, and a DSR backend serves the VIP's own port (${vip.port}): nothing translates it`,
    );
  const weight = spec.weight ?? 1;
  if (!Number.isInteger(weight) || weight < 0 || weight > LB_WEIGHT_MAX)
    throw invalid(`--weight ${weight}: from 0 (no new flows) to ${LB_WEIGHT_MAX}`);
  // One NAT VIP per backend (endpoint, port, protocol, family): a reply is told to its VIP by
  // where it comes from. An IPv4 and an IPv6 VIP may share one (their replies come from two
  // addresses); so may a DSR VIP (its backend answers from the VIP itself).
  const other = doc.vips.find(
    (v) =>
      (v === vip || (vip.mode === "nat" && v.mode === "nat")) &&
      v.proto === vip.proto &&
      v.address.includes(":") === v6 &&
      v.backends.some((b) => b.endpoint === spec.endpoint && b.port === port),
  );
  if (other)
    throw new StratumError(
      "CONFLICT",
      `endpoint "${spec.endpoint}" port ${port}/${vip.proto} is a backend of "${other.name}" already (a backend serves one VIP: give it another port)`,
    );
  if ((vip.backends.length + 1) * LB_SLOTS_PER_BACKEND > vip.tableSize)
    throw new StratumError(
      "CAPACITY",
      `VIP "${vip.name}" has ${vip.backends.length} backends: its table of ${vip.tableSize} slots takes at most ${Math.floor(vip.tableSize / LB_SLOTS_PER_BACKEND)} (a larger --table-size takes more)`,
    );
  const total = doc.vips.reduce((a, v) => a + v.backends.length, 0);
  if (total >= LB_BACKENDS_MAX) throw new StratumError("CAPACITY", `at most ${LB_BACKENDS_MAX} backends in all`);
  const backend: LbBackend = { id: doc.nextBackendId, endpoint: spec.endpoint, port, weight, createdAt: now };
  return {
    doc: {
      vips: doc.vips.map((v) => (v === vip ? { ...v, backends: [...v.backends, backend] } : v)),
      nextBackendId: doc.nextBackendId + 1,
    },
    backend,
  };
}

/** Removes the VIP's backends on `endpoint` (only the one on `port` when given). */
export function removeBackend(doc: LbDoc, vipName: string, endpoint: string, port?: number): LbDoc {
  const vip = find(doc, vipName);
  const keep = vip.backends.filter((b) => !(b.endpoint === endpoint && (port === undefined || b.port === port)));
  if (keep.length === vip.backends.length)
    throw new StratumError(
      "NOT_FOUND",
      `endpoint "${endpoint}"${port !== undefined ? ` port ${port}` : ""} is not a backend of "${vip.name}"`,
    );
  return { ...doc, vips: doc.vips.map((v) => (v === vip ? { ...v, backends: keep } : v)) };
}

/** A document as read from a store or a file: every VIP and backend valid, ids unique. */
export function validateLb(doc: LbDoc): LbDoc {
  const names = new Set<string>();
  const ids = new Set<number>();
  const keys = new Set<string>();
  const bids = new Set<number>();
  for (const v of doc.vips) {
    checkVipName(v.name);
    if (names.has(v.name)) throw invalid(`VIP "${v.name}" twice`);
    names.add(v.name);
    if (!Number.isInteger(v.id) || v.id < 1 || v.id > LB_VIPS_MAX || ids.has(v.id))
      throw invalid(`VIP "${v.name}": bad id ${v.id}`);
    ids.add(v.id);
    const k = vipKey(v);
    if (keys.has(k)) throw invalid(`${k} twice`);
    keys.add(k);
    if (!isPrime(v.tableSize) || v.tableSize < 7 || v.tableSize > MAGLEV_MAX_SIZE)
      throw invalid(`VIP "${v.name}": table size ${v.tableSize} is not a prime from 7 to ${MAGLEV_MAX_SIZE}`);
    if (!LB_PROTOS.includes(v.proto) || !LB_MODES.includes(v.mode))
      throw invalid(`VIP "${v.name}": bad protocol or mode`);
    if (formatIp(parseIp(v.address)) !== v.address)
      throw invalid(`VIP "${v.name}": address ${v.address} is not canonical`);
    checkPort(v.port, "VIP port");
    if (v.mode === "dsr" && v.proto === "udp" && (v.port === 68 || v.port === 546))
      throw invalid(`VIP "${v.name}": a DHCP client's port cannot be a DSR VIP's`);
    checkCheck(v.check);
    const own = new Set<string>();
    if (v.backends.length * LB_SLOTS_PER_BACKEND > v.tableSize) throw invalid(`VIP "${v.name}": too many backends`);
    for (const b of v.backends) {
      if (!Number.isInteger(b.id) || b.id < 1 || b.id >= doc.nextBackendId || bids.has(b.id))
        throw invalid(`VIP "${v.name}": bad backend id ${b.id}`);
      bids.add(b.id);
      checkPort(b.port, "backend port");
      // One backend per endpoint and port in a VIP: the table is keyed by address and port.
      if (own.has(`${b.endpoint}|${b.port}`)) throw invalid(`VIP "${v.name}": endpoint "${b.endpoint}" twice`);
      own.add(`${b.endpoint}|${b.port}`);
      if (v.mode === "dsr" && b.port !== v.port)
        throw invalid(`VIP "${v.name}": backend ${b.id}: a DSR backend serves the VIP's own port`);
      if (!Number.isInteger(b.weight) || b.weight < 0 || b.weight > LB_WEIGHT_MAX)
        throw invalid(`VIP "${v.name}": backend ${b.id}: bad weight ${b.weight}`);
    }
  }
  return doc;
}
