/** The last minutes of the agent's own counters, for the web view's plots: every `everyMs` a
 * sample of each endpoint's packets (from and to it) and drops, kept for `keep` samples; rates
 * per endpoint and per network between consecutive samples. No Prometheus needed. */

export interface CounterSample {
  network: string;
  endpoint: string;
  /** Packets the endpoint sent, and that were delivered to it (its port's programs' counts). */
  fromPackets: number;
  toPackets: number;
  /** Packets dropped at its port, by reason. */
  drops: Record<string, number>;
}

export interface RateSeries {
  /** Seconds since the epoch, one per interval (the end of it). */
  at: number[];
  /** Per endpoint (and per network: the sum of its endpoints), packets/s sent, received, dropped. */
  endpoints: Record<string, { network: string; sent: number[]; received: number[]; dropped: number[] }>;
  networks: Record<string, { sent: number[]; received: number[]; dropped: number[] }>;
  /** The latest sample's counts per endpoint (since its port was made). */
  totals: Record<string, { sent: number; received: number; drops: Record<string, number> }>;
}

const total = (d: Record<string, number>) => Object.values(d).reduce((a, b) => a + b, 0);

interface Sample {
  atMs: number;
  rows: Map<string, CounterSample>;
}

const zeros = (n: number) => ({
  sent: new Array<number>(n).fill(0),
  received: new Array<number>(n).fill(0),
  dropped: new Array<number>(n).fill(0),
});

export class CounterHistory {
  readonly #read: () => Promise<CounterSample[]>;
  readonly #keep: number;
  readonly #every: number;
  readonly #samples: Sample[] = [];
  #timer: ReturnType<typeof setInterval> | undefined;
  #busy = false;

  constructor(read: () => Promise<CounterSample[]>, o: { everyMs?: number; keep?: number } = {}) {
    this.#read = read;
    this.#every = o.everyMs ?? 5000;
    this.#keep = o.keep ?? 121;
  }

  get everyMs(): number {
    return this.#every;
  }

  #first: Promise<void> | undefined;

  /** Starts sampling (once): resolves when the first sample is in. The web view starts it with
   * its first page, so an agent nobody looks at samples nothing. */
  start(): Promise<void> {
    if (!this.#first) {
      this.#first = this.sample();
      this.#timer = setInterval(() => void this.sample(), this.#every);
      this.#timer.unref?.();
    }
    return this.#first;
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Takes one sample now (a slow read is never overlapped by the next). */
  async sample(now = Date.now()): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      const rows = await this.#read();
      this.#samples.push({ atMs: now, rows: new Map(rows.map((r) => [r.endpoint, r])) });
      while (this.#samples.length > this.#keep) this.#samples.shift();
    } catch {
      // A failed read leaves a gap: the next interval spans it.
    } finally {
      this.#busy = false;
    }
  }

  /** Rates between consecutive samples. An endpoint missing from either end of an interval
   * (attached or detached meanwhile), or whose counters went down (its port was made again),
   * counts 0 for it. */
  rates(): RateSeries {
    const out: RateSeries = { at: [], endpoints: {}, networks: {}, totals: {} };
    const latest = this.#samples.at(-1);
    for (const r of latest?.rows.values() ?? [])
      out.totals[r.endpoint] = { sent: r.fromPackets, received: r.toPackets, drops: r.drops };
    const n = this.#samples.length - 1;
    const names = new Map<string, string>();
    for (const s of this.#samples) for (const r of s.rows.values()) names.set(r.endpoint, r.network);
    for (const [ep, network] of names) {
      out.endpoints[ep] = { network, ...zeros(n) };
      out.networks[network] ??= zeros(n);
    }
    for (let i = 0; i < n; i++) {
      const a = this.#samples[i] as Sample;
      const b = this.#samples[i + 1] as Sample;
      const secs = (b.atMs - a.atMs) / 1000;
      out.at.push(Math.round(b.atMs / 1000));
      if (secs <= 0) continue;
      for (const [ep, rb] of b.rows) {
        const ra = a.rows.get(ep);
        if (!ra) continue;
        const e = out.endpoints[ep];
        const net = out.networks[rb.network];
        if (!e || !net) continue;
        const rate = (x: number, y: number) => (y >= x ? (y - x) / secs : 0);
        const s = rate(ra.fromPackets, rb.fromPackets);
        const r = rate(ra.toPackets, rb.toPackets);
        const d = rate(total(ra.drops), total(rb.drops));
        (e.sent as number[])[i] = s;
        (e.received as number[])[i] = r;
        (e.dropped as number[])[i] = d;
        (net.sent as number[])[i] = (net.sent[i] as number) + s;
        (net.received as number[])[i] = (net.received[i] as number) + r;
        (net.dropped as number[])[i] = (net.dropped[i] as number) + d;
      }
    }
    return out;
  }
}
