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

/** A sample's count at `i`, or undefined when the endpoint was not there (an older, shorter
 * sample, or NaN). */
const at = (c: Float64Array, i: number): number | undefined => {
  const v = c[i];
  return v === undefined || Number.isNaN(v) ? undefined : v;
};

/** One sample, compact: three numbers per endpoint (packets sent, received, dropped), at the
 * endpoint's index in the history's name table (NaN: not there then). Drops by reason are
 * kept for the latest sample only. */
interface Sample {
  atMs: number;
  counts: Float64Array;
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
  /** Every endpoint seen in a kept sample: its index in a sample's counts, its network. */
  #index = new Map<string, number>();
  #names: Array<{ endpoint: string; network: string }> = [];
  #latest: CounterSample[] = [];
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
      for (const r of rows)
        if (!this.#index.has(r.endpoint)) {
          this.#index.set(r.endpoint, this.#names.length);
          this.#names.push({ endpoint: r.endpoint, network: r.network });
        }
      const counts = new Float64Array(this.#names.length * 3).fill(Number.NaN);
      for (const r of rows) {
        const i = (this.#index.get(r.endpoint) as number) * 3;
        counts[i] = r.fromPackets;
        counts[i + 1] = r.toPackets;
        counts[i + 2] = total(r.drops);
      }
      this.#samples.push({ atMs: now, counts });
      this.#latest = rows;
      while (this.#samples.length > this.#keep) this.#samples.shift();
      this.#compact();
    } catch {
      // A failed read leaves a gap: the next interval spans it.
    } finally {
      this.#busy = false;
    }
  }

  /** Drops the names no kept sample has (detached long ago), renumbering the samples. */
  #compact(): void {
    if (this.#names.length < 1024 || this.#names.length < 2 * (this.#latest.length + 1)) return;
    const live = this.#names
      .map((n, i) => ({ n, i }))
      .filter(({ i }) => this.#samples.some((sm) => at(sm.counts, i * 3) !== undefined));
    for (const sm of this.#samples) {
      const c = new Float64Array(live.length * 3).fill(Number.NaN);
      live.forEach(({ i }, k) => {
        if (i * 3 < sm.counts.length) c.set(sm.counts.subarray(i * 3, i * 3 + 3), k * 3);
      });
      sm.counts = c;
    }
    this.#names = live.map(({ n }) => n);
    this.#index = new Map(this.#names.map((n, k) => [n.endpoint, k]));
  }

  /** Rates between consecutive samples. An endpoint missing from either end of an interval
   * (attached or detached meanwhile), or whose counters went down (its port was made again),
   * counts 0 for it. */
  rates(): RateSeries {
    const out: RateSeries = { at: [], endpoints: {}, networks: {}, totals: {} };
    for (const r of this.#latest)
      out.totals[r.endpoint] = { sent: r.fromPackets, received: r.toPackets, drops: r.drops };
    const n = this.#samples.length - 1;
    // Endpoints of the kept samples only.
    const kept = this.#names.filter((_, i) => this.#samples.some((sm) => at(sm.counts, i * 3) !== undefined));
    for (const { endpoint, network } of kept) {
      out.endpoints[endpoint] = { network, ...zeros(n) };
      out.networks[network] ??= zeros(n);
    }
    for (let k = 0; k < n; k++) {
      const a = this.#samples[k] as Sample;
      const b = this.#samples[k + 1] as Sample;
      const secs = (b.atMs - a.atMs) / 1000;
      out.at.push(Math.round(b.atMs / 1000));
      if (secs <= 0) continue;
      for (const { endpoint, network } of kept) {
        const i = (this.#index.get(endpoint) as number) * 3;
        const e = out.endpoints[endpoint];
        const net = out.networks[network];
        if (!e || !net) continue;
        const rate = (j: number) => {
          const x = at(a.counts, i + j);
          const y = at(b.counts, i + j);
          return x === undefined || y === undefined || y < x ? 0 : (y - x) / secs;
        };
        const sent = rate(0);
        const received = rate(1);
        const dropped = rate(2);
        (e.sent as number[])[k] = sent;
        (e.received as number[])[k] = received;
        (e.dropped as number[])[k] = dropped;
        (net.sent as number[])[k] = (net.sent[k] as number) + sent;
        (net.received as number[])[k] = (net.received[k] as number) + received;
        (net.dropped as number[])[k] = (net.dropped[k] as number) + dropped;
      }
    }
    return out;
  }
}
