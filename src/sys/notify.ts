/** sd_notify(3) without libsystemd: each message is one datagram to $NOTIFY_SOCKET (a path,
 * or an abstract name written with a leading '@'), the protocol of systemd's Type=notify.
 * Without NOTIFY_SOCKET (not started by systemd, or not as Type=notify) every call does
 * nothing. A failed send, or a NOTIFY_SOCKET of a kind not supported here (vsock), throws
 * StratumError; the caller decides whether it matters. */
import { StratumError } from "../errors";
import { sendUnixDatagram } from "./os";

export class Notifier {
  /** The socket's name, or undefined when there is nobody to tell. */
  readonly socket: string | undefined;

  constructor(env: string | undefined = process.env.NOTIFY_SOCKET) {
    this.socket = env || undefined;
  }

  get enabled(): boolean {
    return this.socket !== undefined;
  }

  /** Sends `fields` ("READY=1", "STATUS=…", "STOPPING=1") as one message, newline-separated. */
  notify(...fields: string[]): void {
    if (!this.socket) return;
    if (!this.socket.startsWith("/") && !this.socket.startsWith("@"))
      throw new StratumError(
        "UNSUPPORTED",
        `NOTIFY_SOCKET=${this.socket} is neither a path nor an abstract name ('@…')`,
      );
    for (const f of fields)
      if (!/^[A-Z_]+=/.test(f) || f.includes("\n"))
        throw new StratumError("INTERNAL", `not a notify field: ${JSON.stringify(f)}`);
    sendUnixDatagram(this.socket, fields.join("\n"));
  }
}
