/** DHCPv6: the codec (byte-exact against a hand-built Solicit, round trips, random and mutated
 * bytes throw only Dhcp6FormatError and everything accepted re-encodes to the same bytes) and the
 * server policy for each message type (RFC 8415 §16 validation, §18.3 answers). */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  answerDhcp6,
  type Dhcp6Client,
  type Dhcp6Context,
  type Dhcp6Decision,
  Dhcp6FormatError,
  type Dhcp6Message,
  type Dhcp6Option,
  type Dhcp6RelayMessage,
  decodeDhcp6,
  duidLl,
  encodeDhcp6,
  leaseTimes,
  MSG,
  macFromLinkLocal,
  STATUS,
} from "../../src/dhcp/v6";
import { linkLocal, profileIp6 } from "../../src/model/network";
import { bytesToIp } from "../../src/netlink/codec";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");

describe("codec", () => {
  const solicit = hex(`
    01 102030
    0001 000e 0001 0001 2b3c4d5e 020001000005
    0008 0002 0000
    0006 0004 0017 0018
    0003 000c 00000005 00000000 00000000
    000e 0000
  `);

  test("a Solicit decodes field by field", () => {
    expect(decodeDhcp6(solicit)).toEqual({
      type: MSG.SOLICIT,
      transactionId: 0x102030,
      options: [
        { kind: "clientId", duid: hex("0001 0001 2b3c4d5e 020001000005") },
        { kind: "elapsedTime", value: 0 },
        { kind: "oro", codes: [23, 24] },
        { kind: "iaNa", iaid: 5, t1: 0, t2: 0, options: [] },
        { kind: "rapidCommit" },
      ],
    });
  });

  test("a Reply with an address, DNS servers and a domain list is byte-exact", () => {
    const reply: Dhcp6Message = {
      type: MSG.REPLY,
      transactionId: 0xabcdef,
      options: [
        { kind: "serverId", duid: duidLl("02:aa:00:00:00:01") },
        {
          kind: "iaNa",
          iaid: 5,
          t1: 1800,
          t2: 2880,
          options: [{ kind: "iaAddr", address: "fd00:77::1ff:fe00:5", preferred: 3600, valid: 3600, options: [] }],
        },
        { kind: "statusCode", status: 0, message: "ok" },
        { kind: "dnsServers", servers: ["fd00:77::1"] },
        { kind: "domainList", domains: ["net1.internal"] },
      ],
    };
    const want = hex(`
      07 abcdef
      0002 000a 0003 0001 02aa00000001
      0003 0028 00000005 00000708 00000b40
        0005 0018 fd00007700000000000001fffe000005 00000e10 00000e10
      000d 0004 0000 6f6b
      0017 0010 fd000077000000000000000000000001
      0018 000f 046e657431 08696e7465726e616c 00
    `);
    expect(encodeDhcp6(reply).toString("hex")).toBe(want.toString("hex"));
    expect(decodeDhcp6(want)).toEqual(reply);
  });

  test("relay messages decode with their header", () => {
    const m = decodeDhcp6(
      Buffer.concat([
        hex("0c 01"),
        Buffer.alloc(16),
        hex("fe80000000000000000001fffe000005"),
        hex("0009 0004 01020304"),
      ]),
    );
    expect(m).toEqual({
      type: MSG.RELAY_FORW,
      hopCount: 1,
      linkAddress: "::",
      peerAddress: "fe80::1ff:fe00:5",
      options: [{ kind: "relayMsg", data: hex("01020304") }],
    });
  });

  test("malformed inputs", () => {
    for (const h of [
      "01 1020", // short header
      "01 102030 0001", // truncated option header
      "01 102030 0001 0010 0001", // option overruns
      "01 102030 0008 0001 00", // elapsed time of 1 byte
      "01 102030 0006 0003 001700", // odd ORO
      "01 102030 0003 0008 0000000500000000", // short IA_NA
      "01 102030 0018 0003 03 6162", // domain runs past the end
      "01 102030 0018 0004 c0 0c 00 00", // compression pointer
      "01 102030 0018 0003 01 2e 00", // a dot inside a label
      "01 102030 000d 0003 0000 ff", // status message not UTF-8
      "01 102030 0001 0000", // empty DUID
      "0c 00 00", // short relay
    ])
      expect(() => decodeDhcp6(hex(h)), h).toThrow(Dhcp6FormatError);
  });

  test("options nested too deeply are refused", () => {
    let inner = Buffer.alloc(0);
    for (let i = 0; i < 6; i++) {
      const h = Buffer.alloc(16);
      h.writeUInt16BE(3, 0);
      h.writeUInt16BE(12 + inner.length, 2);
      inner = Buffer.concat([h, inner]);
    }
    expect(() => decodeDhcp6(Buffer.concat([hex("01000001"), inner]))).toThrow(Dhcp6FormatError);
  });
});

// ---- properties ----------------------------------------------------------------------------------

const ip6 = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => bytesToIp(b));
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const duid = fc.uint8Array({ minLength: 2, maxLength: 130 }).map((b) => Buffer.from(b));
const domain = fc.array(fc.stringMatching(/^[a-zA-Z0-9_-]{1,20}$/), { maxLength: 4 }).map((l) => l.join("."));
const KNOWN = new Set([1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 14, 23, 24, 25, 26, 32]);

const option = (depth: number): fc.Arbitrary<Dhcp6Option> => {
  const nested = depth >= 3 ? fc.constant([] as Dhcp6Option[]) : fc.array(option(depth + 1), { maxLength: 2 });
  return fc.oneof(
    duid.map((d) => ({ kind: "clientId" as const, duid: d })),
    duid.map((d) => ({ kind: "serverId" as const, duid: d })),
    fc.record({ kind: fc.constant("iaNa" as const), iaid: u32, t1: u32, t2: u32, options: nested }),
    fc.record({ kind: fc.constant("iaPd" as const), iaid: u32, t1: u32, t2: u32, options: nested }),
    fc.record({ kind: fc.constant("iaTa" as const), iaid: u32, options: nested }),
    fc.record({ kind: fc.constant("iaAddr" as const), address: ip6, preferred: u32, valid: u32, options: nested }),
    fc.record({
      kind: fc.constant("iaPrefix" as const),
      preferred: u32,
      valid: u32,
      prefixLength: fc.integer({ min: 0, max: 255 }),
      prefix: ip6,
      options: nested,
    }),
    fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 8 }).map((codes) => ({ kind: "oro" as const, codes })),
    fc.integer({ min: 0, max: 255 }).map((value) => ({ kind: "preference" as const, value })),
    fc.integer({ min: 0, max: 0xffff }).map((value) => ({ kind: "elapsedTime" as const, value })),
    fc.uint8Array({ maxLength: 40 }).map((d) => ({ kind: "relayMsg" as const, data: Buffer.from(d) })),
    fc.record({
      kind: fc.constant("statusCode" as const),
      status: fc.integer({ min: 0, max: 0xffff }),
      message: fc.string({ unit: "grapheme", maxLength: 20 }),
    }),
    fc.constant({ kind: "rapidCommit" as const }),
    fc.array(ip6, { maxLength: 3 }).map((servers) => ({ kind: "dnsServers" as const, servers })),
    fc.array(domain, { maxLength: 3 }).map((domains) => ({ kind: "domainList" as const, domains })),
    u32.map((seconds) => ({ kind: "informationRefreshTime" as const, seconds })),
    fc
      .record({
        code: fc.integer({ min: 0, max: 0xffff }).filter((c) => !KNOWN.has(c)),
        data: fc.uint8Array({ maxLength: 30 }),
      })
      .map(({ code, data }) => ({ kind: "unknown" as const, code, data: Buffer.from(data) })),
  );
};

const message: fc.Arbitrary<Dhcp6Message | Dhcp6RelayMessage> = fc.oneof(
  fc.record({
    type: fc.integer({ min: 0, max: 255 }).filter((t) => t !== 12 && t !== 13),
    transactionId: fc.integer({ min: 0, max: 0xffffff }),
    options: fc.array(option(0), { maxLength: 6 }),
  }),
  fc.record({
    type: fc.constantFrom(12 as const, 13 as const),
    hopCount: fc.integer({ min: 0, max: 255 }),
    linkAddress: ip6,
    peerAddress: ip6,
    options: fc.array(option(0), { maxLength: 4 }),
  }),
);

/** Anything the decoder accepts must encode back to exactly the bytes it came from. */
function checkBytes(b: Uint8Array): void {
  let m: Dhcp6Message | Dhcp6RelayMessage;
  try {
    m = decodeDhcp6(b);
  } catch (e) {
    if (e instanceof Dhcp6FormatError) return;
    throw e;
  }
  expect(encodeDhcp6(m).toString("hex")).toBe(Buffer.from(b).toString("hex"));
}

describe("properties", () => {
  test("decode ∘ encode = id", () => {
    fc.assert(
      fc.property(message, (m) => expect(decodeDhcp6(encodeDhcp6(m))).toEqual(m)),
      { numRuns: 500 },
    );
  });

  test("random bytes: only Dhcp6FormatError, or an exact re-encoding", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 120 }), checkBytes), { numRuns: 3000 });
  });

  test("mutated messages: only Dhcp6FormatError, or an exact re-encoding", () => {
    fc.assert(
      fc.property(
        message,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        fc.nat(),
        (m, flips, cut) => {
          const b = encodeDhcp6(m);
          for (const [i, v] of flips) b[i % b.length] = v;
          checkBytes(b.subarray(0, b.length - (cut % (b.length + 1))));
        },
      ),
      { numRuns: 3000 },
    );
  });

  test("the MAC behind a link-local address is the one that made it", () => {
    const mac = fc
      .uint8Array({ minLength: 6, maxLength: 6 })
      .map((b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(":"));
    fc.assert(fc.property(mac, (m) => expect(macFromLinkLocal(linkLocal(m))).toBe(m)));
  });
});

// ---- policy ---------------------------------------------------------------------------------------

const MAC = "02:00:01:00:00:05";
const SERVER = duidLl("02:aa:00:00:00:01");
const CLIENT_DUID = hex("0001 0001 2b3c4d5e 020001000005");
const CLIENT: Dhcp6Client = {
  endpoint: "web-1",
  network: "net1",
  ip6: profileIp6("fd00:77::/64", MAC),
  cidr6: "fd00:77::/64",
  gateway6: "fd00:77::1",
  dnsZone: "net1.internal",
  leaseTime: 3600,
};
const ctx = (source = `${linkLocal(MAC)}%br0`): Dhcp6Context => ({
  source,
  serverDuid: SERVER,
  lookup: (mac) => (mac === MAC ? CLIENT : undefined),
});
const clientId: Dhcp6Option = { kind: "clientId", duid: CLIENT_DUID };
const serverId: Dhcp6Option = { kind: "serverId", duid: SERVER };
const iaNa = (iaid = 7, addrs: string[] = []): Dhcp6Option => ({
  kind: "iaNa",
  iaid,
  t1: 0,
  t2: 0,
  options: addrs.map((a) => ({ kind: "iaAddr", address: a, preferred: 0, valid: 0, options: [] })),
});
const req = (type: number, options: Dhcp6Option[]): Dhcp6Message => ({ type, transactionId: 0x42, options });

function replied(d: Dhcp6Decision) {
  if (d.action !== "reply") throw new Error(`ignored: ${d.reason}`);
  // Whatever the policy builds must be encodable.
  expect(decodeDhcp6(encodeDhcp6(d.reply))).toEqual(d.reply);
  return d;
}
const opt = <K extends Dhcp6Option["kind"]>(m: Dhcp6Message, kind: K) =>
  m.options.filter((o) => o.kind === kind) as Extract<Dhcp6Option, { kind: K }>[];

describe("policy", () => {
  const t = leaseTimes(3600);

  test("lease times: T1 half, T2 0.8 of the lease", () => {
    expect(t).toEqual({ t1: 1800, t2: 2880, preferred: 3600, valid: 3600 });
  });

  test("SOLICIT → ADVERTISE with preference 255, the profile address and DNS; nothing granted yet", () => {
    const d = replied(answerDhcp6(req(MSG.SOLICIT, [clientId, iaNa()]), ctx()));
    expect(d.reply.type).toBe(MSG.ADVERTISE);
    expect(d.reply.transactionId).toBe(0x42);
    expect(opt(d.reply, "serverId")[0]?.duid).toEqual(SERVER);
    expect(opt(d.reply, "clientId")[0]?.duid).toEqual(CLIENT_DUID);
    expect(opt(d.reply, "preference")).toEqual([{ kind: "preference", value: 255 }]);
    expect(opt(d.reply, "iaNa")).toEqual([
      {
        kind: "iaNa",
        iaid: 7,
        t1: t.t1,
        t2: t.t2,
        options: [{ kind: "iaAddr", address: "fd00:77::1ff:fe00:5", preferred: 3600, valid: 3600, options: [] }],
      },
    ]);
    expect(opt(d.reply, "dnsServers")).toEqual([{ kind: "dnsServers", servers: ["fd00:77::1"] }]);
    expect(opt(d.reply, "domainList")).toEqual([{ kind: "domainList", domains: ["net1.internal"] }]);
    expect(d.grants).toEqual([]);
  });

  test("SOLICIT with Rapid Commit → REPLY with Rapid Commit and a lease", () => {
    const d = replied(answerDhcp6(req(MSG.SOLICIT, [clientId, iaNa(), { kind: "rapidCommit" }]), ctx()));
    expect(d.reply.type).toBe(MSG.REPLY);
    expect(opt(d.reply, "rapidCommit")).toHaveLength(1);
    expect(d.grants).toEqual([
      {
        endpoint: "web-1",
        network: "net1",
        ip6: CLIENT.ip6,
        iaid: 7,
        duid: CLIENT_DUID.toString("hex"),
        validSeconds: 3600,
      },
    ]);
  });

  test("REQUEST → REPLY and a lease; another server's id, or none, is not answered", () => {
    const d = replied(answerDhcp6(req(MSG.REQUEST, [clientId, serverId, iaNa(9)]), ctx()));
    expect(d.reply.type).toBe(MSG.REPLY);
    expect(d.grants.map((g) => g.iaid)).toEqual([9]);
    const other: Dhcp6Option = { kind: "serverId", duid: duidLl("02:bb:00:00:00:01") };
    expect(answerDhcp6(req(MSG.REQUEST, [clientId, other, iaNa()]), ctx())).toEqual({
      action: "ignore",
      reason: "not-for-us",
    });
    expect(answerDhcp6(req(MSG.REQUEST, [clientId, iaNa()]), ctx())).toEqual({ action: "ignore", reason: "invalid" });
    expect(answerDhcp6(req(MSG.REQUEST, [serverId, iaNa()]), ctx())).toEqual({ action: "ignore", reason: "invalid" });
  });

  test("RENEW keeps the profile address and ends any other the client holds", () => {
    const d = replied(answerDhcp6(req(MSG.RENEW, [clientId, serverId, iaNa(7, [CLIENT.ip6, "fd00:77::99"])]), ctx()));
    const ia = opt(d.reply, "iaNa")[0];
    expect(ia?.options).toEqual([
      { kind: "iaAddr", address: CLIENT.ip6, preferred: 3600, valid: 3600, options: [] },
      { kind: "iaAddr", address: "fd00:77::99", preferred: 0, valid: 0, options: [] },
    ]);
  });

  test("REBIND → REPLY; a REBIND naming a server is invalid", () => {
    expect(replied(answerDhcp6(req(MSG.REBIND, [clientId, iaNa()]), ctx())).grants).toHaveLength(1);
    expect(answerDhcp6(req(MSG.REBIND, [clientId, serverId, iaNa()]), ctx())).toMatchObject({ reason: "invalid" });
  });

  test("CONFIRM: Success on-link, NotOnLink otherwise, silence without addresses", () => {
    const ok = replied(answerDhcp6(req(MSG.CONFIRM, [clientId, iaNa(7, [CLIENT.ip6])]), ctx()));
    expect(opt(ok.reply, "statusCode")[0]?.status).toBe(STATUS.Success);
    expect(opt(ok.reply, "iaNa")).toEqual([]);
    const moved = replied(answerDhcp6(req(MSG.CONFIRM, [clientId, iaNa(7, ["fd00:88::5"])]), ctx()));
    expect(opt(moved.reply, "statusCode")[0]?.status).toBe(STATUS.NotOnLink);
    expect(answerDhcp6(req(MSG.CONFIRM, [clientId, iaNa()]), ctx())).toMatchObject({ action: "ignore" });
  });

  test("RELEASE and DECLINE → REPLY Success and the lease ends; DECLINE reports the address", () => {
    const rel = replied(answerDhcp6(req(MSG.RELEASE, [clientId, serverId, iaNa(7, [CLIENT.ip6])]), ctx()));
    expect(rel.reply.type).toBe(MSG.REPLY);
    expect(opt(rel.reply, "statusCode")[0]?.status).toBe(STATUS.Success);
    expect(rel.releases).toEqual([{ endpoint: "web-1", duid: CLIENT_DUID.toString("hex"), iaid: 7 }]);
    expect(rel.declined).toBeUndefined();
    const dec = replied(answerDhcp6(req(MSG.DECLINE, [clientId, serverId, iaNa(7, [CLIENT.ip6])]), ctx()));
    expect(dec.declined).toEqual([CLIENT.ip6]);
    expect(answerDhcp6(req(MSG.RELEASE, [clientId, iaNa()]), ctx())).toMatchObject({ reason: "invalid" });
  });

  test("INFORMATION-REQUEST → DNS servers and domain list only; with an IA it is discarded", () => {
    const d = replied(answerDhcp6(req(MSG.INFORMATION_REQUEST, [clientId, { kind: "oro", codes: [23, 24] }]), ctx()));
    expect(d.reply.type).toBe(MSG.REPLY);
    expect(d.reply.options.map((o) => o.kind)).toEqual(["serverId", "clientId", "dnsServers", "domainList"]);
    expect(d.grants).toEqual([]);
    // The client id is optional here.
    expect(replied(answerDhcp6(req(MSG.INFORMATION_REQUEST, []), ctx())).reply.options.map((o) => o.kind)).toEqual([
      "serverId",
      "dnsServers",
      "domainList",
    ]);
    expect(answerDhcp6(req(MSG.INFORMATION_REQUEST, [clientId, iaNa()]), ctx())).toMatchObject({ reason: "invalid" });
  });

  test("temporary addresses and prefixes are refused with their status codes", () => {
    const d = replied(
      answerDhcp6(
        req(MSG.REQUEST, [
          clientId,
          serverId,
          { kind: "iaTa", iaid: 1, options: [] },
          { kind: "iaPd", iaid: 2, t1: 0, t2: 0, options: [] },
        ]),
        ctx(),
      ),
    );
    expect(opt(d.reply, "iaTa")[0]?.options[0]).toMatchObject({ kind: "statusCode", status: STATUS.NoAddrsAvail });
    expect(opt(d.reply, "iaPd")[0]?.options[0]).toMatchObject({ kind: "statusCode", status: STATUS.NoPrefixAvail });
    expect(d.grants).toEqual([]);
  });

  test("unknown clients, relays and server messages get nothing", () => {
    const s = req(MSG.SOLICIT, [clientId, iaNa()]);
    expect(answerDhcp6(s, ctx(`${linkLocal("02:00:01:00:00:06")}%br0`))).toEqual({
      action: "ignore",
      reason: "unknown-client",
    });
    expect(answerDhcp6(s, ctx("fe80::1234:5678:9abc:def0%br0"))).toMatchObject({ reason: "unknown-client" }); // not EUI-64
    expect(answerDhcp6(s, ctx(CLIENT.ip6))).toMatchObject({ reason: "unknown-client" }); // not link-local
    const relay: Dhcp6RelayMessage = {
      type: MSG.RELAY_FORW,
      hopCount: 0,
      linkAddress: "fd00:77::1",
      peerAddress: linkLocal(MAC),
      options: [{ kind: "relayMsg", data: encodeDhcp6(s) }],
    };
    expect(answerDhcp6(relay, ctx())).toEqual({ action: "ignore", reason: "relay" });
    for (const type of [MSG.ADVERTISE, MSG.REPLY, MSG.RECONFIGURE, 99])
      expect(answerDhcp6(req(type, [clientId]), ctx())).toEqual({ action: "ignore", reason: "not-a-request" });
  });

  test("a request from a claimed endpoint is always answered or explicitly ignored, never a throw", () => {
    fc.assert(
      fc.property(message, (m) => {
        const d = answerDhcp6(m, ctx());
        if (d.action === "reply") encodeDhcp6(d.reply);
      }),
      { numRuns: 500 },
    );
  });
});
