/** `lb`: the L4 load balancer's VIPs and their backends (docs/load-balancer.md). A client of the
 * agent's API. */
import { defineCommand } from "citty";
import type { VipView } from "../api/contract";
import { StratumError } from "../errors";
import { client } from "./api-flags";
import { apiArg, meta } from "./network-commands";
import { outputArg, parseFormat, printData, printKv, printTable } from "./output";

const num = (n: number) => n.toLocaleString("en-US");
const vipArg = { type: "positional", required: true, description: "VIP name", valueHint: "NAME" } as const;

/** An integer option, refused with its flag's name when it is not one. */
function int(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d{1,9}$/.test(v.trim())) throw new StratumError("INVALID", `${flag} must be a whole number, not "${v}"`);
  return Number(v);
}

/** Milliseconds: a bare number, or with a unit (500ms, 2s, 1m). */
export function parseMs(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const m = v.trim().match(/^(\d{1,7})(ms|s|m)?$/);
  if (!m)
    throw new StratumError("INVALID", `${flag} must be milliseconds or a duration like 500ms, 2s or 1m, not "${v}"`);
  return Number(m[1]) * ({ ms: 1, s: 1000, m: 60_000 }[m[2] ?? "ms"] as number);
}

const ms = (n: number) => (n % 1000 === 0 ? `${n / 1000}s` : `${n}ms`);

function checkText(v: VipView): string {
  const c = v.check;
  if (c.kind === "none") return "none (every backend takes flows)";
  const what = c.kind === "http" ? `http GET ${c.path} → ${c.expect}` : "tcp connect";
  return `${what}, every ${ms(c.intervalMs ?? 0)}, timeout ${ms(c.timeoutMs ?? 0)}, rise ${c.rise}, fall ${c.fall}`;
}

const where = (v: Pick<VipView, "address" | "port" | "proto">) =>
  `${v.address.includes(":") ? `[${v.address}]` : v.address}:${v.port}/${v.proto}`;

export function printVips(vs: VipView[]): void {
  if (!vs.length) {
    process.stdout.write("no VIPs: lb vip add NAME --address A --port P --proto tcp\n");
    return;
  }
  printTable(
    ["NAME", "VIP", "MODE", "BACKENDS", "HEALTHY", "ANNOUNCED", "FLOWS"],
    vs.map((v) => [
      v.name,
      where(v),
      v.mode,
      String(v.backends.length),
      String(v.healthy),
      v.announced ? "yes" : "no",
      num(v.backends.reduce((a, b) => a + b.hits.flows, 0)),
    ]),
  );
}

export function printVip(v: VipView): void {
  printKv([
    ["name", v.name],
    ["vip", where(v)],
    ["mode", v.mode],
    ["table", `${num(v.tableSize)} slots (Maglev)`],
    ["check", checkText(v)],
    ["announced", v.announced ? "yes (a backend is healthy)" : "no (no backend is healthy)"],
    ...(v.description ? ([["description", v.description]] as Array<[string, string]>) : []),
    ["created", v.createdAt],
  ]);
  process.stdout.write("\n");
  if (!v.backends.length) {
    process.stdout.write(`no backends: lb backend add ${v.name} --endpoint EP\n`);
    return;
  }
  printTable(
    ["ENDPOINT", "ADDRESS", "PORT", "WEIGHT", "HEALTH", "SINCE", "FLOWS", "PACKETS", "LAST CHECK"],
    v.backends.map((b) => [
      b.endpoint,
      b.address ?? "-",
      String(b.port),
      String(b.weight),
      b.health,
      b.since ? b.since.replace(/\.\d+Z$/, "Z") : "-",
      num(b.hits.flows),
      num(b.hits.packets),
      b.detail ?? "",
    ]),
  );
}

const vipAdd = defineCommand({
  meta: meta(
    "add",
    "Publish a VIP: an address outside every network (routed to the node: a gateway announces it over BGP while a backend is healthy), a port and a protocol. New flows spread over the healthy backends by Maglev consistent hashing; a flow keeps its backend. NAT mode: the destination becomes the backend's, its replies get the VIP back. DSR mode: the frame goes to the backend's MAC with the VIP kept; the backend answers the client directly from the VIP (docs/load-balancer.md#direct-server-return)",
    [
      "cenvero-str-ctl lb vip add web --address 192.0.2.80 --port 80 --proto tcp --check http --check-path /healthz",
      "cenvero-str-ctl lb vip add dns --address 2001:db8:53::1 --port 53 --proto udp --check none",
      "cenvero-str-ctl lb vip add edge --address 192.0.2.81 --port 443 --proto tcp --mode dsr",
    ],
  ),
  args: {
    name: vipArg,
    address: { type: "string", required: true, description: "IPv4 or IPv6, outside every network", valueHint: "IP" },
    port: { type: "string", required: true, description: "TCP or UDP port", valueHint: "PORT" },
    proto: { type: "string", required: true, description: "tcp or udp", valueHint: "tcp|udp", options: ["tcp", "udp"] },
    mode: {
      type: "string",
      description:
        "nat (default), or dsr: direct server return; the backend has the VIP on its loopback and answers from it, and this node's table holds the backends running on it",
      valueHint: "nat|dsr",
      options: ["nat", "dsr"],
    },
    "table-size": { type: "string", description: "Maglev table slots, a prime (default 65537)", valueHint: "N" },
    check: {
      type: "string",
      description: "Health check: tcp (default), http, or none",
      valueHint: "tcp|http|none",
      options: ["tcp", "http", "none"],
    },
    "check-path": { type: "string", description: "http: the path to GET (default /)", valueHint: "PATH" },
    "check-expect": { type: "string", description: "http: the healthy status (default 200)", valueHint: "CODE" },
    "check-interval": { type: "string", description: "Between checks (default 2s)", valueHint: "DURATION" },
    "check-timeout": { type: "string", description: "A check's time (default 1s)", valueHint: "DURATION" },
    "check-rise": { type: "string", description: "Passes in a row to become healthy (default 2)", valueHint: "N" },
    "check-fall": { type: "string", description: "Failures in a row to become unhealthy (default 3)", valueHint: "N" },
    description: { type: "string", description: "Free text, at most 200 characters", valueHint: "TEXT" },
    ...apiArg,
    ...outputArg,
  },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    const port = int(args.port, "--port") as number;
    const kind = args.check as "tcp" | "http" | "none" | undefined;
    if (kind !== "http" && (args["check-path"] !== undefined || args["check-expect"] !== undefined))
      throw new StratumError("INVALID", "--check-path and --check-expect go with --check http");
    const check = {
      ...(kind ? { kind } : {}),
      ...(args["check-path"] !== undefined ? { path: args["check-path"] } : {}),
      ...(args["check-expect"] !== undefined ? { expect: int(args["check-expect"], "--check-expect") } : {}),
      ...(args["check-interval"] !== undefined
        ? { intervalMs: parseMs(args["check-interval"], "--check-interval") }
        : {}),
      ...(args["check-timeout"] !== undefined ? { timeoutMs: parseMs(args["check-timeout"], "--check-timeout") } : {}),
      ...(args["check-rise"] !== undefined ? { rise: int(args["check-rise"], "--check-rise") } : {}),
      ...(args["check-fall"] !== undefined ? { fall: int(args["check-fall"], "--check-fall") } : {}),
    };
    const v = await client(args).createVip({
      name: args.name,
      address: args.address,
      port,
      proto: args.proto as "tcp" | "udp",
      ...(args.mode !== undefined ? { mode: args.mode as "nat" | "dsr" } : {}),
      ...(args["table-size"] !== undefined ? { tableSize: int(args["table-size"], "--table-size") } : {}),
      ...(Object.keys(check).length ? { check } : {}),
      ...(args.description !== undefined ? { description: args.description } : {}),
    });
    if (fmt !== "table") return printData(fmt, v);
    process.stdout.write(
      `published VIP ${v.name} ${where(v)} (no backends yet: lb backend add ${v.name} --endpoint EP)\n`,
    );
  },
});

export const lbCommand = defineCommand({
  meta: {
    name: "lb",
    description:
      "The L4 load balancer: VIPs (address, port, protocol) spread over endpoints by Maglev consistent hashing, health-checked, announced over BGP while a backend is healthy",
  },
  subCommands: {
    vip: defineCommand({
      meta: { name: "vip", description: "VIPs: add, del, list, show (with each backend's health and hits)" },
      subCommands: {
        add: vipAdd,
        del: defineCommand({
          meta: meta("del", "Delete a VIP: its packets are dropped from now on (lb-unpublished), its flows end", [
            "cenvero-str-ctl lb vip del web",
          ]),
          args: { name: vipArg, ...apiArg, ...outputArg },
          async run({ args }) {
            const fmt = parseFormat(args.output);
            await client(args).deleteVip(args.name);
            if (fmt !== "table") return printData(fmt, { deleted: args.name });
            process.stdout.write(`deleted VIP ${args.name}\n`);
          },
        }),
        list: defineCommand({
          meta: meta("list", "List the VIPs: backends, how many take flows on this node, whether announced", [
            "cenvero-str-ctl lb vip list",
            "cenvero-str-ctl lb vip list -o json | jq '.[] | select(.healthy == 0) | .name'",
          ]),
          args: { ...apiArg, ...outputArg },
          async run({ args }) {
            const fmt = parseFormat(args.output);
            const vs = await client(args).vips();
            if (fmt !== "table") return printData(fmt, vs);
            printVips(vs);
          },
        }),
        show: defineCommand({
          meta: meta("show", "Show a VIP: its check, and each backend's health, last check and hits on this node", [
            "cenvero-str-ctl lb vip show web",
          ]),
          args: { name: vipArg, ...apiArg, ...outputArg },
          async run({ args }) {
            const fmt = parseFormat(args.output);
            const v = await client(args).vip(args.name);
            if (fmt !== "table") return printData(fmt, v);
            printVip(v);
          },
        }),
      },
    }),
    backend: defineCommand({
      meta: { name: "backend", description: "A VIP's backends: endpoints of any network, on any node" },
      subCommands: {
        add: defineCommand({
          meta: meta(
            "add",
            "Add an endpoint as a backend: it takes new flows once its checks pass (rise in a row). --weight sets its share (0: no new flows, its flows stay)",
            [
              "cenvero-str-ctl lb backend add web --endpoint web-1 --port 8080",
              "cenvero-str-ctl lb backend add web --endpoint web-2 --port 8080 --weight 3",
            ],
          ),
          args: {
            name: vipArg,
            endpoint: { type: "string", required: true, description: "An endpoint", valueHint: "EP" },
            port: { type: "string", description: "Its port (default: the VIP's)", valueHint: "PORT" },
            weight: { type: "string", description: "0-1000 (default 1)", valueHint: "W" },
            ...apiArg,
            ...outputArg,
          },
          async run({ args }) {
            const fmt = parseFormat(args.output);
            const v = await client(args).addBackend(args.name, {
              endpoint: args.endpoint,
              ...(args.port !== undefined ? { port: int(args.port, "--port") } : {}),
              ...(args.weight !== undefined ? { weight: int(args.weight, "--weight") } : {}),
            });
            if (fmt !== "table") return printData(fmt, v);
            const b = v.backends.find((x) => x.endpoint === args.endpoint);
            process.stdout.write(
              `added backend ${args.endpoint} (${b?.address ?? "-"}:${b?.port ?? "-"}) to ${v.name}: ${v.check.kind === "none" ? "takes flows now" : "takes flows once its checks pass"}\n`,
            );
          },
        }),
        del: defineCommand({
          meta: meta(
            "del",
            "Remove an endpoint from a VIP (all its ports, or --port): its flows go to another backend at their next packet",
            ["cenvero-str-ctl lb backend del web --endpoint web-1"],
          ),
          args: {
            name: vipArg,
            endpoint: { type: "string", required: true, description: "An endpoint", valueHint: "EP" },
            port: { type: "string", description: "Only this port", valueHint: "PORT" },
            ...apiArg,
            ...outputArg,
          },
          async run({ args }) {
            const fmt = parseFormat(args.output);
            await client(args).deleteBackend(args.name, args.endpoint, int(args.port, "--port"));
            if (fmt !== "table")
              return printData(fmt, {
                removed: { vip: args.name, endpoint: args.endpoint, ...(args.port ? { port: Number(args.port) } : {}) },
              });
            process.stdout.write(`removed backend ${args.endpoint} from ${args.name}\n`);
          },
        }),
      },
    }),
  },
});
