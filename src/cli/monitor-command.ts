/** `monitor`: drops (with reason, port and decoded headers), hits of rules marked `log` and,
 * on request, new flows, as they happen. Reads the datapath's event ring buffer through the
 * pins (works with the agent stopped) while holding the monitoring lease; the datapath paces
 * events per CPU, and what it held back is reported. One monitor at a time. */
import { defineCommand } from "citty";
import { FW_DEFAULT_ID } from "../datapath/firewall-maps";
import { type MonEvent, MonitorSession, type MonKind, readMonStats } from "../datapath/monitor-ring";
import { monEventView } from "../datapath/monitor-view";
import { MSEG_LOG_ID } from "../datapath/mseg-tables";
import { describeFrame } from "../datapath/packet";
import { StratumError } from "../errors";
import { getLink } from "../netlink";
import { type PortName, portNames } from "../observe/port-names";
import type { SqliteStore } from "../store/sqlite";
import { BpfMap } from "../sys/bpf";
import { monotonicNs } from "../sys/os";
import { localArgs, localPaths, openStateReadOnly } from "./local-paths";
import { apiArg } from "./network-commands";
import { outputArg, parseFormat, printRecord } from "./output";

function positive(v: unknown, what: string, dflt: number): number {
  if (v === undefined || v === "") return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1)
    throw new StratumError("INVALID", `${what} must be a positive integer, not "${String(v)}"`);
  return n;
}

export const monitorCommand = defineCommand({
  meta: {
    name: "monitor",
    description:
      "Stream drops (reason, port, headers) and hits of rules marked log as they happen (--flows: new flows too). Ctrl-C stops",
    examples: [
      "cenvero-str-ctl monitor --drops",
      "cenvero-str-ctl monitor --network app-net --flows",
      "cenvero-str-ctl monitor --endpoint web-1 -o json | jq .reason",
      "# The agent of another pin root (found through its API socket), or pins read directly:",
      "cenvero-str-ctl monitor --api-socket /run/stratum-lab/api.sock --drops",
      "cenvero-str-ctl monitor --pin-root /sys/fs/bpf/stratum --state-dir /var/lib/stratum",
    ],
  } as never,
  args: {
    drops: { type: "boolean", description: "Drops only (no log hits)", default: false },
    flows: { type: "boolean", description: "Also new flows the firewall starts tracking", default: false },
    network: { type: "string", description: "Only events of this network's ports", valueHint: "NETWORK" },
    endpoint: { type: "string", description: "Only events of this endpoint's port", valueHint: "ENDPOINT" },
    rate: {
      type: "string",
      description: "Events per second per CPU the datapath may emit (default 1000); the rest are counted",
      valueHint: "N",
    },
    burst: {
      type: "string",
      description: "Events per CPU allowed at once above the rate (default 100)",
      valueHint: "N",
    },
    count: { type: "string", description: "Stop after N events", valueHint: "N" },
    duration: { type: "string", description: "Stop after N seconds", valueHint: "SECONDS" },
    ...localArgs,
    ...apiArg,
    ...outputArg,
  },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    if (args.drops && args.flows) throw new StratumError("INVALID", "--drops shows drops only: drop it to add --flows");
    const kinds: MonKind[] = args.drops ? ["drop"] : ["drop", "log", ...(args.flows ? (["flow"] as const) : [])];
    const rate = positive(args.rate, "--rate", 1000);
    const burst = positive(args.burst, "--burst", 100);
    const count = args.count !== undefined ? positive(args.count, "--count", 1) : Infinity;
    const seconds = args.duration !== undefined ? positive(args.duration, "--duration", 1) : Infinity;

    const paths = await localPaths(args);
    // Names: from the state database when it is there (the agent's), else interface names.
    let names = new Map<number, PortName>();
    let netId = 0;
    let ifindex = 0;
    let refresh = () => {};
    let store: SqliteStore | undefined;
    try {
      const db = openStateReadOnly(paths.stateDir);
      store = db;
      refresh = () => {
        names = portNames(db);
      };
      refresh();
      if (args.network) {
        const n = db.getNetwork(args.network);
        if (!n) throw new StratumError("NOT_FOUND", `network ${args.network} does not exist`);
        netId = n.id;
      }
      if (args.endpoint) {
        const e = db.getEndpoint(args.endpoint);
        if (!e) throw new StratumError("NOT_FOUND", `endpoint ${args.endpoint} does not exist`);
        const l = getLink(e.hostIf);
        if (!l)
          throw new StratumError(
            "NOT_FOUND",
            `port ${e.hostIf} of ${e.name} does not exist here (run in the node's network namespace)`,
          );
        ifindex = l.index;
      }
    } catch (e) {
      if (args.network || args.endpoint || !(e instanceof StratumError && e.code === "NOT_FOUND")) throw e;
    }

    const dir = `${paths.pinRoot}/maps`;
    let cfg: BpfMap;
    let ring: BpfMap;
    let stats: BpfMap;
    try {
      cfg = BpfMap.openPinned(`${dir}/stm_mon_cfg`);
      ring = BpfMap.openPinned(`${dir}/stm_mon_ring`);
      stats = BpfMap.openPinned(`${dir}/stm_mon_stats`);
    } catch (e) {
      throw new StratumError(
        "NOT_FOUND",
        `no Stratum datapath pinned at ${paths.pinRoot} (${e instanceof Error ? e.message : e}): has the agent run on this node? (--pin-root, or --api-socket of a running agent)`,
      );
    }
    const holder = MonitorSession.holder(cfg);
    if (holder)
      throw new StratumError("INVALID", `another monitor (pid ${holder}) is reading the events: one at a time`);

    // Event times are CLOCK_MONOTONIC; shown as wall-clock time.
    const offsetMs = Date.now() - Number(monotonicNs() / 1_000_000n);
    let seen = 0;
    const print = (e: MonEvent) => {
      if (seen >= count) return;
      seen++;
      const at = new Date(offsetMs + Number(e.tsNs / 1_000_000n));
      const who = names.get(e.ifindex);
      const port = who
        ? { endpoint: who.endpoint, network: who.network, device: who.hostIf }
        : { device: getLink(e.ifindex)?.name ?? `ifindex ${e.ifindex}` };
      if (fmt !== "table") {
        printRecord(fmt, monEventView(e, at, who, port.device));
        return;
      }
      const where = who ? `${who.endpoint} (${who.network})` : port.device;
      const by = (id: number | undefined) =>
        id !== undefined && id & FW_DEFAULT_ID
          ? "default"
          : id !== undefined && id & MSEG_LOG_ID
            ? `microseg entry ${(id & ~MSEG_LOG_ID) >>> 0}`
            : `rule ${id}`;
      const what =
        e.kind === "drop"
          ? `drop ${e.reason}`
          : e.kind === "log"
            ? `log ${e.action} by ${by(e.ruleId)}`
            : `flow new (${by(e.ruleId)})`;
      const hook = e.hook ?? (e.dir === "egress" ? "from endpoint" : "to endpoint");
      process.stdout.write(
        `${at.toISOString().slice(11, 23)}  ${what.padEnd(24)} ${where.padEnd(24)} ${hook.padEnd(13)} ${describeFrame(e.packet)}  (${e.len} bytes)\n`,
      );
    };

    const session = new MonitorSession(cfg, ring, { kinds, rate, burst, ifindex, netId, leaseMs: 3000 }, print);
    const base = readMonStats(stats);
    let reported = { paced: 0, "ring-full": 0 };
    const reportLost = (final: boolean) => {
      const now = readMonStats(stats);
      const lost = { paced: now.paced - base.paced, "ring-full": now["ring-full"] - base["ring-full"] };
      if (lost.paced === reported.paced && lost["ring-full"] === reported["ring-full"] && !final) return;
      reported = lost;
      const line = { kind: "lost", paced: lost.paced, ringFull: lost["ring-full"] };
      if (fmt !== "table") printRecord(fmt, line);
      else if (lost.paced || lost["ring-full"] || final)
        process.stderr.write(
          `(events not shown so far: ${lost.paced} held back by the pace, ${lost["ring-full"]} lost to a full ring buffer; node-wide)\n`,
        );
    };

    let stop = false;
    const onSignal = () => {
      stop = true;
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    const started = Date.now();
    let lastRenew = 0;
    let lastNames = Date.now();
    try {
      session.consume(); // events left over from an earlier monitor
      seen = 0;
      if (fmt !== "json")
        process.stderr.write(
          `monitoring ${kinds.join(", ")}${args.network ? ` of network ${args.network}` : ""}${args.endpoint ? ` of ${args.endpoint}` : ""}; Ctrl-C stops\n`,
        );
      while (!stop && seen < count && Date.now() - started < seconds * 1000) {
        if (Date.now() - lastRenew >= 1000) {
          session.renew();
          lastRenew = Date.now();
          reportLost(false);
        }
        if (Date.now() - lastNames >= 5000) {
          refresh();
          lastNames = Date.now();
        }
        session.poll(100);
        await Bun.sleep(0); // let signal handlers run
      }
      session.consume();
      reportLost(true);
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      session.close();
      cfg.close();
      ring.close();
      stats.close();
      store?.close();
    }
  },
});
