/** The agent's two API listeners. The unix socket is served through node:net and node:http
 * rather than Bun.serve, because only there each connection's descriptor is reachable: the
 * kernel's record of the peer process (SO_PEERCRED: uid and pid) names the caller in the
 * audit log. The TCP listener (Bun.serve) names its caller by the token it presents. Both
 * hand requests to the same app with the caller in its environment (app.ts: Caller). */
import { readFileSync, statSync } from "node:fs";
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createNetServer, type Server, type Socket } from "node:net";
import { basename } from "node:path";
import { Readable } from "node:stream";
import { StratumError } from "../errors";
import { peerCredentials } from "../sys/os";
import type { Caller } from "./app";

const CALLER = Symbol("api caller");

/** What the listeners hand requests to: the app's fetch, or a wrapper of it (the agent runs
 * changes exclusive of its reconcile loop). */
export interface ApiHandler {
  fetch(req: Request, env: { caller: Caller }): Response | Promise<Response>;
}

/** The TCP listener's token from `file`, which only its owner may read or write (a token
 * others can read is no secret); `name` stands for it in the audit log (the file's name). */
export function loadApiToken(file: string): { token: string; name: string } {
  let mode: number;
  let text: string;
  try {
    mode = statSync(file).mode;
    text = readFileSync(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new StratumError(
      code === "EACCES" || code === "EPERM" ? "PERMISSION" : "INVALID",
      `cannot read the API token file ${file}: ${code ?? (e as Error).message}`,
    );
  }
  if (mode & 0o066)
    throw new StratumError(
      "PERMISSION",
      `the API token file ${file} is readable or writable by group or others (mode ${(mode & 0o777).toString(8).padStart(4, "0")}): chmod 600 ${file}`,
    );
  const token = text.trim();
  if (token.length < 16) throw new StratumError("INVALID", `the token in ${file} is shorter than 16 characters`);
  return { token, name: basename(file) };
}

/** Fallback when a connection's descriptor cannot be read: the socket is mode 0600 and owned
 * by root, so whoever connected runs as root. */
export const ROOT_ONLY = "uid=0 (socket is root-only)";

/** "uid=0 pid=4242" for a unix-socket connection, from the kernel's record of its peer. */
export function unixPeer(sock: Socket): string {
  const fd = (sock as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== "number" || fd < 0) return ROOT_ONLY;
  try {
    const c = peerCredentials(fd);
    return `uid=${c.uid} pid=${c.pid}`;
  } catch {
    return ROOT_ONLY;
  }
}

async function answer(app: ApiHandler, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const method = req.method ?? "GET";
  const headers = new Headers();
  for (const [k, v] of Object.entries(req.headers))
    if (Array.isArray(v)) for (const x of v) headers.append(k, x);
    else if (v !== undefined) headers.set(k, v);
  const hasBody = method !== "GET" && method !== "HEAD";
  // Streamed, not buffered: the app's body limit stops a body that is too large while it arrives.
  const request = new Request(`http://stratum${req.url ?? "/"}`, {
    method,
    headers,
    body: hasBody ? (Readable.toWeb(req) as ReadableStream) : undefined,
    duplex: "half",
  } as RequestInit);
  const caller: Caller = { who: (req.socket as unknown as { [CALLER]?: string })[CALLER] ?? ROOT_ONLY };
  let response: Response;
  try {
    response = await app.fetch(request, { caller });
  } catch (e) {
    response = Response.json({ code: "INTERNAL", message: (e as Error).message }, { status: 500 });
  }
  const out = method === "HEAD" ? Buffer.alloc(0) : Buffer.from(await response.arrayBuffer());
  const head: Record<string, string> = {};
  response.headers.forEach((v, k) => {
    head[k] = v;
  });
  if (method !== "HEAD") head["content-length"] = String(out.length);
  res.writeHead(response.status, head);
  res.end(out);
  // A body refused before it was read (413) must not be taken for the next request.
  if (response.headers.get("connection") === "close") req.socket.destroySoon?.();
}

/** Serves `app` on the unix socket at `path`, mode 0600 from the moment it exists; resolves
 * once it listens. */
export async function serveUnix(app: ApiHandler, path: string): Promise<Server> {
  const http = createHttpServer((req, res) => {
    answer(app, req, res).catch(() => {
      // The app answers every error itself: this is the connection failing under it.
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  const server = createNetServer((sock) => {
    (sock as unknown as { [CALLER]: string })[CALLER] = unixPeer(sock);
    http.emit("connection", sock);
  });
  // The socket is created with the umask's mode: none for group and others, no window
  // before a chmod.
  const umask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } finally {
    process.umask(umask);
  }
  return server;
}

/** Serves `app` on TCP: every request must carry `Authorization: Bearer <token>`; a valid one
 * stands for `tokenName` in the audit log. */
export function serveTcp(
  app: ApiHandler,
  o: { hostname: string; port: number; token: string; tokenName: string },
): ReturnType<typeof Bun.serve> {
  return Bun.serve({
    hostname: o.hostname,
    port: o.port,
    // The app caps bodies per route (at most 64 MiB): the server's own limit must not be lower.
    maxRequestBodySize: 128 * 1024 * 1024,
    fetch: (req, server) => {
      const ip = server.requestIP(req);
      const from = ip ? `${ip.family === "IPv6" ? `[${ip.address}]` : ip.address}:${ip.port}` : "an unknown address";
      return app.fetch(req, { caller: { who: from, token: o.token, tokenName: o.tokenName } });
    },
  });
}
