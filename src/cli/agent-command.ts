/** `agent`: the resident daemon (normally run by systemd: deploy/cenvero-stratum.service). */

import { isIP } from "node:net";
import { type CommandMeta, defineCommand } from "citty";
import type { ClusterJoin } from "../agent/daemon";
import { DEFAULT_RECONCILE_INTERVAL } from "../agent/defaults";
import { DEFAULT_API_SOCKET } from "../api/api-client";
import { checkNodeName, parseEtcdEndpoints } from "../cluster/flags";
import { StratumError } from "../errors";
import { natPortRange } from "../services/nat";
import { DEFAULT_PIN_ROOT } from "./datapath-commands";
import { etcdArgs, etcdCredentialFlags } from "./etcd-args";

export const agentCommand = defineCommand({
  meta: {
    name: "agent",
    description: "Run the node agent: restore networks and endpoints, keep the kernel reconciled, serve the API",
    examples: [
      "# Normally the systemd unit (deploy/cenvero-stratum.service) runs it:",
      "cenvero-str-ctl agent --uplink eth1",
      "# Also serve the API on TCP for scripts elsewhere (the token file must be mode 0600):",
      "cenvero-str-ctl agent --uplink eth1 --api-listen 10.0.0.5:7443 --api-token-file /etc/stratum/api-token",
      "# A node of a cluster whose state is in etcd (every node runs the same line with its own name and address):",
      "cenvero-str-ctl agent --uplink eth1 --cluster http://10.0.0.2:2379,http://10.0.0.3:2379 --node-name node-a --node-address 10.0.0.5",
    ],
  } as CommandMeta,
  args: {
    "state-dir": {
      type: "string",
      default: "/var/lib/stratum",
      description: "State database directory",
      valueHint: "DIR",
    },
    "pin-root": {
      type: "string",
      default: DEFAULT_PIN_ROOT,
      description: "bpffs directory for Stratum's pins",
      valueHint: "DIR",
    },
    "api-socket": {
      type: "string",
      default: DEFAULT_API_SOCKET,
      description: "Unix socket of the API (mode 0600)",
      valueHint: "PATH",
    },
    uplink: { type: "string", description: "Uplink NIC to add to cnv-user-br0", valueHint: "IFACE" },
    gateway: {
      type: "boolean",
      description:
        "This node is a gateway: its BGP speaker announces the networks to the peers set with `bgp peer add` (docs/gateway.md)",
    },
    "withdraw-on-stop": {
      type: "boolean",
      description:
        "A gateway's stop withdraws its routes (default: they stay at the peers for the graceful restart time, so a restart or upgrade does not blackhole)",
    },
    "nat-ports": {
      type: "string",
      description:
        "Ports masquerading gives translated flows (default: 1024 up to the kernel's ephemeral range, 1024-32767); never inside net.ipv4.ip_local_port_range",
      valueHint: "LO-HI",
    },
    "api-listen": {
      type: "string",
      description: "Also serve the API on TCP (needs --api-token-file)",
      valueHint: "HOST:PORT",
    },
    "api-token-file": {
      type: "string",
      description: "File holding the bearer token for --api-listen and --web-listen",
      valueHint: "FILE",
    },
    "web-listen": {
      type: "string",
      description:
        "Serve the read-only web view on TCP (needs --api-token-file: its data needs the same token); it is always on the API socket under /web/",
      valueHint: "HOST:PORT",
    },
    cluster: {
      type: "string",
      description: "Join a cluster: its etcd client URLs, comma-separated (needs --node-name and --node-address)",
      valueHint: "URL[,URL…]",
    },
    "node-name": { type: "string", description: "This node's name in the cluster", valueHint: "NAME" },
    "node-address": {
      type: "string",
      description: "This node's underlay (VTEP) address, as the other nodes reach it",
      valueHint: "ADDR",
    },
    ...etcdArgs,
    "reconcile-interval": {
      type: "string",
      default: String(DEFAULT_RECONCILE_INTERVAL),
      description:
        "Seconds between full reconcile passes, besides the runs rtnetlink notices of drift make (0: no periodic pass)",
      valueHint: "SECONDS",
    },
  },
  async run({ args }) {
    const interval = args["reconcile-interval"].trim();
    if (!/^\d+(\.\d+)?$/.test(interval))
      throw new StratumError(
        "INVALID",
        `--reconcile-interval ${interval}: give a number of seconds (0: no periodic pass)`,
      );
    // Checked before anything is opened or created: a bad range leaves the node untouched.
    if (args["nat-ports"] !== undefined) natPortRange(args["nat-ports"]);
    const clusterFlags = [
      "node-name",
      "node-address",
      "etcd-ca",
      "etcd-cert",
      "etcd-key",
      "etcd-user",
      "etcd-password-file",
    ] as const;
    let cluster: ClusterJoin | undefined;
    if (args.cluster !== undefined) {
      const endpoints = parseEtcdEndpoints(args.cluster);
      const name = args["node-name"];
      const address = args["node-address"];
      if (!name)
        throw new StratumError("INVALID", "--cluster needs --node-name NAME (this node's name in the cluster)");
      checkNodeName(name);
      if (!address)
        throw new StratumError("INVALID", "--cluster needs --node-address ADDR (this node's underlay address)");
      if (!isIP(address)) throw new StratumError("INVALID", `--node-address ${address}: not an IPv4 or IPv6 address`);
      cluster = {
        endpoints,
        nodeName: name,
        nodeAddress: address,
        ...etcdCredentialFlags(args),
      };
    } else
      for (const f of clusterFlags)
        if (args[f] !== undefined)
          throw new StratumError("INVALID", `--${f} is for a cluster node: give --cluster too`);
    // The agent is loaded only to run it: every other command starts without it.
    const { runAgent } = await import("../agent/daemon");
    await runAgent({
      stateDir: args["state-dir"],
      pinRoot: args["pin-root"],
      apiSocket: args["api-socket"],
      uplink: args.uplink,
      gateway: args.gateway === true,
      withdrawOnStop: args["withdraw-on-stop"] === true,
      natPorts: args["nat-ports"],
      apiListen: args["api-listen"],
      apiTokenFile: args["api-token-file"],
      webListen: args["web-listen"],
      reconcileInterval: Number(interval),
      cluster,
    });
  },
});
