/** Monitoring in the datapath under BPF_PROG_TEST_RUN: drop events carry the reason, the hook
 * and the frame's first bytes; nothing is emitted without a lease, after it lapses, or for a
 * device or network the lease filters out; the per-CPU pace lets a burst through and counts
 * the rest; new flows and per-port packet counters. */
import { afterAll, beforeAll, beforeEach, expect, test } from "bun:test";
import { encodeScope } from "../../src/datapath/firewall-maps";
import { MON_CFG_SIZE, type MonEvent, MonitorSession, readMonStats } from "../../src/datapath/monitor-ring";
import { loadObject } from "../../src/datapath/objects";
import { encodeIfindex, encodePort, type PortConfig, sumPortStats } from "../../src/datapath/port-maps";
import { profileMac } from "../../src/model/network";
import { type BpfObject, testRun } from "../../src/sys/bpf";
import { alloc, SK_BUFF } from "../../src/sys/layout";
import { monotonicNs } from "../../src/sys/os";
import { tcp4, udp4 } from "../helpers/frames";

const PORT = 1; // lo: a test run's device must exist in the caller's namespace
const ME = { mac: profileMac(1, 4), ip: "10.20.0.5" };
const PEER = { mac: profileMac(1, 5), ip: "10.20.0.6" };
const ATTACKER = "02:66:66:66:66:66";
const cfg: PortConfig = { netId: 1, ip4: ME.ip, mac: ME.mac, cidr4: "10.20.0.0/24", gw4: "10.20.0.1", slot: 7 };

let obj: BpfObject;
let events: MonEvent[];
let mon: MonitorSession;

beforeAll(() => {
  obj = loadObject("port");
  obj.map("stm_ports").update(encodeIfindex(PORT), encodePort(cfg));
});

afterAll(() => obj.close());

beforeEach(() => {
  obj.map("stm_mon_cfg").update(Buffer.alloc(4), Buffer.alloc(MON_CFG_SIZE));
  obj.map("stm_mon_pace").update(Buffer.alloc(4), Buffer.alloc(obj.map("stm_mon_pace").valueBufSize));
});

function session(lease: Partial<ConstructorParameters<typeof MonitorSession>[2]> = {}): MonitorSession {
  events = [];
  mon = new MonitorSession(
    obj.map("stm_mon_cfg"),
    obj.map("stm_mon_ring"),
    { kinds: ["drop", "log", "flow"], rate: 10000, burst: 1000, ...lease },
    (e) => events.push(e),
  );
  mon.consume();
  events.length = 0;
  return mon;
}

const spoofed = () => udp4({ mac: ATTACKER, dstMac: PEER.mac, src: ME.ip, dst: PEER.ip, sport: 1234, dport: 53 });
const runIn = (frame: Buffer, repeat = 1) =>
  testRun(obj.program("stm_port_in").fd, { data: frame, ctx: alloc(SK_BUFF, { ifindex: PORT }), repeat });

test("a drop is reported with its reason, hook, device and decoded headers", () => {
  using m = session();
  m.renew();
  expect(runIn(spoofed()).retval).toBe(2);
  m.consume();
  expect(events.length).toBe(1);
  expect(events[0]).toMatchObject({
    kind: "drop",
    reason: "mac-spoof",
    hook: "tc-ingress",
    ifindex: PORT,
    len: spoofed().length,
    packet: { srcMac: ATTACKER, src: ME.ip, dst: PEER.ip, proto: 17, sport: 1234, dport: 53 },
  });
  const ts = events[0]?.tsNs as bigint;
  expect(ts > monotonicNs() - 5_000_000_000n && ts <= monotonicNs()).toBe(true);
});

test("no lease, a lapsed lease or a lease for drops only: nothing else is emitted", () => {
  using m = session({ leaseMs: 1 });
  runIn(spoofed());
  m.consume();
  expect(events.length).toBe(0); // no lease yet
  m.renew();
  Bun.sleepSync(50); // past the lease by several ticks of the coarse clock the datapath reads
  runIn(spoofed());
  m.consume();
  expect(events.length).toBe(0); // lapsed
  m.close();
  using f = session({ kinds: ["flow"] });
  f.renew();
  runIn(spoofed());
  f.consume();
  expect(events.length).toBe(0); // drops not asked for
});

test("the lease's device and network filters hold in the datapath", () => {
  using a = session({ ifindex: 999 });
  a.renew();
  runIn(spoofed());
  a.consume();
  expect(events.length).toBe(0);
  a.close();
  using b = session({ netId: 2 });
  b.renew();
  runIn(spoofed());
  b.consume();
  expect(events.length).toBe(0);
  b.close();
  using c = session({ netId: 1, ifindex: PORT });
  c.renew();
  runIn(spoofed());
  c.consume();
  expect(events.length).toBe(1);
});

test("the pace lets a burst through per CPU and counts what it holds back", () => {
  const before = readMonStats(obj.map("stm_mon_stats"));
  using m = session({ rate: 1, burst: 5 });
  m.renew();
  expect(runIn(spoofed(), 200).retval).toBe(2); // 200 drops inside a millisecond or two
  m.consume();
  const after = readMonStats(obj.map("stm_mon_stats"));
  expect(events.length).toBe(5);
  expect(after.emitted - before.emitted).toBe(5);
  expect(after.paced - before.paced).toBe(195);
});

test("a new flow is reported once a network has policy", () => {
  const scope = encodeScope(0, "allow", true, 0); // enforcing, default allow, no rules
  obj.map("stm_fw_scopes").update(encodeIfindex(1), scope);
  try {
    using m = session({ kinds: ["flow"] });
    m.renew();
    const syn = tcp4({ mac: ME.mac, src: ME.ip, dst: PEER.ip, dport: 443 });
    expect(runIn(syn).retval).toBe(-1);
    expect(runIn(syn).retval).toBe(-1); // the same flow: no second event
    m.consume();
    expect(events.length).toBe(1);
    expect(events[0]).toMatchObject({ kind: "flow", dir: "egress", packet: { src: ME.ip, dst: PEER.ip, dport: 443 } });
  } finally {
    obj.map("stm_fw_scopes").delete(encodeIfindex(1));
  }
});

test("every frame a port sees is counted in its stats row, passed or dropped", () => {
  const before = sumPortStats(obj.map("stm_port_stats"), 7);
  const ok = udp4({ mac: ME.mac, dstMac: PEER.mac, src: ME.ip, dst: PEER.ip, sport: 1, dport: 2 });
  runIn(ok, 10);
  runIn(spoofed(), 3);
  testRun(obj.program("stm_port_out").fd, { data: ok, ctx: alloc(SK_BUFF, { ifindex: PORT }), repeat: 4 });
  const after = sumPortStats(obj.map("stm_port_stats"), 7);
  expect(after.fromEndpoint.packets - before.fromEndpoint.packets).toBe(13);
  expect(after.fromEndpoint.bytes - before.fromEndpoint.bytes).toBe(10 * ok.length + 3 * spoofed().length);
  expect(after.toEndpoint.packets - before.toEndpoint.packets).toBe(4);
});
