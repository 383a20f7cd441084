/** Writes src/api/route-paths.ts from the contract's ROUTES (method, path, text): run after a
 * change of the contract's routes (test/unit/api-contract.test.ts fails until then). */
import { ROUTES, type RouteDef } from "../src/api/contract";

const rows = (Object.entries(ROUTES) as Array<[string, RouteDef]>).map(
  ([op, r]) => `  ${op}: { method: "${r.method}", path: "${r.path}"${r.text ? ", text: true" : ""} },`,
);
const out = `/** Each operation's method and path (and whether its answer is text), without the contract's
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
${rows.join("\n")}
};

/** An operation's URL: \`params\` filled into its path, \`query\` as the query string. */
export function routeUrl(op: OperationId, params?: Record<string, unknown>, query?: Record<string, unknown>): string {
  const path = ROUTE_PATHS[op].path.replace(/\\{(\\w+)\\}/g, (_, k: string) => {
    const v = params?.[k];
    if (v === undefined) throw new Error(\`\${op}: path parameter \${k} is missing\`);
    return encodeURIComponent(String(v));
  });
  const q = Object.entries(query ?? {})
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => \`\${encodeURIComponent(k)}=\${encodeURIComponent(String(v))}\`);
  return q.length ? \`\${path}?\${q.join("&")}\` : path;
}
`;
const file = `${import.meta.dir}/../src/api/route-paths.ts`;
await Bun.write(file, out);
Bun.spawnSync([`${import.meta.dir}/../node_modules/.bin/biome`, "format", "--write", file]);
