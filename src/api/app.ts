/** The agent's HTTP API (hono), routed from the contract's table (contract.ts): every path
 * parameter, query and body is validated with the route's strict schemas (an unknown key or
 * query parameter is a 400 that names it and suggests the nearest valid one), a wrong method
 * on a known path is 405 with Allow, a body over the route's limit is 413 before it is
 * parsed, errors are {code, message} with the matching status and never a stack, and every
 * change (any method but GET) is reported once to the audit callback: who, what, result. */

import type { Context, MiddlewareHandler } from "hono";
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { z } from "zod";
import { type ErrorCode, StratumError } from "../errors";
import type { BgpService } from "../gateway/bgp/service";
import type { LbService } from "../lb/service";
import { bearerMatches } from "../model/bearer";
import { validateCap } from "../model/egress-cap";
import { nearest } from "../model/suggest";
import { networkdFiles, networkdState } from "../ops/networkd";
import type { Services } from "../services/services";
import {
  type AgentStatus,
  BODY_LIMIT,
  type BodyOut,
  type ClusterStatusView,
  type EndpointView,
  ERROR_STATUS,
  type GatewayGroupBody,
  type GatewayGroupView,
  type GatewayStatusView,
  type MoveView,
  type NodeRemovalView,
  type NodeView,
  type OperationId,
  type ParamsOut,
  type QueryOut,
  type ReconcileRun,
  type Result,
  ROUTES,
  type RouteDef,
  type TraceRequest,
  type TraceResult,
} from "./contract";
import { openApiDocument } from "./openapi";

/** An error with an HTTP status of its own (405, 413) beside its code; `allow`: the methods
 * a 405's path serves. */
export class HttpError extends StratumError {
  constructor(
    readonly status: 405 | 413,
    code: ErrorCode,
    message: string,
    readonly allow?: string,
  ) {
    super(code, message);
  }
}

/** Who is calling, as the transport knows it (daemon.ts): the unix socket's peer, or the TCP
 * listener's client, with the token it must present. */
export interface Caller {
  who: string;
  /** The bearer token this caller must send (the TCP listener); none on the unix socket. */
  token?: string;
  /** Whom a valid token stands for in the audit log (the token file's name). */
  tokenName?: string;
}

/** One change through the API, for the audit log. */
export interface AuditEntry {
  who: string;
  method: string;
  /** Path and query. */
  path: string;
  /** The operation and what it names ("createNetwork name=app-net"), or why none was reached
   * ("unauthenticated", "no such route", "method not allowed"). */
  what: string;
  status: number;
  /** The error code of a failure. */
  code?: ErrorCode;
}

export function auditLine(e: AuditEntry): string {
  return `${e.who}: ${e.method} ${e.path} (${e.what}) → ${e.status}${e.code ? ` ${e.code}` : ""}`;
}

type AppEnv = {
  Bindings: { caller?: Caller } | undefined;
  Variables: { who: string; what: string; code: ErrorCode };
};

export interface AppOptions {
  /** The /v1/status document. */
  status?: () => unknown;
  /** One Prometheus scrape (no /metrics route without it). */
  metrics?: () => Promise<{ contentType: string; body: string }>;
  /** Traces a packet (no /v1/trace route without it). */
  trace?: (req: TraceRequest) => TraceResult;
  /** Reconciles the kernel to the store now (no /v1/reconcile route without it); `full`:
   * every port checked, even when a quick pass could vouch for them. */
  reconcile?: (o: { full: boolean }) => ReconcileRun;
  /** Called once for every request that may change something (any method but GET and HEAD). */
  audit?: (e: AuditEntry) => void;
  /** A cluster node's view of its cluster (absent on a single node: its routes answer
   * NOT_A_CLUSTER_NODE). */
  cluster?: ClusterApi;
  /** The BGP speaker's settings (absent: its routes answer that this agent has no speaker). */
  bgp?: BgpService;
  /** A cluster node's gateway groups (absent on a single node: its routes answer
   * NOT_A_CLUSTER_NODE). */
  gateway?: GatewayApi;
  /** The load balancer (absent: its routes answer that this agent has none). */
  lb?: LbService;
}

/** What the cluster routes ask the agent (daemon.ts wires its Cluster in). */
export interface ClusterApi {
  nodes(): NodeView[];
  /** NOT_FOUND when it is no member. */
  node(name: string): NodeView;
  /** Forgets a node that is gone; refused (INVALID) while it is alive, or for this node. */
  removeNode(name: string): NodeRemovalView;
  /** Asks for an endpoint to move to another node. */
  moveEndpoint(name: string, to: string): MoveView;
  /** The moves under way, by endpoint. */
  moves(): Map<string, { from: string; to: string; state: "requested" | "handed-off"; at: string }>;
  status(): Promise<ClusterStatusView>;
}

/** What the gateway routes ask the agent (daemon.ts wires the cluster and the HA engine in).
 * No view shows a group's heartbeat key. */
export interface GatewayApi {
  groups(): GatewayGroupView[];
  /** NOT_FOUND when absent. */
  group(name: string): GatewayGroupView;
  createGroup(body: GatewayGroupBody): GatewayGroupView;
  /** NOT_FOUND when absent. */
  deleteGroup(name: string): void;
  status(): GatewayStatusView | Promise<GatewayStatusView>;
}

/** The one line a single-node agent answers the cluster routes with (400 INVALID, exit 2). */
export const NOT_A_CLUSTER_NODE = "this agent is not a cluster node (started without --cluster)";

interface Input<K extends OperationId> {
  params: ParamsOut<K>;
  query: QueryOut<K>;
  body: BodyOut<K>;
}
/** A 204 route's handler returns nothing; a handler may also answer with a Response of its own. */
// biome-ignore lint/suspicious/noConfusingVoidType: a 204 route's handler is a call of a void service method
type Out<K extends OperationId> = (Result<K> extends undefined ? void : Result<K>) | Response;
type Handler<K extends OperationId> = (i: Input<K>) => Out<K> | Promise<Out<K>>;
type Handlers = { [K in OperationId]?: Handler<K> };

// ---- validation -------------------------------------------------------------------------------

/** The keys an object schema at `path` inside `s` allows (for "did you mean"). */
function keysAt(s: z.ZodType, path: readonly PropertyKey[]): string[] {
  let cur = s as unknown as { _zod?: { def: Record<string, any> } } | undefined;
  let i = 0;
  for (;;) {
    const def = cur?._zod?.def;
    if (!def) return [];
    switch (def.type) {
      case "optional":
      case "nullable":
      case "default":
      case "prefault":
      case "readonly":
      case "nonoptional":
      case "catch":
        cur = def.innerType;
        break;
      case "pipe":
        cur = def.in;
        break;
      case "object":
        if (i === path.length) return Object.keys(def.shape);
        cur = def.shape[path[i++] as string];
        break;
      case "array":
        if (i === path.length) return [];
        cur = def.element;
        i++;
        break;
      case "record":
        if (i === path.length) return [];
        cur = def.valueType;
        i++;
        break;
      default:
        return [];
    }
  }
}

/** "unknown key "x" (did you mean "y"?)", or with the keys there are when none is near. */
export function unknownKeys(noun: string, keys: readonly string[], known: readonly string[]): string {
  const what = keys.map((k) => `"${k}"`).join(", ");
  const near = keys.length === 1 ? nearest(keys[0] as string, known) : undefined;
  const hint = near
    ? `did you mean "${near}"?`
    : known.length
      ? `expected ${known.length === 1 ? "" : "one of "}${known.join(", ")}`
      : noun === "key"
        ? "this route takes no body"
        : "this route takes none";
  return `unknown ${noun}${keys.length === 1 ? "" : "s"} ${what} (${hint})`;
}

/** The first issue as one line: the key at fault, then what is wrong. */
function issueLine(err: z.ZodError, schema: z.ZodType, kind: "body" | "query" | "path"): string {
  const i = err.issues[0];
  if (!i) return `${kind}: invalid`;
  const at = i.path.join(".");
  if (i.code === "unrecognized_keys") {
    const line = unknownKeys(kind === "query" ? "query parameter" : "key", i.keys, keysAt(schema, i.path));
    return at ? `${at}: ${line}` : line;
  }
  // A path parameter's schema says which one in its message ("rule id "x" is not a number").
  if (kind === "path") return i.message;
  return `${at || kind}: ${i.message}`;
}

function parse<S extends z.ZodType>(schema: S, v: unknown, kind: "body" | "query" | "path", usage?: string) {
  const r = schema.safeParse(v);
  if (r.success) return r.data as z.output<S>;
  const line = issueLine(r.error, schema, kind);
  throw new StratumError("INVALID", usage ? `${line} (${usage})` : line);
}

function parseQuery(r: RouteDef, c: Context<AppEnv>): unknown {
  const all = c.req.queries();
  const flat: Record<string, string> = {};
  for (const [k, vs] of Object.entries(all)) {
    if (vs.length > 1) throw new StratumError("INVALID", `query parameter "${k}" is given ${vs.length} times`);
    flat[k] = vs[0] as string;
  }
  if (!r.query) {
    const keys = Object.keys(flat);
    if (keys.length) throw new StratumError("INVALID", unknownKeys("query parameter", keys, []));
    return {};
  }
  return parse(r.query, flat, "query", r.usage);
}

async function parseBody(r: RouteDef, c: Context<AppEnv>): Promise<unknown> {
  if (r.method === "get") return undefined;
  const text = await c.req.text();
  if (!r.body && text.trim() === "") return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new StratumError("INVALID", "request body is not JSON");
  }
  if (!r.body) {
    if (raw && typeof raw === "object" && !Array.isArray(raw)) {
      const keys = Object.keys(raw);
      if (keys.length) throw new StratumError("INVALID", unknownKeys("key", keys, []));
      return undefined;
    }
    throw new StratumError("INVALID", "this route takes no request body");
  }
  return parse(r.body, raw, "body");
}

/** What a change names, for the audit log: its path parameters and the body's identifying fields. */
function describe(op: OperationId, params: Record<string, unknown>, body: unknown): string {
  const parts: string[] = [op, ...Object.entries(params).map(([k, v]) => `${k}=${v}`)];
  if (body && typeof body === "object") {
    const b = body as Record<string, unknown>;
    for (const k of ["name", "priority", "action", "type", "value", "from"])
      if (typeof b[k] === "string" || typeof b[k] === "number") parts.push(`${k}=${b[k]}`);
    for (const k of ["prefixes", "rules"])
      if (Array.isArray(b[k])) parts.push(`${(b[k] as unknown[]).length} ${k === "rules" ? "rule(s)" : "prefix(es)"}`);
    if ("egress" in b) parts.push(b.egress === null ? "egress=none" : "egress=set");
  }
  return parts.join(" ");
}

// ---- the app ----------------------------------------------------------------------------------

function handlers(svc: Services, o: AppOptions): Handlers {
  const { networks, endpoints, dnsRecords, leases, firewall: fw } = svc;
  /** Endpoint views with their node's state (a cluster node's: membership is the cluster's). */
  function marked<T extends EndpointView | EndpointView[]>(v: T): T {
    if (!o.cluster) return v;
    const states = new Map(o.cluster.nodes().map((n) => [n.name, n.state]));
    const moves = o.cluster.moves();
    const one = (e: EndpointView): EndpointView => ({
      ...e,
      nodeState: e.node ? (states.get(e.node) ?? null) : null,
      moving: moves.get(e.name) ?? null,
    });
    return (Array.isArray(v) ? v.map(one) : one(v)) as T;
  }
  const h: Handlers = {
    listNetworks: () => networks.list(),
    createNetwork: ({ body }) => networks.create(body),
    showNetwork: ({ params }) => networks.show(params.name),
    setNetwork: ({ params, body }) => networks.set(params.name, body),
    deleteNetwork: ({ params, query }) => networks.delete(params.name, query.force === true),
    attachEndpoint: ({ params, body }) => marked(endpoints.attach({ ...body, network: params.name })),
    detachEndpoint: ({ params }) => endpoints.detach(params.name, params.endpoint),
    listNetworkDnsRecords: ({ params }) => dnsRecords.list(params.name),
    addDnsRecord: ({ params, body }) => dnsRecords.add(params.name, body),
    deleteDnsRecords: ({ params, query }) => dnsRecords.delete(params.name, query),
    deleteDnsRecord: ({ params }) => dnsRecords.delete(params.name, { id: params.id }),
    listDnsRecords: () => dnsRecords.list(),
    listLeases: ({ query }) => leases.list(query.network || undefined),
    listEndpoints: ({ query }) => marked(endpoints.list(query.network || undefined)),
    showEndpoint: ({ params }) => marked(endpoints.show(params.name)),
    exportNetworkd: () => ({ files: networkdFiles(networkdState(svc.store, svc.ctx.nl)) }),
    handoffEndpoint: ({ params, body }) => endpoints.handoff(params.name, body) as never,
    setEndpoint: ({ params, body }) => {
      if (body.group !== undefined) endpoints.setGroup(params.name, body.group);
      if (body.egress !== undefined) endpoints.setEgress(params.name, body.egress ? validateCap(body.egress) : null);
      return marked(endpoints.show(params.name));
    },
    listMsegGroups: () => svc.microseg.groups(),
    createMsegGroup: ({ body }) => svc.microseg.createGroup(body),
    showMsegGroup: ({ params }) => svc.microseg.group(params.name),
    deleteMsegGroup: ({ params }) => svc.microseg.deleteGroup(params.name),
    listMsegRules: () => svc.microseg.rules(),
    addMsegRule: ({ body }) => svc.microseg.addRule(body),
    deleteMsegRule: ({ params }) => svc.microseg.deleteRule(params.id),
    exportMicroseg: () => svc.microseg.export(),
    importMicroseg: ({ body }) => svc.microseg.import(body),
    listRules: ({ params }) => fw.listRules(params.scope),
    addRule: ({ params, body }) => fw.addRule(params.scope, body),
    deleteRule: ({ params }) => fw.deleteRule(params.scope, params.id),
    moveRule: ({ params, body }) => fw.moveRule(params.scope, params.id, body.priority),
    setDefault: ({ params, body }) => fw.setDefault(params.scope, body.action),
    exportRules: ({ params }) => fw.exportRules(params.scope),
    importRules: ({ params, body }) => fw.importRules(params.scope, body),
    listBlocklist: ({ query }) => fw.blockPage(query),
    addBlocklist: ({ body }) => ("text" in body ? fw.blockAddText(body.text, body.file) : fw.blockAdd(body.prefixes)),
    deleteBlocklistPrefix: ({ query }) => {
      fw.blockDel(query.prefix);
    },
    clearBlocklist: () => fw.blockClear(),
    testBlocklist: ({ query }) => fw.blockTest(query.address),
    getStatus: async () => (await (o.status ?? (() => ({})))()) as AgentStatus,
    getOpenApi: () => openApiDocument(served),
  };
  const cluster = (): ClusterApi => {
    if (!o.cluster) throw new StratumError("INVALID", NOT_A_CLUSTER_NODE);
    return o.cluster;
  };
  h.listNodes = () => cluster().nodes();
  h.showNode = ({ params }) => cluster().node(params.name);
  h.removeNode = ({ params }) => cluster().removeNode(params.name);
  h.moveEndpoint = ({ params, body }) => cluster().moveEndpoint(params.name, body.to);
  h.getCluster = () => cluster().status();
  const gateway = (): GatewayApi => {
    if (!o.gateway) throw new StratumError("INVALID", NOT_A_CLUSTER_NODE);
    return o.gateway;
  };
  h.listGatewayGroups = () => gateway().groups();
  h.createGatewayGroup = ({ body }) => gateway().createGroup(body);
  h.showGatewayGroup = ({ params }) => gateway().group(params.name);
  h.deleteGatewayGroup = ({ params }) => gateway().deleteGroup(params.name);
  h.getGatewayStatus = () => gateway().status();
  const bgp = (): BgpService => {
    if (!o.bgp) throw new StratumError("INVALID", "this agent has no BGP speaker");
    return o.bgp;
  };
  h.getBgpConfig = () => bgp().config();
  h.setBgpConfig = ({ body }) => bgp().setConfig(body);
  h.deleteBgpConfig = () => bgp().deleteConfig();
  h.listBgpPeers = () => bgp().peers();
  h.addBgpPeer = ({ body }) => bgp().addPeer(body);
  h.deleteBgpPeer = ({ params }) => bgp().deletePeer(params.name);
  h.listBgpRoutes = () => bgp().routes();
  const lb = (): LbService => {
    if (!o.lb) throw new StratumError("INVALID", "this agent has no load balancer");
    return o.lb;
  };
  h.listVips = () => lb().vips();
  h.createVip = ({ body }) => lb().createVip(body);
  h.showVip = ({ params }) => lb().vip(params.name);
  h.deleteVip = ({ params }) => lb().deleteVip(params.name);
  h.addBackend = ({ params, body }) => lb().addBackend(params.name, body);
  h.deleteBackend = ({ params, query }) =>
    lb().removeBackend(params.name, params.endpoint, query.port !== undefined ? Number(query.port) : undefined);
  const { trace, reconcile, metrics } = o;
  if (trace) h.trace = ({ body }) => trace(body);
  if (reconcile) h.reconcile = ({ query }) => reconcile({ full: query.full === true });
  if (metrics)
    h.getMetrics = async () => {
      const m = await metrics();
      return new Response(m.body, { status: 200, headers: { "content-type": m.contentType } });
    };
  const served = (Object.keys(ROUTES) as OperationId[]).filter((op) => h[op] !== undefined);
  return h;
}

/** The operations an app serves, in the contract's order. */
export function servedOperations(app: Hono<any>): OperationId[] {
  return (app as unknown as { [SERVED]: OperationId[] })[SERVED];
}
const SERVED = Symbol("served operations");

export function createApp(svc: Services, o: AppOptions = {}): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.onError((e, c) => {
    const se = e instanceof StratumError ? e : new StratumError("INTERNAL", (e as Error)?.message ?? "internal error");
    c.set("code", se.code);
    const status = se instanceof HttpError ? se.status : (ERROR_STATUS[se.code] ?? 500);
    const res = c.json({ code: se.code, message: se.message }, status);
    // A refused body may still be on its way: the connection is not reused for another request.
    if (status === 413) res.headers.set("connection", "close");
    if (se instanceof HttpError && se.allow) res.headers.set("allow", se.allow);
    return res;
  });
  app.notFound((c) => c.json({ code: "NOT_FOUND", message: `no route ${c.req.method} ${c.req.path}` }, 404));

  // The audit wraps everything below, so a change refused by authentication, validation or
  // the service is logged as well, and exactly once.
  app.use("*", async (c, next) => {
    const caller = c.env?.caller;
    c.set("who", caller?.who ?? "unknown caller");
    await next();
    if (!o.audit || c.req.method === "GET" || c.req.method === "HEAD") return;
    const url = new URL(c.req.url);
    o.audit({
      who: c.get("who"),
      method: c.req.method,
      path: url.pathname + url.search,
      what: c.get("what") ?? (c.res.status === 405 ? "method not allowed" : "no such route"),
      status: c.res.status,
      ...(c.res.status >= 400 ? { code: c.get("code") ?? "NOT_FOUND" } : {}),
    });
  });
  app.use("*", async (c, next) => {
    const caller = c.env?.caller;
    if (caller?.token !== undefined) {
      if (!bearerMatches(c.req.header("authorization"), caller.token)) {
        c.set("who", `unauthenticated from ${caller.who}`);
        c.set("what", "unauthenticated");
        throw new StratumError(
          "UNAUTHORIZED",
          c.req.header("authorization") ? "wrong bearer token" : "missing bearer token (Authorization: Bearer TOKEN)",
        );
      }
      c.set("who", `bearer token "${caller.tokenName ?? "?"}" from ${caller.who}`);
    }
    await next();
  });

  const h = handlers(svc, o);
  const served = (Object.keys(ROUTES) as OperationId[]).filter((op) => h[op] !== undefined);
  const methods = new Map<string, string[]>();
  for (const op of served) {
    const r = ROUTES[op] as RouteDef;
    const handler = h[op] as Handler<OperationId>;
    const path = r.path.replace(/\{(\w+)\}/g, ":$1");
    methods.set(path, [...(methods.get(path) ?? []), r.method.toUpperCase()]);
    const limit = r.bodyLimit ?? BODY_LIMIT;
    const limits: MiddlewareHandler<AppEnv>[] =
      r.method === "get"
        ? []
        : [
            bodyLimit({
              maxSize: limit,
              onError: () => {
                throw new HttpError(413, "INVALID", `request body is larger than ${limit / 1024 / 1024} MiB`);
              },
            }),
          ];
    const route: MiddlewareHandler<AppEnv> = async (c) => {
      const raw = c.req.param() as Record<string, string>;
      const params = r.params ? parse(r.params, raw, "path") : {};
      const query = parseQuery(r, c);
      const body = await parseBody(r, c);
      c.set("what", describe(op, raw, body));
      const out = await handler({ params, query, body } as Input<OperationId>);
      if (out instanceof Response) return out;
      if (r.status === 204) return c.body(null, 204);
      return c.json(out as unknown as object, r.status);
    };
    // Named before the body limit runs: a 413 is audited as the operation it was meant for.
    const named: MiddlewareHandler<AppEnv> = async (c, next) => {
      c.set("what", describe(op, c.req.param() as Record<string, string>, undefined));
      await next();
    };
    app.on(r.method.toUpperCase(), [path], named, ...limits, route);
  }
  // A known path asked with a method it does not serve.
  for (const [path, ms] of methods) {
    const allow = [...ms, ...(ms.includes("GET") ? ["HEAD"] : [])].join(", ");
    app.all(path, (c) => {
      throw new HttpError(405, "INVALID", `${c.req.method} is not allowed on ${c.req.path} (allowed: ${allow})`, allow);
    });
  }
  Object.defineProperty(app, SERVED, { value: served });
  return app;
}
