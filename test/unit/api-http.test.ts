/** HTTP semantics of the API through app.request(): 405 with Allow for a known path asked
 * with another method, 413 for a body over the route's limit (by Content-Length, and a
 * chunked one cut off while it is read), 401 UNAUTHORIZED for a TCP caller without the token,
 * and one audit entry per change with who, what and the result. */
import { describe, expect, test } from "bun:test";
import { type AuditEntry, auditLine } from "../../src/api/app";
import { BODY_LIMIT, BULK_BODY_LIMIT } from "../../src/api/contract";
import { fillFixture, kernelFreeApp } from "../helpers/kernel-free";

const json = (body: unknown) => ({ headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

/** A body of `n` bytes sent in chunks without a Content-Length (chunked transfer). */
function chunked(n: number, chunk = 1 << 20): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    pull(c) {
      if (sent >= n) return c.close();
      const k = Math.min(chunk, n - sent);
      sent += k;
      c.enqueue(new Uint8Array(k).fill(0x20));
    },
  });
}

describe("status codes", () => {
  test("a known path with a method it does not serve: 405, Allow, {code, message}", async () => {
    const { app } = kernelFreeApp();
    const cases: Array<[string, string, string]> = [
      ["PUT", "/v1/networks", "GET, POST, HEAD"],
      ["POST", "/v1/networks/app-net", "GET, PATCH, DELETE, HEAD"],
      ["GET", "/v1/firewall/blocklist/clear", "POST"],
      ["DELETE", "/v1/status", "GET, HEAD"],
      ["GET", "/v1/firewall/app-net/rules/7", "DELETE"],
    ];
    for (const [method, path, allow] of cases) {
      const r = await app.request(path, { method });
      expect({ method, path, status: r.status, allow: r.headers.get("allow"), body: await r.json() }).toEqual({
        method,
        path,
        status: 405,
        allow,
        body: { code: "INVALID", message: `${method} is not allowed on ${path} (allowed: ${allow})` },
      });
    }
    // An unknown path stays 404; HEAD of a GET route is served.
    expect((await app.request("/v1/nothing", { method: "PUT" })).status).toBe(404);
    expect((await app.request("/v1/networks", { method: "HEAD" })).status).toBe(200);
  });

  test("a body over the limit is 413 before it is parsed: by Content-Length, and chunked while it is read", async () => {
    const k = kernelFreeApp();
    const big = Buffer.alloc(BODY_LIMIT + 1, 0x20);
    let r = await k.app.request("/v1/networks", {
      method: "POST",
      headers: { "content-type": "application/json", "content-length": String(big.length) },
      body: big,
    });
    expect({ status: r.status, body: await r.json() }).toEqual({
      status: 413,
      body: { code: "INVALID", message: "request body is larger than 10 MiB" },
    });
    expect(r.headers.get("connection")).toBe("close");
    r = await k.app.request("/v1/networks", {
      method: "POST",
      body: chunked(BODY_LIMIT + 4096),
      duplex: "half",
    } as never);
    expect({ status: r.status, body: await r.json() }).toEqual({
      status: 413,
      body: { code: "INVALID", message: "request body is larger than 10 MiB" },
    });
    // A route without a body has the same limit; the bulk routes a larger one.
    r = await k.app.request("/v1/reconcile", {
      method: "POST",
      body: chunked(BODY_LIMIT + 1),
      duplex: "half",
    } as never);
    expect(r.status).toBe(413);
    fillFixture(k);
    r = await k.app.request("/v1/firewall/db-net/import", {
      method: "PUT",
      body: chunked(BODY_LIMIT + 1),
      duplex: "half",
    } as never);
    expect({ status: r.status, code: ((await r.json()) as { code: string }).code }).toEqual({
      status: 400,
      code: "INVALID",
    }); // read whole (under 64 MiB), then refused as not JSON
    r = await k.app.request("/v1/firewall/blocklist", {
      method: "POST",
      body: chunked(BULK_BODY_LIMIT + 1),
      duplex: "half",
    } as never);
    expect({ status: r.status, body: await r.json() }).toEqual({
      status: 413,
      body: { code: "INVALID", message: "request body is larger than 64 MiB" },
    });
    expect(k.store.blockCount(4)).toBe(4); // the fixture's, nothing added
  });

  test("the TCP listener's caller must present the token: 401 UNAUTHORIZED otherwise", async () => {
    const k = kernelFreeApp();
    const caller = { caller: { who: "127.0.0.1:40000", token: "s3cret-token-of-16+", tokenName: "api-token" } };
    const cases: Array<[string | undefined, number, unknown]> = [
      [undefined, 401, { code: "UNAUTHORIZED", message: "missing bearer token (Authorization: Bearer TOKEN)" }],
      ["Bearer wrong", 401, { code: "UNAUTHORIZED", message: "wrong bearer token" }],
      ["s3cret-token-of-16+", 401, { code: "UNAUTHORIZED", message: "wrong bearer token" }],
      ["Bearer s3cret-token-of-16+", 200, []],
    ];
    for (const [auth, status, body] of cases) {
      const r = await k.app.request("/v1/networks", auth ? { headers: { authorization: auth } } : {}, caller);
      expect({ auth, status: r.status, body: await r.json() }).toEqual({ auth, status, body });
    }
    // Before the route is looked up: an unauthenticated caller learns nothing about paths.
    expect((await k.app.request("/v1/nothing", {}, caller)).status).toBe(401);
    // The unix socket's caller has no token to present.
    expect((await k.app.request("/v1/networks", {}, { caller: { who: "uid=0 pid=1" } })).status).toBe(200);
  });
});

describe("the audit trail", () => {
  test("every change is reported exactly once with who, what and the result; reads are not", async () => {
    const entries: AuditEntry[] = [];
    const k = kernelFreeApp({ audit: (e) => entries.push(e) });
    const unix = { caller: { who: "uid=0 pid=4242" } };
    const tcp = { caller: { who: "127.0.0.1:5555", token: "s3cret-token-of-16+", tokenName: "api-token" } };
    const net = { name: "app-net", cidr: "10.20.0.0/24", gateway: "10.20.0.1" };
    await k.app.request("/v1/networks", { method: "POST", ...json(net) }, unix);
    await k.app.request("/v1/networks", { method: "POST", ...json(net) }, unix); // taken: 409
    await k.app.request("/v1/networks", {}, unix); // a read: not audited
    await k.app.request("/v1/networks/app-net", { method: "PATCH", ...json({ mtuu: 1400 }) }, unix);
    const tok = { headers: { authorization: "Bearer s3cret-token-of-16+", "content-type": "application/json" } };
    await k.app.request(
      "/v1/firewall/app-net/rules",
      { method: "POST", ...tok, body: '{"priority":5,"action":"deny"}' },
      tcp,
    );
    await k.app.request("/v1/firewall/blocklist?prefix=192.0.2.0/24", { method: "DELETE" }, tcp); // no token
    await k.app.request("/v1/networks/app-net", { method: "PUT" }, unix); // 405
    await k.app.request("/v1/networks/app-net?force=true", { method: "DELETE" }, unix);
    const big = Buffer.alloc(BODY_LIMIT + 1, 0x20);
    await k.app.request(
      "/v1/networks",
      { method: "POST", headers: { "content-length": String(big.length) }, body: big },
      unix,
    );
    expect(entries).toEqual([
      {
        who: "uid=0 pid=4242",
        method: "POST",
        path: "/v1/networks",
        what: "createNetwork name=app-net",
        status: 201,
      },
      {
        who: "uid=0 pid=4242",
        method: "POST",
        path: "/v1/networks",
        what: "createNetwork name=app-net",
        status: 409,
        code: "CONFLICT",
      },
      {
        who: "uid=0 pid=4242",
        method: "PATCH",
        path: "/v1/networks/app-net",
        what: "setNetwork name=app-net",
        status: 400,
        code: "INVALID",
      },
      {
        who: 'bearer token "api-token" from 127.0.0.1:5555',
        method: "POST",
        path: "/v1/firewall/app-net/rules",
        what: "addRule scope=app-net priority=5 action=deny",
        status: 201,
      },
      {
        who: "unauthenticated from 127.0.0.1:5555",
        method: "DELETE",
        path: "/v1/firewall/blocklist?prefix=192.0.2.0/24",
        what: "unauthenticated",
        status: 401,
        code: "UNAUTHORIZED",
      },
      {
        who: "uid=0 pid=4242",
        method: "PUT",
        path: "/v1/networks/app-net",
        what: "method not allowed",
        status: 405,
        code: "INVALID",
      },
      {
        who: "uid=0 pid=4242",
        method: "DELETE",
        path: "/v1/networks/app-net?force=true",
        what: "deleteNetwork name=app-net",
        status: 204,
      },
      {
        who: "uid=0 pid=4242",
        method: "POST",
        path: "/v1/networks",
        what: "createNetwork",
        status: 413,
        code: "INVALID",
      },
    ]);
    expect(auditLine(entries[1] as AuditEntry)).toBe(
      "uid=0 pid=4242: POST /v1/networks (createNetwork name=app-net) → 409 CONFLICT",
    );
  });
});
