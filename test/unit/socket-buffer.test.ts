/** The service sockets' receive buffer: raised past net.core.rmem_max (the agent runs with
 * CAP_NET_ADMIN), and a socket without a descriptor is left alone with no error. */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { errno, libc } from "../../src/sys/ffi";
import { setSocketBuffer } from "../../src/sys/os";
import { raiseReceiveBuffer, SERVICE_RECEIVE_BUFFER } from "../../src/sys/socket-buffer";

test("raiseReceiveBuffer gives a Bun UDP socket the service buffer; past rmem_max too", async () => {
  const max = Number(readFileSync("/proc/sys/net/core/rmem_max", "utf8"));
  const s = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0 });
  try {
    const fd = (s as unknown as { fd: number }).fd;
    expect(setSocketBuffer(fd, "receive", 64 * 1024)).toBe(128 * 1024); // the kernel doubles it
    const warnings: string[] = [];
    raiseReceiveBuffer(s, "test", (_l, m) => warnings.push(m));
    expect(warnings).toEqual([]);
    expect(readBuffer(fd)).toBe(2 * SERVICE_RECEIVE_BUFFER);
    // Past the limit a plain SO_RCVBUF would stop at 2 × rmem_max; the agent's is not capped.
    expect(setSocketBuffer(fd, "receive", max + (1 << 20))).toBe(2 * (max + (1 << 20)));
  } finally {
    s.close();
  }
});

test("a socket without a descriptor, or a bad one, is not fatal", () => {
  const warnings: string[] = [];
  raiseReceiveBuffer({}, "none", (_l, m) => warnings.push(m));
  expect(warnings).toEqual([]);
  raiseReceiveBuffer({ fd: 987654 }, "closed", (_l, m) => warnings.push(m));
  expect(warnings).toHaveLength(1);
  expect(warnings[0]).toMatch(/closed: the receive buffer stays at the kernel default: .*socket 987654/);
});

function readBuffer(fd: number): number {
  const out = Buffer.alloc(4);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(4);
  if (libc().getsockopt(fd, 1 /* SOL_SOCKET */, 8 /* SO_RCVBUF */, out, len) < 0) throw new Error(`errno ${errno()}`);
  return out.readInt32LE(0);
}
