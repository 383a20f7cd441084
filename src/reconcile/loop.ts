/** The reconcile loop: when reconcile runs besides start-up and `reconcile` on demand. It
 * reads rtnetlink notices without blocking (a poll of a non-blocking socket), asks the drift
 * watch whether they leave the kernel differing from the store, and a burst of them makes one
 * run once they have been quiet for a moment (never later than a bound after the first).
 * Notices the kernel had to drop make a run too: nothing else can tell what they said. A full
 * pass every `intervalMs` is the backstop for drift no notice reports (a tc filter, a map
 * entry). A run that changes nothing ends the cycle: the notices of its own changes, and of
 * an API request's, end in the state the store asks for, so they open no drift; a run's own
 * notices can never make another run. Runs never overlap an API request that changes things:
 * such a request runs in exclusive(), and a run that falls due meanwhile waits for its end.
 * Drift that every repair brings back (something else fighting over a port) slows the event
 * runs down, up to the periodic interval. */
import type { RtnlDrain } from "../netlink";
import type { DriftWatch } from "./drift";

/** What made a reconcile run: the agent's start, an API request, notices of drift, or the periodic pass. */
export const TRIGGERS = ["start", "api", "event", "periodic", "cluster"] as const;
export type ReconcileTrigger = (typeof TRIGGERS)[number];

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(t: unknown): void;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(t: unknown): void;
}

const realClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (t) => clearTimeout(t as ReturnType<typeof setTimeout>),
  setInterval: (fn, ms) => {
    const t = setInterval(fn, ms);
    t.unref?.();
    return t;
  },
  clearInterval: (t) => clearInterval(t as ReturnType<typeof setInterval>),
};

export interface LoopOptions {
  /** Runs one reconcile (its errors are the caller's to log); returns the kernel changes it
   * made. `full`: an operator's run that must check every port (no quick pass). */
  run: (trigger: ReconcileTrigger, o?: { full?: boolean }) => { changes: string[] };
  /** The notices; without one, only the periodic pass runs. */
  monitor?: { drain(): RtnlDrain };
  watch: DriftWatch;
  /** Re-reads the links there are, after notices were lost. */
  reseed: () => void;
  /** Full pass every this many ms; 0: none. */
  intervalMs: number;
  /** How often the notices are read. */
  pollMs?: number;
  /** Quiet time after the last notice of a burst before the run. */
  debounceMs?: number;
  /** The longest a run waits after the first notice of a burst, however long it goes on. */
  maxWaitMs?: number;
  /** Where event runs stop slowing down when drift keeps coming back. */
  maxBackoffMs?: number;
  log: (level: "info" | "warn", msg: string) => void;
  clock?: Clock;
}

/** Repairs in a row, each of drift that came back within FIGHT_WINDOW_MS of the one before,
 * before repairs slow down: a fight with something else, not a hand now and then. */
const FIGHT_AFTER = 5;
const FIGHT_WINDOW_MS = 500;

export class ReconcileLoop {
  readonly #o: Required<Omit<LoopOptions, "monitor">> & Pick<LoopOptions, "monitor">;
  #poll: unknown;
  #periodic: unknown;
  #timer: unknown;
  /** When the first notice of the burst being waited out came. */
  #firstAt: number | undefined;
  #overflow = false;
  /** API requests under way: no run starts while there is one. */
  #busy = 0;
  /** A run that fell due while a request was under way. */
  #due: ReconcileTrigger | undefined;
  /** Event runs in a row that changed the kernel, each soon after the one before. */
  #streak = 0;
  /** When the last event run that changed the kernel ended. */
  #repairedAt = Number.NEGATIVE_INFINITY;
  #stopped = true;

  constructor(o: LoopOptions) {
    this.#o = {
      ...o,
      pollMs: o.pollMs ?? 50,
      debounceMs: o.debounceMs ?? 100,
      maxWaitMs: o.maxWaitMs ?? 500,
      maxBackoffMs: o.maxBackoffMs ?? (o.intervalMs || 30_000),
      clock: o.clock ?? realClock,
    };
  }

  /** Starts reading notices and the periodic pass. */
  start(): void {
    const c = this.#o.clock;
    this.#stopped = false;
    if (this.#o.monitor) this.#poll = c.setInterval(() => this.#tick(), this.#o.pollMs);
    if (this.#o.intervalMs > 0) this.#periodic = c.setInterval(() => this.#fall("periodic"), this.#o.intervalMs);
  }

  stop(): void {
    const c = this.#o.clock;
    this.#stopped = true;
    c.clearInterval(this.#poll);
    c.clearInterval(this.#periodic);
    c.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Runs `fn`, an API request that may change the kernel, with no reconcile run before it
   * ends. Notices already queued are read first: they are someone else's. */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#busy === 0) this.#tick();
    this.#busy++;
    try {
      return await fn();
    } finally {
      this.#busy--;
      if (this.#busy === 0 && this.#due && !this.#stopped)
        // After the response is on its way, not inside it.
        this.#o.clock.setTimeout(() => this.#fall(undefined), 0);
    }
  }

  /** Runs a reconcile now (start-up, an API request: the caller holds exclusive() if need be). */
  runNow(trigger: ReconcileTrigger, o?: { full?: boolean }): { changes: string[] } {
    // Notices queued so far are about states this run answers: read them (the index map
    // needs them), then forget the drift they opened.
    this.#read();
    this.#o.watch.clear();
    this.#overflow = false;
    const firstAt = this.#firstAt;
    this.#firstAt = undefined;
    this.#o.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#due = undefined;
    let r: { changes: string[] } = { changes: [] };
    try {
      r = this.#o.run(trigger, o);
    } finally {
      if (trigger === "event" && r.changes.length) {
        const soon = firstAt !== undefined && firstAt - this.#repairedAt < FIGHT_WINDOW_MS;
        this.#streak = soon ? this.#streak + 1 : 1;
        this.#repairedAt = this.#o.clock.now();
      } else if (!r.changes.length) this.#streak = 0;
      if (this.#streak === FIGHT_AFTER)
        this.#o.log(
          "warn",
          `drift came back within ${FIGHT_WINDOW_MS} ms of each of ${FIGHT_AFTER} repairs in a row: something else keeps changing Stratum's links; repairs on notices slow down (to one every ${Math.round(this.#o.maxBackoffMs / 1000)} s at most) until a run finds nothing to change`,
        );
    }
    return r;
  }

  /** A run may be due (a timer fired, or a request ended with one owed): it waits while a
   * request is under way. An event run is dropped when its drift went away meanwhile. */
  #fall(trigger: ReconcileTrigger | undefined): void {
    if (this.#stopped) return;
    if (this.#busy > 0) {
      // An event run owed is kept over a periodic one: both are full runs.
      if (trigger) this.#due = this.#due === "event" ? "event" : trigger;
      return;
    }
    const owed = trigger ?? this.#due;
    this.#due = undefined;
    this.#read();
    const drifted = this.#overflow || this.#o.watch.drift.length > 0;
    // Down, then up again before the run: nothing to do.
    if (owed === "event" && !drifted) return;
    const t = owed ?? (drifted ? "event" : undefined);
    if (!t) return;
    try {
      this.runNow(t);
    } catch (e) {
      // The runner logs its own failures; a timer's exception must not end the agent.
      this.#o.log("warn", `reconcile (${t}) failed: ${(e as Error).message}`);
    }
  }

  /** Reads the notices queued now; true when they changed what differs (or were lost). */
  #read(): boolean {
    const m = this.#o.monitor;
    if (!m) return false;
    let d: RtnlDrain;
    try {
      d = m.drain();
    } catch (e) {
      this.#o.log("warn", `reconcile loop: reading rtnetlink notices: ${(e as Error).message}`);
      return false;
    }
    if (d.overflow) {
      this.#overflow = true;
      this.#o.watch.touch("notices the kernel dropped");
      try {
        this.#o.reseed();
      } catch {}
    }
    return (d.events.length > 0 && this.#o.watch.observe(d.events)) || d.overflow;
  }

  /** The poll: reads the notices and arms (or disarms) the event run. Not while a request is
   * under way: its notices are read after it, all at once. */
  #tick(): void {
    if (this.#busy > 0 || this.#stopped) return;
    if (!this.#read()) return;
    // The run waits for the burst to end: each notice that changes what differs moves it on.
    if (this.#overflow || this.#o.watch.drift.length) this.#arm();
    else if (this.#timer !== undefined) {
      this.#o.clock.clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#firstAt = undefined;
    }
  }

  #arm(): void {
    const c = this.#o.clock;
    const now = c.now();
    this.#firstAt ??= now;
    // Drift that keeps coming back right after each repair: each waits twice as long as the one before.
    const fight = this.#streak >= FIGHT_AFTER && this.#firstAt - this.#repairedAt < FIGHT_WINDOW_MS;
    const slow = fight ? 2 ** (this.#streak - FIGHT_AFTER + 1) : 1;
    const quiet = Math.min(this.#o.debounceMs * slow, this.#o.maxBackoffMs);
    const bound = Math.min(this.#o.maxWaitMs * slow, this.#o.maxBackoffMs);
    const at = Math.min(now + quiet, this.#firstAt + bound);
    c.clearTimeout(this.#timer);
    this.#timer = c.setTimeout(
      () => {
        this.#timer = undefined;
        this.#fall("event");
      },
      Math.max(0, at - now),
    );
  }

  /** What status shows of the loop. */
  get state(): { events: boolean; intervalSeconds: number; drift: string[] } {
    return {
      events: this.#o.monitor !== undefined,
      intervalSeconds: this.#o.intervalMs / 1000,
      drift: this.#o.watch.drift,
    };
  }
}
