/** A small, fixed slice of the fuzz corpus (scripts/fuzzing/corpus.ts) fed straight into the
 * servers' handlers, no sockets: the DHCPv4 server's handle() and its reply encoding, the DNS
 * engine's handle() (and the wire readers behind it), the DHCPv6 codec and policy. No input
 * may throw, reject or hit an internal error (the servers catch those and log them: the log
 * is watched), and whatever the DHCPv6 decoder accepts must encode back to the same bytes.
 * The full run against a real agent is `scripts/fuzz`. */
import { describe, expect, test } from "bun:test";
import { corpus, DEFAULT_TARGET, hex, type Kind, mutatedPackets, Rng, seedPackets } from "../../scripts/fuzzing/corpus";
import { encodeReply } from "../../src/dhcp/policy4";
import { Dhcp4Server } from "../../src/dhcp/server4";
import { answerDhcp6, type Dhcp6Client, Dhcp6FormatError, decodeDhcp6, duidLl, encodeDhcp6 } from "../../src/dhcp/v6";
import { DnsEngine } from "../../src/dns/engine";
import { DnsFormatError, parseQuery, walkMessage } from "../../src/dns/wire";
import { linkLocal, validateNetwork } from "../../src/model/network";
import { SqliteStore } from "../../src/store/sqlite";

const SEED = 20_261_122;
const PER_KIND = 3000;
const T = DEFAULT_TARGET;

/** The packet that broke something, as a line worth pasting into a bug report. */
const culprit = (kind: Kind, i: number, b: Uint8Array, e: unknown) =>
  `${kind} #${i} (${b.length} bytes) ${hex(b).slice(0, 400)}: ${(e as Error)?.stack ?? e}`;

describe("corpus", () => {
  test("is deterministic: the same seed gives the same packets, another seed others", () => {
    const a = [...mutatedPackets("dns", 7, 200)].map(hex);
    const b = [...mutatedPackets("dns", 7, 200)].map(hex);
    const c = [...mutatedPackets("dns", 8, 200)].map(hex);
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    expect(new Rng(1).u32()).toBe(new Rng(1).u32());
  });

  test("has seeds of every kind and every recipe in a few thousand packets", () => {
    for (const kind of ["dhcp4", "dhcp6", "dns"] as const) {
      expect(seedPackets(kind).length).toBeGreaterThan(10);
      const recipes = new Set([...corpus(kind, SEED, 2000)].map((p) => p.recipe));
      expect([...recipes].sort()).toEqual(["length", "mutated", "random", "seed", "special"]);
    }
  });
});

describe("DHCPv4 server", () => {
  test(`${PER_KIND} mutated packets: handle() never throws, replies always encode`, () => {
    const store = new SqliteStore(":memory:");
    store.createNetwork(
      validateNetwork({
        name: "fz",
        cidr: "10.90.0.0/24",
        gateway: T.gateway4,
        cidr6: "fd90::/64",
        gateway6: T.gateway6,
      }),
    );
    store.claimEndpoint({
      name: T.host,
      network: "fz",
      ip: T.ip4,
      mac: T.mac,
      hostIndex: 1,
      kind: "tap",
      hostIf: "fztap0",
    });
    const warnings: string[] = [];
    const srv = new Dhcp4Server({
      store,
      bridge: "none",
      log: (level, msg) => {
        // A decline is the client's news, not a fault; anything else logged here is.
        if (level === "warn" && !msg.includes(" declined ")) warnings.push(msg);
      },
    });
    srv.loadLeases(store.listNetworks());
    srv.update(store.listNetworks(), store.listEndpoints());
    let replies = 0;
    let i = 0;
    for (const b of mutatedPackets("dhcp4", SEED, PER_KIND)) {
      try {
        const h = srv.handle(b);
        if (h?.out.kind === "reply") {
          encodeReply(h.out.reply, h.req);
          replies++;
        }
      } catch (e) {
        throw new Error(culprit("dhcp4", i, b, e));
      }
      i++;
    }
    expect(warnings).toEqual([]);
    const st = srv.stats();
    expect(st.malformed).toBeGreaterThan(0);
    // Enough of the corpus is well-formed to reach the answers too.
    expect(replies).toBeGreaterThan(50);
    store.close();
  });
});

describe("DNS engine", () => {
  test(`${PER_KIND} mutated queries: handle() never throws or rejects, and hits no internal error`, async () => {
    const internal: string[] = [];
    const engine = new DnsEngine({
      log: (level, msg) => {
        if (level === "warn") internal.push(msg);
      },
    });
    engine.setZones([
      {
        network: {
          name: "fz",
          cidr: "10.90.0.0/24",
          gateway: T.gateway4,
          cidr6: "fd90::/64",
          gateway6: T.gateway6,
          dnsZone: T.zone,
          dnsForwarders: [],
        },
        endpoints: [{ name: T.host, ip: T.ip4, mac: T.mac }],
        records: [
          { name: "_http._tcp", type: "SRV", value: `10 5 8080 ${T.host}.${T.zone}`, ttl: 300 },
          { name: T.host, type: "TXT", value: "hello", ttl: 300 },
          { name: "@", type: "MX", value: `10 ${T.host}.${T.zone}`, ttl: 300 },
        ],
      },
    ]);
    // In the subnet (answered), outside it (refused), over IPv6, over TCP.
    const sources: Array<[string, string, boolean]> = [
      [T.gateway4, "10.90.0.9", false],
      [T.gateway4, "192.0.2.1", false],
      [T.gateway6, "fd90::9", false],
      [T.gateway4, "10.90.0.9", true],
    ];
    const pending: Promise<unknown>[] = [];
    let answered = 0;
    let i = 0;
    for (const b of mutatedPackets("dns", SEED, PER_KIND)) {
      const [local, src, tcp] = sources[i % sources.length] as [string, string, boolean];
      try {
        const r = engine.handle(local, src, b, tcp);
        if (r instanceof Promise) pending.push(r);
        else if (r) answered++;
        // The readers behind it throw only DnsFormatError.
        for (const read of [parseQuery, walkMessage])
          try {
            read(b);
          } catch (e) {
            if (!(e instanceof DnsFormatError)) throw e;
          }
      } catch (e) {
        throw new Error(culprit("dns", i, b, e));
      }
      i++;
    }
    await Promise.all(pending);
    engine.close();
    expect(internal).toEqual([]);
    expect(engine.stats().malformed).toBeGreaterThan(0);
    expect(answered).toBeGreaterThan(PER_KIND / 4);
  });
});

describe("DHCPv6 codec and policy", () => {
  test(`${PER_KIND} mutated messages: decode throws only Dhcp6FormatError, answers never throw and encode`, () => {
    const serverDuid = duidLl("02:aa:00:00:00:01");
    const client: Dhcp6Client = {
      endpoint: T.host,
      network: "fz",
      ip6: T.ip6,
      cidr6: "fd90::/64",
      gateway6: T.gateway6,
      dnsZone: T.zone,
      leaseTime: 3600,
    };
    const ctx = {
      source: `${linkLocal(T.mac)}%cnv-user-br0`,
      serverDuid,
      lookup: (mac: string) => (mac === T.mac ? client : undefined),
    };
    const counts = { malformed: 0, replies: 0, ignored: 0 };
    let i = 0;
    // At most what a workload can send through its port (the full run also sends 64 KiB over UDP).
    for (const b of mutatedPackets("dhcp6", SEED, PER_KIND, { serverDuid, maxLen: 1452 })) {
      try {
        let m: ReturnType<typeof decodeDhcp6>;
        try {
          m = decodeDhcp6(b);
        } catch (e) {
          if (!(e instanceof Dhcp6FormatError)) throw e;
          counts.malformed++;
          i++;
          continue;
        }
        // What the decoder accepts encodes back to the same bytes.
        expect(hex(encodeDhcp6(m))).toBe(hex(b));
        const d = answerDhcp6(m, ctx);
        if (d.action === "reply") {
          encodeDhcp6(d.reply);
          counts.replies++;
        } else counts.ignored++;
      } catch (e) {
        throw new Error(culprit("dhcp6", i, b, e));
      }
      i++;
    }
    expect(counts.malformed).toBeGreaterThan(0);
    expect(counts.replies).toBeGreaterThan(50);
    expect(counts.ignored).toBeGreaterThan(0);
  });
});
