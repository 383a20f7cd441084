/** `bgp`: the gateway's BGP speaker — this node's AS and router id, its peers (the operator's
 * routers), the sessions' state and what is announced. Clients of the agent's API; the
 * settings are the node's own, and only an agent started with --gateway runs sessions. */
import { resolve } from "node:path";
import { defineCommand } from "citty";
import type { BgpConfigView, BgpPeerView, BgpRoutesView } from "../api/contract";
import { StratumError } from "../errors";
import { client } from "./api-flags";
import { relativeTime } from "./dhcp-commands";
import { apiArg, meta } from "./network-commands";
import { outputArg, parseFormat, printData, printKv, printTable } from "./output";

function int(v: unknown, what: string): number | undefined {
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new StratumError("INVALID", `${what} must be an integer, not "${String(v)}"`);
  return n;
}

export function printBgpConfig(c: BgpConfigView): void {
  printKv([
    ["AS", String(c.asn)],
    [
      "router id",
      c.routerId ?? `${c.routerIdInUse ?? "none yet"} (derived: this node's address toward its first peer)`,
    ],
    ["graceful restart", c.restartTime ? `${c.restartTime} s (peers keep the routes while the agent restarts)` : "off"],
    [
      "default route",
      c.importDefault
        ? "imported from the peers (main table, proto bgp, metric 200)"
        : "not imported (received routes ignored)",
    ],
    [
      "speaker",
      c.gateway
        ? "running (this agent is a gateway)"
        : "not running: this agent is not a gateway (start it with --gateway)",
    ],
  ]);
}

const uptime = (p: BgpPeerView, now: number) =>
  p.establishedAt ? relativeTime(p.establishedAt, now).replace(/ ago$/, "") : "-";

export function printBgpPeers(ps: BgpPeerView[], now = Date.now()): void {
  if (!ps.length) {
    process.stdout.write("no BGP peers: bgp peer add NAME --address IP --asn N\n");
    return;
  }
  printTable(
    ["PEER", "ADDRESS", "AS", "STATE", "UP", "HOLD", "SENT", "LAST ERROR"],
    ps.map((p) => [
      p.md5 ? `${p.name} (md5)` : p.name,
      p.address,
      String(p.asn),
      p.state,
      uptime(p, now),
      p.holdTime === null ? `(${p.holdTimeConfigured})` : String(p.holdTime),
      String(p.prefixesSent),
      p.lastError ?? "-",
    ]),
  );
}

export function printBgpRoutes(r: BgpRoutesView): void {
  if (r.withheld) process.stdout.write(`nothing announced: ${r.withheld}\n`);
  else if (!r.wanted.length) process.stdout.write("nothing to announce: no routed network\n");
  else
    printTable(
      ["PREFIX", "ANNOUNCED TO"],
      r.wanted.map((p) => [
        p,
        r.peers
          .filter((x) => x.announced.includes(p))
          .map((x) => x.name)
          .join(", ") || "-",
      ]),
    );
}

const peerArg = { type: "positional", required: true, description: "Peer name", valueHint: "NAME" } as const;

export const bgpCommand = defineCommand({
  meta: {
    name: "bgp",
    description:
      "The gateway's BGP speaker: this node's AS, its peers (your routers), the sessions, the announced networks",
  },
  subCommands: {
    config: defineCommand({
      meta: meta(
        "config",
        "Show or set this node's AS, router id, graceful restart time and default-route import (what is not given stays); --off turns the speaker off (peers forgotten, routes withdrawn)",
        [
          "cenvero-str-ctl bgp config --asn 65001",
          "cenvero-str-ctl bgp config --asn 4200000001 --router-id 192.0.2.10 --restart-time 300",
          "# Take the default route the routers announce (main table, proto bgp, metric 200):",
          "cenvero-str-ctl bgp config --import-default",
          "cenvero-str-ctl bgp config --router-id auto      # derive it again",
          "cenvero-str-ctl bgp config",
          "cenvero-str-ctl bgp config --off",
        ],
      ),
      args: {
        asn: {
          type: "string",
          description: "This node's AS number (1-4294967294; private: 64512-65534, 4200000000-4294967294)",
          valueHint: "N",
        },
        "router-id": {
          type: "string",
          description: "BGP identifier, an IPv4 address; auto: this node's address toward its first peer (the default)",
          valueHint: "IP|auto",
        },
        "import-default": {
          type: "boolean",
          description:
            "Install a default route the peers announce (every other route they send is ignored); --no-import-default: stop",
        },
        "restart-time": {
          type: "string",
          description: "Seconds peers keep the routes while the agent restarts (0: no graceful restart; default 120)",
          valueHint: "S",
        },
        off: {
          type: "boolean",
          description: "Turn the speaker off: every session ends, routes withdrawn, peers forgotten",
        },
        ...apiArg,
        ...outputArg,
      },
      async run({ args }) {
        const fmt = parseFormat(args.output);
        const c = client(args);
        if (args.off) {
          if (args.asn || args["router-id"] || args["restart-time"] || args["import-default"] !== undefined)
            throw new StratumError("INVALID", "--off takes no other setting");
          await c.deleteBgpConfig();
          if (fmt === "table")
            process.stdout.write("BGP is off on this node: sessions ended, routes withdrawn, peers forgotten\n");
          return;
        }
        const change = {
          ...(args.asn !== undefined ? { asn: args.asn } : {}),
          ...(args["router-id"] !== undefined
            ? { routerId: args["router-id"] === "auto" ? null : args["router-id"] }
            : {}),
          ...(args["restart-time"] !== undefined ? { restartTime: int(args["restart-time"], "--restart-time") } : {}),
          ...(args["import-default"] !== undefined ? { importDefault: args["import-default"] === true } : {}),
        };
        const v = Object.keys(change).length ? await c.setBgpConfig(change) : await c.bgpConfig();
        if (fmt !== "table") return printData(fmt, v);
        printBgpConfig(v);
      },
    }),
    peer: defineCommand({
      meta: { name: "peer", description: "The routers this node speaks BGP with: add, del, list" },
      subCommands: {
        add: defineCommand({
          meta: meta("add", "Add a peer: the session starts at once on a gateway, and gets every routed network", [
            "cenvero-str-ctl bgp peer add tor1 --address 192.0.2.1 --asn 65000",
            "cenvero-str-ctl bgp peer add tor2 --address 2001:db8::1 --asn 65000 --hold-time 9",
            "# TCP MD5 (RFC 2385): the key in a file only root reads; the agent reads it, the state keeps its path",
            "install -m 600 /dev/null /etc/stratum/tor3.key && printf %s 'the-key' > /etc/stratum/tor3.key",
            "cenvero-str-ctl bgp peer add tor3 --address 192.0.2.3 --asn 65000 --password-file /etc/stratum/tor3.key",
          ]),
          args: {
            name: peerArg,
            address: {
              type: "string",
              required: true,
              description: "The router's address, on a subnet of this node",
              valueHint: "IP",
            },
            asn: { type: "string", required: true, description: "The router's AS number", valueHint: "N" },
            "hold-time": {
              type: "string",
              description: "Proposed hold time, s: 0 or 3-65535 (default 90)",
              valueHint: "S",
            },
            "password-file": {
              type: "string",
              description: "TCP MD5 (RFC 2385): a file holding the key (1-80 bytes), readable by its owner only",
              valueHint: "FILE",
            },
            ...apiArg,
            ...outputArg,
          },
          async run({ args }) {
            const fmt = parseFormat(args.output);
            const p = await client(args).addBgpPeer({
              name: args.name,
              address: args.address,
              asn: args.asn,
              ...(args["hold-time"] !== undefined ? { holdTime: int(args["hold-time"], "--hold-time") } : {}),
              ...(args["password-file"] ? { passwordFile: resolve(args["password-file"]) } : {}),
            });
            if (fmt !== "table") return printData(fmt, p);
            process.stdout.write(
              `added BGP peer ${p.name} (${p.address}, AS ${p.asn}): ${p.state}${p.lastError ? `; ${p.lastError}` : ""}\n`,
            );
          },
        }),
        del: defineCommand({
          meta: meta("del", "Remove a peer: its routes are withdrawn and the session ends", [
            "cenvero-str-ctl bgp peer del tor2",
          ]),
          args: { name: peerArg, ...apiArg },
          async run({ args }) {
            await client(args).deleteBgpPeer(args.name);
            process.stdout.write(`removed BGP peer ${args.name}\n`);
          },
        }),
        list: defineCommand({
          meta: meta("list", "List the peers with their sessions", [
            "cenvero-str-ctl bgp peer list",
            "cenvero-str-ctl bgp peer list -o json | jq -r '.[] | select(.state != \"established\") | .name'",
          ]),
          args: { ...apiArg, ...outputArg },
          async run({ args }) {
            const fmt = parseFormat(args.output);
            const ps = await client(args).bgpPeers();
            if (fmt !== "table") return printData(fmt, ps);
            printBgpPeers(ps);
          },
        }),
      },
    }),
    status: defineCommand({
      meta: meta(
        "status",
        "The sessions: state, uptime, hold time, prefixes sent, last error; exit 1 when a peer is not established",
        ["cenvero-str-ctl bgp status", "cenvero-str-ctl bgp status -o json | jq '.peers[] | {name, state, lastError}'"],
      ),
      args: { ...apiArg, ...outputArg },
      async run({ args }) {
        const fmt = parseFormat(args.output);
        const c = client(args);
        const [config, peers] = [await c.bgpConfig(), await c.bgpPeers()];
        if (fmt !== "table") printData(fmt, { config, peers });
        else {
          printBgpConfig(config);
          process.stdout.write("\n");
          printBgpPeers(peers);
        }
        if (peers.some((p) => p.state !== "established")) process.exitCode = 1;
      },
    }),
    routes: defineCommand({
      meta: meta("routes", "What is announced: every routed network's prefixes, and the peers that have each", [
        "cenvero-str-ctl bgp routes",
        "cenvero-str-ctl bgp routes -o json | jq -r '.wanted[]'",
      ]),
      args: { ...apiArg, ...outputArg },
      async run({ args }) {
        const fmt = parseFormat(args.output);
        const r = await client(args).bgpRoutes();
        if (fmt !== "table") return printData(fmt, r);
        printBgpRoutes(r);
      },
    }),
  },
});
