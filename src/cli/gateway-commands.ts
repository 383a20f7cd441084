/** `gateway`: gateway groups, the gateway nodes of a cluster that back each other up for a set
 * of north-side addresses (VIPs), and this node's part in each. Clients of the agent's API; a
 * single-node agent answers them with one line (not a cluster node, exit 2). --priority and
 * --advert-interval are parsed here, so a typo fails before the agent is asked. */
import { type CommandMeta, defineCommand } from "citty";
import type { GatewayGroupView, GatewayStatusView } from "../api/contract";
import {
  DEFAULT_ADVERT_MS,
  DEFAULT_PRIORITY,
  groupTimers,
  parseInterval,
  parsePriorities,
} from "../model/gateway-group";
import { client } from "./api-flags";
import { relativeTime } from "./dhcp-commands";
import { apiArg, meta } from "./network-commands";
import { outputArg, parseFormat, printData, printKv, printTable } from "./output";

const list = (v: unknown) =>
  String(v ?? "")
    .split(",")
    .map((x) => x.trim())
    .filter((x) => x !== "");

const vipsText = (v: GatewayGroupView["vips"], sep = ", ") =>
  [v.ipv4, v.ipv6].filter((x) => x !== null).join(sep) || "-";

const nodesText = (g: GatewayGroupView) => g.nodes.map((n) => `${n.name}=${n.priority}`).join(",");

const ms = (n: number) => `${Number.isInteger(n) ? n : n.toFixed(1)} ms`;

/** How long ago something was heard, for people: "42 ms ago" under 10 s, then in seconds and up. */
function heard(lastMs: number | null, self: boolean, now: number): string {
  if (self) return "(this node)";
  if (lastMs === null) return "never";
  return lastMs < 10_000 ? `${Math.round(lastMs)} ms ago` : relativeTime(now - lastMs, now);
}

export function printGatewayGroups(gs: GatewayGroupView[]): void {
  if (!gs.length) {
    process.stdout.write("no gateway groups: gateway group create NAME --vip ADDR --nodes A,B\n");
    return;
  }
  printTable(
    ["NAME", "VIPS", "NODES", "PREEMPT", "ADVERT", "ACTIVE"],
    gs.map((g) => [
      g.name,
      vipsText(g.vips, ","),
      nodesText(g),
      g.preempt ? "on" : "off",
      `${g.advertIntervalMs}ms`,
      g.active?.node ?? "-",
    ]),
  );
}

export function printGatewayGroup(g: GatewayGroupView, now = Date.now()): void {
  const timers = {
    advertIntervalMs: g.advertIntervalMs,
    priority: Object.fromEntries(g.nodes.map((n) => [n.name, n.priority])),
  };
  const a = g.active;
  printKv([
    ["name", g.name],
    ["VIPs", vipsText(g.vips)],
    ...g.nodes.map((n): [string, string] => [
      `node ${n.name}`,
      `priority ${n.priority}, master-down ${ms(Math.round(groupTimers(timers, n.name).masterDown * 10) / 10)}`,
    ]),
    ["preempt", g.preempt ? "on (a node of higher priority takes the role back)" : "off (the holder keeps the role)"],
    ["advert interval", ms(g.advertIntervalMs)],
    ["longest takeover wait", `${ms(g.masterDownMs)} (the master-down of the node of lowest priority)`],
    [
      "active",
      a
        ? `${a.node} (epoch ${a.epoch}) since ${a.since} (${relativeTime(Date.parse(a.since), now)}): ${a.why}`
        : "none yet: no node holds the VIPs",
    ],
    ["created", `${g.createdAt} (${relativeTime(Date.parse(g.createdAt), now)})`],
  ]);
}

export function printGatewayStatus(s: GatewayStatusView, now = Date.now()): void {
  if (!s.groups.length) {
    process.stdout.write("no gateway groups: gateway group create NAME --vip ADDR --nodes A,B\n");
    return;
  }
  printTable(
    ["GROUP", "VIPS", "ACTIVE", "EPOCH", "THIS NODE", "SINCE", "WHY"],
    s.groups.map((g) => [
      g.name,
      vipsText(g.vips, ","),
      g.active ?? "-",
      g.epoch === null ? "-" : String(g.epoch),
      g.member ? g.role : "not a member",
      g.since ? relativeTime(Date.parse(g.since), now) : "-",
      g.why ?? "-",
    ]),
  );
  for (const g of s.groups.filter((x) => x.member)) {
    const hold = g.role === "active" && g.holdMs !== null ? `; lets go in ${ms(g.holdMs)} unless renewed` : "";
    const c = g.counters;
    process.stdout.write(
      `\n${g.name}: ${s.node} is ${g.role}${hold}\n` +
        `  adverts ${c.advertsSent} sent, ${c.advertsReceived} received, ${c.advertsRejected} rejected, ${c.advertsMissed} missed; ` +
        `${c.transitions} transition(s); ${c.renewals} renewal(s), ${c.renewFailures} failed\n`,
    );
    printTable(
      ["  NODE", "PRIORITY", "ROLE", "HEARD", "ETCD"],
      g.nodes.map((n) => [
        `  ${n.name}`,
        String(n.priority),
        n.role ?? "-",
        heard(n.lastHeardMs, n.self, now),
        n.etcd === null ? "-" : n.etcd ? "yes" : "NO",
      ]),
    );
  }
}

const groupArg = { type: "positional", required: true, description: "Gateway group name", valueHint: "GROUP" } as const;

const create = defineCommand({
  meta: meta(
    "create",
    `Declare a gateway group: 2 to 8 gateway nodes that back each other up for one or two VIPs (north-side addresses, one per family). One node is active at a time and holds the VIPs; a lease in etcd decides which, and the nodes' heartbeat (an advert every --advert-interval) goes over cnv-mgmt-br0. Defaults: priority ${DEFAULT_PRIORITY}, preempt on, advert ${DEFAULT_ADVERT_MS}ms (a standby's master-down: 3 × advert + (256 − priority) × advert / 256 ≈ 361 ms)`,
    [
      "cenvero-str-ctl gateway group create north --vip 192.0.2.10 --nodes node1,node2",
      "# Both families; node1 preferred; a recovered node1 does not take the VIPs back:",
      "cenvero-str-ctl gateway group create edge --vip 198.51.100.10,2001:db8::10 --nodes node1,node2,node3 \\",
      "  --priority node1=200,node2=150 --preempt off",
      "# A slower heartbeat (takeover in about 3.6 × the interval):",
      "cenvero-str-ctl gateway group create lab --vip 203.0.113.5 --nodes node1,node2 --advert-interval 1s",
    ],
  ),
  args: {
    name: groupArg,
    vip: {
      type: "string",
      required: true,
      description: "The group's addresses: one IPv4, one IPv6 or one of each, comma-separated (no /len)",
      valueHint: "ADDR[,ADDR6]",
    },
    nodes: {
      type: "string",
      required: true,
      description: "2 to 8 nodes of the cluster (node list), comma-separated; on equal priority the first wins",
      valueHint: "A,B[,C]",
    },
    priority: {
      type: "string",
      description: `Priorities, 1-254, higher preferred (default ${DEFAULT_PRIORITY} for a node left out)`,
      valueHint: "NODE=N,...",
    },
    preempt: {
      type: "string",
      description: "on: a node of higher priority takes the role back from a lower one that holds it (default on)",
      valueHint: "on|off",
      options: ["on", "off"],
    },
    "advert-interval": {
      type: "string",
      description: `The heartbeat's interval, 20ms to 10s, e.g. 100ms, 0.5s (default ${DEFAULT_ADVERT_MS}ms)`,
      valueHint: "DURATION",
    },
    ...apiArg,
    ...outputArg,
  },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    const body = {
      name: args.name,
      vips: list(args.vip),
      nodes: list(args.nodes),
      ...(args.priority !== undefined ? { priority: parsePriorities(args.priority) } : {}),
      ...(args.preempt !== undefined ? { preempt: args.preempt === "on" } : {}),
      ...(args["advert-interval"] !== undefined ? { advertIntervalMs: parseInterval(args["advert-interval"]) } : {}),
    };
    const g = await client(args).createGatewayGroup(body);
    if (fmt !== "table") return printData(fmt, g);
    process.stdout.write(
      `created gateway group ${g.name}: ${vipsText(g.vips)} on ${nodesText(g)} (preempt ${g.preempt ? "on" : "off"}, advert ${ms(g.advertIntervalMs)}, longest takeover wait ${ms(g.masterDownMs)})\n`,
    );
  },
});

const group = defineCommand({
  meta: {
    name: "group",
    description: "Gateway groups: gateway nodes that back each other up for VIPs, one active at a time",
  },
  subCommands: {
    create,
    del: defineCommand({
      meta: meta("del", "Delete a gateway group: the node that holds it lets its VIPs go", [
        "cenvero-str-ctl gateway group del north",
      ]),
      args: { name: groupArg, ...apiArg },
      async run({ args }) {
        await client(args).deleteGatewayGroup(args.name);
        process.stdout.write(`deleted gateway group ${args.name}\n`);
      },
    }),
    list: defineCommand({
      meta: meta(
        "list",
        "List the gateway groups: VIPs, nodes with their priorities, preempt, advert, the active node",
        [
          "cenvero-str-ctl gateway group list",
          'cenvero-str-ctl gateway group list -o json | jq -r \'.[] | "\\(.name) \\(.active.node // "-")"\'',
        ],
      ),
      args: { ...apiArg, ...outputArg },
      async run({ args }) {
        const fmt = parseFormat(args.output);
        const gs = await client(args).gatewayGroups();
        if (fmt !== "table") return printData(fmt, gs);
        printGatewayGroups(gs);
      },
    }),
    show: defineCommand({
      meta: meta(
        "show",
        "Show a gateway group: VIPs, each node's priority and master-down, preempt, the active node and its epoch",
        ["cenvero-str-ctl gateway group show north", "cenvero-str-ctl gateway group show north -o yaml"],
      ),
      args: { name: groupArg, ...apiArg, ...outputArg },
      async run({ args }) {
        const fmt = parseFormat(args.output);
        const g = await client(args).gatewayGroup(args.name);
        if (fmt !== "table") return printData(fmt, g);
        printGatewayGroup(g);
      },
    }),
  },
});

export const gatewayCommand = defineCommand({
  meta: {
    name: "gateway",
    description:
      "Gateway groups (a cluster's gateway nodes backing each other up for VIPs) and this node's part in each",
  },
  subCommands: {
    group,
    status: defineCommand({
      meta: {
        name: "status",
        description:
          "Each gateway group: the active node, its epoch and why, this node's role; for a group of this node, every node's priority, role, when its advert was last heard and whether it reaches etcd",
        examples: [
          "cenvero-str-ctl gateway status",
          "# The groups this node holds:",
          "cenvero-str-ctl gateway status -o json | jq -r '.groups[] | select(.role == \"active\") | .name'",
        ],
      } as CommandMeta,
      args: { ...apiArg, ...outputArg },
      async run({ args }) {
        const fmt = parseFormat(args.output);
        const s = await client(args).gatewayStatus();
        if (fmt !== "table") return printData(fmt, s);
        printGatewayStatus(s);
      },
    }),
  },
});
