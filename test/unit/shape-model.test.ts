/** Egress cap input: rates in tc's units, burst sizes, the default burst, what parseCap
 * means by undefined/null/a cap, and the fixed-point bucket configuration. */
import { describe, expect, test } from "bun:test";
import {
  bucketConfig,
  defaultBurst,
  formatRate,
  formatSize,
  parseCap,
  parseRate,
  parseSize,
  validateCap,
} from "../../src/model/egress-cap";

describe("rates and sizes", () => {
  test("rates: bits and tc's bytes per second; 0 and none remove", () => {
    expect(parseRate("100mbit")).toBe(100e6);
    expect(parseRate("1.5gbit")).toBe(1.5e9);
    expect(parseRate("800kbit")).toBe(800e3);
    expect(parseRate("10mbps")).toBe(80e6);
    expect(parseRate(" 20MBIT ")).toBe(20e6);
    expect(parseRate("0")).toBe(0);
    expect(parseRate("none")).toBe(0);
    for (const bad of ["100", "100mb", "fast", "-5mbit", "1e3mbit", ""])
      expect(() => parseRate(bad)).toThrow(/is not a number with a unit/);
    expect(() => parseRate("1kbit")).toThrow("rate 1kbit is outside 8kbit to 400gbit");
    expect(() => parseRate("500gbit")).toThrow(/outside/);
  });

  test("sizes: 1024-based k, m, g; a burst must hold a 64 KiB packet", () => {
    expect(parseSize("256k")).toBe(262_144);
    expect(parseSize("1m")).toBe(1_048_576);
    expect(parseSize("2mb")).toBe(2_097_152);
    expect(parseSize("65536")).toBe(65_536);
    expect(() => parseSize("32k")).toThrow("burst 32k is outside 64k to 1g (it must hold a 64 KiB packet)");
    expect(() => parseSize("lots")).toThrow(/is not bytes/);
    expect(formatRate(100e6)).toBe("100mbit");
    expect(formatRate(1.5e9)).toBe("1.5gbit");
    expect(formatSize(262_144)).toBe("256k");
    expect(formatSize(1_250_000)).toBe("1.19m");
    expect(formatSize(65_000)).toBe("63.48k");
  });

  test("the default burst: 300 ms at the rate, at least 128 KiB, at most 1 GiB", () => {
    expect(defaultBurst(1e6)).toBe(131_072);
    expect(defaultBurst(20e6)).toBe(750_000);
    expect(defaultBurst(500e6)).toBe(18_750_000);
    expect(defaultBurst(400e9)).toBe(1024 ** 3);
  });

  test("parseCap: no flag leaves the cap, 0/none removes it, a burst alone is refused", () => {
    expect(parseCap(undefined, undefined)).toBeUndefined();
    expect(parseCap("none", undefined)).toBeNull();
    expect(parseCap("100mbit", undefined)).toEqual({ rate: 100e6, burst: 3_750_000 });
    expect(parseCap("100mbit", "1m")).toEqual({ rate: 100e6, burst: 1_048_576 });
    expect(() => parseCap(undefined, "1m")).toThrow("--egress-burst needs --egress-rate");
    expect(() => parseCap("0", "1m")).toThrow(/removes the cap/);
  });

  test("validateCap fills the default burst and refuses what is out of range", () => {
    expect(validateCap({ rate: 100e6 })).toEqual({ rate: 100e6, burst: 3_750_000 });
    expect(() => validateCap({ rate: 5 })).toThrow(/egress rate 5 bit\/s is outside/);
    expect(() => validateCap({ rate: 100e6, burst: 10 })).toThrow(/egress burst 10 bytes is outside/);
    expect(() => validateCap({ rate: 1.5 })).toThrow(/outside/);
  });
});

test("bucketConfig: ns per byte << 20 and the burst as time", () => {
  expect(bucketConfig({ rate: 8e9, burst: 1_000_000 })).toEqual({ nsPerByte: 1n << 20n, burstNs: 1_000_000n });
  const c = bucketConfig({ rate: 100e6, burst: 262_144 });
  expect(c.nsPerByte).toBe(80n << 20n);
  expect(c.burstNs).toBe(262_144n * 80n);
  // 400 Gbit/s: 0.02 ns a byte, still 5 significant digits in fixed point.
  expect(bucketConfig({ rate: 400e9, burst: 65_536 }).nsPerByte).toBe(20971n);
});
