/** Egress caps: rates and burst sizes as operators write them (tc's units), validated and
 * turned into what the datapath's token bucket keeps (bpf/include/stm_shape.h). Pure. */
import { z } from "zod";
import { StratumError } from "../errors";

/** An egress cap: bits per second and bucket depth in bytes. */
export interface EgressCap {
  rate: number;
  burst: number;
}

/** 8 kbit/s to 400 Gbit/s: the fixed-point cost per byte keeps 5+ significant digits. */
export const RATE_RANGE = [8_000, 400e9] as const;
/** A bucket must hold the largest frame a port or the uplink sees: a 64 KiB GSO packet. */
export const BURST_RANGE = [64 * 1024, 1024 ** 3] as const;
/** Default depth: 300 ms at the rate, at least 128 KiB (two full GSO packets), at most the
 * largest burst. A policer drops, it does not queue: a TCP sender that runs the bucket dry
 * loses its retransmissions too and waits out a retransmission timeout (at least 200 ms in
 * Linux). A bucket that holds more than one such stall's worth of rate pays it back, so the
 * long-run rate is the cap; a shallower one loses the stall (docs/benchmarks.md, "Other
 * figures", has what 100, 200 and 300 ms gave TCP). */
export const DEFAULT_BURST_MS = 300;
export const DEFAULT_BURST_MIN = 128 * 1024;

const RATE_UNITS: Record<string, number> = {
  bit: 1,
  kbit: 1e3,
  mbit: 1e6,
  gbit: 1e9,
  tbit: 1e12,
  // tc's byte rates
  bps: 8,
  kbps: 8e3,
  mbps: 8e6,
  gbps: 8e9,
};

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

const fmtNum = (n: number) => (Number.isInteger(n) ? String(n) : n.toFixed(2).replace(/\.?0+$/, ""));

/** "100mbit", "1.5gbit", "800kbit", "10mbps" (bytes, as tc) → bits per second; "0" and
 * "none" → 0 (no cap). Throws INVALID naming the accepted forms. */
export function parseRate(text: string): number {
  const t = String(text).trim().toLowerCase();
  if (t === "0" || t === "none") return 0;
  const m = t.match(/^(\d+(?:\.\d+)?)\s*([a-z]+)$/);
  const unit = m ? RATE_UNITS[m[2] as string] : undefined;
  if (!m || unit === undefined)
    throw new StratumError(
      "INVALID",
      `rate "${text}" is not a number with a unit: bit, kbit, mbit, gbit, tbit (bits per second) or bps, kbps, mbps, gbps (bytes per second), e.g. 100mbit; 0 or none removes the cap`,
    );
  const bits = Math.round(Number(m[1]) * unit);
  if (bits < RATE_RANGE[0] || bits > RATE_RANGE[1])
    throw new StratumError(
      "INVALID",
      `rate ${text} is outside ${formatRate(RATE_RANGE[0])} to ${formatRate(RATE_RANGE[1])}`,
    );
  return bits;
}

/** "256k", "1m", "65536", "2mb" → bytes (k/m/g are 1024-based, as tc's); "0" → 0 (the
 * default for the rate). */
export function parseSize(text: string): number {
  const t = String(text).trim().toLowerCase();
  if (t === "0" || t === "default") return 0;
  const m = t.match(/^(\d+(?:\.\d+)?)\s*([a-z]*)$/);
  const unit = m ? SIZE_UNITS[m[2] as string] : undefined;
  if (!m || unit === undefined)
    throw new StratumError("INVALID", `size "${text}" is not bytes with an optional k, m or g (1024-based), e.g. 256k`);
  const bytes = Math.round(Number(m[1]) * unit);
  if (bytes < BURST_RANGE[0] || bytes > BURST_RANGE[1])
    throw new StratumError(
      "INVALID",
      `burst ${text} is outside ${formatSize(BURST_RANGE[0])} to ${formatSize(BURST_RANGE[1])} (it must hold a 64 KiB packet)`,
    );
  return bytes;
}

export function formatRate(bits: number): string {
  for (const [u, f] of [
    ["gbit", 1e9],
    ["mbit", 1e6],
    ["kbit", 1e3],
  ] as const)
    if (bits >= f) return `${fmtNum(bits / f)}${u}`;
  return `${bits}bit`;
}

export function formatSize(bytes: number): string {
  for (const [u, f] of [
    ["g", 1024 ** 3],
    ["m", 1024 ** 2],
    ["k", 1024],
  ] as const)
    if (bytes >= f) return `${fmtNum(bytes / f)}${u}`;
  return `${bytes}`;
}

/** The bucket depth used for `rate` when none is given. */
export function defaultBurst(rate: number): number {
  return Math.min(BURST_RANGE[1], Math.max(DEFAULT_BURST_MIN, Math.ceil((rate / 8) * (DEFAULT_BURST_MS / 1000))));
}

/** Rate and burst from their text forms: undefined when `rate` is 0/none (no cap). A burst
 * without a rate is refused. */
export function parseCap(rateText: string | undefined, burstText: string | undefined): EgressCap | null | undefined {
  if (rateText === undefined) {
    if (burstText !== undefined) throw new StratumError("INVALID", "--egress-burst needs --egress-rate");
    return undefined; // unchanged
  }
  const rate = parseRate(rateText);
  if (rate === 0) {
    if (burstText !== undefined && parseSize(burstText) !== 0)
      throw new StratumError("INVALID", "a burst without a rate: --egress-rate 0 removes the cap");
    return null; // removed
  }
  const burst = burstText === undefined ? 0 : parseSize(burstText);
  return { rate, burst: burst || defaultBurst(rate) };
}

/** A cap in an API body: bit/s, and bytes (default: defaultBurst of the rate). */
export const EgressCapSchema = z.object({ rate: z.number().int(), burst: z.number().int().optional() }).strict();

/** Checks a stored or requested cap (API bodies come as numbers); fills the default burst. */
export function validateCap(req: { rate: number; burst?: number }): EgressCap {
  const c = { rate: req.rate, burst: req.burst || (Number.isFinite(req.rate) ? defaultBurst(req.rate) : 0) };
  if (!Number.isInteger(c.rate) || c.rate < RATE_RANGE[0] || c.rate > RATE_RANGE[1])
    throw new StratumError("INVALID", `egress rate ${c.rate} bit/s is outside ${RATE_RANGE[0]}-${RATE_RANGE[1]}`);
  if (!Number.isInteger(c.burst) || c.burst < BURST_RANGE[0] || c.burst > BURST_RANGE[1])
    throw new StratumError("INVALID", `egress burst ${c.burst} bytes is outside ${BURST_RANGE[0]}-${BURST_RANGE[1]}`);
  return c;
}

export const SHAPE_SHIFT = 20n;

/** What the datapath keeps for a cap (struct stm_shape_cfg): the time one byte takes in ns
 * << SHAPE_SHIFT, and the burst as time at that rate. */
export function bucketConfig(c: EgressCap): { nsPerByte: bigint; burstNs: bigint } {
  const bytesPerSec = BigInt(Math.round(c.rate / 8));
  const nsPerByte = (1_000_000_000n << SHAPE_SHIFT) / bytesPerSec;
  const burstNs = (BigInt(c.burst) * nsPerByte) >> SHAPE_SHIFT;
  return { nsPerByte, burstNs };
}
