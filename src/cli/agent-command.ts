/** `agent`: the resident daemon (normally run by systemd: deploy/cenvero-stratum.service). */
import { type CommandMeta, defineCommand } from "citty";
import { DEFAULT_RECONCILE_INTERVAL, runAgent } from "../agent/daemon";
import { DEFAULT_API_SOCKET } from "../api/api-client";
import { StratumError } from "../errors";
import { DEFAULT_PIN_ROOT } from "./datapath-commands";

export const agentCommand = defineCommand({
  meta: {
    name: "agent",
    description: "Run the node agent: restore networks and endpoints, keep the kernel reconciled, serve the API",
    examples: [
      "# Normally the systemd unit (deploy/cenvero-stratum.service) runs it:",
      "cenvero-str-ctl agent --uplink eth1",
      "# Also serve the API on TCP for scripts elsewhere (the token file must be mode 0600):",
      "cenvero-str-ctl agent --uplink eth1 --api-listen 10.0.0.5:7443 --api-token-file /etc/stratum/api-token",
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
    "api-listen": {
      type: "string",
      description: "Also serve the API on TCP (needs --api-token-file)",
      valueHint: "HOST:PORT",
    },
    "api-token-file": {
      type: "string",
      description: "File holding the bearer token for --api-listen",
      valueHint: "FILE",
    },
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
    await runAgent({
      stateDir: args["state-dir"],
      pinRoot: args["pin-root"],
      apiSocket: args["api-socket"],
      uplink: args.uplink,
      apiListen: args["api-listen"],
      apiTokenFile: args["api-token-file"],
      reconcileInterval: Number(interval),
    });
  },
});
