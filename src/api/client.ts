/** Typed client of the agent's API over its unix socket (what the CLI uses). Turns the
 * API's {code, message} back into StratumError, and an unreachable agent into UNAVAILABLE. */
import type { BlockAddResult, BlocklistView, ImportResult, RuleListView, RuleView } from "../agent/firewall-service";
import type { ReconcileRun } from "../agent/runtime";
import type { DnsRecordSelector, EndpointView, LeaseView, NetworkView } from "../agent/service";
import type { AgentStatus } from "../agent/status";
import { type ErrorCode, StratumError } from "../errors";
import type { DefaultAction } from "../model/firewall";
import type { RuleSetDoc } from "../model/ruleset";
import type { StoredDnsRecord } from "../store/store";

export const DEFAULT_API_SOCKET = "/run/stratum/api.sock";

export class ApiClient {
  constructor(readonly socket: string = process.env.STRATUM_API_SOCKET || DEFAULT_API_SOCKET) {}

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`http://stratum${path}`, {
        method,
        unix: this.socket,
        headers: body === undefined ? undefined : { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      } as RequestInit);
    } catch (e) {
      throw new StratumError(
        "UNAVAILABLE",
        `cannot reach the agent at ${this.socket} (${(e as { code?: string }).code ?? (e as Error).message}): is \`cenvero-str-ctl agent\` running? (--api-socket or STRATUM_API_SOCKET select another)`,
      );
    }
    if (res.status === 204) return undefined as T;
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new StratumError("INTERNAL", `agent answered ${res.status} with non-JSON: ${text.slice(0, 200)}`);
    }
    if (!res.ok) {
      const e = json as { code?: ErrorCode; message?: string };
      throw new StratumError(e.code ?? "INTERNAL", e.message ?? `agent answered ${res.status}`);
    }
    return json as T;
  }

  listNetworks = () => this.request<NetworkView[]>("GET", "/v1/networks");
  showNetwork = (name: string) => this.request<NetworkView>("GET", `/v1/networks/${encodeURIComponent(name)}`);
  createNetwork = (spec: Record<string, unknown>) => this.request<NetworkView>("POST", "/v1/networks", spec);
  setNetwork = (name: string, patch: Record<string, unknown>) =>
    this.request<NetworkView>("PATCH", `/v1/networks/${encodeURIComponent(name)}`, patch);
  deleteNetwork = (name: string, force: boolean) =>
    this.request<void>("DELETE", `/v1/networks/${encodeURIComponent(name)}${force ? "?force=true" : ""}`);
  attach = (network: string, req: Record<string, unknown>) =>
    this.request<EndpointView>("POST", `/v1/networks/${encodeURIComponent(network)}/endpoints`, req);
  detach = (network: string, name: string) =>
    this.request<void>("DELETE", `/v1/networks/${encodeURIComponent(network)}/endpoints/${encodeURIComponent(name)}`);
  listEndpoints = (network?: string) =>
    this.request<EndpointView[]>("GET", `/v1/endpoints${network ? `?network=${encodeURIComponent(network)}` : ""}`);
  showEndpoint = (name: string) => this.request<EndpointView>("GET", `/v1/endpoints/${encodeURIComponent(name)}`);
  setEndpoint = (name: string, patch: Record<string, unknown>) =>
    this.request<EndpointView>("PATCH", `/v1/endpoints/${encodeURIComponent(name)}`, patch);

  #fw = (scope: string, rest = "") => `/v1/firewall/${encodeURIComponent(scope)}${rest}`;
  /** {scope}: a network's name or `global`. */
  listRules = (scope: string) => this.request<RuleListView>("GET", this.#fw(scope, "/rules"));
  addRule = (scope: string, spec: Record<string, unknown>) =>
    this.request<RuleView>("POST", this.#fw(scope, "/rules"), spec);
  deleteRule = (scope: string, id: number) => this.request<void>("DELETE", this.#fw(scope, `/rules/${id}`));
  moveRule = (scope: string, id: number, priority: number) =>
    this.request<RuleView>("POST", this.#fw(scope, `/rules/${id}/move`), { priority });
  setDefault = (scope: string, action: DefaultAction) =>
    this.request<{ scope: string; default: DefaultAction }>("PUT", this.#fw(scope, "/default"), { action });
  exportRules = (scope: string) => this.request<Required<RuleSetDoc>>("GET", this.#fw(scope, "/export"));
  importRules = (scope: string, doc: RuleSetDoc) => this.request<ImportResult>("PUT", this.#fw(scope, "/import"), doc);
  blockList = () => this.request<BlocklistView>("GET", "/v1/firewall/blocklist");
  blockAdd = (prefixes: string[]) => this.request<BlockAddResult>("POST", "/v1/firewall/blocklist", { prefixes });
  blockDel = (prefix: string) =>
    this.request<void>("DELETE", `/v1/firewall/blocklist?prefix=${encodeURIComponent(prefix)}`);

  dhcpLeases = (network?: string) =>
    this.request<LeaseView[]>("GET", `/v1/dhcp/leases${network ? `?network=${encodeURIComponent(network)}` : ""}`);

  #dns = (network: string, rest = "") => `/v1/networks/${encodeURIComponent(network)}/dns/records${rest}`;
  /** One network's records, or every network's. */
  dnsRecords = (network?: string) =>
    this.request<StoredDnsRecord[]>("GET", network ? this.#dns(network) : "/v1/dns/records");
  addDnsRecord = (network: string, spec: { name: string; type: string; value: string; ttl?: number }) =>
    this.request<StoredDnsRecord>("POST", this.#dns(network), spec);
  /** Deletes by id, or by owner name (and type, and value); answers the deleted records. */
  deleteDnsRecords = (network: string, sel: DnsRecordSelector) => {
    if (sel.id !== undefined) return this.request<StoredDnsRecord[]>("DELETE", this.#dns(network, `/${sel.id}`));
    const q = (["name", "type", "value"] as const)
      .filter((k) => sel[k] !== undefined)
      .map((k) => `${k}=${encodeURIComponent(sel[k] as string)}`);
    return this.request<StoredDnsRecord[]>("DELETE", this.#dns(network, `?${q.join("&")}`));
  };

  status = () => this.request<AgentStatus>("GET", "/v1/status");
  reconcile = () => this.request<ReconcileRun>("POST", "/v1/reconcile");
}
