/** Microsegmentation under BPF_PROG_TEST_RUN: generated group trees and policies compiled into
 * the real port programs' maps, packets stamped with a source group through stm_port_out,
 * against the reference evaluator (src/model/microseg.ts msegDecide); plus the stamp on the
 * way in, state (replies of flows the endpoint opened, policy changes cutting flows let in),
 * fragments and what passes always. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { dropReasonCode } from "../../src/datapath/drops";
import { FirewallTables } from "../../src/datapath/firewall-tables";
import { MsegTables } from "../../src/datapath/mseg-tables";
import { loadObject } from "../../src/datapath/objects";
import { encodeDropKey, encodeIfindex, encodePort, type PortConfig } from "../../src/datapath/port-maps";
import { parseRule } from "../../src/model/firewall-rule";
import {
  addGroup,
  addRules,
  emptyMicroseg,
  type MicrosegDoc,
  MSEG,
  MSEG_PROTO_NUM,
  type MsegProto,
  msegDecide,
  msegStamp,
  UNTAGGED,
} from "../../src/model/microseg";
import { type BpfObject, testRun } from "../../src/sys/bpf";
import { alloc, get, SK_BUFF } from "../../src/sys/layout";
import { ETH_P, ethernet, IPPROTO, icmp, ipv4, ipv6, tcp, udp } from "../helpers/frames";
import { prng } from "../helpers/prng";

const TC_NEXT = -1;
const TC_DROP = 2;

const PORT = 1; // lo: a test run's device must exist
const PEER = 901;
const NET = 7;
const MAC = "02:00:00:00:07:05";
const PEER_MAC = "02:00:00:00:07:06";
const IP = "10.0.0.1";
const PEER_IP = "10.0.0.2";

let obj: BpfObject;
let tables: MsegTables;

function portCfg(group: number, o: Partial<PortConfig> = {}): PortConfig {
  return {
    netId: NET,
    ip4: IP,
    mac: MAC,
    cidr4: "10.0.0.0/24",
    gw4: "10.0.0.254",
    ip6: "fd00::1",
    cidr6: "fd00::/64",
    group,
    ...o,
  };
}

function setPort(group: number): void {
  obj.map("stm_ports").update(encodeIfindex(PORT), encodePort(portCfg(group)));
}

beforeAll(() => {
  obj = loadObject("port");
  tables = new MsegTables({ map: (n) => obj.map(n) });
  setPort(0);
  obj
    .map("stm_ports")
    .update(encodeIfindex(PEER), encodePort(portCfg(0, { ip4: PEER_IP, ip6: "fd00::2", mac: PEER_MAC })));
});
afterAll(() => obj?.close());

function clearState(): void {
  for (const m of ["stm_mseg_ct", "stm_frags"] as const) {
    const map = obj.map(m);
    for (const k of [...map.keys()]) map.delete(k);
  }
}

function hits(): Map<number, number> {
  return new Map([...tables.hits()].map(([k, v]) => [k, v.packets]));
}

function dropCount(reason: string): bigint {
  const per = obj.map("stm_drops").lookupPerCpu(encodeDropKey(PORT, dropReasonCode(reason)));
  return (per ?? []).reduce((a, b) => a + b.readBigUInt64LE(0), 0n);
}

interface Pkt {
  proto: number;
  dport?: number;
  sport?: number;
  v6?: boolean;
  /** TCP flags (default SYN). */
  flags?: number;
  /** ICMP type (default echo request). */
  type?: number;
  frag?: { id: number; offset: number; more: boolean };
  /** From the endpoint (its port's ingress) instead of to it. */
  out?: boolean;
}

function frame(p: Pkt): Buffer {
  const v6 = !!p.v6;
  const me = v6 ? "fd00::1" : IP;
  const peer = v6 ? "fd00::2" : PEER_IP;
  const src = p.out ? me : peer;
  const dst = p.out ? peer : me;
  const sport = p.sport ?? 40000;
  const dport = p.dport ?? 80;
  let l4: Buffer;
  if (p.proto === IPPROTO.TCP) l4 = tcp({ src, dst, sport, dport, flags: p.flags ?? 2, seq: 1 });
  else if (p.proto === IPPROTO.UDP) l4 = udp({ src, dst, sport, dport }, Buffer.alloc(8));
  else if (p.proto === IPPROTO.ICMP || p.proto === IPPROTO.ICMPV6)
    l4 = icmp({ src, dst, type: p.type ?? (v6 ? 128 : 8), code: 0, id: 7, seq: 1 }, Buffer.alloc(8));
  else l4 = Buffer.alloc(16);
  const eth = { src: p.out ? MAC : PEER_MAC, dst: p.out ? PEER_MAC : MAC, type: v6 ? ETH_P.IPV6 : ETH_P.IP };
  if (v6) return ethernet(eth, ipv6({ src, dst, next: p.proto }, l4));
  return ethernet(
    eth,
    ipv4(
      {
        src,
        dst,
        proto: p.proto,
        ...(p.frag ? { id: p.frag.id, fragOffset: p.frag.offset, moreFragments: p.frag.more } : {}),
      },
      p.frag && p.frag.offset > 0 ? Buffer.alloc(16) : l4,
    ),
  );
}

/** A packet to the endpoint (port egress) carrying `mark`, or from it (port ingress). */
function run(p: Pkt, mark = 0): { retval: number; mark: number; hit?: number } {
  const prog = obj.program(p.out ? "stm_port_in" : "stm_port_out");
  const ctx = alloc(SK_BUFF, { ifindex: PORT, ingress_ifindex: p.out ? 0 : PEER, mark });
  const before = hits();
  const r = testRun(prog.fd, { data: frame(p), ctx });
  const after = hits();
  const moved = [...after].filter(([k, v]) => v !== (before.get(k) ?? 0)).map(([k]) => k);
  if (moved.length > 1) throw new Error(`more than one hit counter moved: ${moved}`);
  return { retval: r.retval, mark: r.ctxOut ? get(r.ctxOut, SK_BUFF, "mark") : -1, hit: moved[0] };
}

const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;

/** A random tree (up to the depth limit) and entries between its groups, deliberately dense in
 * duplicates and conflicts (equal specificity, protocol and port variants). */
function genWorld(r: () => number): MicrosegDoc {
  let doc = emptyMicroseg();
  const n = 3 + Math.floor(r() * 14);
  for (let i = 0; i < n; i++) {
    const candidates = doc.groups.filter((g) => {
      let d = 1;
      let p = g.parent;
      while (p) {
        d++;
        p = doc.groups.find((x) => x.name === p)?.parent;
      }
      return d < MSEG.DEPTH_MAX;
    });
    const parent = candidates.length && r() < 0.75 ? pick(r, candidates).name : undefined;
    doc = addGroup(doc, { name: `g${i}`, ...(parent ? { parent } : {}) }).doc;
  }
  const names = doc.groups.map((g) => g.name);
  const specs: unknown[] = [];
  const m = 2 + Math.floor(r() * 30);
  for (let i = 0; i < m; i++) {
    const proto = r() < 0.5 ? undefined : pick(r, ["tcp", "udp", "icmp"] as const);
    const dport = (proto === "tcp" || proto === "udp") && r() < 0.6 ? pick(r, [22, 80, 443, 5432]) : undefined;
    specs.push({
      from: r() < 0.15 ? UNTAGGED : pick(r, names),
      to: pick(r, names),
      action: r() < 0.55 ? "allow" : "deny",
      ...(proto ? { proto } : {}),
      ...(dport ? { dport } : {}),
      ...(r() < 0.1 ? { log: true } : {}),
    });
  }
  return addRules(doc, specs).doc;
}

describe("microsegmentation policy vs the reference evaluator", () => {
  const SEEDS = 12;
  const QUERIES = 50;
  test(`${SEEDS} generated worlds × ${QUERIES} packets, every verdict and deciding entry as the reference says`, () => {
    let cases = 0;
    let allowed = 0;
    let denied = 0;
    let byEntry = 0;
    for (let seed = 1; seed <= SEEDS; seed++) {
      const r = prng(seed * 7919);
      const doc = genWorld(r);
      tables.apply(doc);
      const names = doc.groups.map((g) => g.name);
      for (let q = 0; q < QUERIES; q++) {
        clearState();
        const to = pick(r, names);
        const from = r() < 0.15 ? null : pick(r, names);
        const proto = pick(r, ["tcp", "udp", "icmp"] as const satisfies readonly MsegProto[]);
        const dport = pick(r, [22, 80, 443, 5432, 8080]);
        const toId = doc.groups.find((g) => g.name === to)?.id as number;
        const fromId = from === null ? 0 : (doc.groups.find((g) => g.name === from)?.id as number);
        setPort(toId);
        const want = msegDecide(doc, {
          from,
          to,
          proto: MSEG_PROTO_NUM[proto],
          ...(proto !== "icmp" ? { dport } : {}),
        });
        const got = run({ proto: MSEG_PROTO_NUM[proto], dport }, from === null ? 0 : msegStamp(fromId));
        const ctx = `seed ${seed} query ${q}: ${from ?? UNTAGGED} → ${to} ${proto}/${dport}`;
        expect({ ctx, retval: got.retval }).toEqual({ ctx, retval: want.action === "allow" ? TC_NEXT : TC_DROP });
        expect({ ctx, hit: got.hit }).toEqual({ ctx, hit: want.rule?.id ?? MSEG.DEFAULT_ID });
        cases++;
        if (want.action === "allow") allowed++;
        else denied++;
        if (want.rule) byEntry++;
      }
    }
    expect(cases).toBeGreaterThanOrEqual(500);
    // The generator exercises both verdicts, and entries (not just the default) decide many.
    expect(allowed).toBeGreaterThan(50);
    expect(denied).toBeGreaterThan(50);
    expect(byEntry).toBeGreaterThan(cases / 4);
  });
});

describe("beside the network's firewall (its parse reused)", () => {
  test("both must allow: the reference's verdicts with an allowing firewall, the firewall's drops first", () => {
    const fw = new FirewallTables({ map: (n) => obj.map(n) });
    const rules = [
      { ...parseRule({ priority: 10, proto: "udp", dport: 5432, action: "deny" }), id: 9001 },
      { ...parseRule({ priority: 20, action: "allow" }), id: 9002 },
    ];
    fw.apply(NET, rules, "deny");
    try {
      const r = prng(4242);
      const doc = genWorld(r);
      tables.apply(doc);
      const names = doc.groups.map((g) => g.name);
      let n = 0;
      for (let q = 0; q < 60; q++) {
        clearState();
        const to = pick(r, names);
        const from = pick(r, names);
        const proto = pick(r, ["tcp", "udp"] as const);
        const dport = pick(r, [22, 80, 5432]);
        const toId = doc.groups.find((g) => g.name === to)?.id as number;
        const fromId = doc.groups.find((g) => g.name === from)?.id as number;
        setPort(toId);
        const want = msegDecide(doc, { from, to, proto: MSEG_PROTO_NUM[proto], dport });
        const fwDenies = proto === "udp" && dport === 5432;
        const before = dropCount("fw-rule");
        const got = run({ proto: MSEG_PROTO_NUM[proto], dport }, msegStamp(fromId));
        const ctx = `query ${q}: ${from} → ${to} ${proto}/${dport}`;
        expect({ ctx, retval: got.retval }).toEqual({
          ctx,
          retval: !fwDenies && want.action === "allow" ? TC_NEXT : TC_DROP,
        });
        // The firewall decides first: what it denies never reaches the policy (no hit).
        if (fwDenies)
          expect({ ctx, fw: dropCount("fw-rule") - before, hit: got.hit }).toEqual({ ctx, fw: 1n, hit: undefined });
        else expect({ ctx, hit: got.hit }).toEqual({ ctx, hit: want.rule?.id ?? MSEG.DEFAULT_ID });
        n++;
      }
      expect(n).toBe(60);
    } finally {
      fw.remove(NET);
    }
  });
});

describe("microsegmentation at a port", () => {
  let doc: MicrosegDoc;
  let web: number;
  let db: number;
  let prod: number;
  beforeAll(() => {
    doc = emptyMicroseg();
    doc = addGroup(doc, { name: "prod" }).doc;
    doc = addGroup(doc, { name: "prod/web" }).doc;
    doc = addGroup(doc, { name: "prod/db" }).doc;
    doc = addRules(doc, [
      { from: "prod/web", to: "prod/db", action: "allow", proto: "tcp", dport: 5432 },
      { from: "prod", to: "prod", action: "deny" },
      { from: UNTAGGED, to: "prod/web", action: "allow", proto: "tcp", dport: 80 },
    ]).doc;
    tables.apply(doc);
    const id = (n: string) => doc.groups.find((g) => g.name === n)?.id as number;
    web = id("prod/web");
    db = id("prod/db");
    prod = id("prod");
  });

  test("the sending port stamps its endpoint's group, whatever mark the packet had", () => {
    setPort(web);
    expect(run({ proto: IPPROTO.TCP, out: true }, 0x12345678).mark).toBe(msegStamp(web));
    setPort(0);
    expect(run({ proto: IPPROTO.UDP, out: true }, msegStamp(db)).mark).toBe(msegStamp(MSEG.UNTAGGED));
  });

  test("allowed by the most specific entry; denied by the parent's; an unknown stamp is its own group", () => {
    clearState();
    setPort(db);
    expect(run({ proto: IPPROTO.TCP, dport: 5432 }, msegStamp(web)).retval).toBe(TC_NEXT);
    expect(run({ proto: IPPROTO.TCP, dport: 22 }, msegStamp(web)).retval).toBe(TC_DROP);
    expect(run({ proto: IPPROTO.TCP, dport: 5432 }, msegStamp(prod)).retval).toBe(TC_DROP);
    // A mark without the tag is untagged: no entry for untagged → db.
    expect(run({ proto: IPPROTO.TCP, dport: 5432, sport: 40001 }, web).retval).toBe(TC_DROP);
    expect(run({ proto: IPPROTO.TCP, dport: 5432, sport: 40002 }, msegStamp(999)).retval).toBe(TC_DROP);
  });

  test("an untagged endpoint is not segmented; untagged sources need their own entry", () => {
    clearState();
    setPort(0);
    expect(run({ proto: IPPROTO.TCP, dport: 9 }, msegStamp(web)).retval).toBe(TC_NEXT);
    setPort(web);
    expect(run({ proto: IPPROTO.TCP, dport: 80 }, 0).retval).toBe(TC_NEXT);
    expect(run({ proto: IPPROTO.TCP, dport: 81 }, 0).retval).toBe(TC_DROP);
    expect(run({ proto: IPPROTO.TCP, dport: 80, v6: true }, 0).retval).toBe(TC_NEXT);
  });

  test("a mid-connection TCP packet of the endpoint opens nothing: only its SYN does", () => {
    clearState();
    setPort(db);
    expect(run({ proto: IPPROTO.TCP, out: true, sport: 40010, dport: 443, flags: 0x10 }).retval).toBe(TC_NEXT);
    expect(run({ proto: IPPROTO.TCP, sport: 443, dport: 40010, flags: 0x10 }, msegStamp(web)).retval).toBe(TC_DROP);
  });

  test("replies of a flow the endpoint opened pass; the same packets unsolicited do not", () => {
    clearState();
    setPort(db);
    const reply = { proto: IPPROTO.TCP, sport: 443, dport: 40000, flags: 0x12 };
    expect(run(reply, msegStamp(web)).retval).toBe(TC_DROP);
    // db opens 10.0.0.1:40000 → 10.0.0.2:443
    expect(run({ proto: IPPROTO.TCP, out: true, sport: 40000, dport: 443 }).retval).toBe(TC_NEXT);
    expect(run(reply, msegStamp(web)).retval).toBe(TC_NEXT);
    // A bare SYN from the other side is no reply.
    expect(run({ ...reply, flags: 0x02 }, msegStamp(web)).retval).toBe(TC_DROP);
    // UDP and ICMP echo, both families.
    for (const v6 of [false, true]) {
      clearState();
      const udpReply = { proto: IPPROTO.UDP, sport: 53, dport: 40000, v6 };
      expect(run(udpReply, msegStamp(web)).retval).toBe(TC_DROP);
      expect(run({ proto: IPPROTO.UDP, out: true, sport: 40000, dport: 53, v6 }).retval).toBe(TC_NEXT);
      expect(run(udpReply, msegStamp(web)).retval).toBe(TC_NEXT);
      const echo = v6 ? IPPROTO.ICMPV6 : IPPROTO.ICMP;
      expect(run({ proto: echo, type: v6 ? 129 : 0, v6 }, msegStamp(web)).retval).toBe(TC_DROP);
      expect(run({ proto: echo, out: true, v6 }).retval).toBe(TC_NEXT);
      expect(run({ proto: echo, type: v6 ? 129 : 0, v6 }, msegStamp(web)).retval).toBe(TC_NEXT);
    }
  });

  test("a flow let in passes on; a policy change that denies it cuts it", () => {
    clearState();
    setPort(db);
    const pkt = { proto: IPPROTO.TCP, dport: 5432, sport: 41000 };
    expect(run(pkt, msegStamp(web)).retval).toBe(TC_NEXT);
    expect(run({ ...pkt, flags: 0x10 }, msegStamp(web)).hit).toBeUndefined(); // tracked: not classified again
    const cut = addRules(doc, [{ from: "prod/web", to: "prod/db", action: "deny", proto: "tcp", dport: 5432 }]).doc;
    tables.apply(cut);
    try {
      const before = dropCount("microseg-deny");
      expect(run({ ...pkt, flags: 0x10 }, msegStamp(web)).retval).toBe(TC_DROP);
      expect(dropCount("microseg-deny")).toBe(before + 1n);
      // The endpoint answers (its ACK): the cut flow does not become one it opened.
      expect(run({ proto: IPPROTO.TCP, out: true, sport: 5432, dport: 41000, flags: 0x10 }).retval).toBe(TC_NEXT);
      expect(run({ ...pkt, flags: 0x10 }, msegStamp(web)).retval).toBe(TC_DROP);
    } finally {
      tables.apply(doc);
    }
  });

  test("later fragments follow their first fragment's verdict", () => {
    clearState();
    setPort(db);
    const first = { proto: IPPROTO.TCP, dport: 5432, frag: { id: 77, offset: 0, more: true } };
    const later = { proto: IPPROTO.TCP, dport: 5432, frag: { id: 77, offset: 8, more: false } };
    expect(run(later, msegStamp(web)).retval).toBe(TC_DROP);
    expect(run(first, msegStamp(web)).retval).toBe(TC_NEXT);
    expect(run(later, msegStamp(web)).retval).toBe(TC_NEXT);
    const denied = { proto: IPPROTO.TCP, dport: 22, frag: { id: 78, offset: 0, more: true } };
    expect(run(denied, msegStamp(web)).retval).toBe(TC_DROP);
    expect(run({ ...later, frag: { id: 78, offset: 8, more: false } }, msegStamp(web)).retval).toBe(TC_DROP);
  });

  test("segmentation off (no groups): nothing judged, nothing tracked", () => {
    tables.apply(emptyMicroseg());
    try {
      clearState();
      setPort(db); // a stale group on a port: no policy, no enforcement
      expect(run({ proto: IPPROTO.TCP, dport: 1 }, msegStamp(web)).retval).toBe(TC_NEXT);
      run({ proto: IPPROTO.TCP, out: true });
      expect([...obj.map("stm_mseg_ct").keys()].length).toBe(0);
    } finally {
      tables.apply(doc);
    }
  });
});
