/** The DHCPv4 server's answers and lease keeping, without sockets: each RFC 2131 exchange
 * (DORA, INIT-REBOOT, renew, rebind, INFORM, RELEASE, DECLINE, NAK), who gets nothing
 * (unknown MACs, relayed requests, static endpoints outside the range, another server's
 * client), the options of an offer, the client's maximum message size, lease rows that are
 * persisted, restored and quarantined, and the same answers over a real UDP socket. */
import { afterAll, beforeEach, describe, expect, test } from "bun:test";
import { Dhcp4Server, FLUSH_MS } from "../../src/dhcp/server4";
import { DHCP4, type Dhcp4Message, dec, enc, encodeDhcp4, OPT, parseDhcp4 } from "../../src/dhcp/v4";
import { validateNetwork } from "../../src/model/network";
import { SqliteStore } from "../../src/store/sqlite";
import type { StoredNetwork } from "../../src/store/store";
import { clientMessage } from "../helpers/dhcp4";

const MAC = "02:00:01:00:00:05";
const OTHER = "02:00:01:00:00:09";

function request(type: number, o: Partial<Dhcp4Message> & { mac?: string; opts?: Array<[number, Uint8Array]> } = {}) {
  const { mac, opts, ...over } = o;
  const options = new Map([[OPT.MSG_TYPE, enc.u8(type)], ...(opts ?? [])]);
  return encodeDhcp4(clientMessage(mac ?? MAC, { xid: 0x1234abcd, options, ...over }));
}

let store: SqliteStore;
let srv: Dhcp4Server;

function fresh(spec: Record<string, unknown> = {}) {
  store = new SqliteStore(":memory:");
  store.createNetwork(
    validateNetwork({
      name: "app",
      cidr: "10.20.0.0/24",
      gateway: "10.20.0.1",
      mtu: 1450,
      dhcpLeaseTime: 600,
      dhcpRoutes: ["192.168.50.0/24 via 10.20.0.254"],
      dhcpOptions: ["42=ips:10.20.0.1", "66=text:tftp.lab"],
      ...spec,
    }),
  );
  const ep = (name: string, ip: string, mac: string, hostIndex: number) =>
    store.claimEndpoint({ name, network: "app", ip, mac, hostIndex, kind: "tap", hostIf: `t-${name}` });
  ep("web-1", "10.20.0.6", MAC, 5);
  ep("db-1", "10.20.0.10", OTHER, 9);
  srv = new Dhcp4Server({ store, bridge: "none" });
  srv.loadLeases(store.listNetworks());
  srv.update(store.listNetworks(), store.listEndpoints());
}

function answer(buf: Uint8Array) {
  const h = srv.handle(buf);
  if (!h) throw new Error("no outcome");
  return h.out;
}

function reply(buf: Uint8Array) {
  const out = answer(buf);
  if (out.kind !== "reply") throw new Error(`expected a reply, got ${JSON.stringify(out)}`);
  // What goes on the wire, parsed back as a client would.
  return { ...out, msg: parseDhcp4(encodeDhcp4(out.reply)) };
}

beforeEach(() => fresh());

describe("DORA and the offer's options", () => {
  test("DISCOVER → OFFER of the profile address with every option of the network", () => {
    const r = reply(
      request(DHCP4.DISCOVER, { opts: [[OPT.PARAM_LIST, Uint8Array.of(1, 3, 6, 12, 15, 26, 28, 119, 121)]] }),
    );
    expect(r.type).toBe(DHCP4.OFFER);
    expect(r.msg.yiaddr).toBe("10.20.0.6");
    expect(r.msg.xid).toBe(0x1234abcd);
    expect(r).toMatchObject({ to: "unicast", dest: "10.20.0.6" });
    const o = r.msg.options;
    expect(dec.u8(o.get(OPT.MSG_TYPE) as Uint8Array)).toBe(DHCP4.OFFER);
    expect(dec.ip(o.get(OPT.SERVER_ID) as Uint8Array)).toBe("10.20.0.1");
    expect(dec.ip(o.get(OPT.SUBNET_MASK) as Uint8Array)).toBe("255.255.255.0");
    expect(dec.ips(o.get(OPT.ROUTER) as Uint8Array)).toEqual(["10.20.0.1"]);
    expect(dec.ips(o.get(OPT.DNS) as Uint8Array)).toEqual(["10.20.0.1"]);
    expect(dec.text(o.get(OPT.DOMAIN_NAME) as Uint8Array)).toBe("app.internal");
    expect(dec.domainSearch(o.get(OPT.DOMAIN_SEARCH) as Uint8Array)).toEqual(["app.internal"]);
    expect(dec.u16(o.get(OPT.MTU) as Uint8Array)).toBe(1450);
    expect(dec.u32(o.get(OPT.LEASE_TIME) as Uint8Array)).toBe(600);
    expect(dec.u32(o.get(OPT.T1) as Uint8Array)).toBe(300);
    expect(dec.u32(o.get(OPT.T2) as Uint8Array)).toBe(525);
    expect(dec.text(o.get(OPT.HOSTNAME) as Uint8Array)).toBe("web-1");
    expect(dec.ip(o.get(OPT.BROADCAST) as Uint8Array)).toBe("10.20.0.255");
    // RFC 3442: the default route leads, then the network's own routes.
    expect(dec.classlessRoutes(o.get(OPT.CLASSLESS_ROUTES) as Uint8Array)).toEqual([
      { dst: "0.0.0.0/0", via: "10.20.0.1" },
      { dst: "192.168.50.0/24", via: "10.20.0.254" },
    ]);
    expect(dec.ips(o.get(42) as Uint8Array)).toEqual(["10.20.0.1"]);
    expect(dec.text(o.get(66) as Uint8Array)).toBe("tftp.lab");
  });

  test("what the client did not ask for stays home, except what every client needs", () => {
    const codes = (prl: number[]) => [
      ...reply(request(DHCP4.DISCOVER, { opts: [[OPT.PARAM_LIST, Uint8Array.from(prl)]] })).msg.options.keys(),
    ];
    // MTU 1450 (not Ethernet's), the network's own routes and the operator's options always go.
    expect(codes([1, 3])).toEqual([53, 54, 51, 58, 59, 1, 3, 6, 15, 26, 121, 42, 66]);
    expect(codes([28, 12])).toEqual([53, 54, 51, 58, 59, 1, 3, 6, 15, 26, 28, 12, 121, 42, 66]);
    // An MTU of 1500 and no routes of its own: option 26 and 121 only when asked for.
    fresh({ mtu: 1500, dhcpRoutes: [], dhcpOptions: [] });
    expect(codes([1, 3, 6])).toEqual([53, 54, 51, 58, 59, 1, 3, 6, 15]);
    expect(codes([121, 26, 119])).toEqual([53, 54, 51, 58, 59, 1, 3, 6, 15, 26, 119, 121]);
    const routes = reply(request(DHCP4.DISCOVER, { opts: [[OPT.PARAM_LIST, Uint8Array.of(121)]] })).msg.options;
    expect(dec.classlessRoutes(routes.get(OPT.CLASSLESS_ROUTES) as Uint8Array)).toEqual([
      { dst: "0.0.0.0/0", via: "10.20.0.1" },
    ]);
    // Without a request list at all: the same essentials.
    expect([...reply(request(DHCP4.DISCOVER)).msg.options.keys()]).toEqual([53, 54, 51, 58, 59, 1, 3, 6, 15]);
  });

  test("REQUEST (selecting) → ACK; the lease is stored with the client's host name", () => {
    const r = reply(
      request(DHCP4.REQUEST, {
        opts: [
          [OPT.SERVER_ID, enc.ip("10.20.0.1")],
          [OPT.REQUESTED_IP, enc.ip("10.20.0.6")],
          [OPT.HOSTNAME, enc.text("web-host")],
        ],
      }),
    );
    expect(r.type).toBe(DHCP4.ACK);
    expect(r.msg.yiaddr).toBe("10.20.0.6");
    const rows = store.loadLeases();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      network: "app",
      mac: MAC,
      ip: "10.20.0.6",
      endpoint: "web-1",
      hostname: "web-host",
    });
    expect(rows[0]?.state).toBe("bound");
    expect(Number(rows[0]?.expires_at) - Date.now()).toBeGreaterThan(590_000);
    expect(srv.stats().leasesActive).toBe(1);
  });

  test("a renewal that only moves the expiry is written within FLUSH_MS, a changed lease at once", async () => {
    const selecting = (host: string, now: number) =>
      srv.handle(
        request(DHCP4.REQUEST, {
          opts: [
            [OPT.SERVER_ID, enc.ip("10.20.0.1")],
            [OPT.REQUESTED_IP, enc.ip("10.20.0.6")],
            [OPT.HOSTNAME, enc.text(host)],
          ],
        }),
        now,
      );
    const t0 = Date.now();
    selecting("web-host", t0);
    const first = Number(store.loadLeases()[0]?.expires_at);
    expect(first).toBe(t0 + 600_000);
    // Renewals: the stored expiry lags until the flush, which writes the latest one.
    srv.handle(
      request(DHCP4.REQUEST, { ciaddr: "10.20.0.6", opts: [[OPT.HOSTNAME, enc.text("web-host")]] }),
      t0 + 5_000,
    );
    srv.handle(
      request(DHCP4.REQUEST, { ciaddr: "10.20.0.6", opts: [[OPT.HOSTNAME, enc.text("web-host")]] }),
      t0 + 9_000,
    );
    expect(Number(store.loadLeases()[0]?.expires_at)).toBe(first);
    await Bun.sleep(FLUSH_MS + 200);
    expect(Number(store.loadLeases()[0]?.expires_at)).toBe(t0 + 609_000);
    // A new host name is a changed lease: stored at once, and a pending renewal is superseded.
    srv.handle(
      request(DHCP4.REQUEST, { ciaddr: "10.20.0.6", opts: [[OPT.HOSTNAME, enc.text("web-host")]] }),
      t0 + 10_000,
    );
    selecting("renamed", t0 + 11_000);
    expect(store.loadLeases()[0]).toMatchObject({ hostname: "renamed", expires_at: t0 + 611_000 });
    // close() writes what is pending.
    srv.handle(
      request(DHCP4.REQUEST, { ciaddr: "10.20.0.6", opts: [[OPT.HOSTNAME, enc.text("renamed")]] }),
      t0 + 12_000,
    );
    srv.close();
    expect(Number(store.loadLeases()[0]?.expires_at)).toBe(t0 + 612_000);
  });

  test("a REQUEST for another address is NAKed, broadcast", () => {
    const r = reply(
      request(DHCP4.REQUEST, {
        opts: [
          [OPT.SERVER_ID, enc.ip("10.20.0.1")],
          [OPT.REQUESTED_IP, enc.ip("10.20.0.77")],
        ],
      }),
    );
    expect(r.type).toBe(DHCP4.NAK);
    expect(r).toMatchObject({ to: "broadcast", dest: "255.255.255.255" });
    expect(r.msg.yiaddr).toBe("0.0.0.0");
    expect(store.loadLeases()).toHaveLength(0);
  });

  test("a REQUEST that chose another server gets nothing", () => {
    const out = answer(
      request(DHCP4.REQUEST, {
        opts: [
          [OPT.SERVER_ID, enc.ip("10.99.0.1")],
          [OPT.REQUESTED_IP, enc.ip("10.20.0.6")],
        ],
      }),
    );
    expect(out).toEqual({ kind: "ignore", why: "other-server" });
  });

  test("INIT-REBOOT: the right address is ACKed, a wrong one NAKed", () => {
    expect(reply(request(DHCP4.REQUEST, { opts: [[OPT.REQUESTED_IP, enc.ip("10.20.0.6")]] })).type).toBe(DHCP4.ACK);
    expect(reply(request(DHCP4.REQUEST, { opts: [[OPT.REQUESTED_IP, enc.ip("10.20.0.7")]] })).type).toBe(DHCP4.NAK);
  });

  test("renew and rebind (ciaddr) are ACKed to the client's address", () => {
    const r = reply(request(DHCP4.REQUEST, { ciaddr: "10.20.0.6" }));
    expect(r.type).toBe(DHCP4.ACK);
    expect(r).toMatchObject({ to: "unicast", dest: "10.20.0.6" });
    expect(reply(request(DHCP4.REQUEST, { ciaddr: "10.20.0.99" })).type).toBe(DHCP4.NAK);
  });

  test("a reply lands only on the client's own address, whatever ciaddr it names", () => {
    // A RENEW that names the right address but another network's endpoint (or the subnet's
    // broadcast address) as ciaddr: NAKed, never ACKed there.
    for (const ciaddr of ["10.30.0.5", "10.20.0.255", "255.255.255.255"]) {
      const r = reply(request(DHCP4.REQUEST, { ciaddr, opts: [[OPT.REQUESTED_IP, enc.ip("10.20.0.6")]] }));
      expect({ ciaddr, type: r.type, to: r.to, dest: r.dest }).toEqual({
        ciaddr,
        type: DHCP4.NAK,
        to: "broadcast",
        dest: "255.255.255.255",
      });
      // INFORM from an address that is not the profile's: not answered at all.
      expect(answer(request(DHCP4.INFORM, { ciaddr }))).toEqual({ kind: "ignore", why: "wrong-address" });
    }
    expect(reply(request(DHCP4.INFORM, { ciaddr: "10.20.0.6" }))).toMatchObject({ to: "unicast", dest: "10.20.0.6" });
    // The broadcast flag with an address already held: unicast, to that address.
    expect(reply(request(DHCP4.REQUEST, { ciaddr: "10.20.0.6", flags: 0x8000 }))).toMatchObject({
      to: "unicast",
      dest: "10.20.0.6",
    });
  });

  test("the broadcast flag asks for a broadcast reply", () => {
    expect(reply(request(DHCP4.DISCOVER, { flags: 0x8000 }))).toMatchObject({ to: "broadcast" });
  });

  test("INFORM gets the configuration and no lease", () => {
    const r = reply(request(DHCP4.INFORM, { ciaddr: "10.20.0.6" }));
    expect(r.type).toBe(DHCP4.ACK);
    expect(r.msg.yiaddr).toBe("0.0.0.0");
    expect(r.msg.options.has(OPT.LEASE_TIME)).toBe(false);
    expect(dec.ips(r.msg.options.get(OPT.DNS) as Uint8Array)).toEqual(["10.20.0.1"]);
    expect(store.loadLeases()).toHaveLength(0);
  });

  test("RELEASE and DECLINE end the lease and are counted", () => {
    reply(request(DHCP4.REQUEST, { ciaddr: "10.20.0.6" }));
    expect(answer(request(DHCP4.RELEASE, { ciaddr: "10.20.0.6" })).kind).toBe("release");
    expect(store.loadLeases()[0]?.state).toBe("released");
    expect(answer(request(DHCP4.DECLINE, { opts: [[OPT.REQUESTED_IP, enc.ip("10.20.0.6")]] })).kind).toBe("decline");
    expect(store.loadLeases()[0]?.state).toBe("declined");
    expect(srv.stats()).toMatchObject({ releases: 1, declines: 1, leasesActive: 0 });
  });
});

describe("who gets nothing", () => {
  test("an unknown MAC (a starvation flood allocates nothing)", () => {
    for (let i = 0; i < 500; i++) {
      const mac = `02:aa:00:00:${(i >> 8).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}`;
      expect(answer(request(DHCP4.DISCOVER, { mac }))).toEqual({ kind: "ignore", why: "unknown-client" });
    }
    expect(store.loadLeases()).toHaveLength(0);
    expect(srv.stats().ignored["unknown-client"]).toBe(500);
  });

  test("a relayed request (giaddr or option 82)", () => {
    expect(answer(request(DHCP4.DISCOVER, { giaddr: "10.20.0.6" }))).toEqual({ kind: "ignore", why: "relayed" });
    expect(answer(request(DHCP4.DISCOVER, { opts: [[OPT.RELAY_AGENT, Uint8Array.of(1, 1, 0)]] }))).toEqual({
      kind: "ignore",
      why: "relayed",
    });
  });

  test("a BOOTP request, a BOOTREPLY and garbage", () => {
    const bootp = request(DHCP4.DISCOVER);
    const m = parseDhcp4(bootp);
    m.options.delete(OPT.MSG_TYPE);
    expect(answer(encodeDhcp4(m))).toEqual({ kind: "ignore", why: "bootp" });
    expect(answer(request(DHCP4.DISCOVER, { op: 2 }))).toEqual({ kind: "ignore", why: "not-a-request" });
    expect(srv.handle(new Uint8Array(100))).toBeUndefined();
    expect(srv.stats().malformed).toBe(1);
  });

  test("an endpoint outside the DHCP range is static: not served", () => {
    fresh({ dhcpRange: "10.20.0.2-10.20.0.9" });
    expect(answer(request(DHCP4.DISCOVER, { mac: OTHER }))).toEqual({ kind: "ignore", why: "outside-range" });
    expect(reply(request(DHCP4.DISCOVER)).msg.yiaddr).toBe("10.20.0.6");
  });

  test("a detached endpoint's MAC gets nothing and its lease goes", () => {
    reply(request(DHCP4.REQUEST, { ciaddr: "10.20.0.6" }));
    store.releaseEndpoint("web-1");
    srv.update(store.listNetworks(), store.listEndpoints());
    expect(answer(request(DHCP4.DISCOVER))).toEqual({ kind: "ignore", why: "unknown-client" });
    expect(store.loadLeases()).toHaveLength(0);
  });
});

describe("message size", () => {
  test("a client's small maximum size drops the options it did not ask for", async () => {
    const big = Array.from({ length: 6 }, (_, i) => `${200 + i}=text:${"x".repeat(120)}`);
    fresh({ dhcpOptions: big });
    const req = request(DHCP4.DISCOVER, {
      opts: [
        [OPT.MAX_SIZE, enc.u16(576)],
        [OPT.PARAM_LIST, Uint8Array.of(1, 3, 6)],
      ],
    });
    const out = answer(req);
    if (out.kind !== "reply") throw new Error("no reply");
    const { encodeReply } = await import("../../src/dhcp/policy4");
    const bytes = encodeReply(out.reply, parseDhcp4(req));
    expect(bytes.length).toBeLessThanOrEqual(576 - 28);
    const got = parseDhcp4(bytes);
    expect(dec.ips(got.options.get(OPT.ROUTER) as Uint8Array)).toEqual(["10.20.0.1"]);
    expect(got.options.has(200)).toBe(false);
  });
});

describe("leases in the store", () => {
  test("restored at start; hostile rows are quarantined and counted, not fatal", () => {
    reply(request(DHCP4.REQUEST, { ciaddr: "10.20.0.6" }));
    const db = store.db;
    const id = (store.getNetwork("app") as StoredNetwork).id;
    const bad = [
      ["not-a-mac", 4, "10.20.0.9", "bound", 1],
      ["02:00:01:00:00:0b", 4, "10.99.0.9", "bound", 1],
      ["02:00:01:00:00:0c", 4, "10.20.0.12", "stolen", 1],
      ["02:00:01:00:00:0d", 4, "'; DROP TABLE networks; --", "bound", 1],
      ["02:00:01:00:00:0e", 4, "10.20.0.14", "bound", "soon"],
      ["02:00:01:00:00:0f", 4, "x".repeat(5000), "bound", -5],
    ];
    for (const [mac, fam, ip, state, exp] of bad)
      db.query(
        "INSERT INTO dhcp_leases (network_id, mac, family, ip, state, expires_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 0)",
      ).run(id, mac as string, fam as number, ip as string, state as string, exp as number);
    const warnings: string[] = [];
    const again = new Dhcp4Server({ store, bridge: "none", log: (_l, m) => warnings.push(m) });
    again.loadLeases(store.listNetworks());
    again.update(store.listNetworks(), store.listEndpoints());
    expect(again.stats().leasesQuarantined).toBe(bad.length);
    expect(store.quarantinedLeases()).toBe(bad.length);
    expect(warnings.filter((w) => w.includes("quarantined"))).toHaveLength(bad.length);
    expect(store.loadLeases()).toHaveLength(1);
    expect(again.stats().leasesActive).toBe(1);
    // Still serving.
    expect(again.handle(request(DHCP4.DISCOVER))?.out.kind).toBe("reply");
  });
});

describe("over a real socket", () => {
  let live: Dhcp4Server | undefined;
  afterAll(() => live?.close());

  test("an OFFER comes back to the client port", async () => {
    // Port 0: the kernel picks; the reply goes to the port the "client" listens on.
    const got: Uint8Array[] = [];
    const client = await Bun.udpSocket({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        data: (_s, buf) => {
          got.push(new Uint8Array(buf));
        },
      },
    });
    live = new Dhcp4Server({ store, bridge: "none", port: 0, clientPort: client.port, loopbackReplies: true });
    await live.start();
    live.update(store.listNetworks(), store.listEndpoints());
    client.send(request(DHCP4.DISCOVER), live.port, "127.0.0.1");
    for (let i = 0; i < 50 && !got.length; i++) await Bun.sleep(10);
    client.close();
    expect(got).toHaveLength(1);
    const m = parseDhcp4(got[0] as Uint8Array);
    expect(dec.u8(m.options.get(OPT.MSG_TYPE) as Uint8Array)).toBe(DHCP4.OFFER);
    expect(m.yiaddr).toBe("10.20.0.6");
  });
});

test("in a cluster a node's DHCP answers the endpoints it runs, not the other nodes'", async () => {
  const s = new SqliteStore(":memory:");
  s.createNetwork(validateNetwork({ name: "app", cidr: "10.20.0.0/24", gateway: "10.20.0.1" }));
  const ep = (name: string, ip: string, mac: string, hostIndex: number, node: string) =>
    s.claimEndpoint({ name, network: "app", ip, mac, hostIndex, kind: "tap", hostIf: `t-${name}`, node });
  ep("here", "10.20.0.6", MAC, 5, "node-a");
  ep("there", "10.20.0.10", OTHER, 9, "node-b");
  // The store as node-a's agent has it: the cluster's endpoints, this node's name.
  const asNodeA = new Proxy(s, {
    get: (t, p) =>
      p === "node" ? "node-a" : typeof (t as any)[p] === "function" ? (t as any)[p].bind(t) : (t as any)[p],
  }) as unknown as SqliteStore;
  const { Addressing } = await import("../../src/services/addressing");
  const { rtnl } = await import("../../src/netlink");
  const a = new Addressing({ store: asNodeA, nl: rtnl(), log: () => {} });
  try {
    a.refresh();
    const mine = a.dhcp4.handle(request(DHCP4.DISCOVER, { mac: MAC }))?.out;
    expect(mine?.kind).toBe("reply");
    const theirs = a.dhcp4.handle(request(DHCP4.DISCOVER, { mac: OTHER }))?.out;
    expect(theirs?.kind).not.toBe("reply");
  } finally {
    a.close();
    s.close();
  }
});
