/** What monitoring costs the datapath: stm_port_in with a monitor holding the lease against the
 * same program with nobody monitoring, on the drop path (a spoofed frame: every drop asks
 * whether to emit) and on the pass path (an allowed frame: no event is ever considered).
 * "paced" uses the default pace (1000 events/s per CPU: nearly every drop of a flood is held
 * back and counted); "emit" lets every drop through to the ring buffer, drained between runs. */
import { MON_CFG_SIZE, MonitorSession } from "../../src/datapath/monitor-ring";
import { loadObject } from "../../src/datapath/objects";
import { ETH_P, ethernet, IPPROTO, ipv4, udp } from "../../src/datapath/packet";
import { encodeIfindex, encodePort } from "../../src/datapath/port-maps";
import { type BpfObject, testRun } from "../../src/sys/bpf";
import { alloc, SK_BUFF } from "../../src/sys/layout";
import type { Benchmark } from "./harness";

const MAC = "02:00:0a:00:05:07";
const SRC = "10.0.5.7";
const DST = "10.0.9.9";
const frameFrom = (mac: string) =>
  ethernet(
    { src: mac, dst: "02:00:0a:00:09:09", type: ETH_P.IP },
    ipv4(
      { src: SRC, dst: DST, proto: IPPROTO.UDP },
      udp({ src: SRC, dst: DST, sport: 40000, dport: 9 }, new Uint8Array(64)),
    ),
  );
const ctx = alloc(SK_BUFF, { ifindex: 1 });

function port(): BpfObject {
  const obj = loadObject("port");
  obj
    .map("stm_ports")
    .update(
      encodeIfindex(1),
      encodePort({ netId: 1, ip4: SRC, mac: MAC, cidr4: "10.0.0.0/8", gw4: "10.0.0.1", slot: 1 }),
    );
  return obj;
}

export function monitorBench(path: "drop" | "pass", mode: "paced" | "emit"): Benchmark {
  let on: BpfObject | undefined;
  let off: BpfObject | undefined;
  let session: MonitorSession | undefined;
  const frame = frameFrom(path === "drop" ? "02:66:66:66:66:66" : MAC);
  // Emitting: no more frames per run than the ring holds (1 MiB / 200-byte events), drained after.
  const repeat = mode === "emit" ? 4000 : 100_000;
  const ns = (obj: BpfObject) => {
    const t0 = Bun.nanoseconds();
    const r = testRun(obj.program("stm_port_in").fd, { data: frame, repeat, ctx });
    const t = (Bun.nanoseconds() - t0) / repeat;
    if (r.retval !== (path === "drop" ? 2 : -1)) throw new Error(`unexpected verdict ${r.retval}`);
    return t;
  };
  return {
    name: `mon/${path}-${mode}-vs-off`,
    unit: "ns/packet",
    setup() {
      on = port();
      off = port();
      session = new MonitorSession(
        on.map("stm_mon_cfg"),
        on.map("stm_mon_ring"),
        {
          kinds: ["drop", "log", "flow"],
          rate: mode === "emit" ? 1e9 : 1000,
          burst: mode === "emit" ? 1e6 : 100,
          leaseMs: 3_600_000,
        },
        () => {},
      );
      session.renew();
      off.map("stm_mon_cfg").update(Buffer.alloc(4), Buffer.alloc(MON_CFG_SIZE));
    },
    teardown() {
      session?.close();
      on?.close();
      off?.close();
    },
    candidate: {
      label: `stm_port_in ${path} path, monitor on (${mode === "emit" ? "every drop emitted" : "default pace"})`,
      measure: () => {
        const t = ns(on as BpfObject);
        session?.consume();
        return t;
      },
    },
    baseline: { label: `stm_port_in ${path} path, no monitor`, measure: () => ns(off as BpfObject) },
  };
}
