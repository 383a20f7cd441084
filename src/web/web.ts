/** The agent's read-only web view (docs/web.md): a page bundled in the binary (no CDN, no
 * external font) that reads the API's own GET routes, the counters' history for its plots and
 * a live feed of drops and flows (server-sent events). Served on the API's unix socket under
 * /web/ (an SSH tunnel reaches it) and, with `agent --web-listen HOST:PORT`, on TCP, where every
 * request for data needs the API's bearer token and nothing but GET and HEAD is answered: the
 * page has no write action, and its listener takes none. Strict CSP on everything. */
import { bearerMatches } from "../model/bearer";
import type { LiveFeed } from "./feed";
import type { CounterHistory } from "./history";
import appJs from "./static/app.js" with { type: "text" };
import indexHtml from "./static/index.html" with { type: "text" };
import styleCss from "./static/style.css" with { type: "text" };

/** The API's handler, as the listeners call it (api/serve.ts ApiHandler; the caller is who asks,
 * with the token it presented on TCP). */
export interface ApiHandler {
  fetch(
    req: Request,
    env: { caller: { who: string; token?: string; tokenName?: string } },
  ): Response | Promise<Response>;
}

export interface WebDeps {
  history: CounterHistory;
  feed: LiveFeed;
}

/** What every answer of the web view carries: nothing from elsewhere, no inline script or
 * style, no framing, no referrer. */
export const WEB_HEADERS: Record<string, string> = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cache-control": "no-store",
};

const ASSETS: Record<string, { type: string; body: string }> = {
  // Bun's types take an .html import for a bundle; with `type: "text"` it is the file's text.
  "/web/": { type: "text/html; charset=utf-8", body: indexHtml as unknown as string },
  "/web/app.js": { type: "text/javascript; charset=utf-8", body: appJs },
  "/web/style.css": { type: "text/css; charset=utf-8", body: styleCss },
};

const answer = (
  body: ConstructorParameters<typeof Response>[0],
  status: number,
  type?: string,
  extra: Record<string, string> = {},
) => new Response(body, { status, headers: { ...WEB_HEADERS, ...(type ? { "content-type": type } : {}), ...extra } });

/** The web view's own paths (/web/...); anything else is not its (undefined). */
export function webFetch(req: Request, deps: WebDeps): Response | Promise<Response> | undefined {
  const url = new URL(req.url);
  const p = url.pathname;
  if (p !== "/web" && !p.startsWith("/web/")) return undefined;
  if (req.method !== "GET" && req.method !== "HEAD")
    return answer("the web view is read-only\n", 405, "text/plain", { allow: "GET, HEAD" });
  if (p === "/web") return answer(null, 308, undefined, { location: "/web/" });
  const asset = ASSETS[p];
  if (asset) return answer(req.method === "HEAD" ? null : asset.body, 200, asset.type);
  if (p === "/web/history")
    return deps.history
      .start()
      .then(() =>
        answer(
          JSON.stringify({ everySeconds: deps.history.everyMs / 1000, ...deps.history.rates() }),
          200,
          "application/json",
        ),
      );
  if (p === "/web/events") return events(req, deps.feed);
  return answer("not found\n", 404, "text/plain");
}

/** Server-sent events: `open` once the feed reads the ring, `busy` while `monitor` holds it,
 * `event` for each drop, log hit or new flow; a comment every 15 s keeps proxies from closing it. */
function events(req: Request, feed: LiveFeed): Response {
  const enc = new TextEncoder();
  let stop = () => {};
  const body = new ReadableStream<Uint8Array>({
    start(ctl) {
      const send = (text: string) => {
        try {
          ctl.enqueue(enc.encode(text));
        } catch {
          stop();
        }
      };
      send(": stratum live feed\n\n");
      const unwatch = feed.watch((m) => {
        if (m.kind === "event") send(`event: event\ndata: ${JSON.stringify(m.event)}\n\n`);
        else if (m.kind === "busy") send(`event: busy\ndata: ${JSON.stringify({ holder: m.holder })}\n\n`);
        else send("event: open\ndata: {}\n\n");
      });
      const ping = setInterval(() => send(": ping\n\n"), 15_000);
      stop = () => {
        clearInterval(ping);
        unwatch();
      };
      req.signal.addEventListener("abort", () => stop());
    },
    cancel() {
      stop();
    },
  });
  return answer(body, 200, "text/event-stream; charset=utf-8", { connection: "keep-alive" });
}

/** The API's handler with the web view in front of it (the unix socket: root only, no token). */
export function withWeb(api: ApiHandler, deps: WebDeps): ApiHandler {
  return { fetch: (req, env) => webFetch(req, deps) ?? api.fetch(req, env) };
}

/** `agent --web-listen`: the page's assets to anyone (they hold no data), everything else (the
 * history, the feed, the API's GET routes) only with `Authorization: Bearer <token>`; a request
 * other than GET or HEAD is refused before anything reads it. */
export function serveWeb(
  api: ApiHandler,
  deps: WebDeps,
  o: { hostname: string; port: number; token: string; tokenName: string },
): ReturnType<typeof Bun.serve> {
  return Bun.serve({
    hostname: o.hostname,
    port: o.port,
    maxRequestBodySize: 1024,
    idleTimeout: 0,
    fetch: (req, server) => {
      const p = new URL(req.url).pathname;
      if (req.method !== "GET" && req.method !== "HEAD")
        return answer("the web view is read-only\n", 405, "text/plain", { allow: "GET, HEAD" });
      if (p === "/" || p === "") return answer(null, 308, undefined, { location: "/web/" });
      if (p === "/web" || ASSETS[p]) return webFetch(req, deps) as Response | Promise<Response>;
      if (!bearerMatches(req.headers.get("authorization"), o.token))
        return answer(
          JSON.stringify({ code: "UNAUTHORIZED", message: "the web view's data needs the API's bearer token" }),
          401,
          "application/json",
          {
            "www-authenticate": 'Bearer realm="stratum"',
          },
        );
      const web = webFetch(req, deps);
      if (web) return web;
      if (!p.startsWith("/v1/") && p !== "/metrics") return answer("not found\n", 404, "text/plain");
      const ip = server.requestIP(req);
      const from = ip ? `${ip.family === "IPv6" ? `[${ip.address}]` : ip.address}:${ip.port} (web view)` : "web view";
      return Promise.resolve(api.fetch(req, { caller: { who: from, token: o.token, tokenName: o.tokenName } })).then(
        (r) => {
          const h = new Headers(r.headers);
          for (const [k, v] of Object.entries(WEB_HEADERS)) h.set(k, v);
          return new Response(r.body, { status: r.status, headers: h });
        },
      );
    },
  });
}
