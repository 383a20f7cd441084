/** The web view's live feed: drops, hits of rules marked `log` and new flows, from the
 * datapath's monitoring ring buffer, to every page that watches. The agent holds the monitoring
 * lease only while at least one page watches (the ring has one reader: `monitor` is refused
 * meanwhile, and a page is told when `monitor` holds it). Read on a timer, never blocking the
 * event loop. */
import { MonitorSession, type MonKind } from "../datapath/monitor-ring";
import { type MonEventView, monEventView } from "../datapath/monitor-view";
import type { PortName } from "../observe/port-names";
import type { BpfMap } from "../sys/bpf";
import { monotonicNs } from "../sys/os";

export type FeedMessage = { kind: "event"; event: MonEventView } | { kind: "busy"; holder: number } | { kind: "open" };

export interface FeedMaps {
  cfg: BpfMap;
  ring: BpfMap;
}

export class LiveFeed {
  readonly #maps: () => FeedMaps;
  readonly #names: () => Map<number, PortName>;
  readonly #watchers = new Set<(m: FeedMessage) => void>();
  #session: MonitorSession | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #names_: Map<number, PortName> = new Map();
  #lastRenew = 0;
  #lastNames = 0;

  constructor(maps: () => FeedMaps, names: () => Map<number, PortName>) {
    this.#maps = maps;
    this.#names = names;
  }

  get watching(): number {
    return this.#watchers.size;
  }

  /** Adds a watcher; returns the function that removes it. */
  watch(fn: (m: FeedMessage) => void): () => void {
    this.#watchers.add(fn);
    this.#ensure();
    return () => {
      this.#watchers.delete(fn);
      if (!this.#watchers.size) this.#stop();
    };
  }

  #send(m: FeedMessage): void {
    for (const w of this.#watchers) w(m);
  }

  /** Opens the lease when nobody else holds it; tries again every second while someone does. */
  #ensure(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => this.#tick(), 200);
    this.#timer.unref?.();
    this.#tick();
  }

  #tick(): void {
    const now = Date.now();
    if (!this.#session) {
      if (now - this.#lastRenew < 1000 && this.#lastRenew) return;
      this.#lastRenew = now;
      const { cfg, ring } = this.#maps();
      const holder = MonitorSession.holder(cfg);
      if (holder) {
        this.#send({ kind: "busy", holder });
        return;
      }
      const kinds: MonKind[] = ["drop", "log", "flow"];
      const offsetMs = Date.now() - Number(monotonicNs() / 1_000_000n);
      this.#session = new MonitorSession(
        cfg,
        ring,
        { kinds, rate: 200, burst: 50, ifindex: 0, netId: 0, leaseMs: 3000 },
        (e) => {
          const who = this.#names_.get(e.ifindex);
          const at = new Date(offsetMs + Number(e.tsNs / 1_000_000n));
          this.#send({ kind: "event", event: monEventView(e, at, who, who?.hostIf ?? `ifindex ${e.ifindex}`) });
        },
      );
      this.#names_ = this.#names();
      this.#lastNames = now;
      this.#session.renew();
      this.#session.consume(); // what an earlier reader left
      this.#send({ kind: "open" });
      return;
    }
    if (now - this.#lastRenew >= 1000) {
      this.#session.renew();
      this.#lastRenew = now;
    }
    if (now - this.#lastNames >= 5000) {
      this.#names_ = this.#names();
      this.#lastNames = now;
    }
    this.#session.consume();
  }

  #stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#session?.close();
    this.#session = undefined;
    this.#lastRenew = 0;
  }

  close(): void {
    this.#watchers.clear();
    this.#stop();
  }
}
