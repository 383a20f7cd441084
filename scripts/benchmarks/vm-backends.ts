/** VM backends (docs/networks.md#which-backend): packets/s and CPU per packet from a "VM" (this
 * process: the same loop for every backend, one frame per write) to a container on the same
 * network, through each backend's port and its programs, against a plain tap measured in the
 * same run, interleaved. The VM sends 64-byte UDP datagrams to the container (port 9) as fast
 * as its loop goes; a datagram counts when the container's eth0 received it (its rx counter);
 * CPU is the whole machine's busy time (/proc/stat: the VM's loop, the kernel's work on both
 * sides) over the datagrams delivered. One lab (agent, network, container, the four VMs) serves
 * every benchmark of the group. */
import { readFileSync } from "node:fs";
import { TestAgent } from "../../test/helpers/agent";
import { udp4 } from "../../test/helpers/frames";
import { Netns, run } from "../../test/helpers/netns";
import { type FrameQueue, handoffHere, TestVm } from "../../test/helpers/vm";
import { XskQueue } from "../../test/helpers/xsk-queue";
import type { Benchmark } from "./harness";

const FRAMES = 200_000;
const XSK_BATCH = 32;
const NET = "vmb";

type Backend = "tap" | "mqtap" | "macvtap" | "xsk";

interface Lab {
  agent: TestAgent;
  c1: Netns;
  ct: { ip: string; mac: string };
  vms: Record<Backend, { vm: TestVm; ep: any }>;
}

let lab: Lab | undefined;
let users = 0;

/** Busy and total jiffies of the whole machine (/proc/stat's first line). */
function cpuJiffies(): { busy: number; total: number } {
  const f = (readFileSync("/proc/stat", "utf8").split("\n")[0] as string).trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { busy: total - idle, total };
}

function rxPackets(ns: string): number {
  const l = JSON.parse(run(["ip", "-n", ns, "-s", "-j", "link", "show", "eth0"]).stdout)[0];
  return Number(l.stats64.rx.packets);
}

async function setupLab(): Promise<Lab> {
  const agent = new TestAgent("vmb");
  const c1 = new Netns("vmbc1");
  try {
    await agent.start();
    agent.json("network", "create", "--name", NET, "--cidr", "10.98.0.0/24", "--gateway", "10.98.0.1");
    const ct = agent.json("network", "attach", NET, "--name", "c-1", "--netns", c1.name, "--configure");
    const tap = agent.json("network", "attach", NET, "--name", "vm-tap", "--tap", "vmbtap");
    const mq = agent.json("network", "attach", NET, "--name", "vm-mq", "--tap", "vmbmq", "--queues", "4");
    const mv = agent.json("network", "attach", NET, "--name", "vm-mv", "--macvtap", "bridge");
    const xs = agent.json("network", "attach", NET, "--name", "vm-xs", "--xsk");
    const xfd = (await handoffHere(agent, "vm-xs", agent.dir)).fds[0] as number;
    const xIndex = JSON.parse(agent.ns.execOk(["ip", "-j", "link", "show", xs.xsk.device]))[0].ifindex;
    // AF_XDP as a VMM drives it: descriptors go on the ring, one kick for a batch of them
    // (the loop is the same; what one write of a tap does, 32 descriptors and a kick do here).
    const xq = new XskQueue(xfd, xIndex, 0);
    xq.batch = XSK_BATCH;
    const vms: Lab["vms"] = {
      tap: { vm: new TestVm("vmbtap", agent.ns.path, tap.mac), ep: tap },
      mqtap: { vm: new TestVm("vmbmq", agent.ns.path, mq.mac, { queues: 4 }), ep: mq },
      macvtap: { vm: new TestVm(mv.interface, agent.ns.path, mv.mac, { device: mv.macvtap.device }), ep: mv },
      xsk: { vm: new TestVm(xs.xsk.device, agent.ns.path, xs.mac, { frameQueues: [xq] }), ep: xs },
    };
    // Each VM's neighbour entry at the container, so no frame waits for ARP.
    for (const { ep } of Object.values(vms))
      c1.execOk(["ip", "neigh", "replace", ep.ip, "lladdr", ep.mac, "dev", "eth0", "nud", "permanent"]);
    return { agent, c1, ct, vms };
  } catch (e) {
    c1.destroy();
    agent.destroy();
    throw e;
  }
}

/** Sends FRAMES datagrams from backend `b`'s VM as fast as its loop goes (a multi-queue tap's
 * in turn over its queues); returns delivered packets/s and µs of machine CPU per packet. */
async function blast(l: Lab, b: Backend): Promise<Record<string, number>> {
  const { vm, ep } = l.vms[b];
  const frame = udp4({
    mac: ep.mac,
    dstMac: l.ct.mac,
    src: ep.ip,
    dst: l.ct.ip,
    sport: 5000,
    dport: 9,
    payload: new Uint8Array(64),
  });
  const queues = vm.queues as FrameQueue[];
  const rx0 = rxPackets(l.c1.name);
  const cpu0 = cpuJiffies();
  const t0 = performance.now();
  for (let i = 0; i < FRAMES; i++) (queues[i % queues.length] as FrameQueue).send(frame);
  for (const q of queues) q.flush?.();
  // Until the container's counter stops growing (what is in flight arrives).
  let rx = rxPackets(l.c1.name);
  for (;;) {
    await Bun.sleep(20);
    const now = rxPackets(l.c1.name);
    if (now === rx) break;
    rx = now;
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpu1 = cpuJiffies();
  // Drain what came back (the container's port-unreachable answers) so no queue fills.
  for (const q of queues) while (q.recv());
  const delivered = rx - rx0;
  if (delivered <= 0) throw new Error(`${b}: nothing reached the container`);
  const hz = 100; // USER_HZ
  return {
    pps: delivered / seconds,
    cpu: (((cpu1.busy - cpu0.busy) / hz) * 1e6) / delivered,
    delivered: (delivered / FRAMES) * 100,
  };
}

function backendBench(b: Exclude<Backend, "tap">, label: string): Benchmark {
  return {
    name: `vm/${b}`,
    unit: "packets/s",
    candidate: { label, measure: () => blast(lab as Lab, b) },
    baseline: { label: "a tap (one queue), the same loop", measure: () => blast(lab as Lab, "tap") },
    rows: [
      { name: `vm/${b}-pps`, unit: "packets/s", figure: "pps" },
      { name: `vm/${b}-cpu`, unit: "µs CPU/packet", figure: "cpu" },
      { name: `vm/${b}-delivered`, unit: "% delivered", figure: "delivered" },
    ],
    async setup() {
      if (!lab) lab = await setupLab();
      users++;
    },
    teardown() {
      if (--users > 0 || !lab) return;
      for (const { vm } of Object.values(lab.vms)) vm.close();
      lab.c1.destroy();
      lab.agent.destroy();
      lab = undefined;
    },
  };
}

export const VM_BENCHMARKS: Record<string, () => Benchmark> = {
  "vm/mqtap": () => backendBench("mqtap", "a multi-queue tap (4 queues, written in turn)"),
  "vm/macvtap": () => backendBench("macvtap", "a macvtap (bridge mode, /dev/tapN)"),
  "vm/xsk": () => backendBench("xsk", `AF_XDP (copy mode on the VM end, a kick per ${XSK_BATCH} frames)`),
};
