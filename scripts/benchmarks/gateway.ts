/** Gateway benchmarks (opt-in group `gateway`):
 *  - announce: a network created through a gateway agent's API until BIRD 2 (Debian's, in a
 *    router namespace over a veth) has its prefix in its RIB, asked through BIRD's control
 *    socket every millisecond; against the API request itself (until the agent answers).
 *    Each sample's network is deleted after it (untimed). */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bird, type Peer } from "../../test/helpers/bgp-peers";
import { Netns } from "../../test/helpers/netns";
import { BenchAgent } from "./agent";
import { type Benchmark, sh } from "./harness";

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

export const GATEWAY_BENCHMARKS: Record<string, () => Benchmark> = {
  "gateway/announce": announceBench,
};
