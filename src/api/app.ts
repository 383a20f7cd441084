/** The agent's HTTP API (hono): one router per resource, zod validation of every body and
 * query, errors as {code, message} with the matching status and never a stack, and an
 * OpenAPI document generated from the same schemas at /openapi.json. */
import { Hono } from "hono";
import { z } from "zod";
import pkg from "../../package.json" with { type: "json" };
import type { NetworkService } from "../agent/service";
import { type ErrorCode, StratumError } from "../errors";
import { NetworkSpecSchema } from "../model/network";

/** A network declaration: the model's own schema, so the API and validation cannot drift. */
export const NetworkCreateSchema = NetworkSpecSchema;

export const NetworkPatchSchema = z
  .object({
    mtu: z.number().int().optional(),
    defaultAction: z.enum(["allow", "deny"]).optional(),
    dnsForwarders: z.array(z.string()).optional(),
    dhcpRange: z.string().optional(),
    dnsZone: z.string().optional(),
  })
  .strict();

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

const STATUS: Record<ErrorCode, 400 | 404 | 409 | 500 | 501 | 503> = {
  INVALID: 400,
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
  return r;
}

function endpointsRouter(svc: NetworkService): Hono {
  const r = new Hono();
  r.get("/", (c) => c.json(svc.listEndpoints(c.req.query("network") || undefined)));
  r.get("/:name", (c) => c.json(svc.showEndpoint(c.req.param("name"))));
  return r;
}

export function openApiDocument(): Record<string, unknown> {
  const schema = (s: z.ZodType) => z.toJSONSchema(s);
  const json = (s?: z.ZodType) => (s ? { content: { "application/json": { schema: schema(s) } } } : {});
  const err = { description: "error", ...json(z.object({ code: z.string(), message: z.string() })) };
  const op = (summary: string, req?: z.ZodType, ok = "200") => ({
    summary,
    ...(req ? { requestBody: { required: true, ...json(req) } } : {}),
    responses: { [ok]: { description: "success" }, "400": err, "404": err, "500": err },
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
      "/v1/endpoints": { get: op("List endpoints (?network=NAME)") },
      "/v1/endpoints/{name}": { get: op("Show an endpoint") },
      "/v1/status": { get: op("Agent status") },
    },
  };
}

export function createApp(svc: NetworkService, status: () => unknown = () => ({})): Hono {
  const app = new Hono();
  app.onError((e, c) => {
    const se = e instanceof StratumError ? e : new StratumError("INTERNAL", (e as Error)?.message ?? "internal error");
    return c.json({ code: se.code, message: se.message }, STATUS[se.code] ?? 500);
  });
  app.notFound((c) => c.json({ code: "NOT_FOUND", message: `no route ${c.req.method} ${c.req.path}` }, 404));
  app.route("/v1/networks", networksRouter(svc));
  app.route("/v1/endpoints", endpointsRouter(svc));
  app.get("/v1/status", (c) => c.json(status()));
  app.get("/openapi.json", (c) => c.json(openApiDocument()));
  return app;
}
