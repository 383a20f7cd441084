/** The fuzzer's sender, run by scripts/fuzzing/main.ts inside the agent's network namespace
 * (argv[2]: the JSON plan). Lanes run concurrently, each sending bursts of mutated packets and
 * then a valid probe it must get an answer to: a server handles its socket in order, so the
 * answer means the whole burst was read (no kernel drops from outrunning it) and the server
 * still answers. Lanes:
 *   dhcp4      127.0.0.1:68 → 127.0.0.1:67; probe DISCOVER from the endpoint's MAC (ciaddr 127.0.0.1)
 *   dns        10.90.0.1 → 10.90.0.1:53 (in the subnet: the whole answer path); probe A
 *   dns-out    127.0.0.1 → 10.90.0.1:53 (outside: REFUSED); probe expects REFUSED
 *   dns6       [fd90::1] → [fd90::1]:53; probe AAAA
 *   dns-tcp    TCP to 10.90.0.1:53: pipelined frames written in random chunks, length prefixes
 *              past the end, half-open and reset connections, 64 KiB frames, slowloris
 *              connections trickling partial frames for the whole run
 *   dhcp6      frames written into the endpoint's tap from its EUI-64 link-local (through the
 *              port programs, the full policy), and datagrams from [fd90::1] (no datapath,
 *              every message type); probe SOLICIT through the tap, ADVERTISE read back from it
 * Prints JSON lines: progress, stall (a probe unanswered after retries, with the burst that
 * preceded it), and done (totals and the final liveness checks). Exits when stdin closes. */

import { dlopen, FFIType as F } from "bun:ffi";
import type { Socket, udp } from "bun";
import { ETH_P, ethernet, IPPROTO, ipv6, udp as udpSeg } from "../../src/datapath/packet";
import {
  corpus,
  dhcp6Solicit,
  dhcpDiscover,
  dnsQuery,
  GRANT_FLOOD,
  hex,
  type Packet,
  Rng,
  type Target,
} from "./corpus";

export interface Plan {
  seed: string;
  /** Packets per lane. */
  counts: Record<LaneName, number>;
  target: Omit<Target, "serverDuid" | "maxLen"> & { serverDuid: string };
  tap: string;
  linkLocal: string;
  /** Most packets and bytes in one burst before its probe. */
  burst: number;
  burstBytes: number;
  slowloris: number;
  progressMs: number;
}

export type LaneName = "dhcp4" | "dns" | "dns-out" | "dns6" | "dns-tcp" | "dhcp6";

const plan = JSON.parse(process.argv[2] ?? "{}") as Plan;
const T: Target = { ...plan.target, serverDuid: Buffer.from(plan.target.serverDuid, "hex"), maxLen: 65507 };
const PROBE_TIMEOUT_MS = 1000;
const PROBE_TRIES = 5;

const emit = (o: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(o)}\n`);

// The parent closes our stdin when it goes (or is interrupted): so do we.
(async () => {
  for await (const _ of Bun.stdin.stream()) {
  }
  process.exit(3);
})();

/** What a lane did, as the sender reports it to main.ts. */
export interface LaneStats {
  sent: number;
  bytes: number;
  replies: number;
  probes: number;
  probeRetries: number;
  stalls: number;
  sendErrors: number;
}
const stats = Object.fromEntries(
  (Object.keys(plan.counts) as LaneName[]).map((k) => [
    k,
    { sent: 0, bytes: 0, replies: 0, probes: 0, probeRetries: 0, stalls: 0, sendErrors: 0 },
  ]),
) as Record<LaneName, LaneStats>;
const extra = {
  dhcp6ViaTap: 0,
  dhcp6ViaUdp: 0,
  /** Lease-flood messages sent through the tap, and the IA_NAs in them (each one a lease if answered). */
  grantFloods: 0,
  grantFloodIas: 0,
  tcpSessions: 0,
  tcpRefusedConnects: 0,
  slowlorisOpen: 0,
};

/** Top-level options of code 3 (IA_NA) in a client message. */
function iaNaCount(b: Uint8Array): number {
  let n = 0;
  for (let o = 4; o + 4 <= b.length; o += 4 + u16(b, o + 2)) if (u16(b, o) === 3) n++;
  return n;
}

// ---- the tap (bun:ffi: open /dev/net/tun, TUNSETIFF, non-blocking read/write) -------------------

const libc = dlopen("libc.so.6", {
  open: { args: [F.ptr, F.i32, F.u32], returns: F.i32 },
  ioctl: { args: [F.i32, F.u64, F.ptr], returns: F.i32 },
  read: { args: [F.i32, F.ptr, F.u64], returns: F.i64 },
  write: { args: [F.i32, F.ptr, F.u64], returns: F.i64 },
  close: { args: [F.i32], returns: F.i32 },
}).symbols;

class Tap {
  readonly fd: number;
  readonly #rx = Buffer.alloc(65536);
  constructor(name: string) {
    const O_RDWR = 2;
    const O_NONBLOCK = 0x800;
    const O_CLOEXEC = 0x80000;
    this.fd = libc.open(Buffer.from("/dev/net/tun\0"), O_RDWR | O_NONBLOCK | O_CLOEXEC, 0);
    if (this.fd < 0) throw new Error("open /dev/net/tun failed");
    const ifr = Buffer.alloc(40);
    ifr.write(name, 0, 15, "utf8");
    ifr.writeUInt16LE(0x0002 | 0x1000, 16); // IFF_TAP | IFF_NO_PI, as the agent created it
    if (libc.ioctl(this.fd, 0x400454can, ifr) < 0) throw new Error(`TUNSETIFF ${name} failed`);
  }
  write(frame: Uint8Array): boolean {
    return Number(libc.write(this.fd, frame, frame.length)) === frame.length;
  }
  read(): Buffer | undefined {
    const n = Number(libc.read(this.fd, this.#rx, this.#rx.length));
    return n > 0 ? Buffer.from(this.#rx.subarray(0, n)) : undefined;
  }
  close(): void {
    libc.close(this.fd);
  }
}

// ---- helpers ----------------------------------------------------------------------------------------

const ip4 = (s: string) => Buffer.from(s.split(".").map(Number));
function ip6(s: string): Buffer {
  const [head, tail] = s.includes("::") ? s.split("::") : [s, undefined];
  const h = (head ? head.split(":") : []).filter((x) => x !== "");
  const t = tail === undefined ? [] : tail.split(":").filter((x) => x !== "");
  const groups = [...h, ...new Array(8 - h.length - t.length).fill("0"), ...t];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => {
    b.writeUInt16BE(Number.parseInt(g, 16), i * 2);
  });
  return b;
}
const EP4 = ip4(T.ip4);
const EP6 = ip6(T.ip6);
const MAC = Buffer.from(T.mac.split(":").map((x) => Number.parseInt(x, 16)));
const u16 = (b: Uint8Array, o: number) => ((b[o] as number) << 8) | (b[o + 1] as number);

/** A DNS reply to `id` with rcode `rcode` whose last bytes are `tail` (the answer's rdata). */
function dnsOk(b: Uint8Array, id: number, rcode: number, tail?: Buffer): boolean {
  if (b.length < 12 || u16(b, 0) !== id || !((b[2] as number) & 0x80) || ((b[3] as number) & 0xf) !== rcode)
    return false;
  if (!tail) return true;
  return u16(b, 6) >= 1 && Buffer.from(b.subarray(b.length - tail.length)).equals(tail);
}

/** Resolves with the first message `match` accepts, or undefined after `ms`. */
class Waiters {
  #w = new Set<{ match: (b: Uint8Array) => boolean; done: (b: Uint8Array | undefined) => void }>();
  wait(match: (b: Uint8Array) => boolean, ms: number): Promise<Uint8Array | undefined> {
    return new Promise((resolve) => {
      const w = {
        match,
        done: (b: Uint8Array | undefined) => {
          clearTimeout(timer);
          this.#w.delete(w);
          resolve(b);
        },
      };
      const timer = setTimeout(() => w.done(undefined), ms);
      this.#w.add(w);
    });
  }
  offer(b: Uint8Array): void {
    for (const w of this.#w) if (w.match(b)) w.done(b);
  }
}

class Udp {
  replies = 0;
  readonly waiters = new Waiters();
  constructor(readonly sock: udp.Socket<"buffer">) {}
  static async open(hostname: string, port: number, onReply: () => void = () => {}): Promise<Udp> {
    let self: Udp | undefined;
    const sock = await Bun.udpSocket({
      hostname,
      port,
      binaryType: "buffer",
      socket: {
        data: (_s, buf) => {
          if (!self) return;
          self.replies++;
          onReply();
          self.waiters.offer(buf);
        },
      },
    });
    self = new Udp(sock);
    return self;
  }
  /** Sends, waiting out a full socket buffer; false if it never went. */
  async send(b: Uint8Array, port: number, addr: string): Promise<boolean> {
    for (let i = 0; i < 200; i++) {
      try {
        if (this.sock.send(b, port, addr)) return true;
      } catch {
        return false;
      }
      await Bun.sleep(1);
    }
    return false;
  }
}

// ---- the lane runner --------------------------------------------------------------------------------

interface Lane {
  name: LaneName;
  packets: Iterator<Packet>;
  send(p: Packet): Promise<boolean>;
  /** Sends one valid probe and waits for its answer. */
  probe(): Promise<boolean>;
}

async function runLane(l: Lane): Promise<void> {
  const st = stats[l.name];
  const count = plan.counts[l.name];
  const burst: Packet[] = [];
  let index = 0;
  while (st.sent < count) {
    burst.length = 0;
    let bytes = 0;
    const first = index;
    while (st.sent < count && burst.length < plan.burst && bytes < plan.burstBytes) {
      const n = l.packets.next();
      if (n.done) break;
      const p = n.value;
      index++;
      burst.push(p);
      bytes += p.bytes.length + 768; // roughly what a datagram costs in a socket buffer
      if (await l.send(p)) {
        st.sent++;
        st.bytes += p.bytes.length;
      } else st.sendErrors++;
    }
    let ok = false;
    for (let i = 0; i < PROBE_TRIES && !ok; i++) {
      st.probes++;
      if (i) st.probeRetries++;
      ok = await l.probe();
    }
    if (!ok) {
      st.stalls++;
      emit({
        type: "stall",
        lane: l.name,
        firstPacket: first,
        packets: burst.slice(0, 40).map((p) => ({ recipe: p.recipe, from: p.from, hex: hex(p.bytes).slice(0, 4000) })),
      });
    }
  }
}

// ---- lanes ----------------------------------------------------------------------------------------

let probeSeq = 1;
const nextId = () => {
  probeSeq = (probeSeq + 1) & 0xffff || 1;
  return probeSeq;
};

/** Port 68 on loopback, where the OFFERs to ciaddr 127.0.0.1 arrive: one socket for the run. */
let dhcp4Sock: Udp | undefined;

async function dhcp4Lane(): Promise<Lane> {
  const s = await Udp.open("127.0.0.1", 68, () => stats.dhcp4.replies++);
  dhcp4Sock = s;
  return {
    name: "dhcp4",
    packets: corpus("dhcp4", plan.seed, plan.counts.dhcp4, T),
    send: (p) => s.send(p.bytes, 67, "127.0.0.1"),
    probe: async () => {
      const xid = (0x7a000000 | nextId()) >>> 0;
      const got = s.waiters.wait((b) => dhcpOfferOk(b, xid), PROBE_TIMEOUT_MS);
      await s.send(dhcpDiscover(T.mac, xid, "127.0.0.1"), 67, "127.0.0.1");
      return (await got) !== undefined;
    },
  };
}

function dhcpOfferOk(b: Uint8Array, xid: number): boolean {
  if (b.length < 244 || b[0] !== 2) return false;
  const x = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  if (x.readUInt32BE(4) !== xid || !x.subarray(28, 34).equals(MAC) || !x.subarray(16, 20).equals(EP4)) return false;
  // Option 53 = 2 (OFFER) somewhere in the options.
  for (let o = 240; o + 2 < x.length; ) {
    const c = x[o] as number;
    if (c === 0) {
      o++;
      continue;
    }
    if (c === 255) break;
    if (c === 53) return x[o + 2] === 2;
    o += 2 + (x[o + 1] as number);
  }
  return false;
}

async function dnsUdpLane(name: "dns" | "dns-out" | "dns6", from: string, to: string): Promise<Lane> {
  const s = await Udp.open(from, 0, () => stats[name].replies++);
  const v6 = name === "dns6";
  return {
    name,
    packets: corpus("dns", `${plan.seed}/${name}`, plan.counts[name], T),
    send: (p) => s.send(p.bytes, 53, to),
    probe: async () => {
      const id = nextId();
      const qtype = v6 ? 28 : 1;
      const want = name === "dns-out" ? 5 : 0;
      const tail = name === "dns-out" ? undefined : v6 ? EP6 : EP4;
      const got = s.waiters.wait((b) => dnsOk(b, id, want, tail), PROBE_TIMEOUT_MS);
      await s.send(dnsQuery(id, `${T.host}.${T.zone}`, qtype), 53, to);
      return (await got) !== undefined;
    },
  };
}

let tap: Tap | undefined;
const tapWaiters = new Waiters();
let tapFrames = 0;
let tapPoll: ReturnType<typeof setInterval> | undefined;

/** Everything the tap gives back (replies, RAs): read and matched against the probes. */
function drainTap(): void {
  if (!tap) return;
  for (let i = 0; i < 4096; i++) {
    const f = tap.read();
    if (!f) return;
    tapFrames++;
    // Ethernet / IPv6 / UDP to port 546: a DHCPv6 reply; hand the payload over.
    if (f.length >= 62 && f.readUInt16BE(12) === ETH_P.IPV6 && f[20] === IPPROTO.UDP && f.readUInt16BE(56) === 546) {
      stats.dhcp6.replies++;
      tapWaiters.offer(f.subarray(62));
    }
  }
}

function tapFrame(payload: Uint8Array): Buffer {
  const src = plan.linkLocal;
  const dst = "ff02::1:2";
  return ethernet(
    { src: T.mac, dst: "33:33:00:01:00:02", type: ETH_P.IPV6 },
    ipv6({ src, dst, next: IPPROTO.UDP, hopLimit: 1 }, udpSeg({ src, dst, sport: 546, dport: 547 }, payload)),
  );
}

/** A DHCPv6 ADVERTISE for `xid` that offers the endpoint's profile address. */
function advertiseOk(b: Uint8Array, xid: number): boolean {
  return (
    b.length > 4 &&
    b[0] === 2 &&
    (((b[1] as number) << 16) | ((b[2] as number) << 8) | (b[3] as number)) === xid &&
    Buffer.from(b).includes(EP6)
  );
}

async function dhcp6Lane(): Promise<Lane> {
  tap = new Tap(plan.tap);
  tapPoll = setInterval(drainTap, 1);
  const s = await Udp.open(T.gateway6, 0, () => stats.dhcp6.replies++);
  const tapGen = corpus("dhcp6", `${plan.seed}/tap`, plan.counts.dhcp6, { ...T, maxLen: 1452 });
  const udpGen = corpus("dhcp6", `${plan.seed}/udp`, plan.counts.dhcp6, T);
  const r = new Rng(`${plan.seed}/dhcp6-path`);
  // Which path each packet takes is decided as it is drawn: 60 % through the tap.
  const viaTap = new WeakSet<Packet>();
  const packets: Iterator<Packet> = {
    next: () => {
      const t = r.chance(0.6);
      const n = (t ? tapGen : udpGen).next();
      if (!n.done && t) viaTap.add(n.value);
      return n;
    },
  };
  return {
    name: "dhcp6",
    packets,
    send: async (p) => {
      if (viaTap.has(p)) {
        extra.dhcp6ViaTap++;
        if (p.from === GRANT_FLOOD) {
          extra.grantFloods++;
          extra.grantFloodIas += iaNaCount(p.bytes);
        }
        return tap?.write(tapFrame(p.bytes)) ?? false;
      }
      extra.dhcp6ViaUdp++;
      return s.send(p.bytes, 547, T.gateway6);
    },
    probe: () => dhcp6Probe(PROBE_TIMEOUT_MS),
  };
}

async function dhcp6Probe(ms: number): Promise<boolean> {
  const xid = (0x600000 | nextId()) & 0xffffff;
  const got = tapWaiters.wait((b) => advertiseOk(b, xid), ms);
  tap?.write(tapFrame(dhcp6Solicit(T.mac, xid)));
  return (await got) !== undefined;
}

// ---- TCP ----------------------------------------------------------------------------------------------

class Tcp {
  readonly waiters = new Waiters();
  #pending: Buffer[] = [];
  #buf = Buffer.alloc(0);
  closed = false;
  replies = 0;
  sock!: Socket<undefined>;

  static connect(host: string, port: number): Promise<Tcp | undefined> {
    const c = new Tcp();
    return new Promise((resolve) => {
      Bun.connect({
        hostname: host,
        port,
        socket: {
          open: (s) => {
            c.sock = s as Socket<undefined>;
            resolve(c);
          },
          data: (_s, d) => c.#data(d),
          drain: () => c.#flush(),
          close: () => {
            c.closed = true;
          },
          end: () => {
            c.closed = true;
          },
          error: () => {
            c.closed = true;
          },
          connectError: () => {
            c.closed = true;
            resolve(undefined);
          },
        },
      }).catch(() => resolve(undefined));
    });
  }

  #data(d: Buffer): void {
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, d]) : Buffer.from(d);
    while (this.#buf.length >= 2 && this.#buf.length >= 2 + this.#buf.readUInt16BE(0)) {
      const m = this.#buf.subarray(2, 2 + this.#buf.readUInt16BE(0));
      this.#buf = this.#buf.subarray(2 + m.length);
      this.replies++;
      stats["dns-tcp"].replies++;
      this.waiters.offer(m);
    }
  }

  write(b: Uint8Array): void {
    if (this.closed) return;
    const buf = Buffer.from(b);
    if (this.#pending.length) {
      this.#pending.push(buf);
      return;
    }
    const n = this.sock.write(buf);
    if (n < buf.length) this.#pending.push(buf.subarray(Math.max(0, n)));
  }

  #flush(): void {
    while (this.#pending.length && !this.closed) {
      const b = this.#pending[0] as Buffer;
      const n = this.sock.write(b);
      if (n < b.length) {
        this.#pending[0] = b.subarray(Math.max(0, n));
        return;
      }
      this.#pending.shift();
    }
  }

  async flushed(ms = 2000): Promise<void> {
    const end = Date.now() + ms;
    while (this.#pending.length && !this.closed && Date.now() < end) await Bun.sleep(1);
  }

  end(): void {
    if (!this.closed) this.sock.end();
    this.closed = true;
  }
  reset(): void {
    if (!this.closed) this.sock.terminate();
    this.closed = true;
  }
}

const frame = (m: Uint8Array, len = m.length): Buffer => {
  const f = Buffer.allocUnsafe(2 + m.length);
  f.writeUInt16BE(len & 0xffff, 0);
  f.set(m, 2);
  return f;
};

async function tcpQuery(c: Tcp, ms: number): Promise<boolean> {
  const id = nextId();
  const got = c.waiters.wait((b) => dnsOk(b, id, 0, EP4), ms);
  c.write(frame(dnsQuery(id, `${T.host}.${T.zone}`, 1)));
  return (await got) !== undefined;
}

async function tcpLane(): Promise<void> {
  const st = stats["dns-tcp"];
  const count = plan.counts["dns-tcp"];
  const gen = corpus("dns", `${plan.seed}/tcp`, count, { ...T, maxLen: 65535 });
  const r = new Rng(`${plan.seed}/tcp-modes`);
  const gw = T.gateway4;
  const take = (): Packet | undefined => {
    if (st.sent >= count) return undefined;
    const n = gen.next();
    if (n.done) return undefined;
    st.sent++;
    st.bytes += n.value.bytes.length;
    return n.value;
  };
  while (st.sent < count) {
    const c = await Tcp.connect(gw, 53);
    if (!c) {
      extra.tcpRefusedConnects++;
      await Bun.sleep(10);
      continue;
    }
    extra.tcpSessions++;
    const mode = r.int(100);
    const sent: Packet[] = [];
    if (mode < 65) {
      // Pipelined: frames written in random chunks (the server must reassemble), zero-length
      // and short frames among them, then a probe; then FIN or RST.
      const k = r.range(5, 60);
      const chunks: Buffer[] = [];
      for (let i = 0; i < k; i++) {
        const p = take();
        if (!p) break;
        sent.push(p);
        chunks.push(frame(r.chance(0.05) ? p.bytes.subarray(0, r.int(12)) : p.bytes));
      }
      const all = Buffer.concat(chunks);
      for (let o = 0; o < all.length; ) {
        const n = r.chance(0.3) ? r.range(1, 3) : r.range(1, 4096);
        c.write(all.subarray(o, o + n));
        o += n;
        if (r.chance(0.05)) await Bun.sleep(1);
      }
      let ok = false;
      for (let i = 0; i < PROBE_TRIES && !ok && !c.closed; i++) {
        st.probes++;
        if (i) st.probeRetries++;
        ok = await tcpQuery(c, PROBE_TIMEOUT_MS);
      }
      if (!ok) {
        // The connection may be gone (a frame the server would not take); a fresh one must work.
        const fresh = await Tcp.connect(gw, 53);
        st.probes++;
        ok = fresh ? await tcpQuery(fresh, 2000) : false;
        fresh?.end();
        if (!ok) {
          st.stalls++;
          emit({
            type: "stall",
            lane: "dns-tcp",
            packets: sent.map((p) => ({ recipe: p.recipe, from: p.from, hex: hex(p.bytes).slice(0, 4000) })),
          });
        }
      }
      if (r.chance(0.5)) c.end();
      else c.reset();
    } else if (mode < 77) {
      // A length prefix past what follows, then FIN, RST or silence for a while.
      const p = take();
      if (p) {
        c.write(frame(p.bytes, Math.min(65535, p.bytes.length + r.pick([1, 2, 100, 65535 - p.bytes.length]))));
        await c.flushed();
      }
      await Bun.sleep(r.int(20));
      if (r.chance(0.5)) c.end();
      else c.reset();
    } else if (mode < 89) {
      // Half-open: part of a length prefix or of a frame, then FIN (or RST).
      const p = take();
      if (p) {
        const f = frame(p.bytes);
        c.write(f.subarray(0, r.int(f.length)));
        await c.flushed();
      }
      if (r.chance(0.7)) c.end();
      else c.reset();
    } else if (mode < 95) {
      // The largest frame there is (64 KiB of noise), then a probe.
      const p = take();
      if (p) {
        const big = new Uint8Array(65535);
        big.set(p.bytes.subarray(0, 65535));
        big.set(r.bytes(65535 - Math.min(65535, p.bytes.length)), Math.min(65535, p.bytes.length));
        c.write(frame(big));
      }
      st.probes++;
      if (!(await tcpQuery(c, 3000))) {
        st.probeRetries++;
        const fresh = await Tcp.connect(gw, 53);
        const ok = fresh ? await tcpQuery(fresh, 2000) : false;
        fresh?.end();
        if (!ok) {
          st.stalls++;
          emit({ type: "stall", lane: "dns-tcp", note: "after a 64 KiB frame" });
        }
      }
      c.end();
    } else {
      // Connect and say nothing: closed at once, by us.
      if (r.chance(0.5)) c.end();
      else c.reset();
    }
  }
}

/** Connections that trickle a partial frame, a byte at a time, for the whole run. */
async function slowloris(n: number): Promise<{ conns: Tcp[]; timer: ReturnType<typeof setInterval> }> {
  const conns: Tcp[] = [];
  for (let i = 0; i < n; i++) {
    const c = await Tcp.connect(T.gateway4, 53);
    if (c) {
      c.write(Buffer.from([0x01])); // half of a length prefix
      conns.push(c);
    }
  }
  const timer = setInterval(() => {
    for (const c of conns) c.write(Buffer.from([Math.floor(Math.random() * 256)]));
    extra.slowlorisOpen = conns.filter((c) => !c.closed).length;
  }, 1000);
  return { conns, timer };
}

// ---- final checks -------------------------------------------------------------------------------------

async function retry(f: () => Promise<boolean>, tries = 3): Promise<boolean> {
  for (let i = 0; i < tries; i++) if (await f()) return true;
  return false;
}

async function liveness(): Promise<Record<string, boolean>> {
  const out: Record<string, boolean> = {};
  const u4 = await Udp.open(T.gateway4, 0);
  out["dns-udp A ep"] = await retry(async () => {
    const id = nextId();
    const got = u4.waiters.wait((b) => dnsOk(b, id, 0, EP4), 2000);
    await u4.send(dnsQuery(id, `${T.host}.${T.zone}`, 1), 53, T.gateway4);
    return (await got) !== undefined;
  });
  const u6 = await Udp.open(T.gateway6, 0);
  out["dns-udp6 AAAA ep"] = await retry(async () => {
    const id = nextId();
    const got = u6.waiters.wait((b) => dnsOk(b, id, 0, EP6), 2000);
    await u6.send(dnsQuery(id, `${T.host}.${T.zone}`, 28), 53, T.gateway6);
    return (await got) !== undefined;
  });
  out["dns-tcp A ep"] = await retry(async () => {
    const c = await Tcp.connect(T.gateway4, 53);
    const ok = c ? await tcpQuery(c, 2000) : false;
    c?.end();
    return ok;
  });
  const d4 = dhcp4Sock ?? (await Udp.open("127.0.0.1", 68));
  out["dhcp4 DISCOVER→OFFER"] = await retry(async () => {
    const xid = (0x7b000000 | nextId()) >>> 0;
    const got = d4.waiters.wait((b) => dhcpOfferOk(b, xid), 2000);
    await d4.send(dhcpDiscover(T.mac, xid, "127.0.0.1"), 67, "127.0.0.1");
    return (await got) !== undefined;
  });
  d4.sock.close();
  out["dhcp6 SOLICIT→ADVERTISE"] = await retry(() => dhcp6Probe(2000));
  u4.sock.close();
  u6.sock.close();
  return out;
}

/** How many trickling connections the server holds at most, and whether a fresh client is
 * still served while they are held (informational: the cap is MAX_TCP_CONNECTIONS). */
async function saturation(n: number): Promise<Record<string, unknown>> {
  const conns: Tcp[] = [];
  for (let i = 0; i < n; i++) {
    const c = await Tcp.connect(T.gateway4, 53);
    if (c) {
      c.write(Buffer.from([0x01]));
      conns.push(c);
    }
  }
  await Bun.sleep(500);
  const held = conns.filter((c) => !c.closed).length;
  const fresh = await Tcp.connect(T.gateway4, 53);
  const freshAnswered = fresh ? await tcpQuery(fresh, 2000) : false;
  fresh?.end();
  const udp = await Udp.open(T.gateway4, 0);
  const id = nextId();
  const got = udp.waiters.wait((b) => dnsOk(b, id, 0, EP4), 2000);
  await udp.send(dnsQuery(id, `${T.host}.${T.zone}`, 1), 53, T.gateway4);
  const udpAnswered = (await got) !== undefined;
  udp.sock.close();
  for (const c of conns) c.reset();
  await Bun.sleep(300);
  return { opened: n, held, freshTcpAnswered: freshAnswered, udpAnswered };
}

// ---- main ----------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const t0 = performance.now();
  const progress = setInterval(
    () =>
      emit({
        type: "progress",
        ms: Math.round(performance.now() - t0),
        stats,
        extra: { ...extra, tapFrames },
      }),
    plan.progressMs,
  );
  const sl = await slowloris(plan.slowloris);
  // The tap gets its carrier when opened: wait until the endpoint's solicitations are answered.
  const d6 = await dhcp6Lane();
  let ready = false;
  for (let i = 0; i < 40 && !ready; i++) ready = await dhcp6Probe(250);
  if (!ready) emit({ type: "warning", message: "no DHCPv6 answer through the tap before the run" });

  const lanes = [
    dhcp4Lane(),
    dnsUdpLane("dns", T.gateway4, T.gateway4),
    dnsUdpLane("dns-out", "127.0.0.1", T.gateway4),
    dnsUdpLane("dns6", T.gateway6, T.gateway6),
    Promise.resolve(d6),
  ];
  await Promise.all([...(await Promise.all(lanes)).map((l) => runLane(l)), tcpLane()]);
  const sendMs = Math.round(performance.now() - t0);

  clearInterval(sl.timer);
  const slowlorisHeld = sl.conns.filter((c) => !c.closed).length;
  for (const c of sl.conns) c.end();
  await Bun.sleep(300);
  const sat = await saturation(300);
  const live = await liveness();
  clearInterval(progress);
  if (tapPoll) clearInterval(tapPoll);
  drainTap();
  tap?.close();
  emit({
    type: "done",
    ms: Math.round(performance.now() - t0),
    sendMs,
    stats,
    extra: { ...extra, tapFrames, slowlorisHeldAtEnd: slowlorisHeld },
    saturation: sat,
    liveness: live,
  });
  process.exit(0);
}

main().catch((e) => {
  emit({ type: "error", message: String((e as Error)?.stack ?? e) });
  process.exit(1);
});
