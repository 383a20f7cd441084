/** One node's part in one gateway group (docs/gateway.md#how-a-group-fails-over): a VRRP-like
 * heartbeat decides quickly that the active node is gone, the group's lease in etcd decides
 * who may be active. A node becomes active only by taking the lease in an etcd transaction,
 * and stays active only while it holds it: its renewals (every half advert interval) or, while
 * etcd cannot be reached, the word of every other node of the group that it still hears this
 * node (their adverts echo this node's sequence numbers). A standby takes the lease only when
 * the active node's adverts have been silent for its master-down interval AND the lease has not
 * been renewed for as long, as seen by this node's own reads; the transaction compares the
 * revisions it saw, so a renewal it missed makes it fail. The active node's hold (what the
 * datapath enforces, stm_vip.h) always ends before any standby may take over.
 *
 * Time is one monotonic clock in milliseconds (deps.now), the clock of the datapath's deadline.
 * Everything that touches the world goes through deps; the machine itself is pure logic. */
import { type GatewayGroup, groupTimers, preferred } from "../../model/gateway-group";

export type Role = "init" | "standby" | "active";

export interface Advert {
  v: 1;
  group: string;
  node: string;
  role: Role;
  prio: number;
  /** The epoch the sender holds (active), else 0. */
  epoch: number;
  seq: number;
  /** The sender reached etcd lately. */
  etcd: boolean;
  /** The last sequence number the sender heard from each other node of the group. */
  acks: Record<string, number>;
}

/** The group's lease as read from etcd: its holder (absent: null) with the revision it was
 * taken at (the epoch), and the revision of its last renewal (0: none). */
export interface LeaseView {
  holder: { node: string; rev: number } | null;
  beatRev: number;
}

export interface FenceOps {
  read(): Promise<LeaseView>;
  /** Takes the lease if it is still as `seen`: the new epoch, or null (someone moved first). */
  acquire(seen: LeaseView, why: string): Promise<number | null>;
  /** Renews the lease of `epoch`: false when it is not this node's any more. */
  renew(epoch: number, seq: number): Promise<boolean>;
  release(epoch: number): Promise<void>;
}

export interface VipOps {
  /** Adds the VIPs, announces them, and lets the datapath answer until `untilMs`. */
  up(untilMs: number): void;
  /** Moves the datapath's deadline. */
  hold(untilMs: number): void;
  /** Stops answering at once (deadline 0) and removes the VIPs. */
  down(): void;
}

export interface MachineDeps {
  now(): number;
  send(a: Advert): void;
  fence: FenceOps;
  vip: VipOps;
  log(level: "info" | "warn", msg: string): void;
  /** Called after every change of role. */
  changed?(role: Role): void;
}

interface Peer {
  lastHeard: number;
  /** Since when it has been heard without a gap longer than its master-down interval. */
  streakFrom: number;
  lastSeq: number;
  role: Role;
  prio: number;
  epoch: number;
  etcd: boolean;
  acks: Record<string, number>;
}

export interface Counters {
  transitions: number;
  advertsSent: number;
  advertsReceived: number;
  advertsRejected: number;
  advertsMissed: number;
  renewals: number;
  renewFailures: number;
}

const SENT_KEPT = 128;

export const zeroCounters = (): Counters => ({
  transitions: 0,
  advertsSent: 0,
  advertsReceived: 0,
  advertsRejected: 0,
  advertsMissed: 0,
  renewals: 0,
  renewFailures: 0,
});

export class GroupMachine {
  readonly g: GatewayGroup;
  readonly self: string;
  readonly #d: MachineDeps;
  readonly #t: ReturnType<typeof groupTimers>;
  role: Role = "init";
  /** When the role last changed, and why. */
  since: number;
  why = "started: listening before taking any part";
  /** The lease revision this node holds (active), else 0. */
  epoch = 0;
  readonly peers = new Map<string, Peer>();
  lease: LeaseView | null = null;
  /** When the lease as it is now was first seen by this node (a read's completion). */
  leaseSeenAt = 0;
  etcdOk = false;
  /** Until when the last successful renewal holds the role (its send time + hold). */
  renewedUntil = 0;
  readonly counters: Counters = zeroCounters();
  #seq = 0;
  readonly #sent = new Map<number, number>();
  readonly #startedAt: number;
  #busy = false;
  #nextAdvert = 0;
  #nextEtcd = 0;
  #stopped = false;

  constructor(g: GatewayGroup, self: string, deps: MachineDeps) {
    this.g = g;
    this.self = self;
    this.#d = deps;
    this.#t = groupTimers(g, self);
    this.#startedAt = deps.now();
    this.since = this.#startedAt;
    // A node that starts (or restarts after a crash) never keeps a VIP it may not own.
    deps.vip.down();
  }

  get timers() {
    return this.#t;
  }

  /** Until when this node, active, may answer for the VIPs: its last renewal's hold, or the
   * other nodes' word that they hear it (each one's master-down after the advert it echoed). */
  holdUntil(): number {
    return Math.max(this.renewedUntil, this.#ackedUntil());
  }

  #ackedUntil(): number {
    let until = Number.POSITIVE_INFINITY;
    for (const n of this.g.nodes) {
      if (n === this.self) continue;
      const seq = this.peers.get(n)?.acks[this.self];
      const sentAt = seq === undefined ? undefined : this.#sent.get(seq);
      if (sentAt === undefined) return 0;
      until = Math.min(until, sentAt + groupTimers(this.g, n).masterDown - this.#t.advert / 4);
    }
    return Number.isFinite(until) ? until : 0;
  }

  #transition(role: Role, why: string): void {
    if (role === this.role && why === this.why) return;
    const was = this.role;
    this.role = role;
    this.why = why;
    this.since = this.#d.now();
    this.counters.transitions++;
    this.#d.log(
      role === "active" || was === "active" ? "warn" : "info",
      `group ${this.g.name}: ${was} → ${role}: ${why}`,
    );
    this.#d.changed?.(role);
  }

  /** One advert from another node of the group (authenticated by the caller). */
  onAdvert(a: Advert): void {
    if (this.#stopped || a.group !== this.g.name || a.node === this.self || !this.g.nodes.includes(a.node)) {
      this.counters.advertsRejected++;
      return;
    }
    const now = this.#d.now();
    this.counters.advertsReceived++;
    const p = this.peers.get(a.node);
    const gap = groupTimers(this.g, a.node).masterDown;
    if (p && a.seq > p.lastSeq) this.counters.advertsMissed += a.seq - p.lastSeq - 1;
    const fresh = !p || now - p.lastHeard > gap || a.seq <= p.lastSeq; // a restart starts again at 1
    this.peers.set(a.node, {
      lastHeard: now,
      streakFrom: fresh ? now : (p as Peer).streakFrom,
      lastSeq: a.seq,
      role: a.role,
      prio: a.prio,
      epoch: a.epoch,
      etcd: a.etcd,
      acks: a.acks,
    });
  }

  #advert(now: number): void {
    const seq = ++this.#seq;
    this.#sent.set(seq, now);
    if (this.#sent.size > SENT_KEPT) this.#sent.delete(seq - SENT_KEPT);
    const acks: Record<string, number> = {};
    for (const [n, p] of this.peers) acks[n] = p.lastSeq;
    this.counters.advertsSent++;
    this.#d.send({
      v: 1,
      group: this.g.name,
      node: this.self,
      role: this.role,
      prio: this.g.priority[this.self] ?? 0,
      epoch: this.epoch,
      seq,
      etcd: this.etcdOk,
      acks,
    });
  }

  /** The clock's work: adverts, renewals or reads, the hold, takeover and hand-over. Called
   * every quarter advert interval or more often. */
  tick(): void {
    if (this.#stopped) return;
    const now = this.#d.now();
    if (now >= this.#nextAdvert) {
      this.#advert(now);
      this.#nextAdvert = now + this.#t.advert;
    }
    if (this.role === "active") {
      const until = this.holdUntil();
      if (now >= until) {
        this.#stepDown(
          `its hold lapsed: no renewal of the lease in ${Math.round(now - this.renewedUntil + this.#t.hold)} ms and not every other node heard it`,
          false,
        );
        return;
      }
      this.#d.vip.hold(until);
      if (this.#preempted(now)) return;
      if (!this.#busy && now >= this.#nextEtcd) void this.#renew(now);
      return;
    }
    if (!this.#busy && now >= this.#nextEtcd) void this.#read();
  }

  async #renew(sentAt: number): Promise<void> {
    this.#busy = true;
    this.#nextEtcd = sentAt + this.#t.renew;
    const epoch = this.epoch;
    try {
      const ok = await this.#d.fence.renew(epoch, this.#seq);
      if (this.role !== "active" || this.epoch !== epoch) return;
      this.etcdOk = true;
      if (ok) {
        this.counters.renewals++;
        this.renewedUntil = Math.max(this.renewedUntil, sentAt + this.#t.hold);
      } else this.#stepDown("another node holds the lease now", false);
    } catch (e) {
      this.etcdOk = false;
      this.counters.renewFailures++;
      if (this.counters.renewFailures % 20 === 1)
        this.#d.log("warn", `group ${this.g.name}: lease not renewed: ${(e as Error).message}`);
    } finally {
      this.#busy = false;
    }
  }

  async #read(): Promise<void> {
    this.#busy = true;
    this.#nextEtcd = this.#d.now() + this.#t.renew;
    try {
      const l = await this.#d.fence.read();
      const now = this.#d.now();
      this.etcdOk = true;
      const same =
        this.lease !== null &&
        this.lease.beatRev === l.beatRev &&
        this.lease.holder?.rev === l.holder?.rev &&
        this.lease.holder?.node === l.holder?.node;
      if (!same) this.leaseSeenAt = now;
      this.lease = l;
    } catch {
      this.etcdOk = false;
    } finally {
      this.#busy = false;
    }
    if (!this.#stopped && this.role !== "active") this.#decide();
  }

  /** Whether this node takes the lease now (a standby, after a read). */
  #decide(): void {
    const now = this.#d.now();
    if (this.role === "init") {
      if (now - this.#startedAt < this.#t.masterDown) return;
      this.#transition("standby", `listened for ${Math.round(now - this.#startedAt)} ms`);
    }
    const l = this.lease;
    if (!this.etcdOk || !l) return; // no failover without the lease
    const h = l.holder;
    let why: string;
    if (h) {
      const heard = h.node === this.self ? undefined : this.peers.get(h.node)?.lastHeard;
      if (heard !== undefined && now - heard < this.#t.masterDown) return; // its agent is alive
      if (now - this.leaseSeenAt < this.#t.masterDown) return; // its renewals may still come
      why =
        h.node === this.self
          ? `took the lease back from this node's previous run (not renewed for ${Math.round(now - this.leaseSeenAt)} ms)`
          : `node ${h.node} went silent: no advert for ${heard === undefined ? "ever" : `${Math.round(now - heard)} ms`}, no renewal of its lease for ${Math.round(now - this.leaseSeenAt)} ms`;
    } else why = "no node held the lease";
    if (!this.#best(now, h?.node)) return;
    void this.#acquire(l, why);
  }

  /** Whether this node is the one to take over: the preferred among itself and the nodes it
   * hears that reach etcd and could (not the holder). */
  #best(now: number, holder?: string): boolean {
    for (const [n, p] of this.peers) {
      if (n === holder || p.role === "active" || !p.etcd) continue;
      if (now - p.lastHeard >= groupTimers(this.g, n).masterDown) continue;
      if (preferred(this.g, n, this.self) < 0) return false;
    }
    return true;
  }

  async #acquire(seen: LeaseView, why: string): Promise<void> {
    this.#busy = true;
    const sentAt = this.#d.now();
    try {
      const epoch = await this.#d.fence.acquire(seen, why);
      if (this.#stopped) {
        if (epoch !== null) await this.#d.fence.release(epoch).catch(() => {});
        return;
      }
      if (epoch === null) {
        this.#nextEtcd = 0; // read again at once
        return;
      }
      this.etcdOk = true;
      this.epoch = epoch;
      this.renewedUntil = sentAt + this.#t.hold;
      this.#nextEtcd = sentAt + this.#t.renew;
      this.#transition("active", why);
      this.#d.vip.up(this.holdUntil());
      this.#advert(this.#d.now()); // the others learn it at once
      this.#nextAdvert = this.#d.now() + this.#t.advert;
    } catch (e) {
      this.etcdOk = false;
      this.#d.log("warn", `group ${this.g.name}: taking the lease failed: ${(e as Error).message}`);
    } finally {
      this.#busy = false;
    }
  }

  /** A preferred node that has been heard, ready, for its master-down interval takes the role
   * back (preempt on): this node lets go and releases the lease for it. */
  #preempted(now: number): boolean {
    if (!this.g.preempt) return false;
    for (const [n, p] of this.peers) {
      if (preferred(this.g, n, this.self) >= 0 || p.role !== "standby" || !p.etcd) continue;
      const t = groupTimers(this.g, n);
      if (now - p.lastHeard > 1.5 * t.advert || now - p.streakFrom < t.masterDown) continue;
      this.#stepDown(
        `node ${n} is preferred (priority ${this.g.priority[n]} over ${this.g.priority[this.self]}, preempt on): handed over`,
        true,
      );
      return true;
    }
    return false;
  }

  #stepDown(why: string, release: boolean): void {
    const epoch = this.epoch;
    this.#d.vip.down();
    this.epoch = 0;
    this.renewedUntil = 0;
    this.#transition("standby", why);
    if (release && epoch)
      void this.#d.fence
        .release(epoch)
        .catch((e) => this.#d.log("warn", `group ${this.g.name}: releasing the lease: ${(e as Error).message}`));
  }

  /** The agent stops, or the group is gone: an active node lets go first (VIPs down, then the
   * lease released so a standby takes over at once). */
  async stop(why: string): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    const epoch = this.role === "active" ? this.epoch : 0;
    this.#d.vip.down();
    this.epoch = 0;
    if (this.role !== "standby" || why !== this.why) this.#transition("standby", why);
    if (epoch) await this.#d.fence.release(epoch).catch(() => {});
  }
}
