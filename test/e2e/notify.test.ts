/** systemd's Type=notify, with a stand-in for systemd (test/helpers/notify-listen.py, a unix
 * datagram socket of its own, not Stratum's code): a real agent started with NOTIFY_SOCKET
 * sends STATUS lines while it starts, READY=1 only once its first reconcile is done and its
 * API answers (the listener asks the API the moment READY=1 arrives), and STOPPING=1 on
 * SIGTERM. Both kinds of address: a path, and an abstract name ('@…', which belongs to a
 * network namespace: that listener runs in the agent's). */
import { afterEach, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { TestAgent } from "../helpers/agent";
import { BINARY, ROOT, run, uniqueName } from "../helpers/netns";

const LISTENER = join(ROOT, "test/helpers/notify-listen.py");

let A: TestAgent | undefined;
let listener: Subprocess<"ignore", "pipe", "pipe"> | undefined;

afterEach(() => {
  listener?.kill("SIGKILL");
  listener = undefined;
  A?.destroy();
  A = undefined;
});

interface Received {
  msg?: string[];
  api?: string;
  bound?: boolean;
  timeout?: boolean;
}

interface Listener {
  /** Resolves once the listener has recorded READY=1 (and its API check): only then may a
   * test stop the agent, or the check would race the shutdown. */
  ready(): Promise<void>;
  /** Everything the listener recorded, once it has exited. */
  received(): Promise<Received[]>;
}

/** Starts the listener (inside `netns` when given) and waits until it is bound. */
async function listen(address: string, api: string, netns?: string): Promise<Listener> {
  const cmd = ["python3", LISTENER, address, api, "30"];
  const proc = Bun.spawn(netns ? ["nsenter", `--net=${netns}`, ...cmd] : cmd, {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  listener = proc;
  const reader = proc.stdout.getReader();
  let text = "";
  let grew = () => {};
  const pump = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
      grew();
    }
  })();
  const until = async (pred: () => boolean, what: string): Promise<void> => {
    const deadline = Date.now() + 30_000;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`notify listener: no ${what} in ${JSON.stringify(text)}`);
      await Promise.race([new Promise<void>((r) => (grew = r)), pump, Bun.sleep(100)]);
      if (proc.exitCode !== null && !pred()) {
        throw new Error(`notify listener exited: ${await new Response(proc.stderr).text()} ${text}`);
      }
    }
  };
  await until(() => text.includes("\n"), "bound line");
  expect(JSON.parse(text.split("\n")[0] as string)).toEqual({ bound: true });
  const records = () =>
    text
      .trim()
      .split("\n")
      .slice(1)
      .map((l) => JSON.parse(l) as Received);
  return {
    ready: () => until(() => /"READY=1"/.test(text), "READY=1"),
    received: async () => {
      await pump;
      await proc.exited;
      return records();
    },
  };
}

function checkSequence(got: Received[], sock: string): void {
  const msgs = got.map((r) => r.msg ?? []);
  const ready = got.findIndex((r) => r.msg?.includes("READY=1"));
  expect(ready, JSON.stringify(got)).toBeGreaterThan(0);
  // While it starts: what it is doing, never READY.
  const before = msgs.slice(0, ready).flat();
  expect(before.every((f) => f.startsWith("STATUS="))).toBe(true);
  expect(before).toEqual(
    expect.arrayContaining([
      expect.stringMatching(/^STATUS=opening the state database /),
      expect.stringMatching(/^STATUS=loading the datapath /),
      "STATUS=reconciling the kernel to the store",
    ]),
  );
  // READY=1: the API answered the listener at that very moment.
  expect(got[ready]?.api).toBe("HTTP/1.1 200 OK");
  expect(got[ready]?.msg).toEqual(["READY=1", `STATUS=ready: 0 network(s), 0 endpoint(s); API on ${sock}`]);
  // Exactly once, and STOPPING=1 last (SIGTERM).
  expect(msgs.filter((m) => m.includes("READY=1"))).toHaveLength(1);
  expect(msgs.at(-1)).toEqual(["STOPPING=1", "STATUS=stopping: bridges, ports and programs stay in place"]);
}

test("NOTIFY_SOCKET as a path: STATUS while starting, READY=1 once the API answers, STOPPING=1 on SIGTERM", async () => {
  A = new TestAgent("ntf");
  const address = join(A.dir, "notify.sock");
  const l = await listen(address, A.sock);
  await A.start([], { NOTIFY_SOCKET: address });
  await l.ready();
  await A.kill("SIGTERM");
  checkSequence(await l.received(), A.sock);
}, 60_000);

test("NOTIFY_SOCKET as an abstract name ('@…') in the agent's network namespace", async () => {
  A = new TestAgent("ntfa");
  const address = `@stm-notify-${uniqueName("ntf")}`;
  const l = await listen(address, A.sock, A.ns.path);
  await A.start([], { NOTIFY_SOCKET: address });
  await l.ready();
  await A.kill("SIGTERM");
  checkSequence(await l.received(), A.sock);
}, 60_000);

test("a NOTIFY_SOCKET it cannot use is a warning, not a failure to start", async () => {
  A = new TestAgent("ntfb");
  await A.start([], { NOTIFY_SOCKET: "vsock:2:1234" });
  expect(A.json("network", "list")).toEqual([]);
  expect(A.logText).toContain("cannot tell systemd READY=1");
  expect(A.logText).toContain("NOTIFY_SOCKET=vsock:2:1234 is neither a path nor an abstract name");
}, 60_000);

test("a bad --api-listen is refused before anything changes, and the agent exits", async () => {
  A = new TestAgent("ntfc");
  const r = run([
    "timeout",
    "30",
    "nsenter",
    `--net=${A.ns.path}`,
    BINARY,
    "agent",
    ...A.localFlags,
    "--api-socket",
    A.sock,
    "--api-listen",
    "127.0.0.1:7446",
  ]);
  expect(r.code).toBe(2);
  expect(r.stderr.split("\n").filter((l) => l.startsWith("cenvero-str-ctl: "))).toEqual([
    "cenvero-str-ctl: --api-listen needs --api-token-file",
  ]);
  // Refused before the bridges, the pins or the store.
  expect(A.ns.ipJson(["link", "show"]).map((l: any) => l.ifname)).toEqual(["lo"]);
  expect(readdirSync(A.pins.path)).toEqual([]);
  expect(existsSync(join(A.dir, "state", "stratum.db"))).toBe(false);
}, 60_000);

test("a start that fails once its listeners are open exits (no READY=1) instead of hanging", async () => {
  A = new TestAgent("ntfd");
  // The TCP port is taken in the agent's namespace: its last step, the TCP listener, fails.
  const holder = Bun.spawn(
    [
      "nsenter",
      `--net=${A.ns.path}`,
      "python3",
      "-c",
      "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 7446)); s.listen(); print('bound', flush=True); time.sleep(60)",
    ],
    { stdout: "pipe", stderr: "pipe" },
  );
  try {
    await holder.stdout.getReader().read(); // "bound"
    const address = join(A.dir, "notify.sock");
    const l = await listen(address, A.sock);
    const r = run(
      [
        "timeout",
        "30",
        "nsenter",
        `--net=${A.ns.path}`,
        BINARY,
        "agent",
        ...A.localFlags,
        "--api-socket",
        A.sock,
        "--api-listen",
        "127.0.0.1:7446",
        "--api-token-file",
        join(A.dir, "token"),
      ],
      { env: { NOTIFY_SOCKET: address } },
    );
    expect(r.code).not.toBe(0);
    expect(r.code).not.toBe(124); // exited, not killed by the timeout
    expect(r.stderr).toContain("7446");
    listener?.kill("SIGTERM");
    const got = await l.received();
    expect(got.some((g) => g.msg?.includes("READY=1"))).toBe(false);
    expect(got.some((g) => g.msg?.some((f) => f.startsWith("STATUS=reconciling")))).toBe(true);
  } finally {
    holder.kill("SIGKILL");
  }
}, 60_000);
