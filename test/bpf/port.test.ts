/** Port programs under BPF_PROG_TEST_RUN: fail closed without configuration, network
 * isolation at egress, every drop counted per (port, reason). */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { loadObject } from "../../src/datapath/objects";
import { udpFrame } from "../../src/datapath/packet";
import { decodeDropKey, encodeIfindex, encodePort } from "../../src/datapath/port";
import type { BpfMap, BpfObject } from "../../src/sys/bpf";
import { alloc, SK_BUFF } from "../../src/sys/layout";
import { runFixture } from "../helpers/fixture";

const TC_NEXT = -1;
const TC_DROP = 2;
const PORT = 1; // lo: a test run's skb device must exist in the caller's namespace
const SAME_NET_PEER = 901;
const OTHER_NET_PEER = 902;

const frame = udpFrame({
  srcMac: "02:00:01:00:00:01",
  dstMac: "02:00:01:00:00:02",
  src: "10.20.0.2",
  dst: "10.20.0.3",
  sport: 1,
  dport: 2,
});
const ctx = (ingress: number) => alloc(SK_BUFF, { ifindex: PORT, ingress_ifindex: ingress });

let obj: BpfObject;
let ports: BpfMap;
let drops: BpfMap;
beforeAll(() => {
  obj = loadObject("port");
  ports = obj.map("stm_ports");
  drops = obj.map("stm_drops");
});
afterAll(() => obj?.close());

const dropCounts = () => {
  const out: Record<string, number> = {};
  for (const [k, v] of drops.entries()) {
    const { ifindex, reason } = decodeDropKey(k);
    out[`${ifindex}/${reason}`] = drops.splitPerCpu(v).reduce((a, b) => a + Number(b.readBigUInt64LE(0)), 0);
  }
  return out;
};

test("an unconfigured port drops in both directions and says why", () => {
  for (const prog of ["stm_port_in", "stm_port_out"]) {
    const r = runFixture(obj.program(prog).fd, { name: prog, input: frame, verdict: TC_DROP, ctx: ctx(0) }, [drops]);
    expect(r.retval).toBe(TC_DROP);
  }
  expect(dropCounts()).toEqual({ [`${PORT}/port-unconfigured`]: 2 });
});

test("egress delivers frames from the same network and the host, drops other networks", () => {
  ports.update(encodeIfindex(PORT), encodePort({ netId: 1, ip4: "10.20.0.3", mac: "02:00:01:00:00:02" }));
  ports.update(encodeIfindex(SAME_NET_PEER), encodePort({ netId: 1, ip4: "10.20.0.2", mac: "02:00:01:00:00:01" }));
  ports.update(encodeIfindex(OTHER_NET_PEER), encodePort({ netId: 2, ip4: "10.30.0.2", mac: "02:00:02:00:00:01" }));
  const out = obj.program("stm_port_out").fd;
  expect(runFixture(out, { name: "same", input: frame, verdict: TC_NEXT, ctx: ctx(SAME_NET_PEER) }).retval).toBe(
    TC_NEXT,
  );
  expect(runFixture(out, { name: "host", input: frame, verdict: TC_NEXT, ctx: ctx(0) }).retval).toBe(TC_NEXT);
  expect(runFixture(out, { name: "other", input: frame, verdict: TC_DROP, ctx: ctx(OTHER_NET_PEER) }).retval).toBe(
    TC_DROP,
  );
  expect(
    runFixture(obj.program("stm_port_in").fd, { name: "in", input: frame, verdict: TC_NEXT, ctx: ctx(0) }).retval,
  ).toBe(TC_NEXT);
  expect(dropCounts()[`${PORT}/other-network`]).toBe(1);
});
