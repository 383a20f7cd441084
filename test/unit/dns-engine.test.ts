/** The engine keeps what it built: a network whose input is the same keeps its zones (a
 * cluster sets hundreds of networks again on every change anywhere), a network's zones are
 * built when first needed, a changed network gets new ones whose serial moves forward, and a
 * network whose content is the same keeps its serial. */
import { expect, test } from "bun:test";
import { DnsEngine } from "../../src/dns/engine";
import type { ZoneInput } from "../../src/dns/zone";

const net = (name: string, third: number, endpoints: ZoneInput["endpoints"] = []): ZoneInput => ({
  network: {
    name,
    cidr: `10.77.${third}.0/24`,
    gateway: `10.77.${third}.1`,
    dnsZone: `${name}.internal`,
    dnsForwarders: [],
  },
  endpoints,
  records: [],
});
const ep = (name: string, i: number) => ({
  name,
  ip: `10.77.1.${i}`,
  mac: `02:00:00:00:01:${i.toString(16).padStart(2, "0")}`,
});

test("zones are built once per input, when first needed; a change moves the serial, the same content keeps it", () => {
  let now = 1_800_000_000_000;
  const warnings: string[] = [];
  const e = new DnsEngine({ now: () => now, log: (_l, m) => warnings.push(m) });
  const addrs = e.setZones([net("a", 1, [ep("web", 5), ep("Bad Name", 6)]), net("b", 2)]);
  expect([...addrs]).toEqual([
    ["10.77.1.1", "a"],
    ["10.77.2.1", "b"],
  ]);
  // Nothing built yet: no warning about a's endpoint until a's zones are needed.
  expect(warnings).toEqual([]);
  const a1 = e.zones("a");
  expect(a1?.serial).toBeGreaterThan(0);
  expect(warnings.some((w) => w.includes("Bad Name"))).toBe(true);

  // The same input again (new objects, as every refresh reads them): the same zones.
  now += 60_000;
  e.setZones([net("a", 1, [ep("web", 5), ep("Bad Name", 6)]), net("b", 2)]);
  expect(e.zones("a")).toBe(a1);

  // An endpoint added: new zones, serial forward, the name answers.
  now += 60_000;
  e.setZones([net("a", 1, [ep("web", 5), ep("Bad Name", 6), ep("db", 7)]), net("b", 2)]);
  const a2 = e.zones("a");
  expect(a2).not.toBe(a1);
  expect(a2?.serial).toBeGreaterThan(a1?.serial as number);
  expect(a2?.hash).not.toBe(a1?.hash);

  // Another input with the same content (an endpoint's MAC, which no record shows): same serial.
  now += 60_000;
  e.setZones([
    net("a", 1, [ep("web", 5), ep("Bad Name", 6), { ...ep("db", 7), mac: "02:00:00:00:09:09" }]),
    net("b", 2),
  ]);
  expect(e.zones("a")?.serial).toBe(a2?.serial);

  // Two networks on one gateway address: refused, nothing taken.
  expect(() => e.setZones([net("a", 1), { ...net("c", 1), network: { ...net("c", 1).network, name: "c" } }])).toThrow(
    "gateway 10.77.1.1 is network a's too",
  );
  expect(e.zones("c")).toBeUndefined();
  expect(e.zones("b")).toBeDefined();
});
