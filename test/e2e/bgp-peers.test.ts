/** The gateway's BGP speaker (src/gateway/bgp) against real peers from Debian — BIRD 2, FRR's
 * bgpd and GoBGP — each over a veth between two namespaces: the session comes up with IPv4 and
 * IPv6 unicast; the peer's RIB has the announced prefixes with our AS path and next hops; a
 * prefix taken away is withdrawn; graceful restart keeps the routes through a restart and
 * replaces them by the new table at End-of-RIB, and they go after the restart time when the
 * speaker does not come back. Against BIRD also: the hold timer enforced on a peer that goes
 * silent, and a peer with the wrong AS refused with a NOTIFICATION. Against FRR with a
 * password: TCP MD5. And a hostile peer (test/helpers/bgp-hostile.ts) whose malformed
 * messages each get their NOTIFICATION and a reset, the speaker staying up. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeAnnounce, encodeKeepalive, encodeOpen, parsePrefix } from "../../src/gateway/bgp/codec";
import { bird, birdRoutes, frr, gobgp, type Peer, type PeerSite } from "../helpers/bgp-peers";
import { until } from "../helpers/lab";
import { BUN, Netns, ROOT, run } from "../helpers/netns";

const GW4 = "10.97.0.1";
const RT4 = "10.97.0.2";
const GW6 = "fd97::1";
const RT6 = "fd97::2";
const MY_AS = 65001;

const PEER_AS = 65000;

let gw: Netns;
let rt: Netns;
let dir: string;
const drivers = new Set<Driver>();

/** One speaker process in the gateway's namespace, driven over its stdin and stdout. */
class Driver {
  readonly proc: ReturnType<typeof Bun.spawn>;
  #lines: string[] = [];
  #waiters: Array<(l: string) => void> = [];
  stderr = "";

  constructor(o: {
    prefixes: string[];
    holdTime?: number;
    restartTime?: number;
    restarting?: boolean;
    peerAs?: number;
    md5Key?: string;
    /** The peer's address (default: its IPv4 one). */
    address?: string;
  }) {
    const cfg = {
      local: { asn: MY_AS, routerId: GW4, restartTime: o.restartTime ?? 10, restarting: o.restarting ?? false },
      peer: {
        name: "peer",
        address: o.address ?? RT4,
        asn: o.peerAs ?? PEER_AS,
        holdTime: o.holdTime ?? 9,
        md5Key: o.md5Key,
      },
      nextHop4: GW4,
      nextHop6: GW6,
      prefixes: o.prefixes,
    };
    this.proc = Bun.spawn(
      ["ip", "netns", "exec", gw.name, BUN, join(ROOT, "test/helpers/bgp-driver.ts"), JSON.stringify(cfg)],
      { stdin: "pipe", stdout: "pipe", stderr: "pipe" },
    );
    drivers.add(this);
    this.#read(this.proc.stdout as ReadableStream<Uint8Array>, (l) => {
      const w = this.#waiters.shift();
      if (w) w(l);
      else this.#lines.push(l);
    });
    this.#read(this.proc.stderr as ReadableStream<Uint8Array>, (l) => {
      this.stderr += `${l}\n`;
    });
  }

  async #read(s: ReadableStream<Uint8Array>, each: (l: string) => void): Promise<void> {
    let buf = "";
    const dec = new TextDecoder();
    for await (const c of s) {
      buf += dec.decode(c);
      let i = buf.indexOf("\n");
      while (i >= 0) {
        each(buf.slice(0, i));
        buf = buf.slice(i + 1);
        i = buf.indexOf("\n");
      }
    }
  }

  async send(o: unknown): Promise<any> {
    const reply = new Promise<string>((res) => {
      const l = this.#lines.shift();
      if (l !== undefined) res(l);
      else this.#waiters.push(res);
    });
    const stdin = this.proc.stdin as import("bun").FileSink;
    stdin.write(`${JSON.stringify(o)}\n`);
    stdin.flush();
    return JSON.parse(await reply);
  }

  status(): Promise<any> {
    return this.send({ op: "status" });
  }

  async stop(withdraw = false): Promise<void> {
    await this.send({ op: "stop", withdraw });
    await this.proc.exited;
    drivers.delete(this);
  }

  async kill(): Promise<void> {
    this.proc.kill("SIGKILL");
    await this.proc.exited;
    drivers.delete(this);
  }
}

async function established(d: Driver): Promise<void> {
  await until("the session is established", async () => (await d.status()).state === "established", 20_000);
}

const sameKeys = (o: Record<string, string>, keys: string[]) =>
  JSON.stringify(Object.keys(o).sort()) === JSON.stringify([...keys].sort());

beforeAll(() => {
  gw = new Netns("bgw");
  rt = new Netns("brt");
  dir = mkdtempSync(join(tmpdir(), "stm-bgp-"));
  run(["ip", "-n", gw.name, "link", "add", "bgp0", "type", "veth", "peer", "name", "bgp0", "netns", rt.name]);
  for (const [ns, a4, a6] of [
    [gw, GW4, GW6],
    [rt, RT4, RT6],
  ] as const) {
    ns.execOk(["ip", "addr", "add", `${a4}/24`, "dev", "bgp0"]);
    ns.execOk(["ip", "addr", "add", `${a6}/64`, "dev", "bgp0", "nodad"]);
    ns.execOk(["ip", "link", "set", "bgp0", "up"]);
  }
});

afterAll(async () => {
  for (const d of [...drivers]) await d.kill();
  gw?.destroy();
  rt?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

for (const make of [bird, frr, gobgp]) {
  // The namespaces and directory exist once beforeAll ran: the site reads them when used.
  const site = (): PeerSite => ({
    rt,
    routerAddress: RT4,
    speakerAddress: GW4,
    speakerAs: MY_AS,
    peerAs: PEER_AS,
    dir,
    v6Session: { router: RT6, speaker: GW6 },
  });
  const peer: Peer = make(new Proxy({} as PeerSite, { get: (_t, k) => site()[k as keyof PeerSite] }));
  describe(peer.name, () => {
    beforeAll(async () => {
      try {
        await peer.start();
      } catch (e) {
        const err = peer.proc ? await new Response(peer.proc.stderr as ReadableStream).text().catch(() => "") : "";
        await peer.stop();
        throw new Error(`${(e as Error).message}: ${err}`);
      }
    }, 30_000);
    afterAll(async () => {
      for (const d of [...drivers]) await d.kill();
      await peer.stop();
    });

    test("IPv4 and IPv6 unicast: the peer's RIB has the prefixes with our next hops; withdraws follow", async () => {
      const d = new Driver({ prefixes: ["10.20.0.0/24", "10.21.0.0/16", "fd20::/64"] });
      await established(d);
      const st = await d.status();
      expect(st.families.sort()).toEqual(["ipv4-unicast", "ipv6-unicast"]);
      expect(st.peerRouterId).toBe(RT4);
      expect(st.prefixesSent).toBe(3);
      await until("the peer has the routes", () => Object.keys(peer.routes()).length === 3);
      expect(peer.routes()).toEqual({ "10.20.0.0/24": GW4, "10.21.0.0/16": GW4, "fd20::/64": GW6 });
      expect(peer.established()).toBe(true);
      // Taken away: withdrawn; added: announced.
      await d.send({ op: "routes", prefixes: ["10.20.0.0/24", "fd21::/64"] });
      await until("the peer follows", () => sameKeys(peer.routes(), ["10.20.0.0/24", "fd21::/64"]));
      await d.stop(true);
      await until("withdrawn on a stop with withdraw", () => Object.keys(peer.routes()).length === 0);
    }, 60_000);

    test("graceful restart: the routes stay through a restart, End-of-RIB replaces them, the restart time ends them", async () => {
      const d = new Driver({ prefixes: ["10.30.0.0/24", "10.31.0.0/24", "fd30::/64"], restartTime: 6 });
      await established(d);
      await until("the peer has three", () => Object.keys(peer.routes()).length === 3);
      await d.stop(false); // no NOTIFICATION: the connection just closes
      await until("the peer sees the session gone", () => !peer.established());
      expect(Object.keys(peer.routes()).sort()).toEqual(["10.30.0.0/24", "10.31.0.0/24", "fd30::/64"]);

      // Back, restarting, one prefix fewer and one new: after End-of-RIB exactly the new table.
      const d2 = new Driver({
        prefixes: ["10.30.0.0/24", "10.32.0.0/24", "fd30::/64"],
        restartTime: 4,
        restarting: true,
      });
      // GoBGP holds a reset peer idle for a while before it takes a connection again (about 13 s).
      await until("the session is back", async () => (await d2.status()).state === "established", 40_000);
      await until(
        "the stale route is gone after End-of-RIB",
        () => sameKeys(peer.routes(), ["10.30.0.0/24", "10.32.0.0/24", "fd30::/64"]),
        15_000,
      );
      // Gone for good: the routes last the restart time (4 s), then the peer drops them.
      const t0 = Date.now();
      await d2.kill();
      await until("the peer sees the session gone", () => !peer.established(), 15_000);
      expect(Object.keys(peer.routes()).length).toBe(3);
      await until("the routes expire", () => Object.keys(peer.routes()).length === 0, 30_000);
      expect(Date.now() - t0).toBeGreaterThan(3_000);
    }, 90_000);

    if (peer.name !== "BIRD 2") return;

    test("a session over IPv6 transport carries both families", async () => {
      const d = new Driver({ prefixes: ["10.90.0.0/24", "fd90::/64"], address: RT6 });
      await established(d);
      const st = await d.status();
      expect(st.address).toBe(RT6);
      expect(st.families.sort()).toEqual(["ipv4-unicast", "ipv6-unicast"]);
      // BIRD's second session, stratum6.
      const v6Routes = () => birdRoutes(join(dir, "bird.ctl"), "stratum6");
      await until("BIRD has the routes", () => Object.keys(v6Routes()).length === 2);
      expect(v6Routes()).toEqual({ "10.90.0.0/24": GW4, "fd90::/64": GW6 });
      await d.stop(true);
      await until("withdrawn", () => Object.keys(v6Routes()).length === 0);
    }, 60_000);

    test("the hold timer: a peer that goes silent is dropped with a NOTIFICATION after the hold time", async () => {
      const d = new Driver({ prefixes: ["10.40.0.0/24"], holdTime: 3 });
      await established(d);
      expect((await d.status()).holdTime).toBe(3);
      peer.proc?.kill("SIGSTOP");
      try {
        const t0 = Date.now();
        await until(
          "the speaker gives up on the silent peer",
          async () => (await d.status()).state !== "established",
          10_000,
        );
        expect(Date.now() - t0).toBeGreaterThan(1_500);
        expect((await d.status()).lastError).toContain("hold timer expired");
      } finally {
        peer.proc?.kill("SIGCONT");
      }
      await until("and comes back", async () => (await d.status()).state === "established", 30_000);
      await d.stop(true);
    }, 60_000);

    test("a peer whose AS is not the configured one gets an OPEN error NOTIFICATION, and no routes", async () => {
      const d = new Driver({ prefixes: ["10.50.0.0/24"], peerAs: 65099 });
      await until("refused", async () => /bad peer AS/.test((await d.status()).lastError ?? ""), 15_000);
      expect((await d.status()).state).not.toBe("established");
      expect(peer.routes()).toEqual({});
      await d.stop();
    }, 30_000);
  });
}

describe("FRR with TCP MD5 (RFC 2385)", () => {
  const KEY = "s3cret-md5-key";
  const site: PeerSite = {
    get rt() {
      return rt;
    },
    get dir() {
      return join(dir, "md5");
    },
    routerAddress: RT4,
    speakerAddress: GW4,
    speakerAs: MY_AS,
    peerAs: PEER_AS,
    password: KEY,
  };
  const peer = frr(site);
  beforeAll(async () => {
    await peer.start();
  }, 30_000);
  afterAll(async () => {
    for (const d of [...drivers]) await d.kill();
    await peer.stop();
  });

  test("a wrong key gets no session: FRR's kernel drops the SYN, the speaker says why", async () => {
    const d = new Driver({ prefixes: ["10.70.0.0/24"], md5Key: "not-the-key" });
    await until("the connect gives up", async () => /TCP MD5/.test((await d.status()).lastError ?? ""), 15_000);
    expect((await d.status()).state).not.toBe("established");
    expect(peer.established()).toBe(false);
    await d.kill();
  }, 30_000);

  test("the right key: the session comes up, signed, and FRR has the routes", async () => {
    const d = new Driver({ prefixes: ["10.70.0.0/24", "fd70::/64"], md5Key: KEY });
    await established(d);
    await until("FRR has the routes", () => Object.keys(peer.routes()).length === 2);
    expect(peer.routes()).toEqual({ "10.70.0.0/24": GW4, "fd70::/64": GW6 });
    // The segments carry the MD5 option (TCP option kind 19): seen on the wire.
    const cap = rt.exec(["timeout", "3", "tcpdump", "-c", "1", "-nn", "-i", "bgp0", "-v", "tcp port 179"]);
    expect(cap.stdout + cap.stderr).toMatch(/md5/i);
    await d.stop(true);
  }, 60_000);
});

describe("a hostile peer", () => {
  test("each malformed message gets the NOTIFICATION its rule names and a reset; the speaker stays up and tries again", async () => {
    const up = encodeAnnounce({ asn: PEER_AS, prefixes: [parsePrefix("198.51.100.0/24")], nextHop: RT4 });
    const pastList = Buffer.from(up);
    pastList[29] = 200; // AS_PATH's length (byte 29) runs past the attribute list
    const marker = Buffer.from(encodeKeepalive());
    marker[5] = 0;
    const long = Buffer.from(encodeKeepalive());
    long.writeUInt16BE(5000, 16);
    const segments = Buffer.from(up);
    segments[31] = 9; // AS_PATH's segment says 9 AS numbers, holds 1
    const type9 = Buffer.from(encodeKeepalive());
    type9[18] = 9;
    const open = encodeOpen({ asn: PEER_AS, holdTime: 90, bgpId: RT4, families: [{ afi: 1, safi: 1 }] });
    const attacks: Array<[string, Buffer, [number, number]]> = [
      ["an attribute past the list", pastList, [3, 5]],
      ["an AS_PATH segment longer than its attribute", segments, [3, 11]],
      ["a broken marker", marker, [1, 1]],
      ["a length of 5000", long, [1, 2]],
      ["message type 9", type9, [1, 3]],
      ["an OPEN in Established", open, [5, 3]],
    ];
    const hostile = Bun.spawn(
      [
        "ip",
        "netns",
        "exec",
        rt.name,
        BUN,
        join(ROOT, "test/helpers/bgp-hostile.ts"),
        RT4,
        String(PEER_AS),
        JSON.stringify(attacks.map(([, b]) => b.toString("hex"))),
      ],
      { stdout: "pipe", stderr: "pipe" },
    );
    try {
      await Bun.sleep(300); // listening
      const d = new Driver({ prefixes: ["10.80.0.0/24"] });
      const out = await Promise.race([
        new Response(hostile.stdout as ReadableStream).text(),
        Bun.sleep(60_000).then(() => "timeout"),
      ]);
      const reports = out
        .trim()
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l));
      expect(reports.length).toBe(attacks.length);
      for (const [i, [what, , [code, subcode]]] of attacks.entries()) {
        const note = reports.find((r) => r.attack === i)?.got.find((m: any) => m.type === 3);
        expect({ what, note }).toEqual({ what, note: { type: 3, code, subcode } });
      }
      const st = await d.status(); // the speaker still answers
      expect(st.state).not.toBe("established");
      expect(st.counts.notificationsSent).toBe(attacks.length);
      expect(st.lastError).toBeTruthy();
      await d.kill();
    } finally {
      hostile.kill();
      await hostile.exited;
    }
  }, 90_000);
});
