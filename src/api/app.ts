/** The agent's HTTP API (hono): one router per resource, zod validation of every body and
 * query, errors as {code, message} with the matching status and never a stack, and an
 * OpenAPI document generated from the same schemas at /openapi.json. */

import { Hono } from "hono";
import { z } from "zod";
import pkg from "../../package.json" with { type: "json" };
import type { FirewallService } from "../agent/firewall-service";
import type { ReconcileRun } from "../agent/runtime";
import type { NetworkService } from "../agent/service";
import { TRACE_PROTOS, type TraceRequest, type TraceResult } from "../agent/trace";
import { type ErrorCode, StratumError } from "../errors";
import { MAX_PRIORITY, RuleSpecSchema } from "../model/firewall";
import { NetworkSpecSchema } from "../model/network";
import { EgressCapSchema, validateCap } from "../model/shape";

/** A network declaration: the model's own schema, so the API and validation cannot drift. */
export const NetworkCreateSchema = NetworkSpecSchema;

export const NetworkPatchSchema = z
  .object({
    mtu: z.number().int().optional(),
    defaultAction: z.enum(["allow", "deny"]).optional(),
    dnsForwarders: z.array(z.string()).optional(),
    dhcpRange: z.string().optional(),
    dnsZone: z.string().optional(),
    dhcpLeaseTime: z.number().int().optional(),
    dhcpRoutes: z.array(z.string()).optional(),
    dhcpOptions: z.array(z.string()).optional(),
    egress: EgressCapSchema.nullable().optional(),
  })
  .strict();

export const EndpointPatchSchema = z.object({ egress: EgressCapSchema.nullable() }).strict();

export const AttachSchema = z
  .object({
    name: z.string(),
    netns: z.string().optional(),
    ifname: z.string().optional(),
    tap: z.string().optional(),
    ip: z.string().optional(),
    configure: z.boolean().optional(),
  })
  .strict();

/** A firewall rule: the model's schema (the fields are the CLI's flags). */
export const RuleCreateSchema = RuleSpecSchema;

export const RuleMoveSchema = z.object({ priority: z.number().int().min(1).max(MAX_PRIORITY) }).strict();

export const DefaultActionSchema = z.object({ action: z.enum(["allow", "deny"]) }).strict();

/** The import document; each rule is validated by the service, which names the bad one by index. */
export const RuleSetSchema = z
  .object({
    default: z.enum(["allow", "deny"]).optional(),
    rules: z.array(z.record(z.string(), z.unknown())).default([]),
  })
  .strict();

export const BlocklistAddSchema = z.object({ prefixes: z.array(z.string()).min(1) }).strict();

/** A DNS record of a network's zone; the service checks name, type and value (src/model/dns.ts). */
export const DnsRecordCreateSchema = z
  .object({
    name: z.string(),
    type: z.string(),
    value: z.string(),
    ttl: z.number().int().optional(),
  })
  .strict();

/** Which records `DELETE /v1/networks/{name}/dns/records` removes: an owner name, narrowed by type and value. */
export const DnsRecordSelectorSchema = z
  .object({
    name: z.string().min(1),
    type: z.string().min(1).optional(),
    value: z.string().min(1).optional(),
  })
  .strict();

const Port = z.number().int().min(0).max(65535);
export const TraceSchema = z
  .object({
    from: z.string(),
    to: z.string().optional(),
    toEndpoint: z.string().optional(),
    proto: z.enum(TRACE_PROTOS).optional(),
    sport: Port.optional(),
    dport: Port.optional(),
    flags: z.array(z.string()).optional(),
    ipv6: z.boolean().optional(),
    src: z.string().optional(),
    srcMac: z.string().optional(),
  })
  .strict();

const STATUS: Record<ErrorCode, 400 | 401 | 403 | 404 | 409 | 500 | 501 | 503> = {
  INVALID: 400,
  CONFLICT: 409,
  PERMISSION: 403,
  UNAUTHORIZED: 401,
  CAPACITY: 409,
  NOT_FOUND: 404,
  UNSUPPORTED: 501,
  UNAVAILABLE: 503,
  SYS: 500,
  NETLINK: 500,
  BPF_LOAD: 500,
  BPF_ATTACH: 500,
  INTERNAL: 500,
};

async function body<T extends z.ZodType>(req: { json(): Promise<unknown> }, schema: T): Promise<z.infer<T>> {
  let raw: unknown;
  try {
    raw = await req.json();
  } catch {
    throw new StratumError("INVALID", "request body is not JSON");
  }
  const r = schema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new StratumError("INVALID", `${i?.path.join(".") || "body"}: ${i?.message ?? "invalid"}`);
  }
  return r.data;
}

/** The query string, validated like a body (errors name the parameter). */
function query<T extends z.ZodType>(q: Record<string, string>, schema: T, usage: string): z.infer<T> {
  const r = schema.safeParse(q);
  if (!r.success) {
    const i = r.error.issues[0];
    const what = i?.path.join(".");
    throw new StratumError("INVALID", `${what ? `${what}: ` : ""}${i?.message ?? "invalid"} (${usage})`);
  }
  return r.data;
}

/** A numeric id from a path (`what` names it in the message). */
function numericId(v: string, what: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n)) throw new StratumError("INVALID", `${what} "${v}" is not a number`);
  return n;
}

const DNS_DELETE_USAGE = "DELETE /v1/networks/NAME/dns/records/ID or ?name=OWNER[&type=TYPE][&value=VALUE]";

function networksRouter(svc: NetworkService): Hono {
  const r = new Hono();
  r.get("/", (c) => c.json(svc.listNetworks()));
  r.post("/", async (c) => c.json(svc.createNetwork(await body(c.req, NetworkCreateSchema)), 201));
  r.get("/:name", (c) => c.json(svc.showNetwork(c.req.param("name"))));
  r.patch("/:name", async (c) => c.json(svc.setNetwork(c.req.param("name"), await body(c.req, NetworkPatchSchema))));
  r.delete("/:name", (c) => {
    svc.deleteNetwork(c.req.param("name"), c.req.query("force") === "true");
    return c.body(null, 204);
  });
  r.post("/:name/endpoints", async (c) =>
    c.json(svc.attach({ ...(await body(c.req, AttachSchema)), network: c.req.param("name") }), 201),
  );
  r.delete("/:name/endpoints/:endpoint", (c) => {
    svc.detach(c.req.param("name"), c.req.param("endpoint"));
    return c.body(null, 204);
  });
  r.get("/:name/dns/records", (c) => c.json(svc.dnsRecords(c.req.param("name"))));
  r.post("/:name/dns/records", async (c) =>
    c.json(svc.addDnsRecord(c.req.param("name"), await body(c.req, DnsRecordCreateSchema)), 201),
  );
  r.delete("/:name/dns/records/:id", (c) =>
    c.json(svc.deleteDnsRecords(c.req.param("name"), { id: numericId(c.req.param("id"), "record id") })),
  );
  r.delete("/:name/dns/records", (c) =>
    c.json(svc.deleteDnsRecords(c.req.param("name"), query(c.req.query(), DnsRecordSelectorSchema, DNS_DELETE_USAGE))),
  );
  return r;
}

function endpointsRouter(svc: NetworkService): Hono {
  const r = new Hono();
  r.get("/", (c) => c.json(svc.listEndpoints(c.req.query("network") || undefined)));
  r.get("/:name", (c) => c.json(svc.showEndpoint(c.req.param("name"))));
  r.patch("/:name", async (c) => {
    const b = await body(c.req, EndpointPatchSchema);
    return c.json(svc.setEndpointEgress(c.req.param("name"), b.egress ? validateCap(b.egress) : null));
  });
  return r;
}

const ruleId = (v: string) => numericId(v, "rule id");

/** /v1/dhcp: the leases the networks' DHCP servers handed out. */
function dhcpRouter(svc: NetworkService): Hono {
  const r = new Hono();
  r.get("/leases", (c) => c.json(svc.dhcpLeases(c.req.query("network") || undefined)));
  return r;
}

/** /v1/dns: the user's records of every network (one network's: /v1/networks/{name}/dns/records). */
function dnsRouter(svc: NetworkService): Hono {
  const r = new Hono();
  r.get("/records", (c) => c.json(svc.dnsRecords()));
  return r;
}

/** /v1/firewall: {scope} is a network's name or `global`; the blocklist is node-wide. */
function firewallRouter(fw: FirewallService): Hono {
  const r = new Hono();
  r.get("/blocklist", (c) => c.json(fw.blockList()));
  r.post("/blocklist", async (c) => c.json(fw.blockAdd((await body(c.req, BlocklistAddSchema)).prefixes)));
  r.delete("/blocklist", (c) => {
    const p = c.req.query("prefix");
    if (!p) throw new StratumError("INVALID", "give the prefix to delete: DELETE /v1/firewall/blocklist?prefix=CIDR");
    fw.blockDel(p);
    return c.body(null, 204);
  });
  r.get("/:scope/rules", (c) => c.json(fw.listRules(c.req.param("scope"))));
  r.post("/:scope/rules", async (c) =>
    c.json(fw.addRule(c.req.param("scope"), await body(c.req, RuleCreateSchema)), 201),
  );
  r.delete("/:scope/rules/:id", (c) => {
    fw.deleteRule(c.req.param("scope"), ruleId(c.req.param("id")));
    return c.body(null, 204);
  });
  r.post("/:scope/rules/:id/move", async (c) =>
    c.json(fw.moveRule(c.req.param("scope"), ruleId(c.req.param("id")), (await body(c.req, RuleMoveSchema)).priority)),
  );
  r.put("/:scope/default", async (c) =>
    c.json(fw.setDefault(c.req.param("scope"), (await body(c.req, DefaultActionSchema)).action)),
  );
  r.get("/:scope/export", (c) => c.json(fw.exportRules(c.req.param("scope"))));
  r.put("/:scope/import", async (c) => c.json(fw.importRules(c.req.param("scope"), await body(c.req, RuleSetSchema))));
  return r;
}

export function openApiDocument(): Record<string, unknown> {
  const schema = (s: z.ZodType) => z.toJSONSchema(s);
  const json = (s?: z.ZodType) => (s ? { content: { "application/json": { schema: schema(s) } } } : {});
  const err = { description: "error", ...json(z.object({ code: z.string(), message: z.string() })) };
  const op = (summary: string, req?: z.ZodType, ok = "200") => ({
    summary,
    ...(req ? { requestBody: { required: true, ...json(req) } } : {}),
    responses: { [ok]: { description: "success" }, "400": err, "404": err, "409": err, "500": err },
  });
  return {
    openapi: "3.1.0",
    info: { title: "Stratum agent API", version: pkg.version },
    paths: {
      "/v1/networks": { get: op("List networks"), post: op("Create a network", NetworkCreateSchema, "201") },
      "/v1/networks/{name}": {
        get: op("Show a network"),
        patch: op("Change a network's mutable fields", NetworkPatchSchema),
        delete: op("Delete a network (?force=true detaches its endpoints first)", undefined, "204"),
      },
      "/v1/networks/{name}/endpoints": { post: op("Attach an endpoint (claim a profile)", AttachSchema, "201") },
      "/v1/networks/{name}/endpoints/{endpoint}": { delete: op("Detach an endpoint", undefined, "204") },
      "/v1/networks/{name}/dns/records": {
        get: op("List a network's DNS records"),
        post: op("Add a DNS record (name relative to the zone, @ for the apex)", DnsRecordCreateSchema, "201"),
        delete: op("Delete the records ?name=OWNER[&type=TYPE][&value=VALUE] names; answers the deleted records"),
      },
      "/v1/networks/{name}/dns/records/{id}": { delete: op("Delete a DNS record by id; answers it") },
      "/v1/dns/records": { get: op("List the DNS records of every network") },
      "/v1/dhcp/leases": { get: op("List DHCP leases (?network=NAME), with whether each is still active") },
      "/v1/endpoints": { get: op("List endpoints (?network=NAME)") },
      "/v1/endpoints/{name}": {
        get: op("Show an endpoint"),
        patch: op("Set (or with egress: null remove) an endpoint's egress cap", EndpointPatchSchema),
      },
      "/v1/firewall/{scope}/rules": {
        get: op("List a scope's rules with hit counters ({scope}: a network or `global`)"),
        post: op("Add a rule", RuleCreateSchema, "201"),
      },
      "/v1/firewall/{scope}/rules/{id}": { delete: op("Delete a rule", undefined, "204") },
      "/v1/firewall/{scope}/rules/{id}/move": { post: op("Give a rule another priority", RuleMoveSchema) },
      "/v1/firewall/{scope}/default": { put: op("Set a scope's default action", DefaultActionSchema) },
      "/v1/firewall/{scope}/export": { get: op("A scope's rule set as a document ({default, rules})") },
      "/v1/firewall/{scope}/import": { put: op("Replace a scope's whole rule set at once", RuleSetSchema) },
      "/v1/firewall/blocklist": {
        get: op("List the blocklist"),
        post: op("Add prefixes to the blocklist (all or none)", BlocklistAddSchema),
        delete: op("Remove a prefix (?prefix=CIDR)", undefined, "204"),
      },
      "/v1/trace": {
        post: op("Trace a packet an endpoint would send through the live programs, stage by stage", TraceSchema),
      },
      "/v1/status": { get: op("Agent status: health, ports, uplink, maps, store, last reconcile, recent errors") },
      "/v1/reconcile": {
        post: op("Reconcile the kernel to the store now; the run's report lists every kernel change it made"),
      },
      "/metrics": {
        get: {
          summary: "Prometheus metrics (text exposition format)",
          responses: { "200": { description: "success", content: { "text/plain": { schema: { type: "string" } } } } },
        },
      },
    },
  };
}

export interface AppOptions {
  /** The /v1/status document. */
  status?: () => unknown;
  /** One Prometheus scrape (no /metrics route without it). */
  metrics?: () => Promise<{ contentType: string; body: string }>;
  /** Traces a packet (no /v1/trace route without it). */
  trace?: (req: TraceRequest) => TraceResult;
  /** Reconciles the kernel to the store now (no /v1/reconcile route without it). */
  reconcile?: () => ReconcileRun;
}

export function createApp(svc: NetworkService, o: AppOptions = {}): Hono {
  const { status = () => ({}), metrics, trace, reconcile } = o;
  const app = new Hono();
  app.onError((e, c) => {
    const se = e instanceof StratumError ? e : new StratumError("INTERNAL", (e as Error)?.message ?? "internal error");
    return c.json({ code: se.code, message: se.message }, STATUS[se.code] ?? 500);
  });
  app.notFound((c) => c.json({ code: "NOT_FOUND", message: `no route ${c.req.method} ${c.req.path}` }, 404));
  app.route("/v1/networks", networksRouter(svc));
  app.route("/v1/endpoints", endpointsRouter(svc));
  app.route("/v1/firewall", firewallRouter(svc.fw));
  app.route("/v1/dhcp", dhcpRouter(svc));
  app.route("/v1/dns", dnsRouter(svc));
  app.get("/v1/status", async (c) => c.json(await status()));
  if (metrics)
    app.get("/metrics", async (c) => {
      const m = await metrics();
      return c.body(m.body, 200, { "content-type": m.contentType });
    });
  if (reconcile) app.post("/v1/reconcile", (c) => c.json(reconcile()));
  if (trace) app.post("/v1/trace", async (c) => c.json(trace(await body(c.req, TraceSchema))));
  app.get("/openapi.json", (c) => c.json(openApiDocument()));
  return app;
}
