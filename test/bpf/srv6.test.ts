/** The SRv6 carrier of microsegmentation groups under BPF_PROG_TEST_RUN (bpf/srv6.bpf.c): the
 * sender's group into the SRH tag on the way out, the tag back into the mark on the way in
 * (only from a node of the cluster), packets without an SRH (or with another routing header,
 * or too short to hold one) untouched, both ways. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { loadObject } from "../../src/datapath/objects";
import { encodeVtep, encodeVtepKey } from "../../src/datapath/port-maps";
import { MSEG, msegStamp } from "../../src/model/microseg";
import { ipToBytes, macToBytes } from "../../src/netlink/codec";
import { type BpfObject, testRun } from "../../src/sys/bpf";
import { alloc, get, SK_BUFF } from "../../src/sys/layout";

const TC_NEXT = -1;
const NODE = "fd99::2";
const STRANGER = "fd99::77";
const SELF = "fd99::1";
let obj: BpfObject;

beforeAll(() => {
  obj = loadObject("port");
  obj.map("stm_vteps").update(encodeVtepKey(NODE), encodeVtep({ self: false }));
  obj.map("stm_vteps").update(encodeVtepKey(SELF), encodeVtep({ self: true }));
});
afterAll(() => obj?.close());

interface Opts {
  src?: string;
  tag?: number;
  /** Extension headers before the routing header: hop-by-hop, destination options. */
  before?: Array<0 | 60>;
  /** The routing type (4: SRH). */
  routingType?: number;
  /** No routing header at all. */
  plain?: boolean;
  /** Cut the frame this many bytes after the IPv6 header. */
  truncate?: number;
}

/** Ethernet, IPv6, [extension headers], SRH with one segment, UDP with 8 bytes. */
function srv6(o: Opts = {}): Buffer {
  const exts: Buffer[] = [];
  const chain = [...(o.before ?? []), ...(o.plain ? [] : [43])];
  const nextOf = (i: number) => (i + 1 < chain.length ? (chain[i + 1] as number) : 17);
  chain.forEach((h, i) => {
    if (h === 43) {
      const rh = Buffer.alloc(24);
      rh[0] = nextOf(i);
      rh[1] = 2; // (24 / 8) - 1
      rh[2] = o.routingType ?? 4;
      rh.writeUInt16BE(o.tag ?? 0, 6);
      Buffer.from(ipToBytes("fd00:5::1")).copy(rh, 8);
      exts.push(rh);
    } else {
      const e = Buffer.alloc(8);
      e[0] = nextOf(i);
      e[2] = 1; // PadN
      e[3] = 4;
      exts.push(e);
    }
  });
  const udp = Buffer.alloc(16);
  udp.writeUInt16BE(40000, 0);
  udp.writeUInt16BE(5000, 2);
  udp.writeUInt16BE(16, 4);
  const payload = Buffer.concat([...exts, udp]);
  const ip = Buffer.alloc(40);
  ip[0] = 0x60;
  ip.writeUInt16BE(payload.length, 4);
  ip[6] = chain.length ? (chain[0] as number) : 17;
  ip[7] = 64;
  Buffer.from(ipToBytes(o.src ?? NODE)).copy(ip, 8);
  Buffer.from(ipToBytes("fd00:5::1")).copy(ip, 24);
  const eth = Buffer.alloc(14);
  Buffer.from(macToBytes("02:00:00:00:00:01")).copy(eth, 0);
  Buffer.from(macToBytes("02:00:00:00:00:02")).copy(eth, 6);
  eth.writeUInt16BE(0x86dd, 12);
  const f = Buffer.concat([eth, ip, payload]);
  return o.truncate !== undefined ? f.subarray(0, 54 + o.truncate) : f;
}

/** The SRH's tag in a frame built by srv6() (its offset after the extension headers before it). */
const tagOf = (f: Buffer, before = 0) => f.readUInt16BE(54 + 8 * before + 6);

function run(prog: "stm_srv6_out" | "stm_srv6_in", frame: Buffer, mark: number) {
  const r = testRun(obj.program(prog).fd, { data: frame, ctx: alloc(SK_BUFF, { ifindex: 1, mark }) });
  return { retval: r.retval, out: r.dataOut.subarray(0, frame.length), mark: get(r.ctxOut as Buffer, SK_BUFF, "mark") };
}

describe("stm_srv6_out: the sender's group into the SRH tag", () => {
  test("a stamped packet's group replaces whatever tag it had; untagged writes 0", () => {
    for (const before of [[], [0], [0, 60], [60, 60, 60]] as Array<Array<0 | 60>>) {
      const r = run("stm_srv6_out", srv6({ tag: 0xbeef, before }), msegStamp(0x1234));
      expect({ before, retval: r.retval, tag: tagOf(r.out, before.length) }).toEqual({
        before,
        retval: TC_NEXT,
        tag: 0x1234,
      });
      const u = run("stm_srv6_out", srv6({ tag: 0xbeef, before }), msegStamp(MSEG.UNTAGGED));
      expect(tagOf(u.out, before.length)).toBe(0);
      // A mark that is no stamp (the node's own, a workload's SO_MARK never gets this far) carries no group.
      expect(tagOf(run("stm_srv6_out", srv6({ tag: 7, before }), 0x1234).out, before.length)).toBe(0);
    }
  });

  test("packets without an SRH are untouched: plain IPv6, another routing type, IPv4, too short", () => {
    for (const f of [
      srv6({ plain: true }),
      srv6({ routingType: 2, tag: 0xbeef }),
      srv6({ before: [0, 60, 0, 60], tag: 0xbeef }), // the SRH past the headers the program walks
      srv6({ tag: 0xbeef, truncate: 4 }),
    ]) {
      const r = run("stm_srv6_out", f, msegStamp(9));
      expect(r.retval).toBe(TC_NEXT);
      expect(r.out.equals(f)).toBe(true);
    }
    const v4 = Buffer.concat([Buffer.from("020000000001020000000002", "hex"), Buffer.from([8, 0]), Buffer.alloc(40)]);
    expect(run("stm_srv6_out", v4, msegStamp(9)).out.equals(v4)).toBe(true);
  });
});

describe("stm_srv6_in: the tag back into the mark, from a node only", () => {
  test("from a node: the tag is the sender's group", () => {
    for (const before of [[], [0], [60, 0]] as Array<Array<0 | 60>>) {
      const r = run("stm_srv6_in", srv6({ tag: 0x0042, before }), 0);
      expect({ before, mark: r.mark }).toEqual({ before, mark: msegStamp(0x42) });
      expect(r.out.equals(srv6({ tag: 0x0042, before }))).toBe(true); // the packet itself is not changed
    }
    expect(run("stm_srv6_in", srv6({ tag: 0 }), 0x5555).mark).toBe(0); // tag 0: untagged
  });

  test("from a host that is no node, or from this node's own address: untagged, whatever the tag", () => {
    expect(run("stm_srv6_in", srv6({ src: STRANGER, tag: 0x42 }), msegStamp(7)).mark).toBe(0);
    expect(run("stm_srv6_in", srv6({ src: SELF, tag: 0x42 }), 0).mark).toBe(0);
  });

  test("packets without an SRH keep their mark and bytes", () => {
    for (const f of [srv6({ plain: true }), srv6({ routingType: 0, tag: 0x42 }), srv6({ tag: 0x42, truncate: 6 })]) {
      const r = run("stm_srv6_in", f, 0x77);
      expect(r.mark).toBe(0x77);
      expect(r.out.equals(f)).toBe(true);
    }
  });
});
