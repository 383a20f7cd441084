/** One BGP session of the announce-only speaker (RFC 4271 §8): the finite state machine with its
 * timers (connect retry, hold, keepalive; the hold timer enforced on what the peer sends), the
 * OPEN exchange with capability negotiation, and the routes: every prefix `routes()` returns is
 * announced with next hop self, a prefix that leaves it is withdrawn, End-of-RIB follows the
 * first full table (RFC 4724). Received routes are checked (a malformed UPDATE resets the
 * session with a NOTIFICATION) and otherwise ignored. Transport: an outgoing TCP connection to
 * the peer's port 179 from Bun's socket API. */

import { ipToBytes } from "../../model/ip";
import { closeSocket, connectState, md5Connect } from "../../sys/tcp-md5";
import {
  AFI,
  BgpError,
  decodeMessage,
  describeNotification,
  ERR,
  encodeAnnounce,
  encodeEndOfRib,
  encodeKeepalive,
  encodeNotification,
  encodeOpen,
  encodeWithdraw,
  Framer,
  type Message,
  MSG,
  type OpenMessage,
  PREFIXES_PER_UPDATE,
  type Prefix,
  prefixToString,
  SAFI_UNICAST,
  SUB,
  type UpdateMessage,
} from "./codec";

export type SessionState = "idle" | "connect" | "opensent" | "openconfirm" | "established";

export interface LocalSpeaker {
  asn: number;
  routerId: string;
  /** Seconds the peer keeps our routes across a restart (RFC 4724); 0: no graceful restart. */
  restartTime: number;
  /** Set for the first session after an agent restart that kept forwarding state. */
  restarting?: boolean;
  /** Keep the default routes (0.0.0.0/0, ::/0) the peer announces; every other route is ignored. */
  importDefault?: boolean;
}

/** The default routes a peer announces: their next hops by family. */
export interface PeerDefaults {
  v4?: string;
  v6?: string;
}

export interface PeerConfig {
  name: string;
  address: string;
  asn: number;
  /** Proposed hold time (s): 0, or 3 and more. Default 90. */
  holdTime?: number;
  port?: number;
  /** TCP MD5 (RFC 2385): every segment of the connection signed with this key. */
  md5Key?: Buffer;
}

export interface Routes {
  prefixes: Prefix[];
  /** Times the node's AS is repeated in the AS_PATH beyond the first: a worse path (a standby
   * gateway's, docs/gateway.md#bgp-in-a-group); a change re-announces every prefix. */
  prepend?: number;
  /** Next hop self for each family (the node's address on the peer's side). */
  nextHop4?: string;
  nextHop6?: string;
}

export interface SessionStatus {
  name: string;
  address: string;
  asn: number;
  state: SessionState;
  /** Milliseconds since epoch the session became established (null: not established). */
  establishedAt: number | null;
  holdTime: number | null;
  prefixesSent: number;
  updatesReceived: number;
  lastError: string | null;
  /** Families both sides negotiated. */
  families: string[];
  /** Since the agent started: sessions established, NOTIFICATIONs sent and received. */
  counts: { established: number; notificationsSent: number; notificationsReceived: number };
  peerRouterId: string | null;
}

type Socket = { write(b: Uint8Array): number; end(): void; terminate?(): void };

const CONNECT_RETRY_MS = 5_000;
const MD5_CONNECT_TIMEOUT_MS = 5_000;
const OPEN_HOLD_MS = 240_000; // RFC 4271: a large hold time while waiting for the OPEN

const key = (p: Prefix) => prefixToString(p);

export class BgpSession {
  #state: SessionState = "idle";
  #sock: Socket | undefined;
  #framer = new Framer();
  #timers = new Map<string, ReturnType<typeof setTimeout>>();
  #stopped = true;
  #peerOpen: OpenMessage | undefined;
  #hold = 0;
  #as4 = true;
  #families = new Set<number>();
  /** What the peer holds from us, by prefix text. */
  #sent = new Map<string, Prefix>();
  #sentPrepend = 0;
  #eorSent = false;
  #establishedAt: number | null = null;
  #updatesReceived = 0;
  /** Since start, whatever the connection: times established, NOTIFICATIONs sent and received. */
  #counts = { established: 0, notificationsSent: 0, notificationsReceived: 0 };
  #lastError: string | null = null;
  #gen = 0;

  constructor(
    readonly local: LocalSpeaker,
    readonly peer: PeerConfig,
    readonly routes: () => Routes,
    readonly log: (line: string) => void = () => {},
    /** Called when the default routes the peer announces change (importDefault only). */
    readonly onDefaults: (d: PeerDefaults) => void = () => {},
  ) {}

  #defaults: PeerDefaults = {};

  /** The default routes the peer announces now (importDefault only). */
  get defaults(): PeerDefaults {
    return { ...this.#defaults };
  }

  #setDefaults(d: PeerDefaults): void {
    if (d.v4 === this.#defaults.v4 && d.v6 === this.#defaults.v6) return;
    this.#defaults = d;
    this.onDefaults({ ...d });
  }

  /** What an UPDATE says of the default routes (the only ones kept, and only when asked). */
  #learn(m: UpdateMessage): void {
    if (!this.local.importDefault) return;
    const d = { ...this.#defaults };
    const isDefault = (p: Prefix) => p.len === 0;
    if (m.withdrawn.some(isDefault)) d.v4 = undefined;
    if (m.announced.some(isDefault) && m.nextHop) d.v4 = m.nextHop;
    if (m.mpUnreach?.afi === AFI.IPV6 && m.mpUnreach.prefixes.some(isDefault)) d.v6 = undefined;
    if (m.mpReach?.afi === AFI.IPV6 && m.mpReach.prefixes.some(isDefault)) d.v6 = m.mpReach.nextHops[0];
    if (m.mpUnreach?.afi === AFI.IPV4 && m.mpUnreach.prefixes.some(isDefault)) d.v4 = undefined;
    if (m.mpReach?.afi === AFI.IPV4 && m.mpReach.prefixes.some(isDefault)) d.v4 = m.mpReach.nextHops[0];
    this.#setDefaults(d);
  }

  get state(): SessionState {
    return this.#state;
  }

  status(): SessionStatus {
    return {
      name: this.peer.name,
      address: this.peer.address,
      asn: this.peer.asn,
      state: this.#state,
      establishedAt: this.#establishedAt,
      holdTime: this.#state === "established" ? this.#hold : null,
      prefixesSent: this.#sent.size,
      updatesReceived: this.#updatesReceived,
      lastError: this.#lastError,
      families: [...this.#families].map((a) => (a === AFI.IPV4 ? "ipv4-unicast" : "ipv6-unicast")),
      peerRouterId: this.#peerOpen?.bgpId ?? null,
      counts: { ...this.#counts },
    };
  }

  /** The prefixes the peer has from us. */
  announced(): Prefix[] {
    return [...this.#sent.values()];
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#connect();
  }

  /** Ends the session: a Cease NOTIFICATION (administrative shutdown) when it is up, then the
   * connection closes. With graceful restart negotiated the peer keeps our routes for the
   * restart time unless `withdraw` asks to withdraw them first. */
  async stop(o: { withdraw?: boolean } = {}): Promise<void> {
    this.#stopped = true;
    if (this.#state === "established" && o.withdraw) {
      for (const afi of [AFI.IPV4, AFI.IPV6] as const) {
        const ps = [...this.#sent.values()].filter((p) => p.afi === afi);
        if (ps.length) this.#write(encodeWithdraw(afi, ps));
      }
      this.#sent.clear();
    }
    if (this.#sock && (this.#state === "established" || this.#state === "openconfirm" || this.#state === "opensent")) {
      // Without withdraw: the connection just closes, so a graceful-restart peer keeps the
      // routes (a Cease NOTIFICATION would make it drop them, RFC 4724 §4).
      if (o.withdraw || !this.local.restartTime) this.#write(encodeNotification(ERR.CEASE, SUB.CEASE_ADMIN_SHUTDOWN));
    }
    this.#close("stopped");
    await Bun.sleep(0);
  }

  /** Announces what `routes()` has and the peer does not, withdraws what it no longer has. */
  sync(): void {
    if (this.#state !== "established") return;
    const r = this.routes();
    const prepend = r.prepend ?? 0;
    // Another path for every prefix: announced again (an UPDATE replaces the route it names).
    if (prepend !== this.#sentPrepend) this.#sent.clear();
    this.#sentPrepend = prepend;
    const want = new Map(r.prefixes.filter((p) => this.#families.has(p.afi)).map((p) => [key(p), p]));
    for (const afi of [AFI.IPV4, AFI.IPV6] as const) {
      const gone = [...this.#sent].filter(([k, p]) => p.afi === afi && !want.has(k)).map(([, p]) => p);
      for (let i = 0; i < gone.length; i += PREFIXES_PER_UPDATE[afi]) {
        this.#write(encodeWithdraw(afi, gone.slice(i, i + PREFIXES_PER_UPDATE[afi])));
      }
      for (const p of gone) this.#sent.delete(key(p));
      const nh = afi === AFI.IPV4 ? r.nextHop4 : r.nextHop6;
      const add = [...want].filter(([k, p]) => p.afi === afi && !this.#sent.has(k)).map(([, p]) => p);
      if (add.length && !nh) {
        this.#lastError = `no ${afi === AFI.IPV4 ? "IPv4" : "IPv6"} next hop toward ${this.peer.address}: ${add.length} prefix(es) not announced`;
        continue;
      }
      for (let i = 0; i < add.length; i += PREFIXES_PER_UPDATE[afi]) {
        this.#write(
          encodeAnnounce({
            asn: this.local.asn,
            prefixes: add.slice(i, i + PREFIXES_PER_UPDATE[afi]),
            nextHop: nh as string,
            prepend,
          }),
        );
      }
      for (const p of add) this.#sent.set(key(p), p);
    }
    if (!this.#eorSent) {
      for (const afi of this.#families) this.#write(encodeEndOfRib(afi as 1 | 2));
      this.#eorSent = true;
    }
  }

  // ---- the state machine ----------------------------------------------------------------------

  #connect(): void {
    if (this.#stopped) return;
    const gen = ++this.#gen;
    this.#setState("connect");
    this.#framer = new Framer();
    const self = this;
    const handlers = {
      open(s: unknown) {
        if (gen !== self.#gen || self.#stopped) {
          (s as Socket).end();
          return;
        }
        self.#sock = s as Socket;
        self.#onOpen();
      },
      data(_s: unknown, chunk: Uint8Array) {
        if (gen === self.#gen) self.#onData(chunk);
      },
      close() {
        if (gen === self.#gen) self.#onClosed("connection closed by the peer");
      },
      error(_s: unknown, e: Error) {
        if (gen === self.#gen) self.#onClosed(`socket error: ${e.message}`);
      },
      connectError(_s: unknown, e: Error) {
        if (gen === self.#gen) self.#onClosed(`connect: ${e.message}`);
      },
    };
    const port = this.peer.port ?? 179;
    if (this.peer.md5Key) {
      void this.#connectMd5(gen, port, this.peer.md5Key, handlers);
      return;
    }
    Bun.connect({ hostname: this.peer.address, port, socket: handlers }).catch((e: Error) => {
      if (gen === this.#gen) this.#onClosed(`connect: ${e.message}`);
    });
  }

  /** The connection signed with TCP MD5: made and connected outside Bun (the key must be on the
   * socket before the SYN), then handed over. A peer with another key never answers the SYN. */
  async #connectMd5(gen: number, port: number, key: Buffer, handlers: Record<string, unknown>): Promise<void> {
    let fd: number;
    try {
      fd = md5Connect(ipToBytes(this.peer.address), port, key);
    } catch (e) {
      this.#onClosed(`connect: ${(e as Error).message}`);
      return;
    }
    const t0 = Date.now();
    for (;;) {
      if (gen !== this.#gen || this.#stopped) {
        closeSocket(fd);
        return;
      }
      const st = connectState(fd);
      if (st === "connected") break;
      if (st !== "pending" || Date.now() - t0 > MD5_CONNECT_TIMEOUT_MS) {
        closeSocket(fd);
        this.#onClosed(
          st === "pending"
            ? `connect: no answer in ${MD5_CONNECT_TIMEOUT_MS / 1000} s (with TCP MD5, a peer whose key differs drops the SYN)`
            : `connect: errno ${st}`,
        );
        return;
      }
      await Bun.sleep(20);
    }
    try {
      await Bun.connect({ fd, socket: handlers } as unknown as Parameters<typeof Bun.connect>[0]);
    } catch (e) {
      closeSocket(fd);
      if (gen === this.#gen) this.#onClosed(`connect: ${(e as Error).message}`);
    }
  }

  #onOpen(): void {
    this.#families = new Set();
    this.#sent.clear();
    this.#eorSent = false;
    this.#write(
      encodeOpen({
        asn: this.local.asn,
        holdTime: this.peer.holdTime ?? 90,
        bgpId: this.local.routerId,
        families: [
          { afi: AFI.IPV4, safi: SAFI_UNICAST },
          { afi: AFI.IPV6, safi: SAFI_UNICAST },
        ],
        gracefulRestart: this.local.restartTime
          ? { restarting: this.local.restarting === true, time: this.local.restartTime, forwarding: true }
          : undefined,
      }),
    );
    this.#setState("opensent");
    this.#timer("hold", OPEN_HOLD_MS, () =>
      this.#fail(new BgpError(ERR.HOLD_TIMER, 0, "no OPEN within the hold time")),
    );
  }

  #onData(chunk: Uint8Array): void {
    try {
      for (const raw of this.#framer.push(chunk)) {
        if (this.#state === "idle") return;
        this.#handle(decodeMessage(raw, { as4: this.#as4 }));
      }
    } catch (e) {
      if (e instanceof BgpError) this.#fail(e);
      else this.#fail(new BgpError(ERR.FSM, 0, `internal: ${(e as Error).message}`));
    }
  }

  #handle(m: Message): void {
    if (m.type === MSG.NOTIFICATION) {
      this.#counts.notificationsReceived++;
      this.#lastError = `peer sent NOTIFICATION: ${describeNotification(m.code, m.subcode)}${m.data.length ? ` ${m.data.toString("hex")}` : ""}`;
      this.log(`bgp ${this.peer.name}: ${this.#lastError}`);
      this.#close(this.#lastError);
      this.#retry();
      return;
    }
    switch (this.#state) {
      case "opensent":
        if (m.type !== MSG.OPEN) throw new BgpError(ERR.FSM, 1, `message type ${m.type} in OpenSent`);
        this.#acceptOpen(m);
        return;
      case "openconfirm":
        if (m.type !== MSG.KEEPALIVE) throw new BgpError(ERR.FSM, 2, `message type ${m.type} in OpenConfirm`);
        this.#restartHold();
        this.#establish();
        return;
      case "established":
        this.#restartHold();
        if (m.type === MSG.OPEN) throw new BgpError(ERR.FSM, 3, "OPEN in Established");
        if (m.type === MSG.UPDATE) {
          this.#updatesReceived++;
          this.#learn(m);
        }
        if (m.type === MSG.ROUTE_REFRESH) this.#resend(m.afi);
        return;
      default:
        return;
    }
  }

  #acceptOpen(m: OpenMessage): void {
    const peerAs = m.caps.as4 ?? m.myAs;
    if (peerAs !== this.peer.asn) {
      const data = Buffer.alloc(2);
      data.writeUInt16BE(m.myAs);
      throw new BgpError(ERR.OPEN, SUB.OPEN_BAD_PEER_AS, `peer AS ${peerAs}, configured ${this.peer.asn}`, data);
    }
    if (m.bgpId === this.local.routerId && peerAs === this.local.asn)
      throw new BgpError(ERR.OPEN, SUB.OPEN_BAD_BGP_ID, `peer BGP id ${m.bgpId} is ours`);
    this.#peerOpen = m;
    this.#as4 = m.caps.as4 !== undefined;
    // Without multiprotocol capabilities a peer speaks IPv4 unicast only (RFC 4760).
    const fams = m.caps.families.length ? m.caps.families : [{ afi: AFI.IPV4, safi: SAFI_UNICAST }];
    for (const f of fams)
      if (f.safi === SAFI_UNICAST && (f.afi === AFI.IPV4 || f.afi === AFI.IPV6)) this.#families.add(f.afi);
    const mine = this.peer.holdTime ?? 90;
    this.#hold = Math.min(mine, m.holdTime);
    this.#write(encodeKeepalive());
    this.#setState("openconfirm");
    this.#restartHold();
  }

  #establish(): void {
    this.#counts.established++;
    this.#setState("established");
    this.#establishedAt = Date.now();
    this.#lastError = null;
    this.log(
      `bgp ${this.peer.name}: established with ${this.peer.address} (AS ${this.peer.asn}, hold ${this.#hold} s)`,
    );
    if (this.#hold > 0) this.#keepaliveLoop();
    this.sync();
  }

  #resend(afi: number): void {
    const ps = [...this.#sent.values()].filter((p) => p.afi === afi);
    for (const p of ps) this.#sent.delete(key(p));
    this.sync();
  }

  #keepaliveLoop(): void {
    const every = Math.max(1000, Math.floor((this.#hold * 1000) / 3));
    this.#timer("keepalive", every, () => {
      this.#write(encodeKeepalive());
      this.#keepaliveLoop();
    });
  }

  #restartHold(): void {
    if (this.#hold === 0) {
      this.#clear("hold");
      return;
    }
    this.#timer("hold", this.#hold * 1000, () =>
      this.#fail(new BgpError(ERR.HOLD_TIMER, 0, `nothing from the peer for ${this.#hold} s`)),
    );
  }

  /** A rule broken (by the peer, or the hold timer): NOTIFICATION, close, retry later. */
  #fail(e: BgpError): void {
    this.#lastError = `${describeNotification(e.code, e.subcode)}: ${e.message}`;
    this.log(`bgp ${this.peer.name}: sending NOTIFICATION, ${this.#lastError}`);
    this.#write(encodeNotification(e.code, e.subcode, e.data));
    this.#counts.notificationsSent++;
    this.#close(this.#lastError);
    this.#retry();
  }

  #onClosed(why: string): void {
    if (this.#state === "idle") return;
    if (this.#state !== "connect" || !this.#lastError?.startsWith("connect")) this.log(`bgp ${this.peer.name}: ${why}`);
    this.#lastError = why;
    this.#close(why);
    this.#retry();
  }

  #retry(): void {
    if (this.#stopped) return;
    this.#timer("connectRetry", CONNECT_RETRY_MS * (0.75 + Math.random() * 0.25), () => this.#connect());
  }

  #close(_why: string): void {
    this.#gen++;
    this.#setDefaults({});
    for (const t of ["hold", "keepalive"]) this.#clear(t);
    if (this.#stopped) this.#clear("connectRetry");
    const s = this.#sock;
    this.#sock = undefined;
    if (s) {
      try {
        s.end();
      } catch {}
    }
    this.#establishedAt = null;
    this.#setState("idle");
  }

  #write(b: Buffer): void {
    this.#sock?.write(b);
  }

  #setState(s: SessionState): void {
    this.#state = s;
  }

  #timer(name: string, ms: number, fn: () => void): void {
    this.#clear(name);
    this.#timers.set(
      name,
      setTimeout(() => {
        this.#timers.delete(name);
        fn();
      }, ms),
    );
  }

  #clear(name: string): void {
    const t = this.#timers.get(name);
    if (t) clearTimeout(t);
    this.#timers.delete(name);
  }
}
