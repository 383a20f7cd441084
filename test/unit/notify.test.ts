/** sd_notify without libsystemd: the socket addresses it writes (a path, NUL-terminated; an
 * abstract name after a NUL, its length exact) and what a datagram socket bound by another
 * program (python3) receives from Notifier; without NOTIFY_SOCKET it does nothing. */
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Notifier } from "../../src/sys/notify";
import { unixAddress } from "../../src/sys/os";

test("unix socket addresses: a path ends with a NUL, an abstract name starts with one", () => {
  expect([...unixAddress("/run/x")]).toEqual([1, 0, ...Buffer.from("/run/x"), 0]);
  expect([...unixAddress("@stm")]).toEqual([1, 0, 0, ...Buffer.from("stm")]);
  expect(() => unixAddress(`/${"x".repeat(107)}`)).toThrow("must be 1 to 107 bytes");
  expect(() => unixAddress("@")).toThrow();
});

test("without NOTIFY_SOCKET nothing is sent and nothing fails", () => {
  const n = new Notifier(undefined);
  expect(n.enabled).toBe(false);
  n.notify("READY=1");
  expect(new Notifier("").enabled).toBe(false);
});

test("fields are checked: one per line, KEY=value", () => {
  const n = new Notifier("/nonexistent/notify.sock");
  expect(() => n.notify("READY=1\nSTATUS=x")).toThrow("not a notify field");
  expect(() => n.notify("ready")).toThrow("not a notify field");
  expect(() => new Notifier("vsock:2:1").notify("READY=1")).toThrow("neither a path nor an abstract name");
  expect(() => n.notify("READY=1")).toThrow("ENOENT");
});

for (const kind of ["path", "abstract"] as const)
  test(`a datagram reaches a socket bound by another program (${kind})`, async () => {
    const dir = mkdtempSync(join(tmpdir(), "stm-notify-"));
    const address = kind === "path" ? join(dir, "n.sock") : `@stm-notify-unit-${process.pid}`;
    const script = `import socket, sys
a = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\\0" + a[1:] if a.startswith("@") else a)
s.settimeout(10)
print("bound", flush=True)
print(repr(s.recv(4096).decode()), flush=True)`;
    const py = Bun.spawn(["python3", "-c", script, address], { stdout: "pipe", stderr: "pipe" });
    try {
      const reader = py.stdout.getReader();
      let out = "";
      while (!out.includes("bound\n")) {
        const { value, done } = await reader.read();
        if (done) throw new Error(await new Response(py.stderr).text());
        out += new TextDecoder().decode(value);
      }
      new Notifier(address).notify("READY=1", "STATUS=ready: 2 network(s)");
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        out += new TextDecoder().decode(value);
      }
      expect(out).toBe("bound\n'READY=1\\nSTATUS=ready: 2 network(s)'\n");
    } finally {
      py.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  });
