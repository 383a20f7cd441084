/** A thread of cluster-probe.ts: listens to this namespace's IPv4 address notices (rtnetlink),
 * blocked in recv, and posts each one with the CLOCK_MONOTONIC time it arrived, so the time
 * does not wait for the main thread's event loop. */
import { parentPort } from "node:worker_threads";
import { parseMessages } from "../../src/netlink/codec";
import { NL } from "../../src/netlink/constants";
import { decodeEvent } from "../../src/netlink/events";
import { monotonicNs, NetlinkSocket, setSocketBuffer } from "../../src/sys/os";

const port = parentPort;
if (!port) throw new Error("cluster-addr-watch runs as a worker");
try {
  const sock = new NetlinkSocket(NL.NETLINK_ROUTE);
  sock.setNetlinkOption(NL.NETLINK_ADD_MEMBERSHIP, NL.RTNLGRP_IPV4_IFADDR);
  setSocketBuffer(sock.fd, "receive", 4 << 20);
  port.postMessage({ ready: true });
  for (;;) {
    const dgram = sock.recv(true);
    const t = Number(monotonicNs()) / 1e6;
    for (const m of parseMessages(dgram as Buffer)) {
      const ev = decodeEvent(m.type, m.payload);
      if (ev?.kind === "addr") port.postMessage({ op: ev.op, cidr: ev.addr.cidr, t });
    }
  }
} catch (e) {
  port.postMessage({ error: `rtnetlink listener: ${(e as Error).message}` });
}
