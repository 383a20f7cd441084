/** `dhcp` commands: the leases the networks' DHCP servers handed out. A client of the
 * agent's API; a network's DHCP settings are `network create`/`network set` flags. */
import { type CommandMeta, defineCommand } from "citty";
import type { LeaseView } from "../api/contract";
import { client } from "./api-flags";
import { apiArg, meta } from "./network-commands";
import { outputArg, parseFormat, printData, printTable } from "./output";

/** What a lease is now: a bound lease past its expiry is expired (the server forgets it lazily). */
export function leaseState(l: Pick<LeaseView, "state" | "active">): string {
  return l.state === "bound" && !l.active ? "expired" : l.state;
}

/** A moment relative to `now`, in its largest unit: "in 59m", "3m ago", "in 2d", "now". */
export function relativeTime(at: number, now = Date.now()): string {
  const s = Math.round((at - now) / 1000);
  const a = Math.abs(s);
  if (a < 1) return "now";
  const text =
    a < 60
      ? `${a}s`
      : a < 3600
        ? `${Math.floor(a / 60)}m`
        : a < 86_400
          ? `${Math.floor(a / 3600)}h${a % 3600 >= 60 ? `${Math.floor((a % 3600) / 60)}m` : ""}`
          : `${Math.floor(a / 86_400)}d${a % 86_400 >= 3600 ? `${Math.floor((a % 86_400) / 3600)}h` : ""}`;
  return s > 0 ? `in ${text}` : `${text} ago`;
}

export function printLeases(ls: LeaseView[], now = Date.now()): void {
  printTable(
    ["NETWORK", "ENDPOINT", "MAC", "FAMILY", "ADDRESS", "HOSTNAME", "STATE", "EXPIRES"],
    ls.map((l) => [
      l.network,
      l.endpoint ?? "-",
      l.mac,
      `v${l.family}`,
      l.ip,
      l.hostname ?? "-",
      leaseState(l),
      relativeTime(Date.parse(l.expiresAt), now),
    ]),
  );
}

const leases = defineCommand({
  meta: {
    ...meta(
      "leases",
      "List DHCP and DHCPv6 leases: who holds which address, in what state (bound, expired, released, declined), until when",
      [
        "# Addresses are the endpoints' profiles: a lease records what a client was told and until when.",
        "cenvero-str-ctl dhcp leases",
        "cenvero-str-ctl dhcp leases --network app-net",
        "cenvero-str-ctl dhcp leases -o json | jq '.[] | select(.active) | .ip'",
      ],
    ),
    argumentHint: "select a network with --network NAME",
  } as CommandMeta,
  args: {
    network: { type: "string", description: "Only this network", valueHint: "NAME" },
    ...apiArg,
    ...outputArg,
  },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    const ls = await client(args).dhcpLeases(args.network || undefined);
    if (fmt !== "table") return printData(fmt, ls);
    if (ls.length === 0) {
      process.stdout.write(`no leases${args.network ? ` in ${args.network}` : ""}\n`);
      return;
    }
    printLeases(ls);
  },
});

export const dhcpCommand = defineCommand({
  meta: {
    name: "dhcp",
    description: "The networks' DHCP/DHCPv6 servers: list leases (lease time, routes and options: network create/set)",
  },
  subCommands: { leases },
});
