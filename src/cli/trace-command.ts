/** `trace`: what happens to a packet an endpoint sends, stage by stage, from the live programs
 * and maps (src/agent/trace.ts): asked of the agent, which keeps a trace instance loaded, or,
 * when it is stopped, run here from the pins and the state database. Changes no counter or
 * flow of live traffic. */
import { defineCommand } from "citty";
import { StratumError } from "../errors";
import {
  parseFlags,
  stageName,
  TRACE_PROTOS,
  type TraceProto,
  type TraceRequest,
  type TraceResult,
  Tracer,
} from "../ops/packet-trace";
import { client } from "./api-flags";
import { localArgs, localPaths, openStateReadOnly } from "./local-paths";
import { apiArg } from "./network-commands";
import { outputArg, parseFormat, printData } from "./output";

function port(v: unknown, what: string): number | undefined {
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new StratumError("INVALID", `${what} must be a port number (0-65535), not "${String(v)}"`);
  return n;
}

function specText(spec: Record<string, unknown>): string {
  return Object.entries(spec)
    .filter(([k, v]) => !["priority", "action", "log"].includes(k) && v != null)
    .map(([k, v]) => `${k} ${v}`)
    .join(" ");
}

export function printTrace(r: TraceResult): void {
  const p = r.packet;
  const ports = p.sport != null ? ` ${p.sport} → ${p.dport}` : "";
  const out: string[] = [
    `${p.src} → ${p.dst}: ${p.proto}${ports}${p.flags ? ` [${p.flags}]` : ""}, ${p.bytes} bytes, ${p.srcMac} → ${p.dstMac}`,
  ];
  for (const s of r.stages) {
    const dev = s.device
      ? `${s.device.endpoint ?? s.device.name}${s.device.endpoint ? ` (${s.device.name}, ifindex ${s.device.ifindex})` : ` (ifindex ${s.device.ifindex})`}`
      : "";
    const verdict = `${s.verdict}${s.reason ? `  ${s.reason.name}` : ""}`;
    out.push(` ${String(s.step).padStart(2)} ${stageName(s.stage).padEnd(14)} ${dev.padEnd(38)} ${verdict}`);
    const detail: string[] = [];
    if (s.firewall) {
      const f = s.firewall;
      const who =
        f.decision === "rule" && f.rule
          ? `rule ${f.rule.id} (priority ${f.rule.priority}: ${specText(f.rule.spec) || "any"}) → ${f.action}`
          : f.decision === "default"
            ? `default ${f.action}`
            : f.decision === "tracked"
              ? `tracked flow → ${f.action}`
              : f.decision === "failsafe"
                ? "infrastructure traffic (DHCP, DNS to the gateway, ND) → allow"
                : "no policy → allow";
      detail.push(`firewall ${f.scope}: ${who}`);
    }
    if (s.microseg) {
      const m = s.microseg;
      const g = (x: { group: string | null; id: number }) => (x.group ? `${x.group} (${x.id})` : "untagged");
      const e = m.entry;
      const what =
        m.decision === "stamped"
          ? m.source.group
            ? `stamped with its endpoint's group ${g(m.source)}`
            : "stamped untagged (its endpoint is in no group)"
          : m.decision === "carried"
            ? `group ${g(m.source)} carried in the VXLAN-GBP header`
            : m.decision === "off"
              ? "no groups: nothing segmented"
              : m.decision === "not-segmented"
                ? `from ${g(m.source)} to an endpoint in no group: not segmented`
                : `${g(m.source)} → ${m.destination ? g(m.destination) : "?"}: ${
                    m.decision === "entry" && e
                      ? `entry ${e.id} (${e.from} → ${e.to}${e.proto ? ` ${e.proto}${e.dport !== null ? `/${e.dport}` : ""}` : ""}) → ${m.action}`
                      : m.decision === "default"
                        ? "no entry → deny"
                        : m.decision === "tracked"
                          ? `tracked flow → ${m.action}`
                          : "infrastructure traffic (DHCP, DNS to the gateway, ND) → allow"
                  }`;
      detail.push(`microseg: ${what}`);
    }
    if (s.conntrack) {
      const c = s.conntrack;
      const parts = [
        c.before ? `was ${c.before}` : "no flow",
        ...(c.after && c.after !== c.before ? [`now ${c.after}`] : []),
        ...(c.event ? [c.event] : []),
      ];
      detail.push(`conntrack: ${parts.join(", ")}`);
    }
    if (s.stage === "port-egress" || s.stage === "port-ingress" || s.stage === "uplink-egress")
      detail.push("shaping: none");
    if (s.note) detail.push(s.note);
    for (const d of detail) out.push(`      ${d}`);
  }
  out.push(`verdict: ${r.summary}`);
  if (!r.programs.same)
    out.push(
      `note: the ports run programs with tag ${r.programs.liveTag}, this binary's have tag ${r.programs.tag}: the trace shows this binary's code`,
    );
  process.stdout.write(`${out.join("\n")}\n`);
}

export const traceCommand = defineCommand({
  meta: {
    name: "trace",
    description:
      "Trace a packet an endpoint would send through the live programs and maps, stage by stage: verdict, drop reason, firewall rule, conntrack. Changes nothing; works with the agent stopped",
    examples: [
      "cenvero-str-ctl trace --from web-1 --to-endpoint db-1 --proto tcp --dport 5432",
      "cenvero-str-ctl trace --from web-1 --to 10.20.0.1 --proto udp --dport 53",
      "cenvero-str-ctl trace --from web-1 --to-endpoint db-1 -6 --proto icmpv6",
      "cenvero-str-ctl trace --from db-1 --to-endpoint web-1 --proto tcp --sport 5432 --dport 40000 --flags ack   # a reply",
      "cenvero-str-ctl trace --from web-1 --to 10.20.0.9 --src 10.20.0.99   # what if it lied about its address",
      "# In a script: does the policy still let web-1 reach the database?",
      "cenvero-str-ctl trace --from web-1 --to-endpoint db-1 --proto tcp --dport 5432 --exit-code -o json > /dev/null",
    ],
  } as never,
  args: {
    from: { type: "string", description: "Endpoint that sends the packet", required: true, valueHint: "ENDPOINT" },
    to: { type: "string", description: "Destination address", valueHint: "IP" },
    "to-endpoint": { type: "string", description: "Destination endpoint (its address)", valueHint: "ENDPOINT" },
    proto: {
      type: "string",
      description: "tcp, udp, icmp or icmpv6 (default: tcp with --dport, else an echo request)",
      valueHint: "PROTO",
    },
    sport: { type: "string", description: "Source port (default 40000)", valueHint: "N" },
    dport: { type: "string", description: "Destination port (default 80)", valueHint: "N" },
    flags: {
      type: "string",
      description: "TCP flags: syn, ack, fin, rst, psh, urg, joined by , or | (default syn)",
      valueHint: "FLAGS",
    },
    ipv6: { type: "boolean", alias: "6", description: "Use the endpoints' IPv6 addresses", default: false },
    src: { type: "string", description: "What if: the source address the packet claims", valueHint: "IP" },
    "src-mac": { type: "string", description: "What if: the source MAC the frame claims", valueHint: "MAC" },
    local: {
      type: "boolean",
      description: "Do not ask the agent: load the programs from the pins (what happens when the agent is down)",
      default: false,
    },
    "exit-code": {
      type: "boolean",
      description: "Exit 1 when the packet is dropped or rejected, 0 when it is delivered (for scripts and CI)",
      default: false,
    },
    ...apiArg,
    ...localArgs,
    ...outputArg,
  },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    if (args.proto !== undefined && !TRACE_PROTOS.includes(args.proto as TraceProto))
      throw new StratumError("INVALID", `--proto must be one of ${TRACE_PROTOS.join(", ")}, not "${args.proto}"`);
    const req: TraceRequest = {
      from: args.from,
      to: args.to,
      toEndpoint: args["to-endpoint"],
      proto: args.proto as TraceProto | undefined,
      sport: port(args.sport, "--sport"),
      dport: port(args.dport, "--dport"),
      flags: args.flags ? parseFlags(args.flags) : undefined,
      ipv6: args.ipv6 || undefined,
      src: args.src,
      srcMac: args["src-mac"],
    };
    let r: TraceResult | undefined;
    // The agent keeps a trace instance loaded; without it, load one from the pins.
    if (!args.local) {
      try {
        r = await client(args).trace(req);
      } catch (e) {
        if (!(e instanceof StratumError && e.code === "UNAVAILABLE")) throw e;
      }
    }
    if (!r) {
      const paths = await localPaths(args);
      const store = openStateReadOnly(paths.stateDir);
      try {
        r = new Tracer(store, paths.pinRoot).trace(req);
      } finally {
        store.close();
      }
    }
    if (fmt !== "table") printData(fmt, r);
    else printTrace(r);
    return args["exit-code"] && r.verdict !== "delivered" ? 1 : 0;
  },
});
