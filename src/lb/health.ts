/** Backend health checks of the load balancer, run by the agent: one probe is a TCP connect or an
 * HTTP/1.1 GET that never throws and never leaves a socket open; rise/fall hysteresis turns probe
 * results into healthy/unhealthy, and HealthChecker reports only the transitions. */
import net from "node:net";
import { consola } from "consola";
import { StratumError } from "../errors";

export type HealthCheck =
  | { kind: "tcp" }
  | { kind: "http"; path: string; expect: number /* HTTP status, e.g. 200 */; host?: string };

export interface HealthTiming {
  intervalMs: number;
  timeoutMs: number;
  rise: number;
  fall: number;
}

export const DEFAULT_TIMING: HealthTiming = { intervalMs: 2000, timeoutMs: 1000, rise: 2, fall: 3 };

export interface ProbeResult {
  ok: boolean;
  detail: string;
  ms: number;
}

export interface ProbeTarget {
  address: string;
  port: number;
}

/** Upper bound, roughly, on how long a backend that died just after a passing probe keeps getting
 * new flows: `fall` failing probes one interval apart, the last of which may take the full
 * timeout. (Add the passing probe's own duration, and more when timeout exceeds the interval,
 * since ticks that find the previous probe still running are skipped.) */
export function maxDetectionMs(timing: HealthTiming): number {
  return timing.fall * timing.intervalMs + timing.timeoutMs;
}

const log = consola.withTag("lb-health");

// A status line longer than this is not HTTP; without a cap a chatty non-HTTP service would make
// the probe buffer until the timeout.
const MAX_STATUS_LINE = 1024;

const ERRNO_DETAIL: Record<string, string> = {
  ECONNREFUSED: "connect refused",
  ECONNRESET: "connection reset",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  EADDRNOTAVAIL: "address not available",
  ETIMEDOUT: "connect timed out",
  EPIPE: "connection reset",
};

function errorDetail(e: unknown, connected: boolean): string {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === "string") return ERRNO_DETAIL[code] ?? (connected ? code : `connect: ${code}`);
  return `error: ${firstLine(e instanceof Error ? e.message : String(e))}`;
}

function firstLine(s: string): string {
  return s.split(/\r?\n/, 1)[0]!.slice(0, 120);
}

/** The Host header for a literal address: IPv6 in brackets, its zone left out (a zone only means
 * something on this host, and RFC 6874's escaped form is not understood by most servers). */
function hostFor(address: string): string {
  return net.isIPv6(address) ? `[${address.replace(/%.*$/, "")}]` : address;
}

// CR, LF or other controls in a request field would let a configured path or host inject headers.
const UNSAFE_FIELD = /[\u0000-\u0020\u007f]/;

/** One probe of one target. Resolves with the outcome in one operator-readable line; never rejects.
 * The whole probe (connect, request, status line) gets `timeoutMs`, after which the socket is
 * destroyed, a connect still in flight included.
 *
 * node:net and not Bun.connect: a pending Bun.connect cannot be cancelled (there is no socket
 * until it opens), so a probe of a black-holed backend would keep a handle for the kernel's whole
 * SYN retry time (minutes). fetch is not used either: it pools connections (a probe must open a
 * fresh one, or it tests a connection the backend accepted long ago) and honours HTTP(S)_PROXY. */
export function probeOnce(target: ProbeTarget, check: HealthCheck, timeoutMs: number): Promise<ProbeResult> {
  try {
    return probe(target, check, timeoutMs);
  } catch (e) {
    // Only a target or check that is not what its type says gets here (from JSON, say).
    return Promise.resolve({ ok: false, detail: `bad check: ${firstLine(String(e))}`, ms: 0 });
  }
}

function probe(target: ProbeTarget, check: HealthCheck, timeoutMs: number): Promise<ProbeResult> {
  const started = performance.now();
  const elapsed = () => Math.round((performance.now() - started) * 10) / 10;
  const limit = Number.isFinite(timeoutMs) && timeoutMs > 0 ? timeoutMs : 1;

  // A name would mean a DNS lookup inside the probe, slow and failing for reasons of its own.
  if (net.isIP(target.address) === 0) {
    return Promise.resolve({ ok: false, detail: `not an IP address: ${target.address}`, ms: 0 });
  }
  if (!Number.isInteger(target.port) || target.port < 1 || target.port > 65535) {
    return Promise.resolve({ ok: false, detail: `bad port ${target.port}`, ms: 0 });
  }
  let request: string | undefined;
  if (check.kind === "http") {
    const host = check.host ?? hostFor(target.address);
    if (!check.path.startsWith("/") || UNSAFE_FIELD.test(check.path)) {
      return Promise.resolve({ ok: false, detail: `bad path ${JSON.stringify(check.path)}`, ms: 0 });
    }
    if (host === "" || UNSAFE_FIELD.test(host)) {
      return Promise.resolve({ ok: false, detail: `bad host ${JSON.stringify(host)}`, ms: 0 });
    }
    request =
      `GET ${check.path} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: stratum-health\r\n` +
      "Accept: */*\r\nConnection: close\r\n\r\n";
  }

  return new Promise<ProbeResult>((resolve) => {
    let done = false;
    let connected = false;
    let socket: net.Socket | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const finish = (ok: boolean, detail: string) => {
      if (done) return;
      done = true;
      if (timer !== undefined) clearTimeout(timer);
      try {
        socket?.destroy();
      } catch {
        // Already torn down: nothing left to release.
      }
      resolve({ ok, detail, ms: elapsed() });
    };
    timer = setTimeout(
      () => finish(false, `timeout after ${limit} ms${connected ? " waiting for status" : " connecting"}`),
      limit,
    );
    try {
      socket = net.createConnection({ host: target.address, port: target.port });
    } catch (e) {
      finish(false, errorDetail(e, false));
      return;
    }
    socket.setNoDelay(true);
    socket.on("error", (e) => finish(false, errorDetail(e, connected)));
    socket.on("close", () => finish(false, connected ? "closed before status line" : "closed while connecting"));
    socket.once("connect", () => {
      connected = true;
      if (request === undefined) {
        finish(true, "ok connect");
        return;
      }
      let head = "";
      socket!.on("data", (chunk: Buffer) => {
        head += chunk.toString("latin1");
        const eol = head.indexOf("\n");
        if (eol < 0) {
          if (head.length > MAX_STATUS_LINE) finish(false, "no HTTP status line");
          return;
        }
        const m = /^HTTP\/\d(?:\.\d)? (\d{3})(?:[ \r]|$)/.exec(head.slice(0, eol));
        if (!m) {
          finish(false, `not HTTP: ${JSON.stringify(head.slice(0, Math.min(eol, 40)))}`);
          return;
        }
        const status = Number(m[1]);
        const want = (check as { expect: number }).expect;
        finish(status === want, status === want ? `ok ${status}` : `status ${status}, want ${want}`);
      });
      socket!.write(request);
    });
  });
}

export interface HealthState {
  healthy: boolean;
  /** Consecutive results contradicting `healthy`; reaching rise (or fall) flips the state. */
  streak: number;
  lastDetail: string;
  /** When `healthy` last changed, or when tracking began. */
  lastChange: number;
  checks: number;
  failures: number;
}

/** A new backend starts unhealthy and must pass `rise` probes before it gets flows: sending traffic
 * to a backend nobody has seen answer yet (still booting, wrong port) fails real clients, while
 * waiting rise × interval for a good one only delays its first flows. `healthy = true` is for
 * state carried over from elsewhere (an agent restart that trusts what it knew). */
export function initialHealth(now: number, healthy = false): HealthState {
  return { healthy, streak: 0, lastDetail: "", lastChange: now, checks: 0, failures: 0 };
}

/** The state after one probe result. Pure: the same inputs give the same output. */
export function nextHealth(
  s: HealthState,
  ok: boolean,
  detail: string,
  timing: HealthTiming,
  now: number,
): { state: HealthState; changed: boolean } {
  const checks = s.checks + 1;
  const failures = s.failures + (ok ? 0 : 1);
  if (ok === s.healthy) {
    return { state: { ...s, streak: 0, lastDetail: detail, checks, failures }, changed: false };
  }
  const streak = s.streak + 1;
  // A rise or fall below 1 would mean flipping on no evidence at all; treat it as 1.
  const need = Math.max(1, s.healthy ? timing.fall : timing.rise);
  if (streak >= need) {
    return { state: { healthy: ok, streak: 0, lastDetail: detail, lastChange: now, checks, failures }, changed: true };
  }
  return { state: { ...s, streak, lastDetail: detail, checks, failures }, changed: false };
}

export interface HealthTarget {
  id: string;
  address: string;
  port: number;
  check: HealthCheck;
  timing: HealthTiming;
  /** Its state when it is new here: healthy (as the datapath last had it, after an agent
   * restart) until `fall` checks fail; default unhealthy until `rise` pass. */
  healthy?: boolean;
}

interface Entry {
  target: HealthTarget;
  key: string;
  state: HealthState;
  timer: ReturnType<typeof setTimeout> | undefined;
  running: boolean;
}

/** What makes two targets the same check; a change in any of it restarts the target's state. */
function keyOf(t: HealthTarget): string {
  const c = t.check;
  const check = c.kind === "http" ? ["http", c.path, c.expect, c.host ?? null] : ["tcp"];
  const { intervalMs, timeoutMs, rise, fall } = t.timing;
  return JSON.stringify([t.address, t.port, check, intervalMs, timeoutMs, rise, fall]);
}

function validateTiming(t: HealthTarget): void {
  const { intervalMs, timeoutMs, rise, fall } = t.timing;
  const positive = (n: number) => Number.isFinite(n) && n > 0;
  if (!positive(intervalMs) || !positive(timeoutMs)) {
    throw new StratumError(
      "INVALID",
      `health check ${t.id}: interval and timeout must be positive (got ${intervalMs} ms, ${timeoutMs} ms)`,
    );
  }
  if (!Number.isInteger(rise) || !Number.isInteger(fall) || rise < 1 || fall < 1) {
    throw new StratumError(
      "INVALID",
      `health check ${t.id}: rise and fall must be integers ≥ 1 (got ${rise}, ${fall})`,
    );
  }
}

/** Probes a changing set of targets, each on its own timer, and calls `onChange` when one turns
 * healthy or unhealthy, never for a result that leaves the state as it was. A new target starts
 * unhealthy, so one that never comes up is never reported: the listener must treat a target as
 * unhealthy until told otherwise. */
export class HealthChecker {
  readonly #onChange: (id: string, state: HealthState) => void;
  readonly #now: () => number;
  readonly #probe: typeof probeOnce;
  readonly #entries = new Map<string, Entry>();
  #stopped = false;

  constructor(opts: {
    onChange: (id: string, state: HealthState) => void;
    now?: () => number;
    probe?: typeof probeOnce;
  }) {
    this.#onChange = opts.onChange;
    this.#now = opts.now ?? Date.now;
    this.#probe = opts.probe ?? probeOnce;
  }

  /** Replaces the set of targets (on a duplicate id the last one wins). A target whose id, address,
   * port, check and timing are unchanged keeps its state and schedule, so a reconcile that re-sends
   * the same list neither resets hysteresis nor bunches probes together; one whose definition
   * changed keeps only its verdict and starts a new schedule. Throws on an invalid timing before
   * changing anything. After stop() this does nothing. */
  set(targets: HealthTarget[]): void {
    for (const t of targets) validateTiming(t);
    if (this.#stopped) return;
    const wanted = new Map<string, HealthTarget>();
    for (const t of targets) wanted.set(t.id, t);
    const redefined = new Map<string, HealthState>();
    for (const [id, e] of this.#entries) {
      const t = wanted.get(id);
      if (t !== undefined && keyOf(t) === e.key) continue;
      if (t !== undefined) redefined.set(id, e.state);
      this.#remove(id);
    }
    for (const [id, t] of wanted) {
      if (this.#entries.has(id)) continue;
      // A redefined target keeps its verdict, not its streak: the listener still acts on the old
      // verdict, and a silent reset to unhealthy would never be reported if the new check failed.
      const prev = redefined.get(id);
      const state = prev ? { ...prev, streak: 0 } : initialHealth(this.#now(), t.healthy === true);
      const e: Entry = { target: t, key: keyOf(t), state, timer: undefined, running: false };
      this.#entries.set(id, e);
      // Spread first probes over a quarter interval: a set() of 1,000 new targets must not open
      // 1,000 connections in the same millisecond, yet none should wait long for its first result.
      this.#schedule(id, e, Math.random() * (t.timing.intervalMs / 4));
    }
  }

  state(id: string): HealthState | undefined {
    return this.#entries.get(id)?.state;
  }

  states(): Map<string, HealthState> {
    return new Map([...this.#entries].map(([id, e]) => [id, e.state]));
  }

  /** Cancels every timer; a probe already in flight finishes but its result is dropped. */
  stop(): void {
    this.#stopped = true;
    for (const id of [...this.#entries.keys()]) this.#remove(id);
  }

  #remove(id: string): void {
    const e = this.#entries.get(id);
    if (e === undefined) return;
    if (e.timer !== undefined) clearTimeout(e.timer);
    e.timer = undefined;
    this.#entries.delete(id);
  }

  #schedule(id: string, e: Entry, delayMs: number): void {
    e.timer = setTimeout(() => this.#tick(id, e), delayMs);
  }

  #tick(id: string, e: Entry): void {
    // The entry may have been replaced or removed since this timer was set.
    if (this.#stopped || this.#entries.get(id) !== e) return;
    // Scheduled before probing, so the cadence stays one interval whatever the probe takes.
    this.#schedule(id, e, e.target.timing.intervalMs);
    // A probe still running (timeout ≥ interval, or a slow injected probe) owns this target: a
    // second one would pile connections onto a struggling backend and race its result.
    if (e.running) return;
    e.running = true;
    const { address, port, check, timing } = e.target;
    let result: Promise<ProbeResult>;
    try {
      result = this.#probe({ address, port }, check, timing.timeoutMs);
    } catch (err) {
      result = Promise.reject(err);
    }
    result
      .catch((err: unknown): ProbeResult => ({ ok: false, detail: `probe error: ${String(err)}`, ms: 0 }))
      .then((r) => {
        e.running = false;
        if (this.#stopped || this.#entries.get(id) !== e) return;
        const { state, changed } = nextHealth(e.state, r.ok, r.detail, timing, this.#now());
        e.state = state;
        if (!changed) return;
        try {
          this.#onChange(id, state);
        } catch (err) {
          // A failing listener must not stop this target's checks, nor surface as an unhandled
          // rejection that takes the agent down.
          log.error(`health check ${id}: onChange failed: ${String(err)}`);
        }
      });
  }
}
