/** The agent's logs end to end. A DHCP server that cannot bind (UDP 67 taken in the agent's
 * namespace before it starts) logs a warning from the addressing logger, and that warning is
 * counted like the agent's own: in status (its count and the recent problems) and in
 * stratum_agent_log_messages_total. The log file (stderr not a terminal) holds one line per
 * message, each with a timestamp and a level, no glyph-only levels, no blank lines; started
 * with JOURNAL_STREAM naming that file, the agent writes journald's priority prefixes instead
 * of timestamps. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { statSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { TestAgent } from "../helpers/agent";
import { metricValue, parseExposition } from "../helpers/prom";

let A: TestAgent;
let holder: Subprocess | undefined;

const LEVEL_LINE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (FATAL|ERROR|WARN |INFO |DEBUG) \S/;

async function metrics() {
  const res = await fetch("http://stratum/metrics", { unix: A.sock } as RequestInit);
  return parseExposition(await res.text());
}

beforeAll(async () => {
  A = new TestAgent("logs");
  // Another DHCP server, as it were: UDP 67 bound in the agent's namespace before it starts.
  holder = Bun.spawn(
    [
      "ip",
      "netns",
      "exec",
      A.ns.name,
      "python3",
      "-c",
      'import socket,sys,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(("0.0.0.0",67))\nprint("bound",flush=True)\ntime.sleep(3600)',
    ],
    { stdout: "pipe", stderr: "inherit" },
  );
  const reader = (holder.stdout as ReadableStream<Uint8Array>).getReader();
  const first = await reader.read();
  reader.releaseLock();
  if (!new TextDecoder().decode(first.value).includes("bound")) throw new Error("could not bind UDP 67 for the test");
  await A.start();
}, 60_000);

afterAll(async () => {
  holder?.kill("SIGKILL");
  await holder?.exited;
  A?.destroy();
});

test("a DHCP server that cannot bind: its warning is counted in status and /metrics", async () => {
  const st = A.json("status");
  expect(st.services.find((s: any) => s.name === "dhcp")).toMatchObject({
    state: "down",
    problem: expect.stringContaining("bind 0.0.0.0:67"),
  });
  expect(st.health.warnings).toContainEqual(expect.stringContaining("dhcp is not serving"));
  const warned = st.recentErrors.filter((p: any) => p.level === "warn" && p.message.includes("dhcp: not serving"));
  expect(warned).toEqual([expect.objectContaining({ tag: "addressing" })]);
  expect(st.logTotals.warn).toBeGreaterThanOrEqual(1);
  expect(st.logTotals.warn).toBe(st.recentErrors.filter((p: any) => p.level === "warn").length);
  const f = await metrics();
  expect(metricValue(f, "stratum_agent_log_messages_total", { level: "warn" })).toBe(st.logTotals.warn);
  expect(metricValue(f, "stratum_service_up", { service: "dhcp" })).toBe(0);
  const line = A.logText.split("\n").find((l) => l.includes("dhcp: not serving"));
  expect(line).toMatch(/^\S+Z WARN {2}addressing: dhcp: not serving: DHCP server: bind 0\.0\.0\.0:67: /);
});

test("off a terminal: one line per message, each with a timestamp and a level; no glyphs, no blank lines", () => {
  const text = A.logText;
  expect(text.length).toBeGreaterThan(0);
  expect(text.endsWith("\n")).toBe(true);
  const lines = text.slice(0, -1).split("\n");
  expect(lines.filter((l) => !LEVEL_LINE.test(l))).toEqual([]);
  expect(text).not.toMatch(/[✔✖ℹ⚠◐]/);
  expect(lines.some((l) => / INFO {2}agent: ready in \d+ ms/.test(l))).toBe(true);
});

test("with JOURNAL_STREAM naming stderr: journald's priority prefixes, no timestamps", async () => {
  await A.kill("SIGTERM");
  const file = join(A.dir, "agent.log");
  const from = A.logText.length;
  const st = statSync(file, { bigint: true });
  await A.start([], { JOURNAL_STREAM: `${st.dev}:${st.ino}` });
  const lines = A.logText.slice(from).trimEnd().split("\n");
  expect(lines.length).toBeGreaterThanOrEqual(3);
  expect(lines.filter((l) => !/^<[2-7]>(FATAL|ERROR|WARN |INFO |DEBUG) \S/.test(l))).toEqual([]);
  expect(lines).toContainEqual(expect.stringMatching(/^<4>WARN {2}addressing: dhcp: not serving: /));
  expect(lines).toContainEqual(expect.stringMatching(/^<6>INFO {2}agent: ready in \d+ ms/));
  // Another stream's JOURNAL_STREAM (a unit's child writing elsewhere) is not the journal.
  await A.kill("SIGTERM");
  const from2 = A.logText.length;
  await A.start([], { JOURNAL_STREAM: `${st.dev}:${st.ino + 1n}` });
  const plain = A.logText.slice(from2).trimEnd().split("\n");
  expect(plain.filter((l) => !LEVEL_LINE.test(l))).toEqual([]);
}, 30_000);
