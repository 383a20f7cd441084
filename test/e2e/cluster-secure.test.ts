/** A cluster node reaching etcd over TLS (--etcd-ca, --etcd-cert, --etcd-key) and as an etcd
 * user (--etcd-user, --etcd-password-file): the agent joins and writes; without the CA, with
 * a wrong password, or with an unreadable password file it refuses to start, in one line,
 * and changes nothing. etcd runs inside the agent's namespace, on its loopback. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { TestAgent } from "../helpers/agent";
import { EtcdServer } from "../helpers/etcd-server";
import { run } from "../helpers/netns";
import { TestPki } from "../helpers/pki";

const base = (url: string) => ["--cluster", url, "--node-name", "n1", "--node-address", "10.99.0.1"];

/** The agent's start that is expected to fail: its exit code and its last line. */
async function refused(a: TestAgent, args: string[]): Promise<{ code: number | null; line: string }> {
  await expect(a.start(args)).rejects.toThrow("agent did not come up");
  const code = (await a.proc?.exited) ?? null;
  const line = a.logText.trim().split("\n").at(-1) ?? "";
  return { code, line };
}

describe("over TLS", () => {
  let a: TestAgent;
  let e: EtcdServer;
  let pki: TestPki;
  beforeAll(async () => {
    a = new TestAgent("sec-tls");
    pki = new TestPki();
    e = await EtcdServer.start({ netns: a.ns.name, host: "127.0.0.1", tls: { ...pki.server, ca: pki.ca } });
  });
  afterAll(() => {
    a?.destroy();
    e?.destroy();
    pki?.destroy();
  });

  test("the agent joins with the CA and its certificate, and refuses to start without the CA", async () => {
    const args = base(e.url);
    const noCa = await refused(a, [...args, "--etcd-cert", pki.client.cert, "--etcd-key", pki.client.key]);
    expect(noCa.code).toBe(12);
    expect(noCa.line).toContain("give --etcd-ca the CA that signed it");
    await a.start([...args, "--etcd-ca", pki.ca, "--etcd-cert", pki.client.cert, "--etcd-key", pki.client.key]);
    // The join's listing went over etcd's gRPC (HTTP/2 over TLS), not the JSON gateway.
    expect(a.logText).toMatch(/synced \d+ key\(s\) .*over gRPC;/);
    expect(a.ctl("network", "create", "--name", "app", "--cidr", "10.70.0.0/24", "--gateway", "10.70.0.1").code).toBe(
      0,
    );
    const st = a.json<any>("cluster", "status");
    expect(st.etcd.up).toBe(true);
    expect(st.node).toBe("n1");
    const r = run([
      "ip",
      "netns",
      "exec",
      a.ns.name,
      "etcdctl",
      "--endpoints",
      e.url,
      "--cacert",
      pki.ca,
      "--cert",
      pki.client.cert,
      "--key",
      pki.client.key,
      "get",
      "--print-value-only",
      "/stratum/v1/networks/app",
    ]);
    expect(JSON.parse(r.stdout).spec.cidr).toBe("10.70.0.0/24");
    // A certificate without its key is refused before anything else.
    await a.kill("SIGTERM");
    const half = await refused(a, [...args, "--etcd-ca", pki.ca, "--etcd-cert", pki.client.cert]);
    expect(half.code).toBe(2);
    expect(half.line).toContain("--etcd-cert and --etcd-key go together");
  }, 60_000);
});

describe("as an etcd user", () => {
  let a: TestAgent;
  let e: EtcdServer;
  beforeAll(async () => {
    a = new TestAgent("sec-auth");
    e = await EtcdServer.start({ netns: a.ns.name, host: "127.0.0.1" });
    const ctl = (...args: string[]) => {
      const r = run(["ip", "netns", "exec", a.ns.name, "etcdctl", "--endpoints", e.url, ...args]);
      if (r.code !== 0) throw new Error(`etcdctl ${args.join(" ")}: ${r.stderr}`);
    };
    ctl("user", "add", "root:root-pw");
    ctl("user", "add", "stratum:s3cret");
    ctl("role", "add", "stratum");
    ctl("role", "grant-permission", "stratum", "--prefix=true", "readwrite", "/stratum/");
    ctl("user", "grant-role", "stratum", "stratum");
    ctl("auth", "enable");
  });
  afterAll(() => {
    a?.destroy();
    e?.destroy();
  });

  test("the agent joins with its password file; a wrong password or an unreadable file stops it in one line", async () => {
    const args = base(e.url);
    const good = join(a.dir, "etcd-password");
    const bad = join(a.dir, "etcd-password-wrong");
    writeFileSync(good, "s3cret\n", { mode: 0o600 });
    writeFileSync(bad, "nope\n", { mode: 0o600 });
    const wrong = await refused(a, [...args, "--etcd-user", "stratum", "--etcd-password-file", bad]);
    expect(wrong.line).toContain("authentication failed");
    const missing = await refused(a, [...args, "--etcd-user", "stratum", "--etcd-password-file", join(a.dir, "none")]);
    expect(missing.line).toContain("--etcd-password-file");
    expect(missing.line).toContain(": no such file: give --etcd-password-file a readable file");
    await a.start([...args, "--etcd-user", "stratum", "--etcd-password-file", good]);
    expect(a.logText).toMatch(/synced \d+ key\(s\) .*over gRPC;/); // with the user's token
    expect(a.ctl("network", "create", "--name", "app", "--cidr", "10.71.0.0/24", "--gateway", "10.71.0.1").code).toBe(
      0,
    );
    expect(a.json<any[]>("node", "list").map((n) => [n.name, n.state])).toEqual([["n1", "ready"]]);
  }, 60_000);
});
