/** The web view in a real browser (Debian's chromium, driven by playwright-core from inside the
 * agent's namespace: test/helpers/web-browse.ts), against a real agent with `--web-listen`: the
 * page holds no data without the token and says what it needs; with it, every number it shows
 * (networks' fill, endpoints' drops by reason, rule hits, leases, records) is the API's; a
 * denied packet shows up in the live feed; strict CSP on every answer; nothing but GET and
 * HEAD is taken. Screenshots of every page go to test-artifacts/web/. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TestAgent } from "../helpers/agent";
import { BUN, Netns, ROOT } from "../helpers/netns";

const PORT = 18_087;
const BASE = `http://127.0.0.1:${PORT}`;
const SHOTS = join(ROOT, "test-artifacts", "web");
let A: TestAgent;
let c1: Netns;
let c2: Netns;
let ct: any;
let view: any;
let rule: number;

/** curl inside the agent's namespace: status and headers of one request. */
function curl(args: string[]): { code: number; out: string } {
  const r = A.ns.exec(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", ...args]);
  return { code: Number(r.stdout), out: r.stdout };
}

beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true });
  A = new TestAgent("web");
  c1 = new Netns("webc1");
  c2 = new Netns("webc2");
  const token = join(A.dir, "token");
  A.ns.execOk(["ip", "link", "set", "lo", "up"]);
  await A.start(["--web-listen", `127.0.0.1:${PORT}`, "--api-token-file", token]);
  A.json(
    "network",
    "create",
    "--name",
    "app",
    "--cidr",
    "10.71.0.0/24",
    "--gateway",
    "10.71.0.1",
    "--dns-zone",
    "app.internal",
  );
  ct = A.json("network", "attach", "app", "--name", "c-1", "--netns", c1.name, "--configure");
  const c2ep = A.json("network", "attach", "app", "--name", "c-2", "--netns", c2.name);
  // A lease: c-2 asks the network's DHCP server (busybox udhcpc, once).
  c2.execOk(["ip", "link", "set", c2ep.ifname, "up"]);
  c2.execOk(["udhcpc", "-i", c2ep.ifname, "-n", "-q", "-s", "/bin/true", "-t", "5", "-T", "1"]);
  A.json("dns", "record", "add", "app", "www", "A", "10.71.0.9");
  rule = A.json("firewall", "rule", "add", "app", "--priority", "10", "--proto", "icmp", "--action", "allow").id;
  // Traffic the rule counts, and drops: a spoofed source from c-1.
  c1.execOk(["ping", "-c", "3", "-i", "0.2", "-W", "1", "10.71.0.1"]);
  c1.execOk(["ip", "addr", "add", "10.71.0.77/32", "dev", ct.ifname]);
  c1.exec(["ping", "-c", "2", "-i", "0.2", "-W", "1", "-I", "10.71.0.77", "10.71.0.1"]);
  const job = {
    base: BASE,
    token: A.token,
    shots: SHOTS,
    network: "app",
    endpoint: "c-1",
    spoof: ["ip", "netns", "exec", c1.name, "ping", "-c", "2", "-i", "0.2", "-W", "1", "-I", "10.71.0.77", "10.71.0.1"],
  };
  const p = Bun.spawn(
    ["nsenter", `--net=${A.ns.path}`, BUN, join(ROOT, "test/helpers/web-browse.ts"), JSON.stringify(job)],
    {
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  writeFileSync(join(SHOTS, "result.json"), out);
  if (code !== 0) throw new Error(`the browser run failed (${code}): ${err.slice(-3000)}`);
  view = JSON.parse(out);
}, 120_000);

afterAll(() => {
  c1?.destroy();
  c2?.destroy();
  A?.destroy();
});

describe("the web view in chromium", () => {
  test("every answer has a strict CSP; the page, with no token, shows no data and says what it needs", () => {
    expect(view.headers["content-security-policy"]).toBe(
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    );
    expect(view.headers["x-content-type-options"]).toBe("nosniff");
    expect(view.headers["x-frame-options"]).toBe("DENY");
    expect(view.noToken).toContain("needs the API's bearer token");
    expect(view.noToken).toContain("/web/#token=");
  });

  test("the overview's counts and each network's fill are the API's", async () => {
    const st = await A.api("/v1/status");
    expect(view.cards).toMatchObject({
      networks: String(st.networks),
      endpoints: String(st.endpoints),
      health: st.health.status,
    });
    const nets = A.json("network", "list");
    expect(view.networks).toEqual(
      nets.map((n: any) => ({ name: n.name, fill: `${n.profiles.claimed}/${n.profiles.total}` })),
    );
    expect(view.plots).toEqual(["app"]);
  });

  test("a network's endpoints with their drops by reason, its rules' hits, leases and records are the API's", () => {
    const drops = (name: string) =>
      Object.entries(A.json("endpoint", "show", name).drops as Record<string, number>)
        .filter(([, n]) => n > 0)
        .map(([r, n]) => `${r} ${n}`)
        .join(", ") || "none";
    const byName = Object.fromEntries(view.endpoints.map((e: any) => [e.name, e]));
    expect(Object.keys(byName).sort()).toEqual(["c-1", "c-2"]);
    // The page was read before the live feed's spoof: two spoofed pings by then.
    expect(byName["c-1"].drops).toBe("ip4-spoof 2");
    expect(byName["c-2"].drops).toBe(drops("c-2"));
    expect(Number(byName["c-1"].sent.replace(/,/g, ""))).toBeGreaterThanOrEqual(5);
    const rules = A.json("firewall", "rule", "list", "app").rules;
    expect(view.rules.filter((r: any) => r.id)).toEqual(
      rules.map((r: any) => ({ id: String(r.id), hits: String(r.hits.packets) })),
    );
    // Stateful: the flow's first packet hits the rule, its tracked entry passes the rest.
    expect(rules.find((r: any) => r.id === rule).hits.packets).toBeGreaterThanOrEqual(1);
    const leases = A.json("dhcp", "leases").filter((l: any) => l.network === "app");
    expect(leases.length).toBe(1);
    expect(view.leases).toEqual(leases.map((l: any) => `app/${l.ip}`));
    expect(view.records).toEqual(A.json("dns", "record", "list", "app").map((r: any) => r.name));
    expect(view.endpointDrops).toEqual([["ip4-spoof", "2"]]);
  });

  test("a denied packet shows up in the live feed, named by endpoint, network and reason", () => {
    expect(view.live?.slice(1, 6)).toEqual(["drop", "c-1", "app", "ip4-spoof", "10.71.0.77 → 10.71.0.1"]);
    expect(A.json("endpoint", "show", "c-1").drops["ip4-spoof"]).toBe(4);
  });

  test("no script error on any page", () => {
    expect(view.pageErrors).toEqual([]);
  });
});

describe("the web listener", () => {
  test("takes nothing but GET and HEAD, and no data without the token", () => {
    const auth = ["-H", `Authorization: Bearer ${A.token}`];
    expect(curl([`${BASE}/web/`]).code).toBe(200);
    expect(curl([`${BASE}/web/history`]).code).toBe(401);
    expect(curl([`${BASE}/v1/networks`]).code).toBe(401);
    expect(curl([...auth, "-H", "Authorization: Bearer wrong-token-of-the-same-len", `${BASE}/v1/networks`]).code).toBe(
      401,
    );
    expect(curl([...auth, `${BASE}/v1/networks`]).code).toBe(200);
    expect(curl([...auth, `${BASE}/web/history`]).code).toBe(200);
    for (const m of ["POST", "PUT", "PATCH", "DELETE"])
      expect({ m, code: curl([...auth, "-X", m, `${BASE}/v1/networks/app`]).code }).toEqual({ m, code: 405 });
    expect(A.json("network", "list").map((n: any) => n.name)).toEqual(["app"]);
    expect(curl([...auth, `${BASE}/openapi.json`]).code).toBe(404);
  });

  test("the API socket serves the same page under /web/ (through an SSH tunnel), read-only too", async () => {
    const r = await fetch("http://stratum/web/", { unix: A.sock } as RequestInit);
    expect(r.status).toBe(200);
    expect(r.headers.get("content-security-policy")).toContain("default-src 'none'");
    expect(await r.text()).toContain('<script src="/web/app.js" defer></script>');
    const w = await fetch("http://stratum/web/history", { method: "POST", unix: A.sock } as RequestInit);
    expect(w.status).toBe(405);
  });
});
