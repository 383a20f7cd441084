/** The reconcile loop without a kernel: which rtnetlink notices mean drift (judged by the
 * state they report, the last of a batch per object), and when runs happen: one per burst,
 * never inside an API request, none after a run whose own notices end right, a full run when
 * notices were lost, a periodic pass, and repairs that slow down when drift keeps coming
 * back. Notices are decoded from the bytes the kernel sends. */
import { describe, expect, test } from "bun:test";
import { MGMT_BRIDGE, USER_BRIDGE } from "../../src/model/topology";
import {
  decodeEvent,
  encodeIfAddr,
  encodeIfInfo,
  encodeNd,
  encodeTc,
  type Link,
  MessageBuilder,
  NL,
  type RtnlDrain,
  type RtnlEvent,
  STRATUM_ADDR_PROTO,
} from "../../src/netlink";
import { type DesiredState, DriftWatch } from "../../src/reconcile/drift";
import { type Clock, ReconcileLoop, type ReconcileTrigger } from "../../src/reconcile/loop";
import { SEALED_MAPS, Seal, type SealedMap } from "../../src/reconcile/seal";

const IDX = { [MGMT_BRIDGE]: 2, [USER_BRIDGE]: 3, upl0: 4, stmA: 5, other0: 6, "cnv-user-l1a": 50 } as Record<
  string,
  number
>;
const MAC = "02:00:01:00:00:01";
const BRMAC = { [MGMT_BRIDGE]: "02:aa:00:00:00:01", [USER_BRIDGE]: "02:aa:00:00:00:02" } as Record<string, string>;

const desired = (): DesiredState => ({
  bridges: new Map(Object.entries(BRMAC)),
  ports: new Map([["stmA", MAC]]),
  uplink: "upl0",
  gateways: new Set(["10.20.0.1/24"]),
});

/** A link notice with the state of a right port unless `o` says otherwise. */
function link(name: string, o: Partial<Link> = {}, op: "new" | "del" = "new"): RtnlEvent {
  const bridge = name in BRMAC;
  return {
    kind: "link",
    op,
    link: {
      family: NL.AF_UNSPEC,
      index: IDX[name] ?? 99,
      name,
      mtu: 1500,
      flags: 0,
      up: true,
      lowerUp: true,
      ...(bridge ? { kind: "bridge", mac: BRMAC[name] } : { master: IDX[USER_BRIDGE] }),
      ...o,
    },
  };
}
const brport = (name: string, learning: boolean, unicastFlood = false, op: "new" | "del" = "new"): RtnlEvent => ({
  kind: "link",
  op,
  link: {
    family: NL.AF_BRIDGE,
    index: IDX[name] ?? 99,
    name,
    mtu: 1500,
    flags: 0,
    up: true,
    lowerUp: true,
    bridgePort: { learning, unicastFlood, state: 3 },
  },
});
const addr = (cidr: string, proto: number, op: "new" | "del" = "new", dev = USER_BRIDGE): RtnlEvent => {
  const [ip, len] = cidr.split("/");
  return {
    kind: "addr",
    op,
    addr: {
      index: IDX[dev] as number,
      family: NL.AF_INET,
      cidr,
      ip: ip as string,
      prefixLen: Number(len),
      scope: 0,
      flags: 0,
      proto,
    },
  };
};
const fdb = (
  mac: string,
  o: { dev?: string; op?: "new" | "del"; state?: number; family?: number } = {},
): RtnlEvent => ({
  kind: "neigh",
  op: o.op ?? "new",
  neigh: {
    family: o.family ?? NL.AF_BRIDGE,
    ifindex: IDX[o.dev ?? "stmA"] as number,
    mac,
    state: o.state ?? NL.NUD_NOARP,
    flags: NL.NTF_MASTER,
    master: IDX[USER_BRIDGE],
  },
});

/** A qdisc or filter notice; by default a filter on the egress hook of stmA's clsact. */
const tc = (o: { dev?: string; op?: "new" | "del"; object?: "qdisc" | "filter"; parent?: number } = {}): RtnlEvent => ({
  kind: "tc",
  op: o.op ?? "new",
  tc: { object: o.object ?? "filter", ifindex: IDX[o.dev ?? "stmA"] as number, parent: o.parent ?? 0xfffffff3 },
});

function watch(): DriftWatch {
  const w = new DriftWatch(desired);
  w.seed(Object.entries(IDX).map(([name, index]) => ({ name, index })));
  return w;
}

describe("what counts as drift", () => {
  test("a port of Stratum's: off the bridge, down, deleted, renamed, learning or flooding", () => {
    const cases: Array<[RtnlEvent, string]> = [
      [link("stmA", { master: undefined }), `port stmA is not a port of ${USER_BRIDGE}`],
      [link("stmA", { master: IDX.other0 }), `port stmA is not a port of ${USER_BRIDGE}`],
      [link("stmA", { up: false }), "port stmA is down"],
      [link("stmA", {}, "del"), "port stmA deleted"],
      [link("stmB", { index: IDX.stmA }), "port stmA renamed to stmB"],
      [brport("stmA", true), "port stmA learns MAC addresses"],
      [brport("stmA", false, true), "port stmA floods unknown unicast"],
      [brport("stmA", false, false, "del"), "port stmA left its bridge"],
      [link("upl0", { master: undefined }), `uplink upl0 is not a port of ${USER_BRIDGE}`],
      [link(USER_BRIDGE, { up: false }), `bridge ${USER_BRIDGE} is down`],
      [
        link(MGMT_BRIDGE, { mac: "02:bb:00:00:00:09" }),
        `bridge ${MGMT_BRIDGE} has MAC 02:bb:00:00:00:09, not ${BRMAC[MGMT_BRIDGE]}`,
      ],
      [link(USER_BRIDGE, {}, "del"), `bridge ${USER_BRIDGE} deleted`],
    ];
    for (const [ev, why] of cases) {
      const w = watch();
      expect(w.observe([ev])).toBe(true);
      expect(w.drift).toEqual([why]);
    }
  });

  test("gateway addresses: removed, or back untagged; a tagged address no network has", () => {
    const cases: Array<[RtnlEvent, string[]]> = [
      [addr("10.20.0.1/24", STRATUM_ADDR_PROTO, "del"), [`gateway address 10.20.0.1/24 removed from ${USER_BRIDGE}`]],
      [addr("10.20.0.1/24", 0), [`gateway address 10.20.0.1/24 on ${USER_BRIDGE} is not tagged as Stratum's`]],
      [
        addr("10.99.0.1/24", STRATUM_ADDR_PROTO),
        [`address 10.99.0.1/24 on ${USER_BRIDGE} is tagged as Stratum's but no network has it`],
      ],
      // The operator's own address, a tagged one going away, an address elsewhere: none of Stratum's business.
      [addr("192.0.2.10/24", 0), []],
      [addr("192.0.2.10/24", 0, "del"), []],
      [addr("10.99.0.1/24", STRATUM_ADDR_PROTO, "del"), []],
      [addr("10.20.0.1/24", STRATUM_ADDR_PROTO, "del", "other0"), []],
      [addr("10.20.0.1/24", STRATUM_ADDR_PROTO), []],
    ];
    for (const [ev, why] of cases) {
      const w = watch();
      w.observe([ev]);
      expect({ ev: ev.kind === "addr" && `${ev.op} ${ev.addr.cidr}`, why: w.drift }).toEqual({
        ev: ev.kind === "addr" && `${ev.op} ${ev.addr.cidr}`,
        why,
      });
    }
  });

  test("an endpoint's static FDB entry: removed or no longer static; other entries are not Stratum's", () => {
    const w = watch();
    w.observe([fdb(MAC, { op: "del" })]);
    expect(w.drift).toEqual([`static FDB entry ${MAC} on stmA removed`]);
    w.observe([fdb(MAC)]); // put back: closed
    expect(w.drift).toEqual([]);
    w.observe([fdb(MAC, { state: NL.NUD_REACHABLE })]);
    expect(w.drift).toEqual([`FDB entry ${MAC} on stmA is not static`]);
    const x = watch();
    expect(
      x.observe([
        fdb("02:00:01:00:00:09", { op: "del" }), // another MAC on the port
        fdb(MAC, { dev: "upl0", state: NL.NUD_REACHABLE }), // learned on the uplink
        fdb(MAC, { family: NL.AF_INET, op: "del" }), // an ARP entry
        link("other0", { up: false }), // someone else's device
        link("stmA", { lowerUp: false }), // the workload's side went down: a carrier change
      ]),
    ).toBe(false);
    expect(x.drift).toEqual([]);
  });

  test("a port's clsact filter or qdisc removed is drift; one added or replaced, or a root qdisc, is not", () => {
    const w = watch();
    expect(w.observe([tc({ op: "del" })])).toBe(true);
    expect(w.drift).toEqual(["a filter was removed from port stmA"]);
    w.observe([tc()]); // put back: closed
    expect(w.drift).toEqual([]);
    const q = watch();
    q.observe([tc({ op: "del", object: "qdisc", parent: 0xfffffff1 })]);
    expect(q.drift).toEqual(["port stmA lost a qdisc"]);
    const x = watch();
    expect(
      x.observe([
        tc({ op: "del", object: "qdisc", parent: 0xffffffff }), // the port's root qdisc
        tc({ op: "del", dev: "other0" }), // someone else's device
        tc({ dev: "stmA", parent: 0xfffffff2 }), // a filter replaced: a whole run asks which program
      ]),
    ).toBe(false);
    expect(x.drift).toEqual([]);
  });

  test("only the last notice of a batch counts: a port created down, then bridged and up, is right", () => {
    const w = watch();
    w.observe([
      link("stmA", { up: false, master: undefined }),
      brport("stmA", true),
      fdb(MAC, { op: "del" }),
      link("stmA", { up: false }),
      brport("stmA", false),
      fdb(MAC),
      link("stmA"),
    ]);
    expect(w.drift).toEqual([]);
    // A bridge deleted and made again takes its new index: its ports' notices are judged against it.
    const b = watch();
    b.observe([link(USER_BRIDGE, {}, "del"), link(USER_BRIDGE, { index: 40 }), link("stmA", { master: 40 })]);
    expect(b.drift).toEqual([]);
    b.observe([addr("10.20.0.1/24", STRATUM_ADDR_PROTO, "del")]); // on the old index: gone with its bridge
    expect(b.drift).toEqual([]);
  });

  test("notices decode from the kernel's bytes: a bridge's port flags, an address with its IFA_PROTO, an FDB entry", () => {
    const bl = new MessageBuilder(NL.RTM_NEWLINK, 0, encodeIfInfo({ family: NL.AF_BRIDGE, index: 5 }));
    bl.str(NL.IFLA_IFNAME, "stmA");
    bl.u32(NL.IFLA_MASTER, 3);
    bl.nest(NL.IFLA_PROTINFO, (p) => p.u8(NL.IFLA_BRPORT_LEARNING, 1).u8(NL.IFLA_BRPORT_UNICAST_FLOOD, 0));
    const l = decodeEvent(NL.RTM_NEWLINK, bl.finish(0).subarray(16));
    expect(l).toMatchObject({ kind: "link", op: "new", link: { family: NL.AF_BRIDGE, name: "stmA", master: 3 } });
    expect(l?.kind === "link" && l.link.bridgePort).toMatchObject({ learning: true, unicastFlood: false });

    const a = new MessageBuilder(
      NL.RTM_DELADDR,
      0,
      encodeIfAddr({ family: NL.AF_INET, prefixLen: 24, flags: 0, scope: 0, index: 3 }),
    );
    a.attr(NL.IFA_LOCAL, Buffer.from([10, 20, 0, 1])).u8(NL.IFA_PROTO, STRATUM_ADDR_PROTO);
    expect(decodeEvent(NL.RTM_DELADDR, a.finish(0).subarray(16))).toMatchObject({
      kind: "addr",
      op: "del",
      addr: { index: 3, cidr: "10.20.0.1/24", proto: STRATUM_ADDR_PROTO },
    });

    const n = new MessageBuilder(
      NL.RTM_DELNEIGH,
      0,
      encodeNd({ family: NL.AF_BRIDGE, ifindex: 5, state: NL.NUD_NOARP, flags: NL.NTF_MASTER, type: 0 }),
    );
    n.attr(NL.NDA_LLADDR, Buffer.from([2, 0, 1, 0, 0, 1])).u32(NL.NDA_MASTER, 3);
    expect(decodeEvent(NL.RTM_DELNEIGH, n.finish(0).subarray(16))).toMatchObject({
      kind: "neigh",
      op: "del",
      neigh: { family: NL.AF_BRIDGE, ifindex: 5, mac: MAC, master: 3 },
    });
    const f = new MessageBuilder(
      NL.RTM_DELTFILTER,
      0,
      encodeTc({ family: 0, ifindex: 5, handle: 1, parent: 0xfffffff3, info: (1 << 16) | 0x0300 }),
    );
    f.str(NL.TCA_KIND, "bpf");
    expect(decodeEvent(NL.RTM_DELTFILTER, f.finish(0).subarray(16))).toEqual({
      kind: "tc",
      op: "del",
      tc: { object: "filter", ifindex: 5, parent: 0xfffffff3 },
    });
    const qd = new MessageBuilder(
      NL.RTM_NEWQDISC,
      0,
      encodeTc({ family: 0, ifindex: 5, handle: 0xffff0000, parent: 0xfffffff1, info: 0 }),
    );
    expect(decodeEvent(NL.RTM_NEWQDISC, qd.finish(0).subarray(16))).toEqual({
      kind: "tc",
      op: "new",
      tc: { object: "qdisc", ifindex: 5, parent: 0xfffffff1 },
    });
    expect(decodeEvent(NL.RTM_NEWROUTE, Buffer.alloc(12))).toBeUndefined();
  });
});

describe("what a quick pass may trust (the seal)", () => {
  test("drift touches the watch, and what a notice cannot show whole; a right state does not", () => {
    const touching: Array<[RtnlEvent, string]> = [
      [fdb(MAC, { op: "del" }), `static FDB entry ${MAC} on stmA removed`], // drift
      [link("stmA", { up: false }), "port stmA is down"],
      [tc(), "a notice about a filter on port stmA"], // a program swapped: which one, a whole run asks
      [tc({ object: "qdisc", parent: 0xfffffff1 }), "a notice about a qdisc on port stmA"],
      [link("stmA", { master: 60 }), "port stmA is not a port of cnv-user-br0"],
      [link("cnv-user-br1", { index: 61, kind: "bridge" }), "a notice about link cnv-user-br1"],
      [link("cnv-user-l1a", { index: 50 }), "a notice about link cnv-user-l1a"],
      [fdb(MAC, { dev: "cnv-user-l1a" }), `a notice about FDB entry ${MAC} on cnv-user-l1a`],
      [tc({ dev: "cnv-user-l1a", op: "del", parent: 0xfffffff2 }), "a notice about a filter on cnv-user-l1a"],
      [
        addr("10.99.0.1/24", STRATUM_ADDR_PROTO),
        "address 10.99.0.1/24 on cnv-user-br0 is tagged as Stratum's but no network has it",
      ],
    ];
    for (const [ev, why] of touching) {
      const w = watch();
      w.observe([ev]);
      expect(w.touched).toBe(why);
      w.untouch();
      expect(w.touched).toBeUndefined();
    }
    // A port moved to an extension bridge is on a user bridge (no drift), but not the one it was on.
    const m = watch();
    m.seed([
      ...Object.entries(IDX).map(([name, index]) => ({
        name,
        index,
        master: name === "stmA" ? IDX[USER_BRIDGE] : undefined,
      })),
      { name: "cnv-user-br1", index: 61 },
    ]);
    m.observe([link("stmA", { master: IDX[USER_BRIDGE] })]); // where it was
    expect(m.touched).toBeUndefined();
    m.observe([link("stmA", { master: 61 })]);
    expect(m.drift).toEqual([]);
    expect(m.touched).toBe("port stmA moved between bridges");

    const w = watch();
    w.seed(
      Object.entries(IDX).map(([name, index]) => ({
        name,
        index,
        master: name === "stmA" || name === "upl0" ? IDX[USER_BRIDGE] : undefined,
      })),
    );
    w.observe([
      fdb(MAC), // the same static entry, replaced
      link("stmA"), // a port as it should be (its carrier, its operstate)
      brport("stmA", false),
      link(USER_BRIDGE),
      addr("10.20.0.1/24", STRATUM_ADDR_PROTO), // a gateway, tagged
      fdb(MAC, { dev: "upl0", state: NL.NUD_REACHABLE }), // learned on the uplink
      fdb(MAC, { dev: "upl0", state: NL.NUD_STALE, op: "del" }), // aged out
      fdb("02:00:01:00:00:09", { dev: "other0", state: NL.NUD_PERMANENT }), // another device's own entry
      link("other0", { up: false }),
      addr("fe80::1/64", 0), // the kernel's link-local address on the bridge
      addr("192.0.2.10/24", 0), // the operator's own
      tc({ dev: "stmA", object: "qdisc", parent: 0xffffffff }), // the port's root qdisc
      tc({ dev: "other0" }),
    ]);
    expect(w.touched).toBeUndefined();
    // The first reason is kept until untouch().
    w.observe([fdb(MAC, { op: "del" })]);
    w.observe([link("stmA", { up: false })]);
    expect(w.touched).toBe(`static FDB entry ${MAC} on stmA removed`);
    w.untouch();
    w.touch("notices the kernel dropped");
    expect(w.touched).toBe("notices the kernel dropped");
  });

  test("a seal holds until the agent or anyone else changes what a whole run found", () => {
    const state = {
      mutations: 7,
      store: 3,
      touched: undefined as string | undefined,
      maps: new Map<SealedMap, Buffer>(SEALED_MAPS.map((m, i) => [m, Buffer.from([i, 1, 2])])),
    };
    const seal = new Seal({
      mutations: () => state.mutations,
      storeChanges: () => state.store,
      touched: () => state.touched,
      untouch: () => {
        state.touched = undefined;
      },
      fingerprint: (m) => Buffer.from(state.maps.get(m) as Buffer),
    });
    expect(seal.broken()).toBe("no whole run has found the kernel right since the agent started or last changed it");
    state.touched = "a notice about link stmA"; // read before the whole run: its state is what the run found
    seal.take();
    expect(state.touched).toBeUndefined();
    expect(seal.broken()).toBeUndefined();
    const cases: Array<[() => void, () => void, string]> = [
      [() => state.mutations++, () => state.mutations--, "the kernel was changed since the last whole run"],
      [() => state.store++, () => state.store--, "networks or endpoints changed since the last whole run"],
      [
        () => {
          state.touched = "a notice about a filter on stmA";
        },
        () => {
          state.touched = undefined;
        },
        "a notice since the last whole run: a notice about a filter on stmA",
      ],
      ...SEALED_MAPS.map((m): [() => void, () => void, string] => {
        const was = state.maps.get(m) as Buffer;
        return [
          () => state.maps.set(m, Buffer.from([...was.subarray(0, 2), 9])), // one byte of one entry
          () => state.maps.set(m, was),
          `map ${m} was written since the last whole run`,
        ];
      }),
    ];
    for (const [change, undo, why] of cases) {
      change();
      expect(seal.broken()).toBe(why);
      undo();
      expect(seal.broken()).toBeUndefined();
    }
    // A map that grew by an entry reads longer.
    state.maps.set("stm_ports", Buffer.concat([state.maps.get("stm_ports") as Buffer, Buffer.from([0])]));
    expect(seal.broken()).toBe("map stm_ports was written since the last whole run");
    seal.take();
    expect(seal.broken()).toBeUndefined();
    seal.drop();
    expect(seal.sealed).toBe(false);
    expect(seal.broken()).toContain("no whole run");
  });
});

/** Timers that run when the test advances the time. */
class FakeClock implements Clock {
  t = 0;
  #next = 0;
  readonly #timers = new Map<number, { at: number; fn: () => void; every?: number }>();
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    this.#timers.set(++this.#next, { at: this.t + ms, fn });
    return this.#next;
  }
  clearTimeout(id: unknown): void {
    this.#timers.delete(id as number);
  }
  setInterval(fn: () => void, ms: number): unknown {
    this.#timers.set(++this.#next, { at: this.t + ms, fn, every: ms });
    return this.#next;
  }
  clearInterval(id: unknown): void {
    this.#timers.delete(id as number);
  }
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let first: [number, { at: number; fn: () => void; every?: number }] | undefined;
      for (const e of this.#timers) if (e[1].at <= end && (!first || e[1].at < first[1].at)) first = e;
      if (!first) break;
      const [id, tm] = first;
      this.t = tm.at;
      if (tm.every) tm.at += tm.every;
      else this.#timers.delete(id);
      tm.fn();
    }
    this.t = end;
  }
}

/** A loop on a fake clock with a queue of notices; `repair` is what each run does (its
 * kernel changes, and the notices they cause). */
function harness(
  o: {
    intervalMs?: number;
    repair?: (trigger: ReconcileTrigger, n: number) => { changes: string[]; notices?: RtnlEvent[] };
  } = {},
) {
  const clock = new FakeClock();
  const queue: RtnlEvent[] = [];
  let overflow = false;
  const runs: Array<{ trigger: ReconcileTrigger; at: number }> = [];
  const opts: Array<{ full?: boolean } | undefined> = [];
  const logs: string[] = [];
  let reseeds = 0;
  const w = watch();
  const monitor = {
    drain(): RtnlDrain {
      const d = { events: queue.splice(0), overflow };
      overflow = false;
      return d;
    },
  };
  const loop = new ReconcileLoop({
    run: (trigger, ro) => {
      runs.push({ trigger, at: clock.t });
      opts.push(ro);
      const r = o.repair?.(trigger, runs.length) ?? { changes: [] };
      queue.push(...(r.notices ?? []));
      return { changes: r.changes };
    },
    monitor,
    watch: w,
    reseed: () => {
      reseeds++;
    },
    intervalMs: o.intervalMs ?? 0,
    log: (level, msg) => logs.push(`${level} ${msg}`),
    clock,
  });
  loop.start();
  return {
    clock,
    loop,
    runs,
    opts,
    logs,
    watch: w,
    push: (...evs: RtnlEvent[]) => queue.push(...evs),
    lose: () => {
      overflow = true;
    },
    get reseeds() {
      return reseeds;
    },
  };
}

/** What a repair of stmA's port does in the kernel, as notices: right by the end. */
const repairNotices = (): RtnlEvent[] => [link("stmA", { up: false }), brport("stmA", false), fdb(MAC), link("stmA")];

describe("when runs happen", () => {
  test("a burst of notices makes one run once quiet for 100 ms; the run's own notices make none", () => {
    const h = harness({
      repair: () => ({ changes: ["change link stmA (master cnv-user-br0)"], notices: repairNotices() }),
    });
    h.push(link("stmA", { master: undefined }));
    h.clock.advance(60); // read at 50: armed for 150
    h.push(fdb(MAC, { op: "del" }));
    h.clock.advance(60); // read at 100: moved to 200
    expect(h.runs).toEqual([]);
    h.clock.advance(90); // 210
    expect(h.runs).toEqual([{ trigger: "event", at: 200 }]);
    h.clock.advance(5000);
    expect(h.runs.length).toBe(1);
    expect(h.loop.state.drift).toEqual([]);
  });

  test("a burst that goes on runs at most 500 ms after its first notice", () => {
    const h = harness();
    for (let t = 0; t < 1000; t += 40) {
      // Down, off the bridge, down …: each notice changes what differs, none makes it right.
      h.push(link("stmA", t % 80 === 0 ? { up: false } : { master: undefined }));
      h.clock.advance(40);
    }
    expect(h.runs.length).toBeGreaterThanOrEqual(1);
    expect(h.runs[0]?.at).toBeLessThanOrEqual(550);
  });

  test("drift that undoes itself before the run makes none; nor do notices about nothing of Stratum's", () => {
    const h = harness();
    h.push(link("stmA", { up: false }));
    h.clock.advance(50);
    h.push(link("stmA"));
    h.push(link("other0", { up: false }), addr("192.0.2.1/24", 0, "del"));
    h.clock.advance(2000);
    expect(h.runs).toEqual([]);
  });

  test("a run that changes nothing ends the cycle, even with the drift it found left in place", () => {
    // The port is gone with its namespace: the run cannot restore it, changes nothing, causes no notice.
    const h = harness({ repair: () => ({ changes: [] }) });
    h.push(link("stmA", {}, "del"));
    h.clock.advance(10_000);
    expect(h.runs.map((r) => r.trigger)).toEqual(["event"]);
  });

  test("an API request runs whole: drift seen meanwhile is repaired after it; its own notices make no run", async () => {
    const h = harness({ repair: () => ({ changes: ["change link stmA (up)"] }) });
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const req = h.loop.exclusive(async () => {
      h.push(...repairNotices()); // what an attach does, intermediate states included
      h.push(link("stmA", { up: false })); // and someone else's hand meanwhile
      await gate;
      expect(h.runs).toEqual([]); // nothing ran while it awaited
      return "done";
    });
    h.clock.advance(3000);
    expect(h.runs).toEqual([]);
    release();
    expect(await req).toBe("done");
    h.clock.advance(200);
    expect(h.runs.map((r) => r.trigger)).toEqual(["event"]);
    // A request whose notices all end right: no run after it.
    await h.loop.exclusive(async () => {
      h.push(...repairNotices());
    });
    h.clock.advance(2000);
    expect(h.runs.length).toBe(1);
  });

  test("a periodic pass that falls due during a request runs once, after it", async () => {
    const h = harness({ intervalMs: 1000 });
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const req = h.loop.exclusive(() => gate);
    h.clock.advance(2500); // two passes fall due
    expect(h.runs).toEqual([]);
    release();
    await req;
    h.clock.advance(1); // after the response
    expect(h.runs.map((r) => `${r.trigger}@${r.at}`)).toEqual(["periodic@2500"]);
    h.clock.advance(500);
    expect(h.runs.map((r) => r.trigger)).toEqual(["periodic", "periodic"]);
  });

  test("notices the kernel dropped make a full run and a fresh look at the links, and break the seal", () => {
    const h = harness();
    h.lose();
    h.clock.advance(1000);
    expect(h.runs.map((r) => r.trigger)).toEqual(["event"]);
    expect(h.reseeds).toBe(1);
    expect(h.watch.touched).toBe("notices the kernel dropped");
  });

  test("an operator's run passes on whether it must check every port", () => {
    const h = harness();
    h.loop.runNow("api", { full: true });
    h.loop.runNow("api");
    expect(h.opts).toEqual([{ full: true }, undefined]);
  });

  test("the periodic pass runs every interval; interval 0 runs none", () => {
    const h = harness({ intervalMs: 30_000 });
    h.clock.advance(95_000);
    expect(h.runs.map((r) => `${r.trigger}@${r.at}`)).toEqual(["periodic@30000", "periodic@60000", "periodic@90000"]);
    const off = harness({ intervalMs: 0 });
    off.clock.advance(300_000);
    expect(off.runs).toEqual([]);
    off.loop.stop();
    h.loop.stop();
    h.clock.advance(60_000);
    expect(h.runs.length).toBe(3);
  });

  test("drift that every repair brings back slows repairs down, and is said once; a hand later is repaired at once", () => {
    // Something else takes the port off the bridge again right after each repair.
    const h = harness({ repair: () => ({ changes: ["change link stmA (master cnv-user-br0)"] }) });
    h.push(link("stmA", { master: undefined }));
    for (let i = 0, seen = 0; i < 4000 && seen < 12; i++) {
      h.clock.advance(50);
      if (h.runs.length > seen) {
        seen = h.runs.length;
        if (seen < 12) h.push(link("stmA", { master: undefined }));
      }
    }
    const gaps = h.runs.slice(1).map((r, i) => r.at - (h.runs[i]?.at as number));
    expect(h.runs.length).toBe(12);
    // The first repairs come at the usual pace, the later ones ever more slowly, up to the cap.
    expect(Math.max(...gaps.slice(0, 3))).toBeLessThan(300);
    expect(gaps.at(-1) as number).toBeGreaterThan(20 * (gaps[0] as number));
    expect(Math.max(...gaps)).toBeLessThanOrEqual(30_000 + 100);
    expect(h.logs.filter((l) => l.includes("something else keeps changing")).length).toBe(1);
    // The fight is over; a hand on the port seconds later is repaired at the usual pace.
    h.clock.advance(5000);
    const t0 = h.clock.t;
    h.push(link("stmA", { up: false }));
    h.clock.advance(1000);
    expect(h.runs.length).toBe(13);
    expect((h.runs[12]?.at as number) - t0).toBeLessThan(300);
  });
});
