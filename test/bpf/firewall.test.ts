/** The firewall under BPF_PROG_TEST_RUN: generated rule sets and packets through the compiled
 * tries of the real port programs, against the reference evaluator (src/model/firewall.ts),
 * plus fixtures for state (replies, unsolicited packets, rule changes), fragments, reject
 * and the blocklist. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { FW_DEFAULT_ID } from "../../src/datapath/firewall-maps";
import { FirewallTables } from "../../src/datapath/firewall-tables";
import { type MonEvent, MonitorSession } from "../../src/datapath/monitor-ring";
import { loadObject } from "../../src/datapath/objects";
import { encodeIfindex, encodePort } from "../../src/datapath/port-maps";
import { packPrefixes } from "../../src/model/blocklist";
import { type DefaultAction, evaluate, parseRule, type RuleSpec, type StoredRule } from "../../src/model/firewall-rule";
import { parseSubnet } from "../../src/model/ip";
import { type BpfObject, testRun } from "../../src/sys/bpf";
import { alloc, SK_BUFF } from "../../src/sys/layout";
import { ETH_P, ethernet, IPPROTO, icmp, ipv4, ipv6, lla, ndBody, udp } from "../helpers/frames";
import {
  clearState,
  dropCount,
  expectedRetval,
  frame,
  genPacket,
  genRule,
  MAC,
  NET,
  PEER,
  PEER_MAC,
  type Pkt,
  PORT,
  pick,
  portCfg,
  run,
  TC_DROP,
  TC_NEXT,
  TC_REDIRECT,
  useFwObject,
} from "../helpers/fw-harness";
import { prng } from "../helpers/prng";

let obj: BpfObject;
let fw: FirewallTables;
let nextId = 1;

beforeAll(() => {
  obj = loadObject("port");
  useFwObject(obj);
  fw = new FirewallTables({ map: (n) => obj.map(n) });
});
afterAll(() => obj?.close());

function install(specs: RuleSpec[], def: DefaultAction): StoredRule[] {
  const rules = specs.map((s) => ({ ...parseRule(s), id: nextId++ })).sort((a, b) => a.priority - b.priority);
  fw.apply(NET, rules, def);
  return rules;
}

// ---- differential -------------------------------------------------------------------------

describe("datapath classification equals the reference evaluator", () => {
  const SETS = 40;
  const PACKETS = 20;
  test(`${SETS} generated rule sets × ${PACKETS} packets: 0 mismatches`, () => {
    let cases = 0;
    const dist: Record<string, number> = {};
    const mismatches: string[] = [];
    for (let s = 0; s < SETS; s++) {
      const seed = 1000 + s;
      const r = prng(seed);
      const fam = (s % 3 === 0 ? 4 : s % 3 === 1 ? 6 : 0) as 4 | 6 | 0;
      const n = s === 0 ? 1 : 1 + Math.floor(r() * (s % 5 === 4 ? 300 : 24));
      const prios = new Set<number>();
      while (prios.size < n) prios.add(1 + Math.floor(r() * 100000));
      const specs = [...prios].map((p) => genRule(r, p, fam === 0 ? pick(r, [0, 4, 6] as const) : fam));
      const def: DefaultAction = r() < 0.5 ? "deny" : "allow";
      const rules = install(specs, def);
      for (let i = 0; i < PACKETS; i++) {
        clearState();
        const p = genPacket(r, fam === 0 ? pick(r, [4, 6] as const) : fam);
        const want = evaluate(rules, def, p);
        const got = run(p);
        const wantHit = want.ruleId ?? (FW_DEFAULT_ID | NET) >>> 0;
        const wantRet = expectedRetval(want.action);
        cases++;
        dist[`${want.action}/${want.ruleId ? "rule" : "default"}/${got.retval}`] =
          (dist[`${want.action}/${want.ruleId ? "rule" : "default"}/${got.retval}`] ?? 0) + 1;
        if (got.retval !== wantRet || got.hit !== wantHit)
          mismatches.push(
            `seed ${seed} packet ${i} ${JSON.stringify(p)}: want ${want.action} by ${wantHit} (${wantRet}), got ${got.retval} by ${got.hit}`,
          );
      }
    }
    expect(cases).toBeGreaterThanOrEqual(500);
    // Every outcome is exercised: allowed, denied and rejected by rules, both defaults.
    for (const k of ["allow/rule/-1", "deny/rule/2", "reject/rule/7", "allow/default/-1", "deny/default/2"])
      expect({ k, atLeast20: (dist[k] ?? 0) >= 20 }).toEqual({ k, atLeast20: true });
    expect(mismatches).toEqual([]);
  });
});

// ---- state, fragments, reject, blocklist, log, capacity ------------------------------------

const A = "10.0.0.1"; // the workload behind PORT
const B = "10.0.0.2"; // its peer
const A6 = "fd00::a";
const B6 = "fd00::b";

function stat(i: number): bigint {
  const key = Buffer.alloc(4);
  key.writeUInt32LE(i);
  return (obj.map("stm_fw_stats").lookupPerCpu(key) ?? []).reduce((a, b) => a + b.readBigUInt64LE(0), 0n);
}
const STAT = { CT_NEW: 0, CT_PICKUP: 1, CT_FULL: 2, CT_REVALIDATED: 3, CT_CUT: 4, FRAG_MISS: 5, REJECT_SENT: 6 };

describe("connection tracking", () => {
  test("replies of an allowed flow pass; an opening from the denied side does not", () => {
    clearState();
    install([{ priority: 10, direction: "egress", proto: "tcp", dport: "80", action: "allow" }], "deny");
    const syn: Pkt = { dir: "egress", src: A, dst: B, proto: IPPROTO.TCP, sport: 40000, dport: 80, tcpFlags: 2 };
    expect(run(syn).retval).toBe(TC_NEXT);
    // The SYN-ACK and later segments from B: replies, no rule consulted (no hit counted).
    const synAck: Pkt = { dir: "ingress", src: B, dst: A, proto: IPPROTO.TCP, sport: 80, dport: 40000, tcpFlags: 0x12 };
    expect(run(synAck)).toMatchObject({ retval: TC_NEXT, hit: undefined });
    expect(run({ ...syn, tcpFlags: 0x10 })).toMatchObject({ retval: TC_NEXT, hit: undefined });
    // B opening a connection to A, even from the allowed flow's own ports: denied.
    const before = dropCount("fw-default");
    expect(run({ ...synAck, tcpFlags: 2 }).retval).toBe(TC_DROP);
    expect(run({ ...synAck, sport: 5555, dport: 22, tcpFlags: 2 }).retval).toBe(TC_DROP);
    expect(dropCount("fw-default") - before).toBe(2n);
    // A reset closes the flow; later segments of it are classified again (and denied inbound).
    expect(run({ ...synAck, tcpFlags: 0x14 }).retval).toBe(TC_NEXT);
  });

  test("ICMP echo: the reply passes, an echo request back is denied", () => {
    clearState();
    install([{ priority: 10, direction: "egress", proto: "icmp", "icmp-type": "8", action: "allow" }], "deny");
    const req: Pkt = { dir: "egress", src: A, dst: B, proto: IPPROTO.ICMP, sport: 8, dport: 0, icmpId: 9 };
    expect(run(req).retval).toBe(TC_NEXT);
    expect(run({ dir: "ingress", src: B, dst: A, proto: IPPROTO.ICMP, sport: 0, dport: 0, icmpId: 9 }).retval).toBe(
      TC_NEXT,
    );
    expect(run({ dir: "ingress", src: B, dst: A, proto: IPPROTO.ICMP, sport: 8, dport: 0, icmpId: 9 }).retval).toBe(
      TC_DROP,
    );
    // A reply to an echo nobody sent: denied.
    expect(run({ dir: "ingress", src: B, dst: A, proto: IPPROTO.ICMP, sport: 0, dport: 0, icmpId: 10 }).retval).toBe(
      TC_DROP,
    );
  });

  test("IPv6: replies of an allowed UDP flow pass, unsolicited datagrams do not", () => {
    clearState();
    install([{ priority: 5, direction: "egress", proto: "udp", dport: "5000-5010", action: "allow" }], "deny");
    expect(run({ dir: "egress", src: A6, dst: B6, proto: IPPROTO.UDP, sport: 33000, dport: 5005 }).retval).toBe(
      TC_NEXT,
    );
    expect(run({ dir: "ingress", src: B6, dst: A6, proto: IPPROTO.UDP, sport: 5005, dport: 33000 }).retval).toBe(
      TC_NEXT,
    );
    expect(run({ dir: "ingress", src: B6, dst: A6, proto: IPPROTO.UDP, sport: 5005, dport: 33001 }).retval).toBe(
      TC_DROP,
    );
  });

  test("an established flow survives an unrelated rule change and is cut by a deny of its own", () => {
    clearState();
    const allow: RuleSpec = { priority: 10, direction: "egress", proto: "tcp", dport: "443", action: "allow" };
    install([allow], "deny");
    const syn: Pkt = { dir: "egress", src: A, dst: B, proto: IPPROTO.TCP, sport: 41000, dport: 443, tcpFlags: 2 };
    const reply: Pkt = { dir: "ingress", src: B, dst: A, proto: IPPROTO.TCP, sport: 443, dport: 41000, tcpFlags: 0x12 };
    expect(run(syn).retval).toBe(TC_NEXT);
    expect(run(reply).retval).toBe(TC_NEXT);
    const reval = stat(STAT.CT_REVALIDATED);
    install([allow, { priority: 20, direction: "ingress", proto: "udp", dport: "53", action: "allow" }], "deny");
    expect(run({ ...reply, tcpFlags: 0x10 }).retval).toBe(TC_NEXT);
    expect(stat(STAT.CT_REVALIDATED) - reval).toBe(1n);
    const cut = stat(STAT.CT_CUT);
    install([{ priority: 5, direction: "egress", proto: "tcp", dst: `${B}/32`, action: "deny" }, allow], "deny");
    expect(run({ ...reply, tcpFlags: 0x10 }).retval).toBe(TC_DROP);
    expect(stat(STAT.CT_CUT) - cut).toBe(1n);
    expect(run({ ...syn, tcpFlags: 0x10 }).retval).toBe(TC_DROP);
  });
});

describe("fragments", () => {
  const first = (id: number): Pkt => ({
    dir: "egress",
    src: A,
    dst: B,
    proto: IPPROTO.UDP,
    sport: 7000,
    dport: 9000,
    frag: { id, offset: 0, more: true },
    payload: 1472,
  });
  const later = (id: number, offset: number, more: boolean): Buffer =>
    ethernet(
      { src: MAC, dst: PEER_MAC, type: ETH_P.IP },
      ipv4({ src: A, dst: B, proto: IPPROTO.UDP, id, fragOffset: offset, moreFragments: more }, Buffer.alloc(1480)),
    );

  test("later fragments get the first fragment's verdict: an allowed 8,000-byte datagram passes whole", () => {
    clearState();
    install([{ priority: 1, direction: "egress", proto: "udp", dport: "9000", action: "allow" }], "deny");
    expect(run(first(4242)).retval).toBe(TC_NEXT);
    for (let off = 1480; off < 8000; off += 1480)
      expect(run(first(4242), later(4242, off, off + 1480 < 8000)).retval).toBe(TC_NEXT);
  });

  test("a denied datagram passes no piece; a fragment whose first was never seen is dropped", () => {
    clearState();
    install([{ priority: 1, direction: "egress", proto: "udp", dport: "9001", action: "allow" }], "deny");
    expect(run(first(4343)).retval).toBe(TC_DROP);
    const before = dropCount("fw-fragment");
    for (let off = 1480; off < 8000; off += 1480)
      expect(run(first(4343), later(4343, off, off + 1480 < 8000)).retval).toBe(TC_DROP);
    expect(run(first(1), later(999, 1480, false)).retval).toBe(TC_DROP);
    expect(dropCount("fw-fragment") - before).toBe(6n);
  });
});

/** Internet checksum of `b` (0 when the embedded checksum is right). */
function sum16(...parts: Buffer[]): number {
  let s = 0;
  for (const b of parts)
    for (let i = 0; i < b.length; i += 2) s += (b[i] as number) * 256 + (i + 1 < b.length ? (b[i + 1] as number) : 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return (~s & 0xffff) >>> 0;
}

describe("reject", () => {
  test("a rejected TCP SYN becomes a reset to the sender, checksums right", () => {
    clearState();
    install([{ priority: 1, direction: "egress", proto: "tcp", dport: "25", action: "reject" }], "allow");
    const before = stat(STAT.REJECT_SENT);
    const r = run({ dir: "egress", src: A, dst: B, proto: IPPROTO.TCP, sport: 45000, dport: 25, tcpFlags: 2 });
    expect(r.retval).toBe(TC_REDIRECT);
    expect(stat(STAT.REJECT_SENT) - before).toBe(1n);
    const o = r.out;
    expect(o.length).toBe(54);
    expect(o.subarray(0, 6).toString("hex")).toBe(MAC.replaceAll(":", ""));
    expect(o.subarray(6, 12).toString("hex")).toBe(PEER_MAC.replaceAll(":", ""));
    const ip = o.subarray(14, 34);
    expect([...ip.subarray(12, 16)].join(".")).toBe(B);
    expect([...ip.subarray(16, 20)].join(".")).toBe(A);
    expect(sum16(ip)).toBe(0);
    const th = o.subarray(34);
    expect(th.readUInt16BE(0)).toBe(25);
    expect(th.readUInt16BE(2)).toBe(45000);
    expect(th[13]).toBe(0x14); // RST|ACK
    expect(th.readUInt32BE(8)).toBe(1001); // the SYN's sequence + 1
    const pseudo = Buffer.concat([ip.subarray(12, 20), Buffer.from([0, 6, 0, 20])]);
    expect(sum16(pseudo, th)).toBe(0);
  });

  test("a rejected UDP datagram (IPv4) becomes an ICMP administratively-prohibited quoting it", () => {
    clearState();
    install([{ priority: 1, direction: "ingress", proto: "udp", action: "reject" }], "allow");
    const p: Pkt = { dir: "ingress", src: B, dst: A, proto: IPPROTO.UDP, sport: 5353, dport: 161 };
    const r = run(p);
    expect(r.retval).toBe(TC_REDIRECT);
    const o = r.out;
    const ip = o.subarray(14, 34);
    expect(ip[9]).toBe(IPPROTO.ICMP);
    expect([...ip.subarray(12, 16)].join(".")).toBe(A);
    expect([...ip.subarray(16, 20)].join(".")).toBe(B);
    expect(sum16(ip)).toBe(0);
    const ic = o.subarray(34);
    expect([ic[0], ic[1]]).toEqual([3, 13]);
    expect(sum16(ic)).toBe(0);
    expect(ic.subarray(8, 36).toString("hex")).toBe(frame(p).subarray(14, 42).toString("hex"));
  });

  test("IPv6: reset for TCP, ICMPv6 prohibited for the rest, checksums right", () => {
    clearState();
    install([{ priority: 1, direction: "egress", action: "reject" }], "allow");
    const t = run({ dir: "egress", src: A6, dst: B6, proto: IPPROTO.TCP, sport: 45000, dport: 22, tcpFlags: 2 });
    expect(t.retval).toBe(TC_REDIRECT);
    const ip6 = t.out.subarray(14, 54);
    const th = t.out.subarray(54);
    expect(th[13]).toBe(0x14);
    const pseudo6 = (plen: number, nh: number) =>
      Buffer.concat([ip6.subarray(8, 40), Buffer.from([0, 0, plen >> 8, plen & 0xff, 0, 0, 0, nh])]);
    expect(sum16(pseudo6(20, 6), th)).toBe(0);
    const u = run({ dir: "egress", src: A6, dst: B6, proto: IPPROTO.UDP, sport: 1234, dport: 9999 });
    expect(u.retval).toBe(TC_REDIRECT);
    const uip6 = u.out.subarray(14, 54);
    const ic = u.out.subarray(54);
    expect([ic[0], ic[1]]).toEqual([1, 1]);
    expect(sum16(Buffer.concat([uip6.subarray(8, 40), Buffer.from([0, 0, 0, ic.length, 0, 0, 0, 58])]), ic)).toBe(0);
  });

  test("a reset is never answered", () => {
    clearState();
    install([{ priority: 1, direction: "egress", proto: "tcp", action: "reject" }], "allow");
    expect(run({ dir: "egress", src: A, dst: B, proto: IPPROTO.TCP, sport: 1, dport: 2, tcpFlags: 0x04 }).retval).toBe(
      TC_DROP,
    );
  });
});

describe("blocklist, failsafe, log, capacity", () => {
  test("a blocklisted source is dropped at port ingress, before the rules", () => {
    clearState();
    install([], "allow");
    fw.blockAdd(packPrefixes(["10.66.0.0/16"]), { 4: 0, 6: 0 });
    try {
      const before = dropCount("blocklist");
      expect(run({ dir: "egress", src: "10.66.3.4", dst: B, proto: IPPROTO.UDP, sport: 1, dport: 2 }).retval).toBe(
        TC_DROP,
      );
      expect(run({ dir: "ingress", src: "10.66.9.9", dst: A, proto: IPPROTO.UDP, sport: 1, dport: 2 }).retval).toBe(
        TC_DROP,
      );
      expect(run({ dir: "egress", src: "10.67.0.1", dst: B, proto: IPPROTO.UDP, sport: 1, dport: 2 }).retval).toBe(
        TC_NEXT,
      );
      expect(dropCount("blocklist") - before).toBe(2n);
    } finally {
      fw.blockDel(parseSubnet("10.66.0.0/16"));
    }
  });

  test("deny-all still passes DHCP, DNS to the gateway and neighbour discovery", () => {
    clearState();
    install([], "deny");
    expect(run({ dir: "egress", src: A, dst: "192.0.2.254", proto: IPPROTO.UDP, sport: 40000, dport: 53 }).retval).toBe(
      TC_NEXT,
    );
    expect(run({ dir: "egress", src: A, dst: "192.0.2.99", proto: IPPROTO.UDP, sport: 40000, dport: 53 }).retval).toBe(
      TC_DROP,
    );
    expect(run({ dir: "ingress", src: "192.0.2.254", dst: A, proto: IPPROTO.UDP, sport: 67, dport: 68 }).retval).toBe(
      TC_NEXT,
    );
    // An NA on the link: hop limit 255, 24 bytes (its target, no options).
    const na = { dir: "ingress", dst: A6, proto: IPPROTO.ICMPV6, sport: 136, dport: 0, payload: 16 } as const;
    expect(run({ ...na, src: "fe80::1", hopLimit: 255 }).retval).toBe(TC_NEXT);
    expect(run({ dir: "ingress", src: B, dst: A, proto: IPPROTO.TCP, sport: 1, dport: 2, tcpFlags: 2 }).retval).toBe(
      TC_DROP,
    );
  });

  test("the failsafe is for the link only: not routed, not from elsewhere, nothing riding along", () => {
    clearState();
    install([], "deny");
    // The port has its network's IPv6 prefix (fd00::/8): fd00::b is on its link.
    obj.map("stm_ports").update(encodeIfindex(PORT), encodePort(portCfg(A, A6)));
    const na = { dir: "ingress", dst: A6, proto: IPPROTO.ICMPV6, sport: 136, dport: 0, payload: 16 } as const;
    const mld = { dir: "ingress", dst: "ff02::16", proto: IPPROTO.ICMPV6, sport: 131, dport: 0, payload: 16 } as const;
    const cases: Array<[string, Pkt, number]> = [
      ["NA, hop limit 255, from the link", { ...na, src: "fe80::1", hopLimit: 255 }, TC_NEXT],
      ["NA from the network's own prefix", { ...na, src: "fd00::b", hopLimit: 255 }, TC_NEXT],
      ["NA routed (hop limit 254)", { ...na, src: "fe80::1", hopLimit: 254 }, TC_DROP],
      ["NA from another prefix (routed here)", { ...na, src: "2001:db8::1", hopLimit: 255 }, TC_DROP],
      ["NA with 8 bytes riding after it", { ...na, src: "fe80::1", hopLimit: 255, payload: 24 }, TC_DROP],
      ["MLD report, hop limit 1, link-local", { ...mld, src: "fe80::1", hopLimit: 1 }, TC_NEXT],
      ["MLD report, hop limit 2", { ...mld, src: "fe80::1", hopLimit: 2 }, TC_DROP],
      ["MLD report from a global address", { ...mld, src: "2001:db8::1", hopLimit: 1 }, TC_DROP],
      ["MLD report with a payload", { ...mld, src: "fe80::1", hopLimit: 1, payload: 64 }, TC_DROP],
      [
        "DHCP offer from a server that is not the gateway",
        { dir: "ingress", src: "192.0.2.77", dst: A, proto: IPPROTO.UDP, sport: 67, dport: 68 },
        TC_DROP,
      ],
      [
        "DHCPv6 reply from a global address",
        { dir: "ingress", src: "2001:db8::1", dst: A6, proto: IPPROTO.UDP, sport: 547, dport: 546 },
        TC_DROP,
      ],
      [
        "DHCPv6 reply from link-local",
        { dir: "ingress", src: "fe80::1", dst: A6, proto: IPPROTO.UDP, sport: 547, dport: 546 },
        TC_NEXT,
      ],
    ];
    for (const [name, p, want] of cases) expect({ name, retval: run(p).retval }).toEqual({ name, retval: want });
    // ND options are link-layer addresses and nonces of 8 bytes: a longer one carries data.
    const ns = (...opts: Buffer[]) => {
      const body = icmp({ src: "fe80::1", dst: A6, type: 135 }, ndBody(A6, ...opts));
      const f = ethernet(
        { src: PEER_MAC, dst: MAC, type: ETH_P.IPV6 },
        ipv6({ src: "fe80::1", dst: A6, next: IPPROTO.ICMPV6, hopLimit: 255 }, body),
      );
      const p: Pkt = { dir: "ingress", src: "fe80::1", dst: A6, proto: IPPROTO.ICMPV6, sport: 135, dport: 0 };
      return run(p, f).retval;
    };
    const opt = (type: number, len: number) =>
      Buffer.concat([Buffer.from([type, len]), Buffer.alloc(len * 8 - 2, 0x5a)]);
    /** A link-layer address option of `len` units: the MAC, then padding that is not ND's. */
    const fatLla = (type: number, len: number) => {
      const b = Buffer.alloc(len * 8, 0x5a);
      lla(type as 1 | 2, PEER_MAC).copy(b);
      b[1] = len;
      return b;
    };
    const nd: Array<[string, number, number]> = [
      ["NS with its source link-layer address", ns(lla(1, PEER_MAC)), TC_NEXT],
      ["NS with an 8-byte nonce (enhanced DAD)", ns(lla(1, PEER_MAC), opt(14, 1)), TC_NEXT],
      ["NS with a 48-byte source link-layer address option", ns(fatLla(1, 6)), TC_DROP],
      ["NS with 198 bytes in a nonce option", ns(lla(1, PEER_MAC), opt(14, 25)), TC_DROP],
      ["NS with a 16-byte target link-layer address option", ns(fatLla(2, 2)), TC_DROP],
    ];
    for (const [name, got, want] of nd) expect({ name, got }).toEqual({ name, got: want });
  });

  test("an ICMP error passes as related only when addressed as the quoted flow's reverse", () => {
    clearState();
    install([{ priority: 1, direction: "egress", proto: "udp", dport: "5000", action: "allow" }], "deny");
    const D = "10.0.0.66"; // a host the rules deny
    const R = "192.0.2.1"; // a router on the path
    // The flow: A:40000 → B:5000, allowed and tracked.
    expect(run({ dir: "egress", src: A, dst: B, proto: IPPROTO.UDP, sport: 40000, dport: 5000 }).retval).toBe(TC_NEXT);
    const quote = (src: string, dst: string, sport: number, dport: number) =>
      ipv4({ src, dst, proto: IPPROTO.UDP }, udp({ src, dst, sport, dport }, new Uint8Array(0))).subarray(0, 28);
    /** An ICMP error from `src` to `dst` quoting `q`, as the hook of `dir` sees it. */
    const err = (dir: "egress" | "ingress", src: string, dst: string, type: number, code: number, q: Buffer) => {
      const srcMac = dir === "egress" ? MAC : PEER_MAC;
      const dstMac = dir === "egress" ? PEER_MAC : MAC;
      if (dir === "egress") obj.map("stm_ports").update(encodeIfindex(PORT), encodePort(portCfg(src)));
      const f = ethernet(
        { src: srcMac, dst: dstMac, type: ETH_P.IP },
        ipv4({ src, dst, proto: IPPROTO.ICMP }, icmp({ src, dst, type, code }, q)),
      );
      return run({ dir, src, dst, proto: IPPROTO.ICMP, sport: type, dport: code }, f).retval;
    };
    const cases: Array<[string, number, number]> = [
      ["B's port unreachable back to A", err("ingress", B, A, 3, 3, quote(A, B, 40000, 5000)), TC_NEXT],
      ["a router's fragmentation-needed back to A", err("ingress", R, A, 3, 4, quote(A, B, 40000, 5000)), TC_NEXT],
      ["a router's time-exceeded back to A", err("ingress", R, A, 11, 0, quote(A, B, 40000, 5000)), TC_NEXT],
      ["a port unreachable from D about A's flow to B", err("ingress", D, A, 3, 3, quote(A, B, 40000, 5000)), TC_DROP],
      [
        "an error to A quoting B's reply (A never sent it)",
        err("ingress", B, A, 3, 3, quote(B, A, 5000, 40000)),
        TC_DROP,
      ],
      ["A's port unreachable back to B about B's reply", err("egress", A, B, 3, 3, quote(B, A, 5000, 40000)), TC_NEXT],
      [
        "A's error to the denied D, quoting the allowed flow",
        err("egress", A, D, 3, 3, quote(B, A, 5000, 40000)),
        TC_DROP,
      ],
      [
        "A's error to D quoting a packet 'from D' of the flow",
        err("egress", A, D, 3, 3, quote(A, B, 40000, 5000)),
        TC_DROP,
      ],
    ];
    for (const [name, got, want] of cases) expect({ name, got }).toEqual({ name, got: want });
  });

  test("a rule marked log emits an event per hit", () => {
    clearState();
    const rules = install(
      [{ priority: 3, direction: "egress", proto: "udp", dport: "7777", action: "deny", log: true }],
      "allow",
    );
    const events: MonEvent[] = [];
    const mon = new MonitorSession(
      obj.map("stm_mon_cfg"),
      obj.map("stm_mon_ring"),
      { kinds: ["log"], rate: 1000, burst: 100 },
      (e) => events.push(e),
    );
    try {
      mon.consume();
      events.length = 0;
      run({ dir: "egress", src: A, dst: B, proto: IPPROTO.UDP, sport: 1000, dport: 7777 }); // no lease yet: nothing
      mon.renew();
      run({ dir: "egress", src: A, dst: B, proto: IPPROTO.UDP, sport: 1000, dport: 7777 });
      run({ dir: "egress", src: A, dst: B, proto: IPPROTO.UDP, sport: 1000, dport: 7778 });
      mon.consume();
    } finally {
      mon.close();
    }
    expect(events.length).toBe(1);
    const e = events[0] as MonEvent;
    expect(e).toMatchObject({ kind: "log", ruleId: rules[0]?.id as number, action: "deny", dir: "egress" });
    expect(e.packet).toMatchObject({ src: A, dst: B, proto: IPPROTO.UDP, sport: 1000, dport: 7777 });
  });

  test("an over-capacity change fails before writing anything and the active set stays", () => {
    clearState();
    install([{ priority: 1, direction: "egress", proto: "tcp", dport: "80", action: "allow" }], "deny");
    const counts = () =>
      ["stm_fw_src4", "stm_fw_ports", "stm_fw_rules"].map((m) => [...obj.map(m as "stm_fw_ports").keys()].length);
    const scopeBefore = obj.map("stm_fw_scopes").lookup(encodeIfindex(NET))?.toString("hex");
    const before = counts();
    // A view of the maps where the port trie holds only 10 entries.
    const small = new FirewallTables({
      map: (n) => {
        const m = obj.map(n);
        if (n !== "stm_fw_ports") return m;
        return new Proxy(m, { get: (t, p) => (p === "info" ? { ...t.info, maxEntries: 10 } : Reflect.get(t, p)) });
      },
    });
    const many = Array.from({ length: 50 }, (_, i) => ({
      ...parseRule({ priority: i + 1, proto: "tcp", dport: `${1000 + i * 7}`, action: "allow" }),
      id: 90000 + i,
    }));
    expect(() => small.apply(NET, many, "deny")).toThrow(/stm_fw_ports would need/);
    expect(counts()).toEqual(before);
    expect(obj.map("stm_fw_scopes").lookup(encodeIfindex(NET))?.toString("hex")).toBe(scopeBefore);
    expect(() =>
      install(
        Array.from({ length: 10241 }, (_, i) => ({ priority: i + 1, action: "deny" })),
        "deny",
      ),
    ).toThrow(/exceed/);
  });

  test("a switch leaves only the new generation in the tables", () => {
    install(
      Array.from({ length: 20 }, (_, i) => ({ priority: i + 1, proto: "udp", dport: `${i}`, action: "allow" })),
      "deny",
    );
    const c = install([{ priority: 1, src: "10.0.0.0/8", action: "allow" }], "deny");
    expect(c.length).toBe(1);
    expect([...obj.map("stm_fw_rules").keys()].length).toBe(1);
    // 10.0.0.0/8 and the table's empty /0; IPv4's any-address entries are in the IPv6 tables.
    expect([...obj.map("stm_fw_src4").keys()].map((k) => k.readUInt32LE(0)).sort()).toEqual([0, 8]);
    expect([...obj.map("stm_fw_src6").keys()].length).toBe(1);
  });
});

describe("global scope at the uplink", () => {
  const XDP_DROP = 1;
  const XDP_PASS = 2;
  const XDP_TX = 3;
  const OUT = "203.0.113.5";
  const xdpCtx = (len: number) => {
    const b = Buffer.alloc(24); // struct xdp_md
    b.writeUInt32LE(len, 4);
    b.writeUInt32LE(PORT, 12);
    return b;
  };
  const fromOutside = (p: Omit<Pkt, "dir">) => {
    const f = frame({ ...p, dir: "ingress" });
    return testRun(obj.program("stm_uplink_in").fd, { data: f, ctx: xdpCtx(f.length) });
  };
  const toOutside = (p: Omit<Pkt, "dir">) =>
    testRun(obj.program("stm_uplink_out").fd, {
      data: frame({ ...p, dir: "egress" }),
      ctx: alloc(SK_BUFF, { ifindex: PORT }),
    });
  const global = (specs: RuleSpec[], def: DefaultAction) => {
    const rules = specs.map((s) => ({ ...parseRule(s), id: nextId++ })).sort((a, b) => a.priority - b.priority);
    fw.apply(0, rules, def);
  };
  afterAll(() => fw.remove(0));

  test("north-south: an allowed outbound flow's replies come in, unsolicited inbound is dropped in XDP", () => {
    clearState();
    global([{ priority: 1, direction: "egress", proto: "tcp", dport: "443", action: "allow" }], "deny");
    expect(toOutside({ src: A, dst: OUT, proto: IPPROTO.TCP, sport: 50000, dport: 443, tcpFlags: 2 }).retval).toBe(
      TC_NEXT,
    );
    expect(fromOutside({ src: OUT, dst: A, proto: IPPROTO.TCP, sport: 443, dport: 50000, tcpFlags: 0x12 }).retval).toBe(
      XDP_PASS,
    );
    expect(fromOutside({ src: OUT, dst: A, proto: IPPROTO.TCP, sport: 443, dport: 22, tcpFlags: 2 }).retval).toBe(
      XDP_DROP,
    );
    expect(toOutside({ src: A, dst: OUT, proto: IPPROTO.TCP, sport: 50001, dport: 80, tcpFlags: 2 }).retval).toBe(
      TC_DROP,
    );
    // Networks' own scopes are not the global one: the port programs are unaffected by it.
    install([], "allow");
    expect(run({ dir: "ingress", src: OUT, dst: A, proto: IPPROTO.TCP, sport: 1, dport: 22, tcpFlags: 2 }).retval).toBe(
      TC_NEXT,
    );
  });

  test("a global reject answers from XDP with a reset out of the uplink", () => {
    clearState();
    global([{ priority: 1, direction: "ingress", proto: "tcp", dport: "23", action: "reject" }], "allow");
    const r = fromOutside({ src: OUT, dst: A, proto: IPPROTO.TCP, sport: 40000, dport: 23, tcpFlags: 2 });
    expect(r.retval).toBe(XDP_TX);
    expect(r.dataOut.length).toBe(54);
    expect([...r.dataOut.subarray(26, 30)].join(".")).toBe(A);
    expect([...r.dataOut.subarray(30, 34)].join(".")).toBe(OUT);
    expect(r.dataOut[47]).toBe(0x14);
    expect(fromOutside({ src: OUT, dst: A, proto: IPPROTO.TCP, sport: 40000, dport: 24, tcpFlags: 2 }).retval).toBe(
      XDP_PASS,
    );
  });
});

describe("a full connection-tracking table", () => {
  test("degrades safely: new flows still pass, a forgotten flow's reply is denied, losses are counted", () => {
    // Its own object: the table sized down to 256 flows, then 4,000 flows opened through it.
    const small = loadObject("port", { prepare: (o) => o.setMaxEntries("stm_ct", 256) });
    try {
      const sfw = new FirewallTables({ map: (n) => small.map(n) });
      small.map("stm_ports").update(encodeIfindex(PORT), encodePort(portCfg(A)));
      small.map("stm_ports").update(encodeIfindex(PEER), encodePort({ ...portCfg(B), mac: PEER_MAC }));
      sfw.apply(
        NET,
        [{ ...parseRule({ priority: 1, direction: "egress", proto: "tcp", action: "allow" }), id: 1 }],
        "deny",
      );
      const go = (p: Pkt) =>
        testRun(small.program(p.dir === "egress" ? "stm_port_in" : "stm_port_out").fd, {
          data: frame(p),
          ctx: alloc(SK_BUFF, { ifindex: PORT, ingress_ifindex: p.dir === "egress" ? 0 : PEER }),
        }).retval;
      const syn = (i: number): Pkt => ({
        dir: "egress",
        src: A,
        dst: B,
        proto: IPPROTO.TCP,
        sport: 10000 + i,
        dport: 80,
        tcpFlags: 2,
      });
      const synAck = (i: number): Pkt => ({
        dir: "ingress",
        src: B,
        dst: A,
        proto: IPPROTO.TCP,
        sport: 80,
        dport: 10000 + i,
        tcpFlags: 0x12,
      });
      const sstat = (i: number) => {
        const k = Buffer.alloc(4);
        k.writeUInt32LE(i);
        return (small.map("stm_fw_stats").lookupPerCpu(k) ?? []).reduce((a, b) => a + b.readBigUInt64LE(0), 0n);
      };
      for (let i = 0; i < 4000; i++) expect(go(syn(i))).toBe(TC_NEXT);
      expect(sstat(STAT.CT_NEW)).toBe(4000n);
      expect([...small.map("stm_ct").keys()].length).toBeLessThanOrEqual(256);
      // The newest flow is tracked; the oldest was evicted and its reply is not let in.
      expect(go(synAck(3999))).toBe(TC_NEXT);
      expect(go(synAck(0))).toBe(TC_DROP);
      // The client's next segment (allowed by the rules) picks the flow up again, counted.
      expect(go({ ...syn(0), tcpFlags: 0x10 })).toBe(TC_NEXT);
      expect(sstat(STAT.CT_PICKUP)).toBe(1n);
      expect(go(synAck(0))).toBe(TC_NEXT);
    } finally {
      small.close();
    }
  });
});
