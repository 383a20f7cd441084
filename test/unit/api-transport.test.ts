/** The API's transports: the typed client over the TCP listener with the token from its file
 * (and the errors that name what failed), the env fallbacks, the token file's permissions,
 * and the unix socket naming each caller by the kernel's record of the peer process. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ApiClient } from "../../src/api/api-client";
import type { AuditEntry } from "../../src/api/app";
import { loadApiToken, serveTcp, serveUnix } from "../../src/api/serve";
import { StratumError } from "../../src/errors";
import { fillFixture, kernelFreeApp } from "../helpers/kernel-free";

describe("the client over the TCP listener", () => {
  const dir = mkdtempSync(join(tmpdir(), "stm-api-tcp-"));
  const tokenFile = join(dir, "api-token");
  const token = "tcp-listener-token-0123456789";
  let server: ReturnType<typeof Bun.serve>;
  let url: string;
  let k: ReturnType<typeof kernelFreeApp>;
  const audit: AuditEntry[] = [];

  beforeAll(() => {
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    k = kernelFreeApp({ audit: (e) => audit.push(e) });
    fillFixture(k);
    server = serveTcp(k.app, { hostname: "127.0.0.1", port: 0, ...loadApiToken(tokenFile), tokenName: "api-token" });
    url = `http://127.0.0.1:${server.port}`;
  });
  afterAll(() => {
    server.stop(true);
    rmSync(dir, { recursive: true, force: true });
  });

  test("reads and changes with the token from the file; the audit names the token", async () => {
    const c = new ApiClient({ url, tokenFile });
    expect((await c.listNetworks()).map((n) => n.name)).toEqual(["app-net", "db-net"]);
    const r = await c.addRule("db-net", { priority: 9, proto: "tcp", dport: 22, action: "deny" });
    expect(r).toMatchObject({ priority: 9, dport: 22, src: null });
    expect(await c.call("listRules", { params: { scope: "db-net" } })).toMatchObject({ rules: [{ id: r.id }] });
    expect(await c.metrics()).toContain("# TYPE x gauge");
    expect(audit.at(-1)).toMatchObject({
      who: expect.stringMatching(/^bearer token "api-token" from 127\.0\.0\.1:\d+$/),
      what: "addRule scope=db-net priority=9 action=deny",
      status: 201,
    });
  });

  test("errors name what failed: no or a wrong token, an unreadable token file, nobody listening", async () => {
    const fail = async (c: ApiClient) => {
      try {
        await c.listNetworks();
      } catch (e) {
        return e instanceof StratumError ? { code: e.code, message: e.message } : { thrown: String(e) };
      }
      return { code: "none" };
    };
    const wrong = join(dir, "wrong");
    writeFileSync(wrong, "not-the-token-0123456789");
    expect(await fail(new ApiClient({ url }))).toEqual({
      code: "UNAUTHORIZED",
      message: `the agent at ${url} refused the call: missing bearer token (Authorization: Bearer TOKEN) (no token: give --api-token-file or STRATUM_API_TOKEN_FILE)`,
    });
    expect(await fail(new ApiClient({ url, tokenFile: wrong }))).toEqual({
      code: "UNAUTHORIZED",
      message: `the agent at ${url} refused the call: wrong bearer token (token from ${wrong})`,
    });
    expect(await fail(new ApiClient({ url, tokenFile: join(dir, "missing") }))).toEqual({
      code: "INVALID",
      message: `cannot read the API token file ${join(dir, "missing")}: ENOENT`,
    });
    // A port nothing listens on: the server's, once stopped.
    const gone = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
    const goneUrl = `http://127.0.0.1:${gone.port}`;
    gone.stop(true);
    expect(await fail(new ApiClient({ url: goneUrl, tokenFile }))).toEqual({
      code: "UNAVAILABLE",
      message: `cannot reach the agent at ${goneUrl} (ECONNREFUSED): is it listening there (agent --api-listen)?`,
    });
    expect(() => new ApiClient({ url: "127.0.0.1:7446" })).toThrow('API URL "127.0.0.1:7446" is not http://HOST:PORT');
    expect(() => new ApiClient({ url, socket: "/run/x.sock" })).toThrow("give the agent's socket or its URL, not both");
  });

  test("STRATUM_API_URL and STRATUM_API_TOKEN_FILE are the fallbacks; an explicit socket wins", async () => {
    const saved = { url: process.env.STRATUM_API_URL, file: process.env.STRATUM_API_TOKEN_FILE };
    process.env.STRATUM_API_URL = url;
    process.env.STRATUM_API_TOKEN_FILE = tokenFile;
    try {
      const c = new ApiClient();
      expect({ url: c.url, tokenFile: c.tokenFile, socket: c.socket }).toEqual({ url, tokenFile, socket: undefined });
      expect((await c.showNetwork("app-net")).name).toBe("app-net");
      expect(new ApiClient({ socket: "/run/x.sock" }).target).toBe("/run/x.sock");
      expect(new ApiClient("/run/y.sock").target).toBe("/run/y.sock");
    } finally {
      for (const [k, v] of [
        ["STRATUM_API_URL", saved.url],
        ["STRATUM_API_TOKEN_FILE", saved.file],
      ] as const)
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
    }
  });
});

describe("the token file", () => {
  test("is refused when group or others may read or write it, naming the file and chmod 600", () => {
    const dir = mkdtempSync(join(tmpdir(), "stm-token-"));
    try {
      const f = join(dir, "token");
      writeFileSync(f, "a-long-enough-token-0123\n");
      for (const mode of [0o644, 0o640, 0o602, 0o660]) {
        chmodSync(f, mode);
        let err: unknown;
        try {
          loadApiToken(f);
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(StratumError);
        expect({ code: (err as StratumError).code, message: (err as StratumError).message }).toEqual({
          code: "PERMISSION",
          message: `the API token file ${f} is readable or writable by group or others (mode ${mode.toString(8).padStart(4, "0")}): chmod 600 ${f}`,
        });
      }
      for (const mode of [0o600, 0o400, 0o700]) {
        chmodSync(f, mode);
        expect(loadApiToken(f)).toEqual({ token: "a-long-enough-token-0123", name: "token" });
      }
      writeFileSync(f, "short\n", { mode: 0o600 });
      expect(() => loadApiToken(f)).toThrow(`the token in ${f} is shorter than 16 characters`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the unix socket", () => {
  test("names each caller by its uid and pid (SO_PEERCRED); the client and curl both get answers", async () => {
    const dir = mkdtempSync(join(tmpdir(), "stm-api-unix-"));
    const sock = join(dir, "api.sock");
    const audit: AuditEntry[] = [];
    const k = kernelFreeApp({ audit: (e) => audit.push(e) });
    const server = await serveUnix(k.app, sock);
    try {
      expect(statSync(sock).mode & 0o777).toBe(0o600);
      const c = new ApiClient({ socket: sock });
      await c.createNetwork({ name: "app-net", cidr: "10.20.0.0/24", gateway: "10.20.0.1" });
      expect(audit.at(-1)).toMatchObject({ who: `uid=${process.getuid?.()} pid=${process.pid}`, status: 201 });
      // Another process: its own pid. A chunked body goes through too.
      const curl = Bun.spawn(
        [
          "curl",
          "-sS",
          "--max-time",
          "5",
          "--unix-socket",
          sock,
          "-X",
          "POST",
          "-H",
          "Transfer-Encoding: chunked",
          "--data-binary",
          '{"name":"db-net","cidr":"10.30.0.0/24","gateway":"10.30.0.1"}',
          "http://stratum/v1/networks",
        ],
        { stdout: "pipe", stderr: "pipe" },
      );
      const [out, err] = await Promise.all([new Response(curl.stdout).text(), new Response(curl.stderr).text()]);
      await curl.exited;
      expect({ err, name: JSON.parse(out).name }).toEqual({ err: "", name: "db-net" });
      expect(audit.at(-1)).toMatchObject({
        who: `uid=${process.getuid?.()} pid=${curl.pid}`,
        what: "createNetwork name=db-net",
      });
      expect((await c.listNetworks()).map((n) => n.name)).toEqual(["app-net", "db-net"]);
      // Errors and 204s cross the adapter unchanged.
      const r = await fetch("http://stratum/v1/networks/db-net", { method: "PUT", unix: sock } as RequestInit);
      expect({ status: r.status, allow: r.headers.get("allow") }).toEqual({
        status: 405,
        allow: "GET, PATCH, DELETE, HEAD",
      });
      await c.deleteNetwork("db-net", false);
      expect(audit.map((e) => e.status)).toEqual([201, 201, 405, 204]);
    } finally {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
