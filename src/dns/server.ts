/** The node's per-network DNS server: one UDP and one TCP listener on each network gateway
 * address (port 53), answering that network's clients from its zones and forwarding the
 * rest (engine.ts decides; this file only moves bytes). TCP carries several queries per
 * connection with 2-byte length framing, closes idle connections and caps their number. */
import type { Socket, TCPSocketListener, udp } from "bun";
import { errnoOf, StratumError, sysError } from "../errors";
import { raiseReceiveBuffer } from "../sys/socket-buffer";
import { DnsEngine, type DnsStats } from "./engine";
import type { ZoneInput } from "./zone";

export type { DnsStats } from "./engine";
export type { ZoneEndpoint, ZoneInput } from "./zone";

type Log = (level: "info" | "warn", msg: string) => void;

/** Seconds a TCP connection may sit idle (RFC 7766 suggests seconds, not minutes). */
export const TCP_IDLE_SECONDS = 10;
export const MAX_TCP_CONNECTIONS = 256;
/** Reply bytes queued for a client that does not read; past this the connection goes. */
const MAX_TCP_BACKLOG = 256 * 1024;

/** Replies to the datagrams of one event-loop turn, sent together (sendmmsg) once the turn's
 * reads are done: one system call and one wake-up of a busy client for many replies instead
 * of one each. A reply the kernel will not take (send buffer full) is dropped and counted,
 * as a lost datagram would be. */
class ReplyBatch {
  #items: Array<Uint8Array | number | string> = [];
  #sock: udp.Socket<"buffer"> | undefined;
  #scheduled = false;
  readonly #flush = () => this.flush();
  constructor(readonly onDropped: (n: number) => void) {}

  add(sock: udp.Socket<"buffer">, data: Uint8Array, port: number, addr: string): void {
    this.#sock = sock;
    this.#items.push(data, port, addr);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.#flush);
    }
  }

  flush(): void {
    this.#scheduled = false;
    const items = this.#items;
    const sock = this.#sock;
    if (items.length === 0 || !sock) return;
    this.#items = [];
    if (sock.closed) return;
    let sent = 0;
    try {
      sent = sock.sendMany(items);
    } catch {}
    const dropped = items.length / 3 - sent;
    if (dropped > 0) this.onDropped(dropped);
  }
}

class Conn {
  buf: Buffer = Buffer.alloc(0);
  pending: Buffer[] = [];
  pendingBytes = 0;
  closed = false;
}

interface Listener {
  addr: string;
  udp: udp.Socket<"buffer">;
  tcp: TCPSocketListener<Conn>;
  conns: Set<Socket<Conn>>;
}

export class DnsServer {
  readonly #engine: DnsEngine;
  readonly #log: Log;
  readonly #port: number;
  readonly #listeners = new Map<string, Listener>();
  #queue: Promise<void> = Promise.resolve();
  #sendDropped = 0;
  #closed = false;

  constructor(
    o: {
      log?: (level: "info" | "warn", msg: string) => void;
      forwarderPort?: number;
      upstreamTimeoutMs?: number;
      port?: number /* default 53 */;
      /** Clock (ms) for cache ages; tests move it. */
      now?: () => number;
    } = {},
  ) {
    this.#log = o.log ?? (() => {});
    this.#port = o.port ?? 53;
    this.#engine = new DnsEngine(o);
  }

  /** Rebuilds the zones (networks, endpoints, records) and opens/closes listeners so there is exactly one UDP and one TCP listener per gateway address; addresses already served are kept open. Throws StratumError with context if a bind fails (others stay). */
  update(zones: ZoneInput[], unchanged?: ReadonlySet<string>): Promise<void> {
    // One update at a time: two interleaved ones could both open the same address.
    const run = this.#queue.then(() => this.#update(zones, unchanged));
    this.#queue = run.catch(() => {});
    return run;
  }

  stats(): DnsStats {
    return { ...this.#engine.stats(), sendDropped: this.#sendDropped };
  }

  /** The engine, for callers that want zones or to answer bytes without a socket. */
  get engine(): DnsEngine {
    return this.#engine;
  }

  close(): void {
    this.#closed = true;
    for (const l of this.#listeners.values()) this.#closeListener(l);
    this.#listeners.clear();
    this.#engine.close();
  }

  async #update(zones: ZoneInput[], unchanged?: ReadonlySet<string>): Promise<void> {
    if (this.#closed) throw new StratumError("INTERNAL", "DNS server is closed");
    const addrs = this.#engine.setZones(zones, unchanged);
    for (const [a, l] of this.#listeners)
      if (!addrs.has(a)) {
        this.#closeListener(l);
        this.#listeners.delete(a);
        this.#log("info", `dns: stopped listening on ${a}`);
      }
    const errors: StratumError[] = [];
    for (const [a, net] of addrs) {
      if (this.#listeners.has(a)) continue;
      try {
        this.#listeners.set(a, await this.#open(a));
        this.#log("info", `dns: network ${net} served on ${a} port ${this.#port}`);
      } catch (e) {
        errors.push((e as StratumError).wrap(`DNS server of network ${net}`));
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1)
      throw new StratumError((errors[0] as StratumError).code, errors.map((e) => e.message).join("; "), {
        errno: errors[0]?.errno,
      });
  }

  async #open(addr: string): Promise<Listener> {
    const port = this.#port;
    const fail = (proto: string, e: unknown): StratumError => {
      const err = e as { code?: string; message?: string };
      const errno = err?.code ? errnoOf(err.code) : undefined;
      const ctx = `listen on ${addr} port ${port}/${proto}`;
      return errno ? sysError(ctx, errno) : new StratumError("SYS", `${ctx}: ${err?.message ?? String(e)}`);
    };
    let u: udp.Socket<"buffer">;
    const out = new ReplyBatch((n) => {
      this.#sendDropped += n;
    });
    try {
      u = await Bun.udpSocket({
        hostname: addr,
        port,
        socket: {
          data: (sock, buf, rport, raddr, flags) => {
            // A datagram cut by the kernel is not the client's message.
            if (flags?.truncated) return;
            const r = this.#engine.handle(addr, raddr, buf, false);
            if (!r) return;
            if (r instanceof Promise)
              r.then((b) => {
                if (b && !sock.closed) sock.send(b, rport, raddr);
              }).catch(() => {});
            else out.add(sock, r, rport, raddr);
          },
          // An ICMP error for an earlier answer (the client went away): nothing to do.
          error: () => {},
        },
      });
    } catch (e) {
      throw fail("udp", e);
    }
    raiseReceiveBuffer(u, `DNS server on ${addr}`, this.#log);
    const conns = new Set<Socket<Conn>>();
    let tcp: TCPSocketListener<Conn>;
    try {
      tcp = Bun.listen<Conn>({
        hostname: addr,
        port,
        socket: {
          open: (s) => {
            s.data = new Conn();
            if (conns.size >= MAX_TCP_CONNECTIONS) {
              s.data.closed = true;
              s.end();
              return;
            }
            conns.add(s);
            s.timeout(TCP_IDLE_SECONDS);
          },
          data: (s, d) => this.#tcpData(addr, s, d),
          drain: (s) => this.#flush(s),
          timeout: (s) => {
            s.end();
          },
          error: (s) => {
            s.end();
          },
          close: (s) => {
            if (s.data) s.data.closed = true;
            conns.delete(s);
          },
        },
      });
    } catch (e) {
      u.close();
      throw fail("tcp", e);
    }
    return { addr, udp: u, tcp, conns };
  }

  #closeListener(l: Listener): void {
    l.udp.close();
    l.tcp.stop(true);
    for (const s of l.conns) s.end();
    l.conns.clear();
  }

  #tcpData(addr: string, s: Socket<Conn>, d: Buffer): void {
    const c = s.data;
    if (!c || c.closed) return;
    s.timeout(TCP_IDLE_SECONDS);
    c.buf = c.buf.length ? Buffer.concat([c.buf, d]) : Buffer.from(d);
    while (c.buf.length >= 2) {
      const len = c.buf.readUInt16BE(0);
      if (c.buf.length < 2 + len) break;
      const msg = c.buf.subarray(2, 2 + len);
      c.buf = c.buf.subarray(2 + len);
      const r = this.#engine.handle(addr, s.remoteAddress, msg, true);
      if (!r) continue;
      if (r instanceof Promise)
        r.then((b) => {
          if (b) this.#write(s, b);
        }).catch(() => {});
      else this.#write(s, r);
    }
  }

  #write(s: Socket<Conn>, msg: Uint8Array): void {
    const c = s.data;
    if (c.closed) return;
    const frame = Buffer.allocUnsafe(2 + msg.length);
    frame.writeUInt16BE(msg.length, 0);
    frame.set(msg, 2);
    if (c.pending.length) {
      this.#queueWrite(s, frame);
      return;
    }
    const n = s.write(frame);
    if (n >= 0 && n < frame.length) this.#queueWrite(s, frame.subarray(n));
  }

  #queueWrite(s: Socket<Conn>, rest: Buffer): void {
    const c = s.data;
    c.pending.push(rest);
    c.pendingBytes += rest.length;
    if (c.pendingBytes > MAX_TCP_BACKLOG) {
      c.closed = true;
      s.end();
    }
  }

  #flush(s: Socket<Conn>): void {
    const c = s.data;
    while (c && !c.closed && c.pending.length) {
      const f = c.pending[0] as Buffer;
      const n = s.write(f);
      if (n < 0) return;
      if (n < f.length) {
        c.pending[0] = f.subarray(n);
        c.pendingBytes -= n;
        return;
      }
      c.pending.shift();
      c.pendingBytes -= f.length;
    }
  }
}
