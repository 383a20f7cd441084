/** `node` and `cluster` commands: the cluster's nodes (ready, unreachable, left), forgetting a
 * node that is gone, and how this node stands with etcd. Clients of the agent's API; a
 * single-node agent answers them with one line (not a cluster node, exit 2). `cluster init`
 * (cluster-init.ts) runs without an agent. */
import { type CommandMeta, defineCommand } from "citty";
import type { ClusterStatusView, NodeRemovalView, NodeView } from "../api/contract";
import { client } from "./api-flags";
import { clusterInitCommand } from "./cluster-init";
import { relativeTime } from "./dhcp-commands";
import { apiArg, meta } from "./network-commands";
import { outputArg, parseFormat, printData, printKv, printTable } from "./output";

/** What each state means, for people. */
const STATE_TEXT: Record<NodeView["state"], string> = {
  ready: "ready (its agent keeps its lease alive)",
  unreachable:
    "unreachable (its lease expired: its agent is down or cut off; its endpoints stay, marked with its name)",
  left: "left (its agent stopped cleanly)",
};

/** When the node entered its state, as far as the cluster knows (an expired lease leaves no time). */
function since(n: NodeView, now: number): string {
  const at = n.state === "ready" ? n.startedAt : n.state === "left" ? n.left : null;
  return at ? relativeTime(Date.parse(at), now) : "-";
}

export function printNodes(ns: NodeView[], now = Date.now()): void {
  printTable(
    ["NAME", "STATE", "ADDRESS", "MGMT", "VERSION", "ENDPOINTS", "SINCE"],
    ns.map((n) => [
      n.self ? `${n.name} (this node)` : n.name,
      n.state,
      n.address,
      n.mgmtAddress ?? "-",
      n.version ?? "-",
      String(n.endpoints),
      since(n, now),
    ]),
  );
}

export function printNode(n: NodeView, now = Date.now()): void {
  const at = (t: string | null) => (t ? `${t} (${relativeTime(Date.parse(t), now)})` : "-");
  printKv([
    ["name", n.self ? `${n.name} (this node)` : n.name],
    ["state", STATE_TEXT[n.state]],
    ["address", n.address],
    ["mgmt address", n.mgmtAddress ?? "-"],
    ["version", n.version ?? "-"],
    ["roles", n.roles.join(", ") || "-"],
    ["joined", at(n.joinedAt)],
    ["started", at(n.startedAt)],
    ...(n.left ? ([["left", at(n.left)]] as Array<[string, string]>) : []),
    ["endpoints", String(n.endpoints)],
  ]);
  if (n.state !== "ready" && !n.self)
    process.stdout.write(
      `\nIf it is gone for good, \`cenvero-str-ctl node remove ${n.name}\` forgets it and frees its endpoints' addresses.\n`,
    );
}

export function printRemoval(r: NodeRemovalView): void {
  const eps = r.endpoints;
  if (!eps.length) {
    process.stdout.write(`removed node ${r.node} (it had no endpoints)\n`);
    return;
  }
  process.stdout.write(`removed node ${r.node}; freed ${eps.length} endpoint(s) and their addresses:\n`);
  printTable(
    ["  ENDPOINT", "NETWORK", "IP", "IP6"],
    eps.map((e) => [`  ${e.name}`, e.network, e.ip, e.ip6 ?? "-"]),
  );
}

export function printClusterStatus(s: ClusterStatusView, nodes?: NodeView[]): void {
  const e = s.etcd;
  const members = e.members.map((m): [string, string] => [
    "  member",
    `${m.endpoint}: ${m.healthy ? `healthy, etcd ${m.version ?? "?"}${m.leader ? ", leader" : ""}` : `DOWN: ${m.error ?? "no answer"}`}`,
  ]);
  const count = (st: NodeView["state"]) => nodes?.filter((n) => n.state === st).length ?? 0;
  printKv([
    ["cluster", s.clusterId],
    ["this node", s.node],
    [
      "etcd",
      e.up
        ? `up; leader ${e.leader ?? "unknown"}; revision ${e.revision ?? "?"}`
        : "DOWN: no member answers; this node enforces its copy of the cluster state and refuses changes",
    ],
    ...members,
    [
      "mirror",
      `revision ${s.mirror.revision}, lag ${s.mirror.lag ?? "unknown"}; ${s.mirror.keys} key(s)${s.mirror.invalidKeys ? `, ${s.mirror.invalidKeys} set aside (invalid)` : ""}`,
    ],
    ["last resync", s.mirror.lastResync ?? "none"],
    [
      "watch",
      `${s.watch.connected ? "connected" : "not connected"}; ${s.watch.events} event(s), ${s.watch.resyncs} full listing(s) since start`,
    ],
    [
      "lease",
      s.lease.id
        ? `${s.lease.id}, ttl ${s.lease.ttl} s; ${s.lease.renewals} renewal(s), ${s.lease.missed} missed, registered again ${s.lease.reRegistered} time(s)`
        : "none yet (registering)",
    ],
    ...(nodes
      ? ([
          [
            "nodes",
            `${nodes.length}: ${count("ready")} ready, ${count("unreachable")} unreachable, ${count("left")} left`,
          ],
        ] as Array<[string, string]>)
      : []),
  ]);
}

const nodeArg = { type: "positional", required: true, description: "Node name", valueHint: "NODE" } as const;

export const nodeCommand = defineCommand({
  meta: { name: "node", description: "The cluster's nodes: list, show, forget one that is gone" },
  subCommands: {
    list: defineCommand({
      meta: meta(
        "list",
        "List the cluster's nodes: ready (lease kept alive), unreachable (lease expired), left (stopped cleanly)",
        [
          "cenvero-str-ctl node list",
          "# The nodes whose lease expired, for a script:",
          "cenvero-str-ctl node list -o json | jq -r '.[] | select(.state == \"unreachable\") | .name'",
        ],
      ),
      args: { ...apiArg, ...outputArg },
      async run({ args }) {
        const fmt = parseFormat(args.output);
        const ns = await client(args).listNodes();
        if (fmt !== "table") return printData(fmt, ns);
        printNodes(ns);
      },
    }),
    show: defineCommand({
      meta: meta("show", "Show one node: state, addresses, version, when it joined and started, its endpoints", [
        "cenvero-str-ctl node show node-b",
        "cenvero-str-ctl node show node-b -o yaml",
      ]),
      args: { name: nodeArg, ...apiArg, ...outputArg },
      async run({ args }) {
        const fmt = parseFormat(args.output);
        const n = await client(args).showNode(args.name);
        if (fmt !== "table") return printData(fmt, n);
        printNode(n);
      },
    }),
    remove: defineCommand({
      meta: meta(
        "remove",
        "Forget a node that is gone (unreachable or left), and its endpoints: their addresses are free again. Refused while it is alive",
        [
          "# node-b died and will not come back: forget it, free the addresses of its endpoints:",
          "cenvero-str-ctl node remove node-b",
          "# Refused while node-b's agent runs: stop it there first (systemctl stop stratum), then remove it.",
          "cenvero-str-ctl node remove node-b -o json | jq -r '.endpoints[].ip'",
        ],
      ),
      args: { name: nodeArg, ...apiArg, ...outputArg },
      async run({ args }) {
        const fmt = parseFormat(args.output);
        const r = await client(args).removeNode(args.name);
        if (fmt !== "table") return printData(fmt, r);
        printRemoval(r);
      },
    }),
  },
});

export const clusterCommand = defineCommand({
  meta: {
    name: "cluster",
    description: "This node's cluster: make one from a node's state; etcd's health, the node's copy of the state",
  },
  subCommands: {
    init: clusterInitCommand,
    status: defineCommand({
      meta: {
        name: "status",
        description:
          "Show etcd's members and health, leader and revision, this node's mirror (revision, lag, last resync), watch and lease; exit 1 when etcd does not answer",
        examples: [
          "cenvero-str-ctl cluster status",
          "# How far this node's copy of the cluster state is behind etcd (0: in step):",
          "cenvero-str-ctl cluster status -o json | jq .mirror.lag",
          "# Exit 0 when etcd answers, 1 when no member does (the node then enforces its copy and refuses changes):",
          "cenvero-str-ctl cluster status > /dev/null || echo 'etcd is away'",
        ],
      } as CommandMeta,
      args: { ...apiArg, ...outputArg },
      async run({ args }) {
        const fmt = parseFormat(args.output);
        const c = client(args);
        const s = await c.clusterStatus();
        if (fmt !== "table") printData(fmt, s);
        else printClusterStatus(s, await c.listNodes());
        return s.etcd.up ? 0 : 1;
      },
    }),
  },
});
