/** The `dhcp` and `dns` commands and the DHCP flags of `network create/set`: help with
 * examples, argument mistakes caught before the agent is asked, and what they print against
 * the real API (the app served on a unix socket from an in-memory store, no kernel). */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApp } from "../../src/api/app";
import { leaseState, relativeTime } from "../../src/cli/dhcp-commands";
import { fqdn } from "../../src/cli/dns-commands";
import { formatDuration, parseDuration } from "../../src/cli/network-commands";
import type { PortDatapath } from "../../src/datapath/port-datapath";
import { StratumError } from "../../src/errors";
import type { Rtnl } from "../../src/netlink";
import { SqliteStore } from "../../src/store/sqlite";
import { FakeFwKernel } from "../helpers/fake-fw";
import { KernelFreeServices } from "../helpers/kernel-free";
import { BUN, ROOT, type RunResult, run } from "../helpers/netns";

const cli = (...args: string[]) => run([BUN, join(ROOT, "src/main.ts"), ...args]);

/** Every kernel call does nothing; every map is boundless (capacity checks pass). */
const noKernel = new Proxy(
  {},
  { get: (_t, k) => (k === "map" ? () => ({ info: { maxEntries: Number.MAX_SAFE_INTEGER } }) : () => {}) },
);

const dir = mkdtempSync(join(tmpdir(), "stm-cli-dns-"));
const sock = join(dir, "api.sock");
const store = new SqliteStore(":memory:");
let server: ReturnType<typeof Bun.serve> | undefined;

beforeAll(() => {
  const svc = new KernelFreeServices(store, noKernel as PortDatapath, noKernel as Rtnl, () => {}, new FakeFwKernel());
  server = Bun.serve({ unix: sock, fetch: createApp(svc).fetch });
});
afterAll(() => {
  server?.stop(true);
  rmSync(dir, { recursive: true, force: true });
});

/** The CLI against the served app: spawned without blocking, so this process can answer it. */
async function agentCli(...args: string[]): Promise<RunResult> {
  const p = Bun.spawn([BUN, join(ROOT, "src/main.ts"), ...args, "--api-socket", sock], {
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  return { code, stdout, stderr };
}

async function ok(...args: string[]): Promise<string> {
  const r = await agentCli(...args);
  expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 0, stderr: "" });
  return r.stdout;
}

test("durations: seconds or units; formatted back in the largest units", () => {
  expect(["3600", "30s", "10m", "12h", "1d", "1h30m", " 2D "].map((d) => parseDuration(d, "--x"))).toEqual([
    3600, 30, 600, 43_200, 86_400, 5400, 172_800,
  ]);
  for (const bad of ["", "1.5h", "h", "10x", "1h 30m", "-5", "1w"])
    expect(() => parseDuration(bad, "--dhcp-lease-time")).toThrow(
      new StratumError(
        "INVALID",
        `--dhcp-lease-time must be seconds or a duration like 30s, 10m, 12h or 1d, not "${bad}"`,
      ),
    );
  expect([3600, 5400, 90, 86_400, 90_061, 0].map(formatDuration)).toEqual([
    "1h",
    "1h30m",
    "1m30s",
    "1d",
    "1d1h1m1s",
    "0s",
  ]);
});

test("lease states and expiry times as the table shows them", () => {
  expect(leaseState({ state: "bound", active: true })).toBe("bound");
  expect(leaseState({ state: "bound", active: false })).toBe("expired");
  expect(leaseState({ state: "released", active: false })).toBe("released");
  expect(leaseState({ state: "declined", active: false })).toBe("declined");
  const now = 1_700_000_000_000;
  expect(
    [
      59 * 60_000 + 30_000,
      -180_000,
      45_000,
      0,
      3 * 3_600_000 + 20 * 60_000,
      -2 * 86_400_000,
      86_400_000 + 7_200_000,
    ].map((d) => relativeTime(now + d, now)),
  ).toEqual(["in 59m", "3m ago", "in 45s", "now", "in 3h20m", "2d ago", "in 1d2h"]);
  expect(fqdn("@", "app-net.internal")).toBe("app-net.internal");
  expect(fqdn("_http._tcp", "app-net.internal")).toBe("_http._tcp.app-net.internal");
});

test("--help of the dhcp and dns commands and the DHCP flags shows flags and examples", () => {
  const top = cli("--help");
  expect(top.stdout).toContain("dhcp");
  expect(top.stdout).toContain("dns");
  const cases: Array<[string[], string[]]> = [
    [
      ["dhcp", "leases"],
      ["--network", "-o", "EXAMPLES", "cenvero-str-ctl dhcp leases --network app-net"],
    ],
    [
      ["dns", "record", "add"],
      ["--ttl", "EXAMPLES", 'cenvero-str-ctl dns record add app-net _http._tcp SRV "10 5 8080 web-1"'],
    ],
    [
      ["dns", "record", "del"],
      ["--id", "EXAMPLES", "cenvero-str-ctl dns record del app-net db A 10.20.0.50"],
    ],
    [
      ["dns", "record", "list"],
      ["EXAMPLES", "cenvero-str-ctl dns record list app-net"],
    ],
    [
      ["network", "create"],
      ["--dhcp-lease-time", "--dhcp-route", "--dhcp-option", "EXAMPLES", "--dhcp-option 66=text:tftp.lab"],
    ],
    [
      ["network", "set"],
      [
        "--dhcp-lease-time",
        "--dhcp-route",
        "--dhcp-option",
        "--clear-dhcp-routes",
        "--clear-dhcp-options",
        "EXAMPLES",
        "cenvero-str-ctl network set app-net --clear-dhcp-routes --clear-dhcp-options",
      ],
    ],
  ];
  for (const [args, want] of cases) {
    const r = cli(...args, "--help");
    expect({ args, code: r.code }).toEqual({ args, code: 0 });
    for (const w of want) expect({ args, has: w, found: r.stdout.includes(w) }).toEqual({ args, has: w, found: true });
  }
  const group = cli("dns", "record");
  expect(group.code).toBe(2);
  expect(group.stdout).toContain("add");
  expect(group.stderr).toBe('cenvero-str-ctl: "record" needs a sub-command\n');
});

test("argument mistakes are caught before the agent is asked: one line, exit 2", () => {
  const nosock = ["--api-socket", "/nonexistent/api.sock"];
  for (const [args, msg] of [
    [["dns", "record", "add"], "missing NETWORK"],
    [["dns", "record", "add", "app-net", "db"], "missing TYPE"],
    [["dns", "record", "add", "app-net", "db", "A"], "missing VALUE"],
    [
      ["dns", "record", "add", "app-net", "db", "A", "10.20.0.5", "--ttl", "5m"],
      '--ttl must be a positive integer, not "5m"',
    ],
    [["dns", "record", "del"], "missing NETWORK"],
    [["dns", "record", "del", "app-net"], "give the record: --id N, or NAME [TYPE [VALUE]]"],
    [
      ["dns", "record", "del", "app-net", "db", "--id", "3"],
      'give --id or NAME [TYPE [VALUE]], not both (unexpected "db")',
    ],
    [["dns", "record", "del", "app-net", "--id", "x"], '--id must be a positive integer, not "x"'],
    [["dns", "record", "list", "app-net", "db-net"], 'unexpected argument "db-net"'],
    [["dhcp", "leases", "app-net"], 'unexpected argument "app-net" (select a network with --network NAME)'],
    [
      [
        "network",
        "create",
        "--name",
        "n",
        "--cidr",
        "10.0.0.0/24",
        "--gateway",
        "10.0.0.1",
        "--dhcp-lease-time",
        "soon",
      ],
      '--dhcp-lease-time must be seconds or a duration like 30s, 10m, 12h or 1d, not "soon"',
    ],
    [["network", "set", "app-net", "--dhcp-lease-time", "1.5h"], "--dhcp-lease-time must be seconds"],
    [["network", "set", "app-net"], "nothing to change: give --mtu"],
  ] as Array<[string[], string]>) {
    const r = cli(...args, ...nosock);
    expect({ args, code: r.code }).toEqual({ args, code: 2 });
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toStartWith(`cenvero-str-ctl: ${msg}`);
  }
  // Without an agent the commands that pass their checks say so.
  const r = cli("dhcp", "leases", ...nosock);
  expect(r.code).toBe(7);
  expect(r.stderr).toContain("cannot reach the agent at /nonexistent/api.sock");
});

test("network create/set with DHCP flags, and show", async () => {
  let out = await ok(
    "network",
    "create",
    "--name",
    "app-net",
    "--cidr",
    "10.20.0.0/24",
    "--gateway",
    "10.20.0.1",
    "--dhcp-lease-time",
    "12h",
    "--dhcp-route",
    "192.168.50.0/24 via 10.20.0.254",
    "--dhcp-route=10.9.0.0/16 via 10.20.0.253",
    "--dhcp-option",
    "42=ips:10.20.0.1,10.20.0.2",
    "--dhcp-option",
    "66=text:tftp.lab",
  );
  expect(out).toStartWith("created network app-net (10.20.0.0/24");
  out = await ok("network", "show", "app-net");
  expect(out).toContain("dhcp lease time: 12h (43200 s)\n");
  expect(out).toMatch(/dhcp routes: +192\.168\.50\.0\/24 via 10\.20\.0\.254\n +10\.9\.0\.0\/16 via 10\.20\.0\.253\n/);
  expect(out).toMatch(/dhcp options: +42=ips:10\.20\.0\.1,10\.20\.0\.2\n +66=text:tftp\.lab\n/);
  // The value column lines up under the first item.
  const lines = out.split("\n");
  const first = lines.find((l) => l.startsWith("dhcp routes:")) as string;
  const next = lines[lines.indexOf(first) + 1] as string;
  expect(next.indexOf("10.9")).toBe(first.indexOf("192.168"));

  const n = JSON.parse(
    await ok("network", "set", "app-net", "--dhcp-lease-time", "600", "--clear-dhcp-routes", "-o", "json"),
  );
  expect(n).toMatchObject({
    dhcpLeaseTime: 600,
    dhcpRoutes: [],
    dhcpOptions: ["42=ips:10.20.0.1,10.20.0.2", "66=text:tftp.lab"],
  });
  out = await ok("network", "set", "app-net", "--dhcp-option", "66=text:boot.lab");
  expect(out).toMatch(/dhcp routes: +-\n/);
  expect(out).toMatch(/dhcp options: +66=text:boot\.lab\n/);
  out = await ok("network", "set", "app-net", "--clear-dhcp-options");
  expect(out).toMatch(/dhcp options: +-\n/);

  const bad = await agentCli("network", "set", "app-net", "--dhcp-option", "3=ip:10.20.0.9");
  expect(bad.code).toBe(2);
  expect(bad.stderr).toStartWith("cenvero-str-ctl: DHCP option 3 is set by the server from the network");
  const short = await agentCli("network", "set", "app-net", "--dhcp-lease-time", "5s");
  expect(short.code).toBe(2);
  expect(short.stderr).toStartWith("cenvero-str-ctl: DHCP lease time 5 s is outside ");
});

test("dns record add, list, del against the API", async () => {
  await ok("network", "create", "--name", "db-net", "--cidr", "10.30.0.0/24", "--gateway", "10.30.0.1");
  let out = await ok("dns", "record", "add", "db-net", "db", "A", "10.30.0.50", "--ttl", "60");
  expect(out).toMatch(/^added record \d+ to db-net: db\.db-net\.internal A 10\.30\.0\.50 \(ttl 60\)\n$/);
  // SRV as one argument or as four.
  out = await ok("dns", "record", "add", "db-net", "_pg._tcp", "SRV", "10 5 5432 db");
  expect(out).toContain("to db-net: _pg._tcp.db-net.internal SRV 10 5 5432 db");
  out = await ok("dns", "record", "add", "db-net", "_pg2._tcp", "SRV", "20", "5", "5433", "db");
  expect(out).toContain("to db-net: _pg2._tcp.db-net.internal SRV 20 5 5433 db");
  out = await ok("dns", "record", "add", "db-net", "@", "MX", "10", "mail");
  expect(out).toContain("to db-net: db-net.internal MX 10 mail");

  const json = JSON.parse(await ok("dns", "record", "list", "db-net", "-o", "json")) as Array<Record<string, unknown>>;
  expect(json.map((r) => [r.network, r.name, r.type])).toEqual([
    ["db-net", "@", "MX"],
    ["db-net", "_pg._tcp", "SRV"],
    ["db-net", "_pg2._tcp", "SRV"],
    ["db-net", "db", "A"],
  ]);
  out = await ok("dns", "record", "list");
  const table = out.trimEnd().split("\n");
  expect(table[0]?.split(/\s+/)).toEqual(["ID", "NETWORK", "NAME", "TYPE", "TTL", "VALUE"]);
  expect(table.some((l) => /^\d+\s+db-net\s+db\.db-net\.internal\s+A\s+60\s+10\.30\.0\.50$/.test(l))).toBe(true);
  expect(table.some((l) => /^\d+\s+db-net\s+db-net\.internal\s+MX\s+\d+\s+10 mail/.test(l))).toBe(true);

  const dbId = json.find((r) => r.name === "db")?.id as number;
  out = await ok("dns", "record", "del", "db-net", "--id", String(dbId));
  expect(out).toBe(`deleted record ${dbId} of db-net: db.db-net.internal A 10.30.0.50 (ttl 60)\n`);
  out = await ok("dns", "record", "del", "db-net", "_pg2._tcp", "SRV", "20", "5", "5433", "db.db-net.internal");
  expect(out).toStartWith("deleted record ");
  out = await ok("dns", "record", "add", "db-net", "www", "A", "10.30.0.60");
  out = await ok("dns", "record", "add", "db-net", "www", "A", "10.30.0.61");
  out = await ok("dns", "record", "del", "db-net", "www");
  expect(out).toMatch(/^deleted 2 records of db-net: \d+ www\.db-net\.internal A 10\.30\.0\.60 \(ttl \d+\), \d+ www/);
  const gone = JSON.parse(await ok("dns", "record", "del", "db-net", "@", "MX", "-o", "json"));
  expect(gone).toMatchObject({ network: "db-net", deleted: [{ name: "@", type: "MX" }] });

  const missing = await agentCli("dns", "record", "del", "db-net", "--id", String(dbId));
  expect(missing.code).toBe(3);
  expect(missing.stderr).toBe("cenvero-str-ctl: no DNS record in network db-net matches\n");
  const nonet = await agentCli("dns", "record", "list", "nope");
  expect(nonet.code).toBe(3);
  expect(nonet.stderr).toBe("cenvero-str-ctl: network nope does not exist\n");
  const badRec = await agentCli("dns", "record", "add", "db-net", "db", "A", "not-an-address");
  expect(badRec.code).toBe(2);
  expect(badRec.stderr).toContain("not-an-address");
}, 30_000);

test("dhcp leases: table and json", async () => {
  await ok("network", "create", "--name", "lease-net", "--cidr", "10.40.0.0/24", "--gateway", "10.40.0.1");
  const now = Date.now();
  const base = { network: "lease-net", updatedAt: now } as const;
  store.putLease({
    ...base,
    mac: "02:00:00:00:00:02",
    family: 4,
    ip: "10.40.0.2",
    endpoint: "web-1",
    hostname: "web1",
    state: "bound",
    expiresAt: now + 3_570_000,
  });
  store.putLease({
    ...base,
    mac: "02:00:00:00:00:03",
    family: 4,
    ip: "10.40.0.3",
    state: "bound",
    expiresAt: now - 200_000,
  });
  store.putLease({
    ...base,
    mac: "02:00:00:00:00:04",
    family: 6,
    ip: "fd00:40::4",
    state: "released",
    expiresAt: now + 60_000,
  });
  const out = await ok("dhcp", "leases", "--network", "lease-net");
  const rows = out
    .trimEnd()
    .split("\n")
    .map((l) => l.split(/\s{2,}/));
  expect(rows).toEqual([
    ["NETWORK", "ENDPOINT", "MAC", "FAMILY", "ADDRESS", "HOSTNAME", "STATE", "EXPIRES"],
    ["lease-net", "web-1", "02:00:00:00:00:02", "v4", "10.40.0.2", "web1", "bound", "in 59m"],
    ["lease-net", "-", "02:00:00:00:00:03", "v4", "10.40.0.3", "-", "expired", "3m ago"],
    [
      "lease-net",
      "-",
      "02:00:00:00:00:04",
      "v6",
      "fd00:40::4",
      "-",
      "released",
      expect.stringMatching(/^in (\d+s|1m)$/),
    ],
  ]);
  const json = JSON.parse(await ok("dhcp", "leases", "--network", "lease-net", "-o", "json"));
  expect(json).toHaveLength(3);
  expect(json[0]).toEqual({
    network: "lease-net",
    mac: "02:00:00:00:00:02",
    family: 4,
    ip: "10.40.0.2",
    endpoint: "web-1",
    hostname: "web1",
    state: "bound",
    expiresAt: new Date(now + 3_570_000).toISOString(),
    updatedAt: new Date(now).toISOString(),
    active: true,
  });
  expect(await ok("dhcp", "leases", "--network", "db-net")).toBe("no leases in db-net\n");
  const nonet = await agentCli("dhcp", "leases", "--network", "nope");
  expect(nonet.code).toBe(3);
  expect(nonet.stderr).toBe("cenvero-str-ctl: network nope does not exist\n");
});
