/** The receive buffer of the agent's service sockets (DHCP, DNS). The kernel default (about
 * 200 KiB, some 90 datagrams) overflows during a few milliseconds' pause of the event loop
 * (a garbage collection) under a burst of clients; what overflows is lost and shows as
 * UdpRcvbufErrors. Room for a few thousand datagrams rides such pauses out. */
import { bindToDevice, setSocketBuffer } from "./os";

export const SERVICE_RECEIVE_BUFFER = 4 << 20;

/** Raises `sock`'s receive buffer; a failure is logged, never fatal (the service runs on
 * with the default). */
export function raiseReceiveBuffer(
  sock: object,
  what: string,
  log: (level: "info" | "warn", msg: string) => void,
  bytes = SERVICE_RECEIVE_BUFFER,
): void {
  // Bun's UDP sockets carry their descriptor as `fd` (not in its type declarations).
  const fd = (sock as { fd?: unknown }).fd;
  if (typeof fd !== "number" || fd < 0) return;
  try {
    setSocketBuffer(fd, "receive", bytes);
  } catch (e) {
    log("warn", `${what}: the receive buffer stays at the kernel default: ${(e as Error).message}`);
  }
}

/** Ties `sock` to device `ifname` (SO_BINDTODEVICE); false when the socket has no descriptor
 * to reach (the caller decides whether that matters). */
export function tieToDevice(sock: object, ifname: string): boolean {
  const fd = (sock as { fd?: unknown }).fd;
  if (typeof fd !== "number" || fd < 0) return false;
  bindToDevice(fd, ifname);
  return true;
}
