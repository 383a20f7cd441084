/** The test etcd (test/helpers/etcd-server.ts): a real etcd-server that answers etcd's v3
 * JSON gateway, keeps its data across a restart and a crash, runs inside a network namespace
 * when asked, and leaves nothing behind. */
import { afterAll, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { EtcdServer } from "../helpers/etcd-server";
import { Netns, run } from "../helpers/netns";

const b64 = (s: string) => Buffer.from(s).toString("base64");
const made: Array<{ destroy(): void }> = [];
afterAll(() => {
  for (const m of made.reverse()) m.destroy();
});

async function put(url: string, key: string, value: string): Promise<string> {
  const r = await fetch(`${url}/v3/kv/put`, {
    method: "POST",
    body: JSON.stringify({ key: b64(key), value: b64(value) }),
  });
  expect(r.status).toBe(200);
  return ((await r.json()) as { header: { revision: string } }).header.revision;
}

async function get(url: string, key: string): Promise<string | undefined> {
  const r = await fetch(`${url}/v3/kv/range`, { method: "POST", body: JSON.stringify({ key: b64(key) }) });
  const j = (await r.json()) as { kvs?: Array<{ value: string }> };
  return j.kvs?.[0] ? Buffer.from(j.kvs[0].value, "base64").toString() : undefined;
}

test("answers the v3 JSON gateway; a restart and a crash keep the data; destroy removes it", async () => {
  const e = await EtcdServer.start();
  made.push(e);
  const rev = Number(await put(e.url, "stm/a", "one"));
  expect(rev).toBeGreaterThan(1);
  expect(await get(e.url, "stm/a")).toBe("one");
  const pid = e.pid as number;
  await e.restart();
  expect(e.pid).not.toBe(pid);
  expect(await get(e.url, "stm/a")).toBe("one");
  await e.stop("SIGKILL");
  expect(await e.healthy()).toBe(false);
  await e.resume();
  expect(Number(await put(e.url, "stm/b", "two"))).toBe(rev + 1);
  const dir = e.dataDir;
  e.destroy();
  expect(existsSync(dir)).toBe(false);
  expect(run(["kill", "-0", String(pid)]).code).not.toBe(0);
}, 60_000);

test("inside a network namespace, on an address of it", async () => {
  const ns = new Netns("etcd");
  made.push(ns);
  ns.execOk(["ip", "addr", "add", "127.0.0.9/8", "dev", "lo"]);
  const e = await EtcdServer.start({ netns: ns.name, host: "127.0.0.9" });
  made.push(e);
  expect(e.url).toBe("http://127.0.0.9:2379");
  const r = ns.execOk([
    "curl",
    "-sf",
    "-X",
    "POST",
    "-d",
    JSON.stringify({ key: b64("k"), value: b64("v") }),
    `${e.url}/v3/kv/put`,
  ]);
  expect(JSON.parse(r).header.revision).toBe("2");
  // Not reachable from this namespace: it listens inside its own.
  expect(await e.healthy()).toBe(true);
  expect(run(["curl", "-sf", "-m", "1", `${e.url}/health`]).code).not.toBe(0);
}, 60_000);
