/** The gateway group's machine (src/gateway/ha/machine.ts) in a simulated world: a clock in
 * 1 ms steps, a management LAN whose links can be cut one by one, an etcd with revisions that
 * each node may or may not reach, and each node's datapath deadline (stm_vip). Safety is
 * checked at every simulated millisecond: never two nodes answering for the VIP (VIP up and
 * deadline not passed); liveness by how long a group goes without anyone answering. */
import { describe, expect, test } from "bun:test";
import { type Advert, GroupMachine, type LeaseView } from "../../src/gateway/ha/machine";
import { DEFAULT_PRIORITY, type GatewayGroup } from "../../src/model/gateway-group";

const LAT_NET = 1;
const LAT_ETCD = 3;

class World {
  now = 0;
  rev = 1;
  holder: { node: string; rev: number } | null = null;
  beatRev = 0;
  etcdUp = true;
  readonly etcdCut = new Set<string>();
  readonly mgmtCut = new Set<string>();
  /** Agents that are dead (kill -9): their machine no longer runs, their datapath stays. */
  readonly dead = new Set<string>();
  readonly vip = new Map<string, { up: boolean; deadline: number }>();
  readonly machines = new Map<string, GroupMachine>();
  #queue: Array<{ at: number; fn: () => void }> = [];
  splitBrainMs = 0;
  /** Per ms: who answers (for the gaps). */
  readonly answering: Array<string | null> = [];

  constructor(readonly g: GatewayGroup) {}

  later(ms: number, fn: () => void) {
    this.#queue.push({ at: this.now + ms, fn });
  }

  #etcd<T>(node: string, fn: () => T): Promise<T> {
    return new Promise((resolve, reject) => {
      const reach = () => this.etcdUp && !this.etcdCut.has(node);
      if (!reach()) {
        this.later(50, () => reject(new Error("etcd unreachable")));
        return;
      }
      this.later(LAT_ETCD, () => {
        if (!reach()) reject(new Error("etcd unreachable"));
        else resolve(fn());
      });
    });
  }

  start(node: string) {
    this.dead.delete(node);
    const m = new GroupMachine(this.g, node, {
      now: () => this.now,
      send: (a: Advert) => {
        for (const other of this.g.nodes) {
          if (other === node || this.mgmtCut.has(node) || this.mgmtCut.has(other)) continue;
          const copy = structuredClone(a);
          this.later(LAT_NET, () => {
            if (!this.dead.has(other) && !this.mgmtCut.has(other)) this.machines.get(other)?.onAdvert(copy);
          });
        }
      },
      fence: {
        read: () =>
          this.#etcd(node, (): LeaseView => ({ holder: this.holder && { ...this.holder }, beatRev: this.beatRev })),
        acquire: (seen, _why) =>
          this.#etcd(node, () => {
            if ((this.holder?.rev ?? 0) !== (seen.holder?.rev ?? 0) || this.beatRev !== seen.beatRev) return null;
            this.rev++;
            this.holder = { node, rev: this.rev };
            this.beatRev = this.rev;
            return this.rev;
          }),
        renew: (epoch) =>
          this.#etcd(node, () => {
            if (this.holder?.rev !== epoch) return false;
            this.rev++;
            this.beatRev = this.rev;
            return true;
          }),
        release: (epoch) =>
          this.#etcd(node, () => {
            if (this.holder?.rev === epoch) {
              this.rev++;
              this.holder = null;
            }
          }),
      },
      vip: {
        up: (until) => this.vip.set(node, { up: true, deadline: until }),
        hold: (until) => {
          const v = this.vip.get(node);
          if (v) v.deadline = until;
        },
        down: () => this.vip.set(node, { up: false, deadline: 0 }),
      },
      log: () => {},
    });
    this.machines.set(node, m);
  }

  kill(node: string) {
    this.dead.add(node);
    this.machines.delete(node);
  }

  answers(node: string): boolean {
    const v = this.vip.get(node);
    return !!v && v.up && this.now < v.deadline && !this.mgmtCut.has(`${node}:down`);
  }

  async run(ms: number) {
    for (let i = 0; i < ms; i++) {
      this.now++;
      const due = this.#queue.filter((q) => q.at <= this.now);
      this.#queue = this.#queue.filter((q) => q.at > this.now);
      for (const q of due) q.fn();
      await new Promise((r) => setImmediate(r));
      if (this.now % 5 === 0) for (const [n, m] of this.machines) if (!this.dead.has(n)) m.tick();
      await new Promise((r) => setImmediate(r));
      const who = this.g.nodes.filter((n) => this.answers(n));
      if (who.length > 1) this.splitBrainMs++;
      this.answering.push(who[0] ?? null);
    }
  }

  active(): string | null {
    const a = this.g.nodes.filter((n) => this.answers(n));
    return a.length === 1 ? (a[0] as string) : null;
  }

  /** The longest stretch without anyone answering, over the last `ms`. */
  longestGap(ms: number): number {
    let best = 0;
    let cur = 0;
    for (const w of this.answering.slice(-ms)) {
      cur = w === null ? cur + 1 : 0;
      best = Math.max(best, cur);
    }
    return best;
  }
}

const group = (o: Partial<GatewayGroup> = {}): GatewayGroup => ({
  name: "edge",
  vips: { ipv4: "192.0.2.100" },
  nodes: ["a", "b", "c"],
  priority: { a: 200, b: 100, c: 100 },
  preempt: true,
  advertIntervalMs: 100,
  createdAt: "",
  ...o,
});

async function started(g = group()): Promise<World> {
  const w = new World(g);
  for (const n of g.nodes) w.start(n);
  await w.run(1500);
  return w;
}

describe("election", () => {
  test("the preferred node becomes active once, the others stand by", async () => {
    const w = await started();
    expect(w.active()).toBe("a");
    expect(w.machines.get("a")?.role).toBe("active");
    expect(w.machines.get("b")?.role).toBe("standby");
    expect(w.holder?.node).toBe("a");
    expect(w.splitBrainMs).toBe(0);
  });

  test("equal priorities: the node listed first", async () => {
    const w = await started(group({ priority: { a: 100, b: 100, c: 100 }, nodes: ["c", "a", "b"] }));
    expect(w.active()).toBe("c");
  });
});

describe("failover", () => {
  test("the active agent killed (kill -9): its datapath stops answering, the next node takes over in under 500 ms", async () => {
    const w = await started();
    const at = w.now;
    w.kill("a");
    await w.run(1000);
    expect(w.splitBrainMs).toBe(0);
    expect(w.active()).toBe("b");
    // The VIP of the dead agent is still up in its kernel; its deadline ran out.
    expect(w.vip.get("a")?.up).toBe(true);
    expect(w.answers("a")).toBe(false);
    const gap = w.longestGap(w.now - at);
    expect(gap).toBeGreaterThan(200);
    expect(gap).toBeLessThan(500);
  });

  test("a restarted node never keeps a VIP it does not own, and takes back the role (preempt on)", async () => {
    const w = await started();
    w.kill("a");
    await w.run(1000);
    w.start("a");
    expect(w.vip.get("a")?.up).toBe(false);
    await w.run(2000);
    expect(w.active()).toBe("a");
    expect(w.splitBrainMs).toBe(0);
    // The hand-over is planned: the old active released the lease, the new one took it at once.
    expect(w.longestGap(1500)).toBeLessThan(100);
  });

  test("preempt off: the restarted preferred node stays standby", async () => {
    const w = await started(group({ preempt: false }));
    w.kill("a");
    await w.run(1000);
    w.start("a");
    await w.run(2000);
    expect(w.active()).toBe("b");
    expect(w.machines.get("a")?.role).toBe("standby");
  });

  test("a clean stop releases the lease: the next node takes over at once", async () => {
    const w = await started();
    const stopped = w.machines.get("a")?.stop("the agent stops");
    await w.run(10);
    await stopped;
    w.kill("a");
    await w.run(300);
    expect(w.active()).toBe("b");
    expect(w.longestGap(300)).toBeLessThan(80);
  });
});

describe("partitions", () => {
  test("only the management link of the active node cut: nobody else becomes active (the lease is renewed)", async () => {
    const w = await started();
    w.mgmtCut.add("a");
    await w.run(3000);
    expect(w.active()).toBe("a");
    expect(w.splitBrainMs).toBe(0);
    for (const n of ["b", "c"]) expect(w.machines.get(n)?.role).toBe("standby");
  });

  test("the active node cut from etcd and the management LAN: it lets go before another takes over", async () => {
    const w = await started();
    w.mgmtCut.add("a");
    w.etcdCut.add("a");
    await w.run(1500);
    expect(w.splitBrainMs).toBe(0);
    expect(w.machines.get("a")?.role).toBe("standby");
    expect(w.active()).toBe("b");
  });

  test("the active node cut from etcd only: it keeps the role (every other node still hears it)", async () => {
    const w = await started();
    w.etcdCut.add("a");
    await w.run(3000);
    expect(w.active()).toBe("a");
    expect(w.splitBrainMs).toBe(0);
  });

  test("etcd down with the active node alive: nothing changes", async () => {
    const w = await started();
    w.etcdUp = false;
    await w.run(5000);
    expect(w.active()).toBe("a");
    expect(w.longestGap(5000)).toBe(0);
    w.etcdUp = true;
    await w.run(1000);
    expect(w.active()).toBe("a");
    expect(w.splitBrainMs).toBe(0);
  });

  test("etcd down and the active node killed: no failover without the lease; etcd back: failover", async () => {
    const w = await started();
    w.etcdUp = false;
    w.kill("a");
    await w.run(2000);
    expect(w.active()).toBe(null);
    for (const n of ["b", "c"]) expect(w.machines.get(n)?.role).toBe("standby");
    w.etcdUp = true;
    await w.run(1000);
    expect(w.active()).toBe("b");
    expect(w.splitBrainMs).toBe(0);
  });

  test("50 random partition/heal cycles of management links, etcd reach and agents: never two answering", async () => {
    const w = await started();
    let seed = 42;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    for (let i = 0; i < 50; i++) {
      const n = w.g.nodes[Math.floor(rnd() * 3)] as string;
      const what = Math.floor(rnd() * 4);
      if (what === 0) w.mgmtCut.add(n);
      else if (what === 1) w.etcdCut.add(n);
      else if (what === 2) {
        w.mgmtCut.add(n);
        w.etcdCut.add(n);
      } else if (!w.dead.has(n)) w.kill(n);
      await w.run(200 + Math.floor(rnd() * 800));
      w.mgmtCut.clear();
      w.etcdCut.clear();
      for (const d of [...w.dead]) w.start(d);
      await w.run(200 + Math.floor(rnd() * 800));
    }
    await w.run(2000);
    expect(w.splitBrainMs).toBe(0);
    expect(w.active()).not.toBe(null);
  }, 60_000);
});

test("adverts from outside the group, or about another group, are refused and counted", async () => {
  const w = await started();
  const m = w.machines.get("b") as GroupMachine;
  const before = m.counters.advertsRejected;
  const a: Advert = {
    v: 1,
    group: "edge",
    node: "zz",
    role: "active",
    prio: 255,
    epoch: 9,
    seq: 1,
    etcd: true,
    acks: {},
  };
  m.onAdvert(a);
  m.onAdvert({ ...a, node: "a", group: "other" });
  expect(m.counters.advertsRejected - before).toBe(2);
  expect(m.peers.has("zz")).toBe(false);
  expect(DEFAULT_PRIORITY).toBe(100);
});
