/** The load balancer's model (src/model/vip.ts) and what the datapath gets from it
 * (src/lb/state.ts): every refusal names the flag and leaves the document as it was; ids; the
 * kernel state (addresses by family, health, tables only of live backends, the same signature
 * for the same set). */
import { describe, expect, test } from "bun:test";
import { kernelVips, withTable } from "../../src/lb/state";
import {
  addBackend,
  addVip,
  emptyLb,
  isPrime,
  type LbDoc,
  removeBackend,
  removeVip,
  type VipSpec,
  validateLb,
} from "../../src/model/vip";

const NETS = { networks: [{ name: "app", cidr: "10.20.0.0/24", cidr6: "fd20::/64" }] };
const EPS: Record<string, { ip4?: string; ip6?: string }> = {
  web1: { ip4: "10.20.0.2", ip6: "fd20::2" },
  web2: { ip4: "10.20.0.3" },
};
const ep = (n: string) => EPS[n];
const web: VipSpec = { name: "web", address: "192.0.2.80", port: 80, proto: "tcp" };

function refused(fn: () => unknown, code: string, text: string): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect({ code: (err as { code?: string })?.code, has: String((err as Error)?.message).includes(text) }).toEqual({
    code,
    has: true,
  });
}

describe("VIPs", () => {
  test("ids are the smallest free; the address is canonical; defaults are Katran's table and a TCP check", () => {
    let d = addVip(emptyLb(), web, NETS).doc;
    d = addVip(d, { name: "v6", address: "2001:DB8:0:0::10", port: 443, proto: "tcp" }, NETS).doc;
    expect(d.vips.map((v) => [v.name, v.id, v.address, v.tableSize, v.check.kind])).toEqual([
      ["web", 1, "192.0.2.80", 65537, "tcp"],
      ["v6", 2, "2001:db8::10", 65537, "tcp"],
    ]);
    d = removeVip(d, "web");
    d = addVip(d, { ...web, name: "again" }, NETS).doc;
    expect(d.vips.find((v) => v.name === "again")?.id).toBe(1);
  });

  test("a short interval brings the timeout down with it; a timeout longer than the interval is refused", () => {
    const d = addVip(emptyLb(), { ...web, check: { intervalMs: 300 } }, NETS).doc;
    expect(d.vips[0]?.check).toMatchObject({ intervalMs: 300, timeoutMs: 300 });
    refused(
      () => addVip(emptyLb(), { ...web, check: { intervalMs: 300, timeoutMs: 500 } }, NETS),
      "INVALID",
      "longer than the interval",
    );
  });

  test("refusals: inside a network, reserved, taken, duplicate, bad port, table size, name, mode", () => {
    const d = addVip(emptyLb(), web, NETS).doc;
    const before = JSON.stringify(d);
    refused(() => addVip(d, { ...web, name: "x", address: "10.20.0.9" }, NETS), "INVALID", 'inside network "app"');
    refused(() => addVip(d, { ...web, name: "x", address: "fd20::9" }, NETS), "INVALID", 'inside network "app"');
    refused(() => addVip(d, { ...web, name: "x", address: "127.0.0.5" }, NETS), "INVALID", "loopback");
    refused(() => addVip(d, { ...web, name: "x", address: "224.0.0.5" }, NETS), "INVALID", "224.0.0.0/4");
    refused(
      () =>
        addVip(d, { ...web, name: "x", address: "198.51.100.1" }, { ...NETS, taken: () => 'gateway group "g"\'s VIP' }),
      "CONFLICT",
      "gateway group",
    );
    refused(() => addVip(d, { ...web, name: "x" }, NETS), "CONFLICT", 'is VIP "web" already');
    refused(() => addVip(d, web, NETS), "CONFLICT", 'VIP "web" exists already');
    refused(() => addVip(d, { ...web, name: "x", port: 70000 }, NETS), "INVALID", "a port is 1 to 65535");
    refused(() => addVip(d, { ...web, name: "x", port: 81, tableSize: 65536 }, NETS), "INVALID", "a prime");
    refused(() => addVip(d, { ...web, name: "X y", port: 81 }, NETS), "INVALID", "not a valid VIP name");
    refused(() => addVip(d, { ...web, name: "x", port: 81, mode: "vrrp" as "nat" }, NETS), "INVALID", "nat or dsr");
    refused(
      () => addVip(d, { ...web, name: "x", port: 68, proto: "udp", mode: "dsr" }, NETS),
      "INVALID",
      "a DHCP client's port",
    );
    refused(() => addVip(d, { ...web, name: "x", port: 81, proto: "sctp" as "tcp" }, NETS), "INVALID", "--proto sctp");
    expect(JSON.stringify(d)).toBe(before);
  });

  test("isPrime agrees with trial division", () => {
    const naive = (n: number) => n > 1 && Array.from({ length: n - 2 }, (_, i) => i + 2).every((k) => n % k !== 0);
    for (let n = 0; n < 2000; n++) expect({ n, p: isPrime(n) }).toEqual({ n, p: naive(n) });
    expect(isPrime(65537)).toBe(true);
    expect(isPrime(1_048_573)).toBe(true);
  });
});

describe("backends", () => {
  const base = () => addVip(emptyLb(), web, NETS).doc;

  test("port defaults to the VIP's, weight to 1; ids never reused; removal by endpoint (and port)", () => {
    let d = addBackend(base(), "web", { endpoint: "web1" }, ep).doc;
    d = addBackend(d, "web", { endpoint: "web1", port: 8080, weight: 3 }, ep).doc;
    expect(d.vips[0]?.backends.map((b) => [b.id, b.endpoint, b.port, b.weight])).toEqual([
      [1, "web1", 80, 1],
      [2, "web1", 8080, 3],
    ]);
    d = removeBackend(d, "web", "web1", 8080);
    d = addBackend(d, "web", { endpoint: "web2" }, ep).doc;
    expect(d.vips[0]?.backends.map((b) => b.id)).toEqual([1, 3]);
    d = removeBackend(d, "web", "web1");
    expect(d.vips[0]?.backends.map((b) => b.endpoint)).toEqual(["web2"]);
    expect(() => validateLb(d)).not.toThrow();
  });

  test("refusals: no endpoint, no address of the family, duplicate, weight, table too small, unknown VIP", () => {
    const d = addBackend(base(), "web", { endpoint: "web1" }, ep).doc;
    const v6 = addVip(d, { name: "v6", address: "2001:db8::10", port: 80, proto: "tcp" }, NETS).doc;
    refused(() => addBackend(d, "web", { endpoint: "nope" }, ep), "NOT_FOUND", 'no endpoint "nope"');
    refused(() => addBackend(v6, "v6", { endpoint: "web2" }, ep), "INVALID", "has no IPv6 address");
    refused(() => addBackend(d, "web", { endpoint: "web1" }, ep), "CONFLICT", "is a backend of");
    const two = addVip(d, { name: "web2", address: "192.0.2.81", port: 80, proto: "tcp" }, NETS).doc;
    refused(() => addBackend(two, "web2", { endpoint: "web1" }, ep), "CONFLICT", 'is a backend of "web" already');
    expect(addBackend(two, "web2", { endpoint: "web1", port: 81 }, ep).backend.port).toBe(81);
    refused(() => addBackend(d, "web", { endpoint: "web2", weight: 1001 }, ep), "INVALID", "--weight 1001");
    refused(() => addBackend(d, "nope", { endpoint: "web2" }, ep), "NOT_FOUND", 'no VIP "nope"');
    refused(() => removeBackend(d, "web", "web2"), "NOT_FOUND", "is not a backend");
    const small = addVip(emptyLb(), { ...web, tableSize: 13 }, NETS).doc;
    const one = addBackend(small, "web", { endpoint: "web1" }, ep).doc;
    refused(() => addBackend(one, "web", { endpoint: "web2" }, ep), "CAPACITY", "a larger --table-size");
  });
});

describe("DSR", () => {
  const dsr = () => addVip(emptyLb(), { ...web, mode: "dsr" }, NETS).doc;

  test("a backend serves the VIP's own port: another is refused, in the model and in a stored document", () => {
    const d = addBackend(dsr(), "web", { endpoint: "web1" }, ep).doc;
    expect(d.vips[0]?.backends[0]?.port).toBe(80);
    refused(() => addBackend(d, "web", { endpoint: "web2", port: 8080 }, ep), "INVALID", "is DSR");
    const bad = { ...d, vips: d.vips.map((v) => ({ ...v, backends: v.backends.map((b) => ({ ...b, port: 8080 })) })) };
    refused(() => validateLb(bad), "INVALID", "a DSR backend serves the VIP's own port");
    // The same endpoint twice in one DSR VIP (its table is keyed by address and port).
    refused(() => addBackend(d, "web", { endpoint: "web1" }, ep), "CONFLICT", 'is a backend of "web" already');
    const twice = { ...d, vips: d.vips.map((v) => ({ ...v, backends: [...v.backends, { ...v.backends[0], id: 2 }] })) };
    refused(() => validateLb({ ...twice, nextBackendId: 3 } as LbDoc), "INVALID", 'endpoint "web1" twice');
    const dhcp = { ...d, vips: d.vips.map((v) => ({ ...v, proto: "udp" as const, port: 68, backends: [] })) };
    refused(() => validateLb(dhcp), "INVALID", "a DHCP client's port");
  });

  test("this node's table holds this node's backends only; a NAT VIP's holds every node's", () => {
    const nodes: Record<string, string> = { web1: "n1", web2: "n2" };
    const at = (n: string) => (EPS[n] ? { ...EPS[n], node: nodes[n] } : undefined);
    let d = addBackend(dsr(), "web", { endpoint: "web1" }, ep).doc;
    d = addBackend(d, "web", { endpoint: "web2" }, ep).doc;
    d = addVip(d, { ...web, name: "nat", address: "192.0.2.81" }, NETS).doc;
    d = addBackend(d, "nat", { endpoint: "web1", port: 81 }, ep).doc;
    d = addBackend(d, "nat", { endpoint: "web2", port: 81 }, ep).doc;
    const vips = kernelVips(
      d,
      at,
      () => true,
      (node) => node === "n1",
    );
    expect(vips.map((v) => [v.dsr ?? false, v.backends.map((b) => b.address)])).toEqual([
      [true, ["10.20.0.2"]],
      [false, ["10.20.0.2", "10.20.0.3"]],
    ]);
  });
});

describe("the kernel state", () => {
  function doc(): LbDoc {
    let d = addVip(emptyLb(), web, NETS).doc;
    d = addVip(d, { name: "v6", address: "2001:db8::10", port: 443, proto: "tcp", check: { kind: "none" } }, NETS).doc;
    for (const e of ["web1", "web2", "gone"])
      d = addBackend(d, "web", { endpoint: e }, (n) => (n === "gone" ? { ip4: "10.20.0.9" } : ep(n))).doc;
    return addBackend(d, "v6", { endpoint: "web1" }, ep).doc;
  }

  test("addresses by the VIP's family; a backend whose endpoint is gone is left out; health decides up", () => {
    const vips = kernelVips(doc(), ep, (_v, id) => id === 1);
    expect(vips.map((v) => [v.id, v.backends.map((b) => [b.address, b.up])])).toEqual([
      [
        1,
        [
          ["10.20.0.2", true],
          ["10.20.0.3", false],
        ],
      ],
      [2, [["fd20::2", true]]], // check none: up without a health result
    ]);
  });

  test("a table only of live backends; none: no table; the same live set, the same signature", () => {
    const a = kernelVips(doc(), ep, () => true)[0];
    const b = kernelVips(doc(), ep, () => true)[0];
    const one = kernelVips(doc(), ep, (_v, id) => id === 2)[0];
    const none = kernelVips(doc(), ep, () => false)[0];
    expect(a?.table?.sig).toBe(b?.table?.sig as number);
    expect(one?.table?.sig).not.toBe(a?.table?.sig as number);
    expect(new Set(one?.table?.build())).toEqual(new Set([2]));
    expect(none?.table).toBeUndefined();
    const zero = withTable({
      id: 9,
      address: "192.0.2.9",
      port: 1,
      proto: "udp",
      size: 13,
      backends: [{ id: 1, address: "10.0.0.1", port: 1, weight: 0, up: true }],
    });
    expect(zero.table).toBeUndefined();
  });
});
