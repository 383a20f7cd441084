/** TCP throughput between two workloads through a bridge, with every port program attached
 * (stm_port_in and stm_port_out on both ports, configured as the agent configures them)
 * against the same topology with none: iperf3, one stream, alternating between the two
 * states on the same devices. Namespaces and pins are removed afterwards. */
import { rmSync } from "node:fs";
import type { Subprocess } from "bun";
import { PortDatapath } from "../../src/datapath/port-datapath";
import { profileIp6, profileMac } from "../../src/model/network";
import { inNetns } from "../../src/sys/os";
import { type Benchmark, sh } from "./harness";

const SECONDS = 3;

export function throughputBench(): Benchmark {
  const tag = `stmtp${process.pid}`;
  const node = `${tag}-node`;
  const ws = [`${tag}-a`, `${tag}-b`];
  const pinRoot = `/sys/fs/bpf/${tag}`;
  const ips = ["10.20.0.2", "10.20.0.3"];
  const macs = [profileMac(1, 1), profileMac(1, 2)];
  const hostIfs = ["tpa", "tpb"];
  let ifindexes: number[] = [];
  let dp: PortDatapath | undefined;
  let server: Subprocess | undefined;
  let attached = false;

  const inNode = <T>(fn: () => T): T => inNetns(`/run/netns/${node}`, fn);
  const setPrograms = (on: boolean) => {
    if (on === attached) return;
    inNode(() => {
      for (const i of ifindexes) {
        if (on) dp?.attachPort(i);
        else dp?.detachPort(i);
      }
    });
    attached = on;
  };
  const iperf = (): number => {
    const out = sh([
      "ip",
      "netns",
      "exec",
      ws[0] as string,
      "iperf3",
      "-c",
      ips[1] as string,
      "-t",
      String(SECONDS),
      "-O",
      "1",
      "-J",
    ]);
    const bps = JSON.parse(out).end?.sum_received?.bits_per_second;
    if (typeof bps !== "number") throw new Error(`iperf3 gave no result: ${out.slice(0, 200)}`);
    return bps / 1e9;
  };

  return {
    name: "net/port-throughput",
    unit: "Gbit/s",
    async setup() {
      for (const ns of [node, ...ws]) sh(["ip", "netns", "add", ns]);
      sh(["ip", "-n", node, "link", "add", "br0", "type", "bridge"]);
      sh(["ip", "-n", node, "link", "set", "br0", "up"]);
      ws.forEach((w, i) => {
        const h = hostIfs[i] as string;
        sh(["ip", "-n", node, "link", "add", h, "type", "veth", "peer", "name", "eth0", "netns", w]);
        sh(["ip", "-n", w, "link", "set", "eth0", "address", macs[i] as string]);
        sh(["ip", "-n", w, "addr", "add", `${ips[i]}/24`, "dev", "eth0"]);
        sh(["ip", "-n", w, "link", "set", "eth0", "up"]);
        sh(["ip", "-n", w, "link", "set", "lo", "up"]);
        sh(["ip", "-n", node, "link", "set", h, "master", "br0"]);
        sh(["bridge", "-n", node, "link", "set", "dev", h, "learning", "off", "flood", "off"]);
        sh(["bridge", "-n", node, "fdb", "add", macs[i] as string, "dev", h, "master", "static"]);
        sh(["ip", "-n", node, "link", "set", h, "up"]);
      });
      ifindexes = hostIfs.map((h) => JSON.parse(sh(["ip", "-n", node, "-j", "link", "show", h]))[0].ifindex);
      dp = new PortDatapath(pinRoot);
      dp.open();
      for (const [i, ifindex] of ifindexes.entries())
        dp.setPort(ifindex, {
          netId: 1,
          ip4: ips[i] as string,
          mac: macs[i] as string,
          cidr4: "10.20.0.0/24",
          gw4: "10.20.0.1",
          ip6: profileIp6("fd20::/64", macs[i] as string),
          cidr6: "fd20::/64",
        });
      server = Bun.spawn(["ip", "netns", "exec", ws[1] as string, "iperf3", "-s"], {
        stdout: "ignore",
        stderr: "ignore",
      });
      await Bun.sleep(300);
      sh(["ip", "netns", "exec", ws[0] as string, "ping", "-c", "1", "-W", "2", ips[1] as string]);
    },
    teardown() {
      server?.kill();
      dp?.close();
      for (const ns of [...ws, node]) Bun.spawnSync(["ip", "netns", "del", ns]);
      rmSync(pinRoot, { recursive: true, force: true });
    },
    candidate: {
      label: "iperf3 TCP, port programs on both ports",
      measure() {
        setPrograms(true);
        return iperf();
      },
    },
    baseline: {
      label: "same bridge and veths, no programs",
      measure() {
        setPrograms(false);
        return iperf();
      },
    },
  };
}
