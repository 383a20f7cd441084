/** Each operation's method and path (and whether its answer is text), without the contract's
 * schemas: what the API client needs to make a call. The CLI's client reads this, so a command
 * does not build every zod schema of the contract at start (a third of a short command's
 * start). test/unit/api-contract.test.ts checks it against the contract's ROUTES. */
import type { OperationId } from "./contract";

export interface RoutePath {
  method: "get" | "post" | "put" | "patch" | "delete";
  /** OpenAPI form: /v1/networks/{name}. */
  path: string;
  /** The answer is text, not JSON. */
  text?: true;
}

export const ROUTE_PATHS: Record<OperationId, RoutePath> = {
  listNetworks: { method: "get", path: "/v1/networks" },
  createNetwork: { method: "post", path: "/v1/networks" },
  showNetwork: { method: "get", path: "/v1/networks/{name}" },
  setNetwork: { method: "patch", path: "/v1/networks/{name}" },
  deleteNetwork: { method: "delete", path: "/v1/networks/{name}" },
  attachEndpoint: { method: "post", path: "/v1/networks/{name}/endpoints" },
  detachEndpoint: { method: "delete", path: "/v1/networks/{name}/endpoints/{endpoint}" },
  listNetworkDnsRecords: { method: "get", path: "/v1/networks/{name}/dns/records" },
  addDnsRecord: { method: "post", path: "/v1/networks/{name}/dns/records" },
  deleteDnsRecords: { method: "delete", path: "/v1/networks/{name}/dns/records" },
  deleteDnsRecord: { method: "delete", path: "/v1/networks/{name}/dns/records/{id}" },
  listDnsRecords: { method: "get", path: "/v1/dns/records" },
  listLeases: { method: "get", path: "/v1/dhcp/leases" },
  listEndpoints: { method: "get", path: "/v1/endpoints" },
  showEndpoint: { method: "get", path: "/v1/endpoints/{name}" },
  exportNetworkd: { method: "get", path: "/v1/export/networkd" },
  handoffEndpoint: { method: "post", path: "/v1/endpoints/{name}/handoff" },
  setEndpoint: { method: "patch", path: "/v1/endpoints/{name}" },
  listRules: { method: "get", path: "/v1/firewall/{scope}/rules" },
  addRule: { method: "post", path: "/v1/firewall/{scope}/rules" },
  deleteRule: { method: "delete", path: "/v1/firewall/{scope}/rules/{id}" },
  moveRule: { method: "post", path: "/v1/firewall/{scope}/rules/{id}/move" },
  setDefault: { method: "put", path: "/v1/firewall/{scope}/default" },
  exportRules: { method: "get", path: "/v1/firewall/{scope}/export" },
  importRules: { method: "put", path: "/v1/firewall/{scope}/import" },
  listBlocklist: { method: "get", path: "/v1/firewall/blocklist" },
  addBlocklist: { method: "post", path: "/v1/firewall/blocklist" },
  deleteBlocklistPrefix: { method: "delete", path: "/v1/firewall/blocklist" },
  clearBlocklist: { method: "post", path: "/v1/firewall/blocklist/clear" },
  testBlocklist: { method: "get", path: "/v1/firewall/blocklist/test" },
  listNodes: { method: "get", path: "/v1/nodes" },
  showNode: { method: "get", path: "/v1/nodes/{name}" },
  moveEndpoint: { method: "post", path: "/v1/endpoints/{name}/move" },
  removeNode: { method: "delete", path: "/v1/nodes/{name}" },
  getBgpConfig: { method: "get", path: "/v1/bgp/config" },
  setBgpConfig: { method: "put", path: "/v1/bgp/config" },
  deleteBgpConfig: { method: "delete", path: "/v1/bgp/config" },
  listBgpPeers: { method: "get", path: "/v1/bgp/peers" },
  addBgpPeer: { method: "post", path: "/v1/bgp/peers" },
  deleteBgpPeer: { method: "delete", path: "/v1/bgp/peers/{name}" },
  listBgpRoutes: { method: "get", path: "/v1/bgp/routes" },
  listMsegGroups: { method: "get", path: "/v1/microseg/groups" },
  createMsegGroup: { method: "post", path: "/v1/microseg/groups" },
  showMsegGroup: { method: "get", path: "/v1/microseg/groups/{name}" },
  deleteMsegGroup: { method: "delete", path: "/v1/microseg/groups/{name}" },
  listMsegRules: { method: "get", path: "/v1/microseg/rules" },
  addMsegRule: { method: "post", path: "/v1/microseg/rules" },
  deleteMsegRule: { method: "delete", path: "/v1/microseg/rules/{id}" },
  exportMicroseg: { method: "get", path: "/v1/microseg/export" },
  importMicroseg: { method: "put", path: "/v1/microseg/import" },
  listVips: { method: "get", path: "/v1/lb/vips" },
  createVip: { method: "post", path: "/v1/lb/vips" },
  showVip: { method: "get", path: "/v1/lb/vips/{name}" },
  deleteVip: { method: "delete", path: "/v1/lb/vips/{name}" },
  addBackend: { method: "post", path: "/v1/lb/vips/{name}/backends" },
  deleteBackend: { method: "delete", path: "/v1/lb/vips/{name}/backends/{endpoint}" },
  listGatewayGroups: { method: "get", path: "/v1/gateway/groups" },
  createGatewayGroup: { method: "post", path: "/v1/gateway/groups" },
  showGatewayGroup: { method: "get", path: "/v1/gateway/groups/{name}" },
  deleteGatewayGroup: { method: "delete", path: "/v1/gateway/groups/{name}" },
  getGatewayStatus: { method: "get", path: "/v1/gateway/status" },
  getCluster: { method: "get", path: "/v1/cluster" },
  trace: { method: "post", path: "/v1/trace" },
  getStatus: { method: "get", path: "/v1/status" },
  reconcile: { method: "post", path: "/v1/reconcile" },
  getMetrics: { method: "get", path: "/metrics", text: true },
  getOpenApi: { method: "get", path: "/openapi.json" },
};

/** An operation's URL: `params` filled into its path, `query` as the query string. */
export function routeUrl(op: OperationId, params?: Record<string, unknown>, query?: Record<string, unknown>): string {
  const path = ROUTE_PATHS[op].path.replace(/\{(\w+)\}/g, (_, k: string) => {
    const v = params?.[k];
    if (v === undefined) throw new Error(`${op}: path parameter ${k} is missing`);
    return encodeURIComponent(String(v));
  });
  const q = Object.entries(query ?? {})
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
  return q.length ? `${path}?${q.join("&")}` : path;
}
