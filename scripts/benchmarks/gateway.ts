/** Gateway benchmarks (opt-in group `gateway`):
 *  - snat-throughput: iperf3 TCP from a workload of a masqueraded network through the uplink
 *    to a sink on its LAN, against the same path from a routed network (the sink routes back
 *    to it): what translating every packet, both ways, costs.
 *  - snat-flows: new TCP connections per second (connect, answered, reset) from a workload to
 *    16 ports of the sink, masqueraded against routed.
 *  - ns-overlay-throughput: on a two-node lab, iperf3 TCP from a workload on node2 (not a
 *    gateway) through the overlay to node1 (the gateway) and out of its uplink, masqueraded,
 *    to a sink; against the same from a workload on node1 itself.
 *  - announce: a network created through a gateway agent's API until BIRD 2 (Debian's, in a
 *    router namespace over a veth) has its prefix in its RIB, asked through BIRD's control
 *    socket every millisecond; against the API request itself (until the agent answers).
 *    Each sample's network is deleted after it (untimed). */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bird, type Peer } from "../../test/helpers/bgp-peers";
import { Lab, type LabWorkload, until } from "../../test/helpers/lab";
import { Netns } from "../../test/helpers/netns";
import { BenchAgent } from "./agent";
import { type Benchmark, BINARY, sh } from "./harness";
import { exec, iperf } from "./overlay";

/** A client of BIRD's control socket: one command at a time, the answer's text. */
class BirdControl {
  #sock: Awaited<ReturnType<typeof Bun.connect>> | undefined;
  #buf = "";
  #wait: ((text: string) => void) | undefined;

  async open(path: string): Promise<void> {
    const ready = new Promise<void>((res) => {
      this.#wait = () => res();
    });
    this.#sock = await Bun.connect({
      unix: path,
      socket: {
        data: (_s, chunk) => {
          this.#buf += new TextDecoder().decode(chunk);
          // An answer ends with a line whose code has a space after it (0000, 8001, 0001 …).
          if (/(^|\n)\d{4} [^\n]*\n$/.test(this.#buf)) {
            const text = this.#buf;
            this.#buf = "";
            const w = this.#wait;
            this.#wait = undefined;
            w?.(text);
          }
        },
      },
    });
    await ready;
  }

  ask(cmd: string): Promise<string> {
    return new Promise((res) => {
      this.#wait = res;
      this.#sock?.write(`${cmd}\n`);
    });
  }

  close(): void {
    this.#sock?.end();
  }
}

function announceBench(): Benchmark {
  const agent = new BenchAgent();
  let rt: Netns | undefined;
  let dir = "";
  let peer: Peer | undefined;
  const ctl = new BirdControl();
  let n = 0;
  const SAMPLES = 20;

  const post = async (body: unknown): Promise<void> => {
    const r = await fetch("http://stratum/v1/networks", {
      unix: agent.sock,
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    } as RequestInit);
    if (r.status !== 201) throw new Error(`network create: ${r.status} ${await r.text()}`);
  };
  const del = async (name: string): Promise<void> => {
    const r = await fetch(`http://stratum/v1/networks/${name}`, { unix: agent.sock, method: "DELETE" } as RequestInit);
    if (r.status !== 204) throw new Error(`network delete: ${r.status} ${await r.text()}`);
  };
  const inRib = async (prefix: string) => (await ctl.ask(`show route ${prefix} protocol stratum`)).includes(prefix);

  /** One network created; the milliseconds until the API answered and until BIRD had it. */
  async function sample(): Promise<{ api: number; rib: number }> {
    const i = ++n;
    const name = `bn${i}`;
    const prefix = `10.${70 + (i >> 8)}.${i & 255}.0/24`;
    const t0 = performance.now();
    await post({ name, cidr: prefix, gateway: prefix.replace(/0\/24$/, "1") });
    const api = performance.now() - t0;
    while (!(await inRib(prefix))) {
      if (performance.now() - t0 > 10_000) throw new Error(`${prefix} never reached BIRD`);
      await Bun.sleep(1);
    }
    const rib = performance.now() - t0;
    await del(name);
    while (await inRib(prefix)) await Bun.sleep(1);
    return { api, rib };
  }

  return {
    name: "gateway/announce",
    unit: "ms",
    rows: [
      { name: "gateway/announce-p50", unit: "ms", figure: "ms", percentile: 50 },
      { name: "gateway/announce-p99", unit: "ms", figure: "ms", percentile: 99 },
    ],
    async setup() {
      await agent.start(["--gateway"], () => {
        rt = new Netns("bgr");
        dir = mkdtempSync(join(tmpdir(), "stm-bench-bgp-"));
        sh(["ip", "-n", agent.ns, "link", "add", "rtr0", "type", "veth", "peer", "name", "gw0", "netns", rt.name]);
        sh(["ip", "-n", agent.ns, "addr", "add", "10.95.0.1/24", "dev", "rtr0"]);
        sh(["ip", "-n", agent.ns, "link", "set", "rtr0", "up"]);
        sh(["ip", "-n", rt.name, "addr", "add", "10.95.0.2/24", "dev", "gw0"]);
        sh(["ip", "-n", rt.name, "link", "set", "gw0", "up"]);
      });
      peer = bird({
        rt: rt as Netns,
        dir,
        routerAddress: "10.95.0.2",
        speakerAddress: "10.95.0.1",
        speakerAs: 65001,
        peerAs: 65000,
      });
      await peer.start();
      await agent.api.setBgpConfig({ asn: 65001 });
      await agent.api.addBgpPeer({ name: "bird", address: "10.95.0.2", asn: 65000 });
      for (let i = 0; i < 2000 && !peer.established(); i++) await Bun.sleep(10);
      if (!peer.established()) throw new Error("the BGP session did not come up");
      await ctl.open(join(dir, "bird.ctl"));
    },
    async teardown() {
      ctl.close();
      agent.stop();
      await peer?.stop();
      rt?.destroy();
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
    candidate: {
      label: "network create through a gateway's API → its prefix in BIRD's RIB (BGP over a veth)",
      async measure() {
        const ms: number[] = [];
        for (let i = 0; i < SAMPLES; i++) ms.push((await sample()).rib);
        return { ms };
      },
    },
    baseline: {
      label: "the create request itself, until the agent answers",
      async measure() {
        const ms: number[] = [];
        for (let i = 0; i < SAMPLES; i++) ms.push((await sample()).api);
        return { ms };
      },
    },
  };
}

const NAT_SINK = "10.98.0.2";

/** An agent with an uplink (veth upl0) to a sink namespace on its LAN, which routes 10.72/16 back
 * to the node; two networks, one masqueraded (w-nat in it) and one routed (w-rt). */
class NatLab {
  readonly agent = new BenchAgent();
  readonly ns: Record<"sink" | "nat" | "rt", { name: string }> = {
    sink: { name: "" },
    nat: { name: "" },
    rt: { name: "" },
  };
  readonly ip: Record<"nat" | "rt", string> = { nat: "", rt: "" };
  #servers: ReturnType<typeof Bun.spawn>[] = [];

  ctl(...args: string[]): string {
    return sh([BINARY, ...args, "--api-socket", this.agent.sock]);
  }

  async setup(): Promise<void> {
    for (const k of ["sink", "nat", "rt"] as const) this.ns[k] = { name: this.agent.netns(k) };
    const sink = this.ns.sink.name;
    await this.agent.start(["--uplink", "upl0"], () => {
      const node = this.agent.ns;
      sh(["ip", "-n", node, "link", "add", "upl0", "type", "veth", "peer", "name", "ext0", "netns", sink]);
      sh(["ip", "-n", node, "link", "set", "upl0", "up"]);
      sh(["ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
      sh(["ip", "-n", sink, "addr", "add", `${NAT_SINK}/24`, "dev", "ext0"]);
      sh(["ip", "-n", sink, "link", "set", "ext0", "up"]);
      sh(["ip", "-n", sink, "link", "set", "lo", "up"]);
      sh(["ip", "-n", sink, "route", "add", "10.72.0.0/16", "via", "10.98.0.1"]);
    });
    sh(["ip", "-n", this.agent.ns, "addr", "add", "10.98.0.1/24", "dev", "cnv-user-br0"]);
    this.ctl("network", "create", "--name", "masq", "--cidr", "10.72.1.0/24", "--gateway", "10.72.1.1", "--nat");
    this.ctl("network", "create", "--name", "routed", "--cidr", "10.72.2.0/24", "--gateway", "10.72.2.1");
    for (const [k, net] of [
      ["nat", "masq"],
      ["rt", "routed"],
    ] as const)
      this.ip[k] = JSON.parse(
        this.ctl("network", "attach", net, "--name", `w-${k}`, "--netns", this.ns[k].name, "--configure", "-o", "json"),
      ).ip;
    // The connection sink: 16 ports, every connection accepted and closed.
    this.#servers.push(
      Bun.spawn(
        [
          "ip",
          "netns",
          "exec",
          sink,
          "/usr/bin/python3",
          "-c",
          `
import socket, selectors
sel = selectors.DefaultSelector()
for p in range(9100, 9116):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", p)); s.listen(4096); s.setblocking(False); sel.register(s, selectors.EVENT_READ)
while True:
    for k, _ in sel.select():
        try:
            while True:
                c, _ = k.fileobj.accept(); c.close()
        except BlockingIOError: pass`,
        ],
        { stdout: "ignore", stderr: "ignore" },
      ),
    );
    await Bun.sleep(300);
    for (const k of ["nat", "rt"] as const)
      if (exec(this.ns[k], ["ping", "-c", "1", "-W", "2", NAT_SINK]).code !== 0)
        throw new Error(`w-${k} does not reach the sink`);
  }

  teardown(): void {
    for (const s of this.#servers) s.kill("SIGKILL");
    this.agent.stop();
  }

  /** New TCP connections per second from workload `k` for `seconds`: 256 at a time, each
   * answered, then reset (no TIME_WAIT on either side). */
  flows(k: "nat" | "rt", seconds: number): number {
    const r = exec(this.ns[k], [
      "/usr/bin/python3",
      "-c",
      `
import socket, select, struct, time
linger = struct.pack("ii", 1, 0)
done, end, p = 0, time.time() + ${seconds}, 0
t0 = time.time()
while time.time() < end:
    batch, ep = [], select.epoll()
    for i in range(256):
        s = socket.socket(); s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        s.connect_ex(("${NAT_SINK}", 9100 + p % 16)); p += 1
        ep.register(s.fileno(), select.EPOLLOUT); batch.append(s)
    left, fds = len(batch), {s.fileno(): s for s in batch}
    while left:
        for fd, _ in ep.poll(2):
            ep.unregister(fd); left -= 1
            done += fds[fd].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    for s in batch: s.close()
print(done / (time.time() - t0))`,
    ]);
    if (r.code !== 0) throw new Error(`connection loop from w-${k}: ${r.err}`);
    return Number(r.out.trim());
  }
}

function snatThroughputBench(): Benchmark {
  const lab = new NatLab();
  return {
    name: "gateway/snat-throughput",
    unit: "Gbit/s",
    setup: () => lab.setup(),
    teardown: () => lab.teardown(),
    candidate: {
      label: "iperf3 TCP from a masqueraded network's workload through the uplink (translated both ways)",
      measure: () => iperf(lab.ns.nat, lab.ns.sink, NAT_SINK, 4),
    },
    baseline: {
      label: "the same path from a routed network's workload (no translation)",
      measure: () => iperf(lab.ns.rt, lab.ns.sink, NAT_SINK, 4),
    },
  };
}

function snatFlowsBench(): Benchmark {
  const lab = new NatLab();
  return {
    name: "gateway/snat-flows",
    unit: "flows/s",
    setup: () => lab.setup(),
    teardown: () => lab.teardown(),
    candidate: {
      label: "new TCP connections per second from a masqueraded network (each a new translated flow)",
      measure: () => lab.flows("nat", 2),
    },
    baseline: { label: "the same from a routed network", measure: () => lab.flows("rt", 2) },
  };
}

function nsOverlayBench(): Benchmark {
  let lab: Lab | undefined;
  let sink: Netns | undefined;
  let w: LabWorkload[] = [];
  const SINK = "192.0.2.2";
  return {
    name: "gateway/ns-overlay-throughput",
    unit: "Gbit/s",
    async setup() {
      lab = await Lab.create({ nodes: 2, tag: "bns" });
      const [n1, n2] = [lab.node(1), lab.node(2)];
      sink = new Netns("bnssink");
      sh(["ip", "-n", n1.ns.name, "link", "add", "upl0", "type", "veth", "peer", "name", "eth0", "netns", sink.name]);
      sh(["ip", "-n", n1.ns.name, "link", "set", "upl0", "up"]);
      sh(["ip", "netns", "exec", n1.ns.name, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
      sh(["ip", "-n", sink.name, "addr", "add", `${SINK}/24`, "dev", "eth0"]);
      sh(["ip", "-n", sink.name, "link", "set", "eth0", "up"]);
      await n1.start([...n1.clusterArgs(), "--uplink", "upl0", "--gateway"]);
      sh(["ip", "-n", n1.ns.name, "addr", "add", "192.0.2.1/24", "dev", "cnv-user-br0"]);
      await n2.start(n2.clusterArgs());
      const r = n1.cli(
        "network",
        "create",
        "--name",
        "bench",
        "--cidr",
        "10.84.0.0/24",
        "--gateway",
        "10.84.0.1",
        "--nat",
      );
      if (r.code !== 0) throw new Error(`network create: ${r.stderr}`);
      await until("bench on node2", () => n2.json<any[]>("network", "list").some((x) => x.name === "bench"));
      w = [n1.workload("g1", "bench"), n2.workload("g2", "bench")];
      for (const x of w) await until(`${x.name} → the sink`, () => x.ping(SINK), 20_000);
    },
    teardown() {
      lab?.destroy();
      sink?.destroy();
    },
    candidate: {
      label: "iperf3 TCP from node2 (not a gateway) over the overlay to node1, out of its uplink, masqueraded",
      measure: () => iperf((w[1] as LabWorkload).ns, sink as Netns, SINK, 4),
    },
    baseline: {
      label: "the same from a workload on node1, the gateway itself",
      measure: () => iperf((w[0] as LabWorkload).ns, sink as Netns, SINK, 4),
    },
  };
}

export const GATEWAY_BENCHMARKS: Record<string, () => Benchmark> = {
  "gateway/announce": announceBench,
  "gateway/snat-throughput": snatThroughputBench,
  "gateway/snat-flows": snatFlowsBench,
  "gateway/ns-overlay-throughput": nsOverlayBench,
};
