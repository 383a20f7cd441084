/** Typed client of the agent's API (what the CLI uses), derived from the contract: call(op,
 * {params, query, body}) takes the route's method, path and types from its operationId, and
 * the named methods are thin wrappers over it. It talks to the unix socket, or to the TCP
 * listener with the bearer token read from a file. It turns the API's {code, message} back
 * into StratumError, and a failure to reach the agent or read the token into one that names
 * what failed. */
import { readFileSync } from "node:fs";
import { type ErrorCode, StratumError } from "../errors";
import type { DefaultAction } from "../model/firewall-rule";
import type { BodyIn, CallArgs, DnsRecordSelector, OperationId, QueryIn, Result, TraceRequest } from "./contract";
import { ROUTE_PATHS, routeUrl } from "./route-paths";

export const DEFAULT_API_SOCKET = "/run/stratum/api.sock";

export interface ApiClientOptions {
  /** The agent's unix socket (root only, no token). */
  socket?: string;
  /** The agent's TCP listener, http://HOST:PORT (agent --api-listen). */
  url?: string;
  /** File holding the TCP listener's bearer token. */
  tokenFile?: string;
}

/** A blocklist page: `limit` entries after the prefix `after`, only those covering `contains`. */
type BlockQuery = Omit<QueryIn<"listBlocklist">, "limit"> & { limit?: number };

type Args<K extends OperationId> =
  Record<string, never> extends CallArgs<K> ? [args?: CallArgs<K>] : [args: CallArgs<K>];

export class ApiClient {
  /** Where calls go: a unix socket path, or a TCP listener's base URL. */
  readonly socket?: string;
  readonly url?: string;
  readonly tokenFile?: string;
  #token: string | undefined;

  /** Options first, then STRATUM_API_URL (with STRATUM_API_TOKEN_FILE), then
   * STRATUM_API_SOCKET, then the default socket. A string is a socket path. */
  constructor(o: ApiClientOptions | string = {}) {
    const opts = typeof o === "string" ? { socket: o } : o;
    if (opts.socket && opts.url)
      throw new StratumError("INVALID", "give the agent's socket or its URL, not both (--api-socket, --api-url)");
    const env = process.env;
    const url = opts.url || (opts.socket ? undefined : env.STRATUM_API_URL || undefined);
    if (url) {
      let u: URL;
      try {
        u = new URL(url);
      } catch {
        throw new StratumError("INVALID", `API URL "${url}" is not http://HOST:PORT`);
      }
      if (u.protocol !== "http:" && u.protocol !== "https:")
        throw new StratumError("INVALID", `API URL "${url}" is not http://HOST:PORT (or https://)`);
      this.url = url.replace(/\/+$/, "");
      this.tokenFile = opts.tokenFile || env.STRATUM_API_TOKEN_FILE || undefined;
    } else this.socket = opts.socket || env.STRATUM_API_SOCKET || DEFAULT_API_SOCKET;
  }

  /** Where the agent was asked, for messages. */
  get target(): string {
    return this.url ?? (this.socket as string);
  }

  #bearer(): string | undefined {
    if (!this.tokenFile) return undefined;
    if (this.#token === undefined) {
      try {
        this.#token = readFileSync(this.tokenFile, "utf8").trim();
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        throw new StratumError(
          code === "EACCES" || code === "EPERM" ? "PERMISSION" : "INVALID",
          `cannot read the API token file ${this.tokenFile}: ${code ?? (e as Error).message}`,
        );
      }
      if (!this.#token) throw new StratumError("INVALID", `the API token file ${this.tokenFile} is empty`);
    }
    return this.#token;
  }

  async #request(method: string, path: string, body: unknown, text: boolean): Promise<unknown> {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers["content-type"] = "application/json";
    const token = this.url ? this.#bearer() : undefined;
    if (token) headers.authorization = `Bearer ${token}`;
    let res: Response;
    try {
      res = await fetch(this.url ? `${this.url}${path}` : `http://stratum${path}`, {
        method,
        ...(this.url ? {} : { unix: this.socket }),
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      } as RequestInit);
    } catch (e) {
      const why = (e as { code?: string }).code ?? (e as Error).message;
      // The socket is root's, mode 0600: anyone else is not permitted, not "unreachable".
      if (!this.url && (why === "EACCES" || why === "EPERM"))
        throw new StratumError(
          "PERMISSION",
          `permission denied on the agent's socket ${this.socket}: the API is root's only (run as root, e.g. with sudo)`,
        );
      throw new StratumError(
        "UNAVAILABLE",
        this.url
          ? `cannot reach the agent at ${this.url} (${why}): is it listening there (agent --api-listen)?`
          : `cannot reach the agent at ${this.socket} (${why}): is \`cenvero-str-ctl agent\` running? (--api-socket or STRATUM_API_SOCKET select another)`,
      );
    }
    if (res.status === 204) return undefined;
    const payload = await res.text();
    if (res.ok && text) return payload;
    let json: unknown;
    try {
      json = JSON.parse(payload);
    } catch {
      throw new StratumError("INTERNAL", `agent answered ${res.status} with non-JSON: ${payload.slice(0, 200)}`);
    }
    if (!res.ok) {
      const e = json as { code?: ErrorCode; message?: string };
      const code = e.code ?? (res.status === 401 ? "UNAUTHORIZED" : "INTERNAL");
      const message = e.message ?? `agent answered ${res.status}`;
      if (code === "UNAUTHORIZED")
        throw new StratumError(
          code,
          `the agent at ${this.target} refused the call: ${message}${this.tokenFile ? ` (token from ${this.tokenFile})` : " (no token: give --api-token-file or STRATUM_API_TOKEN_FILE)"}`,
        );
      throw new StratumError(code, message);
    }
    return json;
  }

  /** One operation of the contract: its method and path, `params` filled into the path,
   * `query` as the query string, `body` as JSON; the result typed as its response. */
  call<K extends OperationId>(op: K, ...[args]: Args<K>): Promise<Result<K>> {
    const r = ROUTE_PATHS[op];
    const a = (args ?? {}) as { params?: Record<string, unknown>; query?: Record<string, unknown>; body?: unknown };
    return this.#request(r.method.toUpperCase(), routeUrl(op, a.params, a.query), a.body, !!r.text) as Promise<
      Result<K>
    >;
  }

  listNetworks = () => this.call("listNetworks");
  showNetwork = (name: string) => this.call("showNetwork", { params: { name } });
  createNetwork = (spec: BodyIn<"createNetwork">) => this.call("createNetwork", { body: spec });
  setNetwork = (name: string, patch: BodyIn<"setNetwork">) =>
    this.call("setNetwork", { params: { name }, body: patch });
  deleteNetwork = (name: string, force: boolean) =>
    this.call("deleteNetwork", { params: { name }, query: force ? { force: "true" } : {} });
  attach = (network: string, req: BodyIn<"attachEndpoint">) =>
    this.call("attachEndpoint", { params: { name: network }, body: req });
  detach = (network: string, name: string) =>
    this.call("detachEndpoint", { params: { name: network, endpoint: name } });
  listEndpoints = (network?: string) => this.call("listEndpoints", { query: { network } });
  showEndpoint = (name: string) => this.call("showEndpoint", { params: { name } });
  exportNetworkd = () => this.call("exportNetworkd", {});
  handoffEndpoint = (name: string, body: { socket: string; queues?: number; vnetHdr?: boolean }) =>
    this.call("handoffEndpoint", { params: { name }, body });
  setEndpoint = (name: string, patch: BodyIn<"setEndpoint">) =>
    this.call("setEndpoint", { params: { name }, body: patch });

  /** {scope}: a network's name or `global`. */
  listRules = (scope: string) => this.call("listRules", { params: { scope } });
  addRule = (scope: string, spec: BodyIn<"addRule">) => this.call("addRule", { params: { scope }, body: spec });
  deleteRule = (scope: string, id: number) => this.call("deleteRule", { params: { scope, id: String(id) } });
  moveRule = (scope: string, id: number, priority: number) =>
    this.call("moveRule", { params: { scope, id: String(id) }, body: { priority } });
  setDefault = (scope: string, action: DefaultAction) =>
    this.call("setDefault", { params: { scope }, body: { action } });
  exportRules = (scope: string) => this.call("exportRules", { params: { scope } });
  importRules = (scope: string, doc: BodyIn<"importRules">) =>
    this.call("importRules", { params: { scope }, body: doc });
  /** One page of the blocklist (`next` names the following page). */
  blockList = (q: BlockQuery = {}) =>
    this.call("listBlocklist", { query: { ...q, limit: q.limit === undefined ? undefined : String(q.limit) } });
  /** Every page of the blocklist, in order. */
  async *blockPages(query: Omit<BlockQuery, "after"> = {}) {
    let after: string | undefined;
    do {
      const page = await this.blockList({ ...query, ...(after === undefined ? {} : { after }) });
      yield page;
      after = page.next ?? undefined;
    } while (after !== undefined);
  }
  blockAdd = (prefixes: string[]) => this.call("addBlocklist", { body: { prefixes } });
  /** A blocklist file's text, checked line by line by the agent (`file` names it in messages). */
  blockAddText = (text: string, file?: string) =>
    this.call("addBlocklist", { body: { text, ...(file === undefined ? {} : { file }) } });
  blockDel = (prefix: string) => this.call("deleteBlocklistPrefix", { query: { prefix } });
  blockClear = () => this.call("clearBlocklist");
  blockTest = (address: string) => this.call("testBlocklist", { query: { address } });

  dhcpLeases = (network?: string) => this.call("listLeases", { query: { network } });

  /** One network's records, or every network's. */
  dnsRecords = (network?: string) =>
    network ? this.call("listNetworkDnsRecords", { params: { name: network } }) : this.call("listDnsRecords");
  addDnsRecord = (network: string, spec: BodyIn<"addDnsRecord">) =>
    this.call("addDnsRecord", { params: { name: network }, body: spec });
  /** Deletes by id, or by owner name (and type, and value); answers the deleted records. */
  deleteDnsRecords = (network: string, sel: DnsRecordSelector) => {
    if (sel.id !== undefined) return this.call("deleteDnsRecord", { params: { name: network, id: String(sel.id) } });
    const { name = "", type, value } = sel;
    return this.call("deleteDnsRecords", { params: { name: network }, query: { name, type, value } });
  };

  /** The cluster's nodes, one of them, forgetting a dead one; the cluster's status. */
  listNodes = () => this.call("listNodes");
  showNode = (name: string) => this.call("showNode", { params: { name } });
  removeNode = (name: string) => this.call("removeNode", { params: { name } });
  moveEndpoint = (name: string, to: string) => this.call("moveEndpoint", { params: { name }, body: { to } });
  clusterStatus = () => this.call("getCluster");

  /** Microsegmentation: groups, the policy between them, the whole policy as a document. */
  msegGroups = () => this.call("listMsegGroups");
  msegGroup = (name: string) => this.call("showMsegGroup", { params: { name } });
  createMsegGroup = (body: BodyIn<"createMsegGroup">) => this.call("createMsegGroup", { body });
  deleteMsegGroup = (name: string) => this.call("deleteMsegGroup", { params: { name } });
  msegRules = () => this.call("listMsegRules");
  addMsegRule = (body: BodyIn<"addMsegRule">) => this.call("addMsegRule", { body });
  deleteMsegRule = (id: number) => this.call("deleteMsegRule", { params: { id: String(id) } });
  vips = () => this.call("listVips");
  vip = (name: string) => this.call("showVip", { params: { name } });
  createVip = (body: BodyIn<"createVip">) => this.call("createVip", { body });
  deleteVip = (name: string) => this.call("deleteVip", { params: { name } });
  addBackend = (vip: string, body: BodyIn<"addBackend">) => this.call("addBackend", { params: { name: vip }, body });
  deleteBackend = (vip: string, endpoint: string, port?: number) =>
    this.call("deleteBackend", {
      params: { name: vip, endpoint },
      query: port !== undefined ? { port: String(port) } : {},
    });
  exportMicroseg = () => this.call("exportMicroseg");
  importMicroseg = (doc: BodyIn<"importMicroseg">) => this.call("importMicroseg", { body: doc });

  /** Gateway groups (a cluster node): declared, listed, deleted; this node's part in each. */
  gatewayGroups = () => this.call("listGatewayGroups");
  gatewayGroup = (name: string) => this.call("showGatewayGroup", { params: { name } });
  createGatewayGroup = (body: BodyIn<"createGatewayGroup">) => this.call("createGatewayGroup", { body });
  deleteGatewayGroup = (name: string) => this.call("deleteGatewayGroup", { params: { name } });
  gatewayStatus = () => this.call("getGatewayStatus");

  /** The gateway's BGP speaker: its settings, peers and what it announces. */
  bgpConfig = () => this.call("getBgpConfig");
  setBgpConfig = (body: BodyIn<"setBgpConfig">) => this.call("setBgpConfig", { body });
  deleteBgpConfig = () => this.call("deleteBgpConfig");
  bgpPeers = () => this.call("listBgpPeers");
  addBgpPeer = (body: BodyIn<"addBgpPeer">) => this.call("addBgpPeer", { body });
  deleteBgpPeer = (name: string) => this.call("deleteBgpPeer", { params: { name } });
  bgpRoutes = () => this.call("listBgpRoutes");

  trace = (req: TraceRequest) => this.call("trace", { body: req });
  status = () => this.call("getStatus");
  reconcile = (o: { full?: boolean } = {}) => this.call("reconcile", { query: o.full ? { full: "true" } : {} });
  metrics = () => this.call("getMetrics");
}
