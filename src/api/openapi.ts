/** The OpenAPI 3.1 document of the agent's API (GET /openapi.json), generated from the
 * contract's table: every route with its operationId, path and query parameters, request
 * body, success response and error responses, the views as shared components, and the bearer
 * scheme the TCP listener requires. A unit test runs it through an OpenAPI validator. */
import { z } from "zod";
import pkg from "../../package.json" with { type: "json" };
import { ErrorView, ImportRulesItems, type OperationId, ROUTES, type RouteDef, RuleCreate } from "./contract";

type Json = Record<string, unknown>;

const COMPONENT = "#/components/schemas/";

/** Schemas documented as another: the import body's rules are checked one by one by the
 * service (to name the bad one by index), but what each must be is a rule spec. */
function override(ctx: { zodSchema: unknown; jsonSchema: Json }): void {
  if (ctx.zodSchema === ImportRulesItems) {
    const { $schema: _s, ...rule } = z.toJSONSchema(RuleCreate, { io: "input" }) as Json;
    for (const k of Object.keys(ctx.jsonSchema)) delete ctx.jsonSchema[k];
    Object.assign(ctx.jsonSchema, { type: "array", items: rule });
  }
}

/** `#/$defs/X` → `#/components/schemas/X`, everywhere in `v`. */
function relink(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(relink);
  if (v && typeof v === "object")
    return Object.fromEntries(
      Object.entries(v).map(([k, x]) => [
        k,
        k === "$ref" && typeof x === "string" ? x.replace(/^#\/\$defs\//, COMPONENT) : relink(x),
      ]),
    );
  return v;
}

class SchemaSet {
  readonly components: Record<string, Json> = {};

  /** The JSON Schema of `s` (its request form, "input", or its response form, "output");
   * schemas with an id (the views) go to the components, referenced by $ref. */
  of(s: z.ZodType, io: "input" | "output"): Json {
    const js = z.toJSONSchema(s, { io, target: "draft-2020-12", unrepresentable: "throw", override }) as Json;
    const { $schema: _s, $defs, ...rest } = js;
    for (const [id, def] of Object.entries(($defs ?? {}) as Record<string, Json>)) {
      const linked = relink(def) as Json;
      const have = this.components[id];
      // One id, one shape: a schema used both ways must look the same both ways.
      if (have && JSON.stringify(have) !== JSON.stringify(linked))
        throw new Error(`schema ${id} differs between its uses (request and response forms?)`);
      this.components[id] = linked;
    }
    return relink(rest) as Json;
  }
}

const ERR = { $ref: "#/components/responses/Error" };

function operation(op: OperationId, r: RouteDef, set: SchemaSet): Json {
  const parameters: Json[] = [];
  for (const [where, obj] of [
    ["path", r.params],
    ["query", r.query],
  ] as const) {
    if (!obj) continue;
    for (const [name, field] of Object.entries(obj.shape as Record<string, z.ZodType>)) {
      const schema = set.of(field, "input");
      const description = schema.description;
      parameters.push({
        name,
        in: where,
        required: where === "path" || !field.safeParse(undefined).success,
        ...(typeof description === "string" ? { description } : {}),
        schema,
      });
    }
  }
  const ok: Json = { description: r.status === 204 ? "Done: no content" : "Success" };
  if (r.response) ok.content = { "application/json": { schema: set.of(r.response, "output") } };
  else if (r.text) ok.content = { "text/plain": { schema: { type: "string" } } };
  return {
    operationId: op,
    summary: r.summary,
    ...(r.usage ? { description: `Usage: ${r.usage}` } : {}),
    ...(parameters.length ? { parameters } : {}),
    ...(r.body
      ? { requestBody: { required: true, content: { "application/json": { schema: set.of(r.body, "input") } } } }
      : {}),
    responses: {
      [String(r.status)]: ok,
      "400": ERR,
      "401": ERR,
      ...(r.params ? { "404": ERR } : {}),
      "405": ERR,
      ...(r.method === "get" ? {} : { "409": ERR }),
      ...(r.body ? { "413": ERR } : {}),
      default: ERR,
    },
  };
}

/** The document for `ops` (default: every route). */
export function openApiDocument(ops: readonly OperationId[] = Object.keys(ROUTES) as OperationId[]): Json {
  const set = new SchemaSet();
  const paths: Record<string, Json> = {};
  for (const op of ops) {
    const r = ROUTES[op] as RouteDef;
    paths[r.path] ??= {};
    (paths[r.path] as Json)[r.method] = operation(op, r, set);
  }
  const error = set.of(ErrorView, "output");
  return {
    openapi: "3.1.0",
    info: {
      title: "Stratum agent API",
      version: pkg.version,
      description:
        "The node agent's API: on its unix socket (root only, no token) and, with --api-listen, on TCP with a bearer token. " +
        "Errors are {code, message}. Unknown body keys and query parameters are refused (400). Times are RFC 3339; " +
        "every key of a view is present (null when unset).",
    },
    security: [{}, { bearerToken: [] }],
    paths,
    components: {
      schemas: set.components,
      responses: {
        Error: {
          description: "An error: a stable code and a one-line message",
          content: { "application/json": { schema: error } },
        },
      },
      securitySchemes: {
        bearerToken: {
          type: "http",
          scheme: "bearer",
          description: "The TCP listener's token (the file given to --api-token-file); the unix socket needs none",
        },
      },
    },
  };
}
