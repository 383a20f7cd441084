/** `network` and `endpoint` commands: clients of the agent's API. */
import { type CommandMeta, defineCommand } from "citty";
import type { EndpointView, NetworkView } from "../api/contract";
import type { BucketCounts } from "../datapath/shape-maps";
import { StratumError } from "../errors";
import { type EgressCap, formatRate, formatSize, parseCap } from "../model/egress-cap";
import { MACVTAP_MODES, type MacvtapMode } from "../model/topology";
import { client } from "./api-flags";
import { edit } from "./apply-commands";
import { allValues, GLOBAL_ARGS } from "./args";
import { formatBytes, outputArg, parseFormat, printData, printKv, printTable } from "./output";

/** --api-socket: a global flag; a command's table names it to read it as `args["api-socket"]`. */
export const apiArg = { "api-socket": GLOBAL_ARGS["api-socket"] } as const;

/** citty's meta plus examples, which `--help` prints after the options (src/cli/index.ts). */
export function meta(name: string, description: string, examples: string[] = []): CommandMeta {
  return { name, description, examples } as CommandMeta;
}

const UNIT_SECONDS: Record<string, number> = { d: 86_400, h: 3600, m: 60, s: 1 };

/** A duration as seconds: a bare number of seconds, or units (30s, 10m, 12h, 1d, 1h30m). */
export function parseDuration(v: string, what: string): number {
  const s = v.trim().toLowerCase();
  if (/^\d+$/.test(s)) return Number(s);
  const parts = [...s.matchAll(/(\d+)([dhms])/g)];
  if (!s || parts.map((p) => p[0]).join("") !== s)
    throw new StratumError("INVALID", `${what} must be seconds or a duration like 30s, 10m, 12h or 1d, not "${v}"`);
  return parts.reduce((a, p) => a + Number(p[1]) * (UNIT_SECONDS[p[2] as string] as number), 0);
}

/** Seconds as the largest whole units: 3600 -> 1h, 5400 -> 1h30m, 90 -> 1m30s. */
export function formatDuration(seconds: number): string {
  let rest = seconds;
  let out = "";
  for (const [u, n] of Object.entries(UNIT_SECONDS))
    if (rest >= n) {
      out += `${Math.floor(rest / n)}${u}`;
      rest %= n;
    }
  return out || "0s";
}

function int(v: unknown, what: string): number | undefined {
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new StratumError("INVALID", `${what} must be an integer, not "${String(v)}"`);
  return n;
}

function action(v: unknown): "allow" | "deny" | undefined {
  if (v === undefined) return undefined;
  if (v === "allow" || v === "deny") return v;
  throw new StratumError("INVALID", `--default-action must be allow or deny, not "${String(v)}"`);
}

/** key: value lines; a list value takes one line per item, aligned under the first. */
function printKvLists(pairs: Array<[string, string | string[]]>): void {
  const pad = " ".repeat(Math.max(...pairs.map(([k]) => k.length)) + 2);
  printKv(pairs.map(([k, v]) => [k, typeof v === "string" ? v : v.join(`\n${pad}`) || "-"]));
}

function showNetwork(n: NetworkView): void {
  printKvLists([
    ["name", n.name],
    ["cidr", n.cidr],
    ["gateway", n.gateway],
    ...(n.cidr6 ? ([["cidr6", `${n.cidr6} (gateway ${n.gateway6})`]] as Array<[string, string]>) : []),
    ["dhcp range", `${n.dhcpRange.first}-${n.dhcpRange.last}`],
    ["dhcp lease time", `${formatDuration(n.dhcpLeaseTime)} (${n.dhcpLeaseTime} s)`],
    ["dhcp routes", n.dhcpRoutes ?? []],
    ["dhcp options", n.dhcpOptions ?? []],
    ["dns zone", n.dnsZone],
    ["dns forwarders", n.dnsForwarders.join(", ") || "-"],
    ["mtu", String(n.mtu)],
    ...(n.vni !== null
      ? ([["vni", `${n.vni} (the overlay between the cluster's nodes)`]] as Array<[string, string]>)
      : []),
    ["default action", n.defaultAction],
    ["lan", n.extendToLan ? "extended onto the uplink's LAN (L2)" : "through the gateway only"],
    ["nat", natText(n)],
    ["egress cap", capText(n.egress, n.egressCounts, "of everything its endpoints send off the node")],
    ["profiles", `${n.profiles.claimed} claimed of ${n.profiles.total}`],
    ["endpoints", n.endpoints.join(", ") || "-"],
  ]);
}

/** How the network leaves the node: masqueraded (to what, per family) or routed. */
function natText(n: NetworkView): string {
  if (!n.nat) return "off: routed (a gateway announces the subnets over BGP)";
  const to = (v: string | null, fam: string) =>
    v ? `${fam} to ${v}` : `${fam}: no address to translate to (dropped, nat-untranslatable)`;
  const given = n.nat.addresses.length ? "" : " (the uplink's address)";
  return `masquerade at the uplink, ${to(n.nat.v4, "IPv4")}${n.cidr6 ? `, ${to(n.nat.v6, "IPv6")}` : ""}${given}; not announced`;
}

/** --nat [on|off] and --nat-address IP (repeatable, one per family, implies --nat) as the spec's
 * field: undefined when neither is given. */
function natField(args: { nat?: string }, rawArgs: string[]): { addresses: string[] } | null | undefined {
  const addrs = allValues(rawArgs, "nat-address");
  const v = args.nat;
  if (v === "off") {
    if (addrs.length) throw new StratumError("INVALID", "--nat off routes the network: --nat-address goes with --nat");
    return null;
  }
  if (v === undefined && !addrs.length) return undefined;
  return { addresses: addrs };
}

const natArgs = {
  nat: {
    type: "string",
    description:
      "Masquerade what the endpoints send off the node to the uplink's address (not announced over BGP); --nat off: routed",
    valueHint: "[on|off]",
    options: ["on", "off"],
    bare: "on",
  },
  "nat-address": {
    type: "string",
    description:
      "Masquerade to this address instead of the uplink's (one IPv4, one IPv6; repeat for both; implies --nat)",
    valueHint: "IP",
    repeatable: true,
  },
} as const;

/** A cap and what it did, in one line: "100mbit, burst 256k (of …): passed 1.2 GB, dropped 3,402 packets (5.1 MB)". */
function capText(cap: EgressCap | null | undefined, counts: BucketCounts | null | undefined, what: string): string {
  if (!cap) return "none";
  const head = `${formatRate(cap.rate)}, burst ${formatSize(cap.burst)} (${what})`;
  if (!counts) return head;
  return `${head}: passed ${formatBytes(counts.passed.bytes)}, dropped ${counts.dropped.packets.toLocaleString("en-US")} packets (${formatBytes(counts.dropped.bytes)})`;
}

const capArgs = {
  "egress-rate": {
    type: "string",
    description:
      "Egress cap: bit, kbit, mbit, gbit (or bps, kbps, mbps, gbps for bytes), e.g. 100mbit; 0 or none removes it",
    valueHint: "RATE",
  },
  "egress-burst": {
    type: "string",
    description: "Bucket depth of the cap, bytes with k, m or g (default: 300 ms at the rate, at least 128k)",
    valueHint: "SIZE",
  },
} as const;

const specArgs = {
  "dhcp-range": {
    type: "string",
    description: "DHCP pool FIRST-LAST (default: every usable address)",
    valueHint: "A-B",
  },
  "dns-zone": { type: "string", description: "DNS zone (default: NAME.internal)", valueHint: "ZONE" },
  "dns-forwarder": {
    type: "string",
    description: "Upstream DNS server",
    valueHint: "IP",
    repeatable: true,
  },
  mtu: { type: "string", description: "MTU of the network's interfaces (default 1500)", valueHint: "N" },
  "default-action": {
    type: "string",
    description: "Firewall default: allow or deny (default allow)",
    valueHint: "allow|deny",
    options: ["allow", "deny"],
  },
  "dhcp-lease-time": {
    type: "string",
    description: "How long DHCP leases last: seconds or 30s, 10m, 12h, 1d (default 1h)",
    valueHint: "DURATION",
  },
  "dhcp-route": {
    type: "string",
    description: "Extra route handed out by DHCP (option 121), GW inside the subnet",
    valueHint: "DST/LEN via GW",
    repeatable: true,
  },
  "dhcp-option": {
    type: "string",
    description: "DHCP option to hand out, TYPE ip, ips, text, u8, u16, u32, hex or bool",
    valueHint: "CODE=TYPE:VALUE",
    repeatable: true,
  },
} as const;

/** --egress-rate/--egress-burst as an API value: a cap, null (remove) or undefined (unchanged). */
function cap(args: { "egress-rate"?: string; "egress-burst"?: string }): EgressCap | null | undefined {
  return parseCap(args["egress-rate"], args["egress-burst"]);
}

/** The flags of `set`: create's, with what a change means in place of create's defaults. */
const setArgs = Object.fromEntries(
  Object.entries(specArgs).map(([k, d]) => [
    k,
    {
      ...d,
      description: `${d.description.replace(/ \(default[^)]*\)$/, "")}${
        "repeatable" in d ? ": the whole list is replaced; none clears it" : ""
      }`,
    },
  ]),
) as typeof specArgs;

/** The values of a repeatable list flag: undefined when not given, [] for `none`. */
function listFlag(rawArgs: string[], flag: string): string[] | undefined {
  const vs = allValues(rawArgs, flag);
  if (vs.length === 0) return undefined;
  if (vs.includes("none")) {
    if (vs.length > 1) throw new StratumError("INVALID", `--${flag} none clears the list: give it alone`);
    return [];
  }
  return vs;
}

/** The DHCP flags of create and set, as spec fields (lists only when given). */
function dhcpFields(args: { "dhcp-lease-time"?: string }, rawArgs: string[]): Record<string, unknown> {
  const routes = listFlag(rawArgs, "dhcp-route");
  const options = listFlag(rawArgs, "dhcp-option");
  return {
    dhcpLeaseTime:
      args["dhcp-lease-time"] === undefined ? undefined : parseDuration(args["dhcp-lease-time"], "--dhcp-lease-time"),
    dhcpRoutes: routes,
    dhcpOptions: options,
  };
}

const create = defineCommand({
  meta: meta("create", "Create a network: subnet, gateway on cnv-user-br0, one endpoint profile per usable address", [
    "cenvero-str-ctl network create --name app-net --cidr 10.20.0.0/24 --gateway 10.20.0.1",
    "cenvero-str-ctl network create --name lab --cidr 10.30.0.0/24 --gateway 10.30.0.1 --cidr6 fd00:30::/64 \\",
    "    --gateway6 fd00:30::1 --dns-forwarder 1.1.1.1 --dhcp-lease-time 12h \\",
    '    --dhcp-route "192.168.50.0/24 via 10.30.0.254" --dhcp-option 42=ips:10.30.0.1 --dhcp-option 66=text:tftp.lab',
    "cenvero-str-ctl network create --name tenant-a --cidr 10.40.0.0/24 --gateway 10.40.0.1 --egress-rate 500mbit",
  ]),
  args: {
    name: { type: "string", required: true, description: "Network name (DNS label)", valueHint: "NAME" },
    cidr: { type: "string", required: true, description: "IPv4 subnet, /16 to /30", valueHint: "CIDR" },
    gateway: { type: "string", required: true, description: "Gateway address inside the subnet", valueHint: "IP" },
    cidr6: {
      type: "string",
      description: "IPv6 subnet, /64 or larger (endpoint addresses: its first /64 + the EUI-64 of the profile MAC)",
      valueHint: "CIDR",
    },
    gateway6: { type: "string", description: "IPv6 gateway", valueHint: "IP" },
    "extend-to-lan": {
      type: "boolean",
      description:
        "The subnet is on the uplink's LAN too: frames cross the uplink at L2 and LAN hosts may use its addresses (default: workloads reach the LAN through their gateway only)",
      default: false,
    },
    ...natArgs,
    ...specArgs,
    ...capArgs,
    ...apiArg,
    ...outputArg,
  },
  async run({ args, rawArgs }) {
    const fmt = parseFormat(args.output);
    const nat = natField(args, rawArgs);
    const n = await client(args).createNetwork({
      name: args.name,
      cidr: args.cidr,
      gateway: args.gateway,
      cidr6: args.cidr6,
      gateway6: args.gateway6,
      dhcpRange: args["dhcp-range"],
      dnsZone: args["dns-zone"],
      dnsForwarders: listFlag(rawArgs, "dns-forwarder") ?? [],
      mtu: int(args.mtu, "--mtu"),
      defaultAction: action(args["default-action"]),
      ...dhcpFields(args, rawArgs),
      ...(cap(args) ? { egress: cap(args) } : {}),
      extendToLan: args["extend-to-lan"] === true,
      ...(nat ? { nat } : {}),
    });
    if (fmt !== "table") return printData(fmt, n);
    process.stdout.write(`created network ${n.name} (${n.cidr}, gateway ${n.gateway}, ${n.profiles.total} profiles)\n`);
  },
});

const list = defineCommand({
  meta: meta("list", "List networks: subnet, gateway, profiles claimed, endpoints, firewall default", [
    "cenvero-str-ctl network list",
    "cenvero-str-ctl network list -o json | jq -r '.[].name'",
  ]),
  args: { ...apiArg, ...outputArg },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    const ns = await client(args).listNetworks();
    if (fmt !== "table") return printData(fmt, ns);
    printTable(
      ["NAME", "CIDR", "GATEWAY", "PROFILES", "ENDPOINTS", "DEFAULT"],
      ns.map((n) => [
        n.name,
        n.cidr,
        n.gateway,
        `${n.profiles.claimed}/${n.profiles.total}`,
        String(n.endpoints.length),
        n.defaultAction,
      ]),
    );
  },
});

const show = defineCommand({
  meta: meta("show", "Show one network: its subnets, DHCP and DNS settings, egress cap, profiles and endpoints", [
    "cenvero-str-ctl network show app-net",
    "cenvero-str-ctl network show app-net -o yaml",
  ]),
  args: {
    name: { type: "positional", required: true, description: "Network", valueHint: "NAME" },
    ...apiArg,
    ...outputArg,
  },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    const n = await client(args).showNetwork(args.name);
    if (fmt !== "table") return printData(fmt, n);
    showNetwork(n);
  },
});

const set = defineCommand({
  meta: meta(
    "set",
    "Change a network's mutable fields (subnet and gateway are fixed); list flags replace the whole list",
    [
      "cenvero-str-ctl network set app-net --mtu 9000 --default-action deny",
      "cenvero-str-ctl network set app-net --dhcp-lease-time 1d --dhcp-option 66=text:tftp.lab",
      "# Two routes in place of the current ones; then none:",
      'cenvero-str-ctl network set app-net --dhcp-route "10.9.0.0/16 via 10.20.0.254" --dhcp-route "10.8.0.0/16 via 10.20.0.253"',
      "cenvero-str-ctl network set app-net --clear-dhcp-routes --clear-dhcp-options",
      "# No upstream DNS servers (names outside the zone then get SERVFAIL):",
      "cenvero-str-ctl network set app-net --dns-forwarder none",
      "# Cap what the network's endpoints send off the node; change it live; remove it:",
      "cenvero-str-ctl network set app-net --egress-rate 200mbit --egress-burst 1m",
      "cenvero-str-ctl network set app-net --egress-rate none",
      "# Masquerade at the uplink (no longer announced over BGP); to a given address; routed again:",
      "cenvero-str-ctl network set app-net --nat",
      "cenvero-str-ctl network set app-net --nat-address 192.0.2.10",
      "cenvero-str-ctl network set app-net --nat off",
    ],
  ),
  args: {
    name: { type: "positional", required: true, description: "Network", valueHint: "NAME" },
    ...setArgs,
    "clear-dns-forwarders": { type: "boolean", description: "Use no upstream DNS servers", default: false },
    "extend-to-lan": {
      type: "boolean",
      description:
        "Extend the network onto the uplink's LAN (frames cross the uplink at L2); --no-extend-to-lan: through the gateway only again",
    },
    ...natArgs,
    "clear-dhcp-routes": { type: "boolean", description: "Hand out no extra routes", default: false },
    "clear-dhcp-options": { type: "boolean", description: "Hand out no user DHCP options", default: false },
    ...capArgs,
    ...apiArg,
    ...outputArg,
  },
  async run({ args, rawArgs }) {
    const fmt = parseFormat(args.output);
    const fwd = listFlag(rawArgs, "dns-forwarder");
    const dhcp = dhcpFields(args, rawArgs);
    const patch = Object.fromEntries(
      Object.entries({
        dhcpRange: args["dhcp-range"],
        dnsZone: args["dns-zone"],
        dnsForwarders: fwd ?? (args["clear-dns-forwarders"] ? [] : undefined),
        mtu: int(args.mtu, "--mtu"),
        defaultAction: action(args["default-action"]),
        ...dhcp,
        // --clear-* with new items: the new items (the lists are replaced either way).
        dhcpRoutes: dhcp.dhcpRoutes ?? (args["clear-dhcp-routes"] ? [] : undefined),
        dhcpOptions: dhcp.dhcpOptions ?? (args["clear-dhcp-options"] ? [] : undefined),
        egress: cap(args),
        extendToLan: args["extend-to-lan"],
        nat: natField(args, rawArgs),
      }).filter(([, v]) => v !== undefined),
    );
    if (Object.keys(patch).length === 0)
      throw new StratumError(
        "INVALID",
        "nothing to change: give --mtu, --default-action, --dhcp-range, --dns-zone, --dns-forwarder, --dhcp-lease-time, --dhcp-route, --dhcp-option, --clear-dns-forwarders, --clear-dhcp-routes, --clear-dhcp-options, --egress-rate, --extend-to-lan or --nat",
      );
    const n = await client(args).setNetwork(args.name, patch);
    if (fmt !== "table") return printData(fmt, n);
    showNetwork(n);
  },
});

const del = defineCommand({
  meta: meta("delete", "Delete a network (refused while endpoints are attached, unless --force)", [
    "cenvero-str-ctl network delete app-net",
    "# Detach every endpoint first (their interfaces are removed), then delete:",
    "cenvero-str-ctl network delete app-net --force",
  ]),
  args: {
    name: { type: "positional", required: true, description: "Network", valueHint: "NAME" },
    force: { type: "boolean", description: "Detach its endpoints first", default: false },
    ...apiArg,
    ...outputArg,
  },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    await client(args).deleteNetwork(args.name, args.force);
    if (fmt !== "table") return printData(fmt, { deleted: args.name });
    process.stdout.write(`deleted network ${args.name}\n`);
  },
});

function showEndpoint(e: EndpointView): void {
  printKv([
    ["name", e.name],
    ["network", e.network],
    ["ip", e.ip],
    ...(e.ip6 ? ([["ip6", e.ip6]] as Array<[string, string]>) : []),
    ["mac", e.mac],
    ["kind", e.kind],
    ["interface", e.queues && e.queues > 1 ? `${e.interface} (multi-queue: ${e.queues} queues)` : e.interface],
    ...(e.netns ? ([["namespace", `${e.netns} (${e.ifname})`]] as Array<[string, string]>) : []),
    ...(e.macvtap
      ? ([
          ["macvtap", `${e.macvtap.mode} mode, on ${e.macvtap.lower}`],
          ["device", e.macvtap.device ?? "(on its node)"],
        ] as Array<[string, string]>)
      : []),
    ...(e.xsk
      ? ([["af_xdp", `VM end ${e.xsk.device}, slot ${e.xsk.base ?? "-"} of ${e.xsk.map}`]] as Array<[string, string]>)
      : []),
    ...(e.node ? ([["node", e.node]] as Array<[string, string]>) : []),
    ["group", e.group ?? "none (untagged)"],
    ["egress cap", capText(e.egress, e.egressCounts, "of everything it sends")],
  ]);
  if (e.drops) {
    const hit = Object.entries(e.drops).filter(([, n]) => n > 0);
    const total = hit.reduce((a, [, n]) => a + n, 0);
    process.stdout.write(`drops:     ${total === 0 ? "none" : total.toLocaleString("en-US")}\n`);
    if (hit.length)
      printTable(
        ["  REASON", "PACKETS"],
        hit.map(([r, n]) => [`  ${r}`, n.toLocaleString("en-US")]),
      );
  }
}

/** --macvtap MODE: one of the four, refused here with the list (the agent checks it too). */
function macvtapArg(v: unknown): MacvtapMode {
  const s = String(v ?? "").trim();
  if (!(MACVTAP_MODES as readonly string[]).includes(s))
    throw new StratumError("INVALID", `--macvtap ${String(v)}: give one of ${MACVTAP_MODES.join(", ")}`);
  return s as MacvtapMode;
}

/** --queues N: a whole number (the agent checks its range). */
function queuesArg(v: unknown): number {
  const s = String(v ?? "").trim();
  if (!/^\d{1,4}$/.test(s))
    throw new StratumError("INVALID", `--queues ${String(v)}: give a whole number of queues (1 to 256)`);
  return Number(s);
}

/** `network attach` and its other name, `endpoint attach`: the same command, examples by name. */
const attachCommand = (group: "network" | "endpoint") =>
  defineCommand({
    meta: meta(
      "attach",
      "Attach a container (--netns) or VM (--tap, --macvtap): claim a profile, create the interface with the profile's MAC, plug it into cnv-user-br0 (an extension bridge once that is full) with its programs",
      [
        "# A container: eth0 in its namespace, configured with address, route and MTU (else ask DHCP):",
        `cenvero-str-ctl ${group} attach app-net --name web-1 --netns web1 --configure`,
        "# A VM: a tap for its VMM to open, with a chosen address:",
        `cenvero-str-ctl ${group} attach app-net --name vm-1 --tap vm1tap --ip 10.20.0.50`,
        "# A VM with 4 vCPUs: a multi-queue tap its VMM opens 4 times (QEMU: -netdev tap,ifname=vm2tap,queues=4,...):",
        `cenvero-str-ctl ${group} attach app-net --name vm-2 --tap vm2tap --queues 4`,
        "# A VM on a macvtap: its VMM opens the device it prints (QEMU: -netdev tap,fd=N on an open /dev/tapX):",
        `cenvero-str-ctl ${group} attach app-net --name vm-3 --macvtap bridge`,
        "# A VM on AF_XDP: its VMM binds sockets to the VM end (endpoint handoff sends them):",
        `cenvero-str-ctl ${group} attach app-net --name vm-5 --xsk`,
        "# A VM on a tap systemd-networkd made (a .netdev of Kind=tap): taken, not made:",
        `cenvero-str-ctl ${group} attach app-net --name vm-4 --tap vm4tap --adopt`,
        "# In a microsegmentation group from the start:",
        `cenvero-str-ctl ${group} attach app-net --name db-1 --netns db1 --group prod/db`,
      ],
    ),
    args: {
      network: { type: "positional", required: true, description: "Network", valueHint: "NETWORK" },
      name: { type: "string", required: true, description: "Endpoint name", valueHint: "EP" },
      netns: {
        type: "string",
        description: "Container: network namespace (name under /run/netns or a path)",
        valueHint: "NS",
      },
      ifname: { type: "string", description: "Interface name inside the namespace (default eth0)", valueHint: "IF" },
      tap: { type: "string", description: "VM: name of the tap to create for it", valueHint: "IFNAME" },
      queues: {
        type: "string",
        description:
          "VM: queues its VMM opens on the tap (more than 1: a multi-queue tap, one queue per vCPU; default 1)",
        valueHint: "N",
      },
      macvtap: {
        type: "string",
        description:
          "VM: a macvtap in this mode: bridge (VMs reach each other directly), vepa (every frame through cnv-user-br0), private (no VM beside it reached), passthru (a lower device of its own); docs/networks.md",
        valueHint: "MODE",
      },
      xsk: {
        type: "boolean",
        description:
          "VM: on AF_XDP: a veth pair, the port on the bridge and the VM end its sockets bind to (endpoint handoff sends them; docs/networks.md)",
      },
      adopt: {
        type: "boolean",
        description:
          "VM: take the tap --tap names, made by another (systemd-networkd: export networkd), instead of making it; it must be down and on no bridge",
      },
      ip: { type: "string", description: "Address to claim (default: the next free one)", valueHint: "ADDR" },
      configure: {
        type: "boolean",
        description: "Set address, default route and MTU inside the namespace",
        default: false,
      },
      group: { type: "string", description: "Its microsegmentation group (default: none)", valueHint: "GROUP" },
      ...apiArg,
      ...outputArg,
    },
    async run({ args }) {
      const fmt = parseFormat(args.output);
      const e = await client(args).attach(args.network, {
        ...(args.group !== undefined ? { group: args.group } : {}),
        name: args.name,
        netns: args.netns,
        ifname: args.ifname,
        tap: args.tap,
        ...(args.queues !== undefined ? { queues: queuesArg(args.queues) } : {}),
        ...(args.macvtap !== undefined ? { macvtap: macvtapArg(args.macvtap) } : {}),
        ...(args.adopt ? { adopt: true } : {}),
        ...(args.xsk ? { xsk: true } : {}),
        ip: args.ip,
        configure: args.configure,
      });
      if (fmt !== "table") return printData(fmt, e);
      process.stdout.write(`attached ${e.name} to ${e.network}: ${e.ip} ${e.mac} on ${e.interface}\n`);
      if (e.macvtap?.device) process.stdout.write(`its VMM opens ${e.macvtap.device} (${e.macvtap.mode} mode)\n`);
      if (e.xsk)
        process.stdout.write(
          `its VMM binds AF_XDP sockets to ${e.xsk.device} (endpoint handoff ${e.name} sends them; map ${e.xsk.map}, slot ${e.xsk.base})\n`,
        );
    },
  });
const attach = attachCommand("network");

const detach = defineCommand({
  meta: meta("detach", "Detach an endpoint: programs off, interface removed, profile released", [
    "cenvero-str-ctl network detach app-net --name web-1",
  ]),
  args: {
    network: { type: "positional", required: true, description: "Network", valueHint: "NETWORK" },
    name: { type: "string", required: true, description: "Endpoint name", valueHint: "EP" },
    ...apiArg,
    ...outputArg,
  },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    await client(args).detach(args.network, args.name);
    if (fmt !== "table") return printData(fmt, { detached: args.name });
    process.stdout.write(`detached ${args.name} from ${args.network}\n`);
  },
});

export const networkCommand = defineCommand({
  meta: { name: "network", description: "Create, change and delete networks; attach and detach endpoints" },
  subCommands: { create, list, show, set, edit, delete: del, attach, detach },
});

export const endpointCommand = defineCommand({
  meta: {
    name: "endpoint",
    description:
      "Attach (as network attach), list and show endpoints; cap what one sends; move one to another node; hand a VM's queues to its VMM",
  },
  subCommands: {
    attach: attachCommand("endpoint"),
    handoff: defineCommand({
      meta: meta(
        "handoff",
        "Hand a VM's queues to its VMM: the agent opens them (every queue of a tap by default, or N; a macvtap's device once per queue; an AF_XDP VM's sockets, made and put in the sockets' map at its slot) and sends the descriptors over the VMM's unix stream socket in one message (SCM_RIGHTS), with a line of JSON about the endpoint; the VMM needs no privilege to open them",
        [
          "# The VMM (or its launcher) listens on /run/vm-1/net.sock; it receives 4 descriptors:",
          "cenvero-str-ctl endpoint handoff vm-1 --socket /run/vm-1/net.sock",
          "# Two queues of a macvtap, without the virtio-net header:",
          "cenvero-str-ctl endpoint handoff vm-3 --socket /run/vm-3/net.sock --queues 2 --no-vnet-hdr",
          "# An AF_XDP VM: QEMU takes them as -netdev af-xdp,...,inhibit=on,sock-fds=N:",
          "cenvero-str-ctl endpoint handoff vm-5 --socket /run/vm-5/net.sock",
        ],
      ),
      args: {
        name: { type: "positional", required: true, description: "The VM's endpoint", valueHint: "EP" },
        socket: {
          type: "string",
          required: true,
          description: "The VMM's listening unix stream socket (a path, or '@' and an abstract name)",
          valueHint: "PATH",
        },
        queues: {
          type: "string",
          description: "Queues to open and send (default: every queue of a tap; 1 of a macvtap)",
          valueHint: "N",
        },
        "vnet-hdr": {
          type: "boolean",
          default: true,
          description: "Open the queues with the virtio-net header, as VMMs expect (--no-vnet-hdr: bare frames)",
        },
        ...apiArg,
        ...outputArg,
      },
      async run({ args }) {
        const fmt = parseFormat(args.output);
        const r = await client(args).handoffEndpoint(args.name, {
          socket: args.socket,
          ...(args.queues !== undefined ? { queues: queuesArg(args.queues) } : {}),
          vnetHdr: args["vnet-hdr"],
        });
        if (fmt !== "table") return printData(fmt, r);
        process.stdout.write(
          `handed ${r.queues} queue(s) of ${r.interface} (${r.kind}${r.vnetHdr ? ", virtio-net header" : ""}) to ${r.socket}\n`,
        );
      },
    }),
    list: defineCommand({
      meta: meta("list", "List endpoints: network, address, MAC, kind, host interface and, in a cluster, node", [
        "cenvero-str-ctl endpoint list",
        "cenvero-str-ctl endpoint list --network app-net -o json",
      ]),
      args: {
        network: { type: "string", description: "Only this network", valueHint: "NAME" },
        ...apiArg,
        ...outputArg,
      },
      async run({ args }) {
        const fmt = parseFormat(args.output);
        const eps = await client(args).listEndpoints(args.network);
        if (fmt !== "table") return printData(fmt, eps);
        // A cluster's endpoints run on several nodes: which one is a column (a single node's have none).
        const nodes = eps.some((e) => e.node !== null);
        const groups = eps.some((e) => e.group !== null);
        printTable(
          [
            "NAME",
            "NETWORK",
            "IP",
            "MAC",
            "KIND",
            "INTERFACE",
            ...(nodes ? ["NODE"] : []),
            ...(groups ? ["GROUP"] : []),
          ],
          eps.map((e) => [
            e.name,
            e.network,
            e.ip,
            e.mac,
            e.kind,
            e.interface,
            // An endpoint of a node that is down is kept, and says so.
            ...(nodes ? [`${e.node ?? "-"}${e.nodeState && e.nodeState !== "ready" ? ` (${e.nodeState})` : ""}`] : []),
            ...(groups ? [e.group ?? "-"] : []),
          ]),
        );
      },
    }),
    set: defineCommand({
      meta: meta(
        "set",
        "Cap what one endpoint sends, on every path (to the host, to other endpoints, off the node); a change takes effect at once, flows go on",
        [
          "cenvero-str-ctl endpoint set web-1 --egress-rate 100mbit",
          "cenvero-str-ctl endpoint set web-1 --egress-rate 1gbit --egress-burst 4m",
          "cenvero-str-ctl endpoint set web-1 --egress-rate none",
        ],
      ),
      args: {
        name: { type: "positional", required: true, description: "Endpoint", valueHint: "EP" },
        ...capArgs,
        ...apiArg,
        ...outputArg,
      },
      async run({ args }) {
        const fmt = parseFormat(args.output);
        const egress = cap(args);
        if (egress === undefined) throw new StratumError("INVALID", "nothing to change: give --egress-rate");
        const e = await client(args).setEndpoint(args.name, { egress });
        if (fmt !== "table") return printData(fmt, e);
        showEndpoint(e);
      },
    }),
    move: defineCommand({
      meta: meta(
        "move",
        "Move an endpoint to another node of the cluster: same IP and MAC; the node it runs on hands over its connection tracking and unplugs its port, the new node plugs it (into the same namespace, or the VM's tap) and announces it; waits until it has (a node that is not alive: the new node takes it at once, without)",
        [
          "cenvero-str-ctl endpoint move web-1 --to node2",
          "cenvero-str-ctl endpoint move web-1 --to node2 --no-wait -o json",
        ],
      ),
      args: {
        name: { type: "positional", required: true, description: "Endpoint", valueHint: "EP" },
        to: { type: "string", required: true, description: "The node it moves to", valueHint: "NODE" },
        wait: {
          type: "boolean",
          default: true,
          description: "Wait until the new node has it (--no-wait: return once asked)",
        },
        timeout: { type: "string", default: "30", description: "Seconds to wait", valueHint: "S" },
        ...apiArg,
        ...outputArg,
      },
      async run({ args }) {
        const fmt = parseFormat(args.output);
        const seconds = Number(args.timeout);
        if (!Number.isFinite(seconds) || seconds <= 0)
          throw new StratumError("INVALID", `--timeout ${args.timeout}: a number of seconds above 0`);
        const api = client(args);
        const t0 = performance.now();
        const m = await api.moveEndpoint(args.name, args.to);
        if (!args.wait) {
          if (fmt !== "table") return printData(fmt, m);
          process.stdout.write(`asked: ${m.endpoint} moves from ${m.from} to ${m.to} (${m.state})\n`);
          return;
        }
        if (fmt === "table")
          process.stderr.write(
            `${m.endpoint}: ${m.forced ? `node ${m.from} is not alive: ${m.to} takes it without its flows` : `${m.from} hands it over to ${m.to}`}…\n`,
          );
        let last = m.state as string;
        for (;;) {
          const e = await api.showEndpoint(args.name);
          if (e.node === args.to && e.moving === null) {
            if (fmt !== "table") return printData(fmt, e);
            process.stdout.write(
              `moved ${e.name} to ${e.node} in ${Math.round(performance.now() - t0)} ms: ${e.ip} ${e.mac} on ${e.interface}\n`,
            );
            return;
          }
          if (e.moving && e.moving.state !== last && fmt === "table") {
            last = e.moving.state;
            process.stderr.write(`${e.name}: handed over to ${e.moving.to}, which plugs it…\n`);
          }
          if (e.moving === null && e.node !== args.to)
            throw new StratumError(
              "CONFLICT",
              `the move of ${args.name} ended without it: it runs on ${e.node} (another move, or a detach)`,
            );
          if (performance.now() - t0 > seconds * 1000)
            throw new StratumError(
              "UNAVAILABLE",
              `${args.name} has not moved within ${seconds} s (${e.moving ? e.moving.state : "no move"}, on ${e.node}): see both nodes' logs; the move goes on`,
            );
          await Bun.sleep(20);
        }
      },
    }),
    show: defineCommand({
      meta: meta(
        "show",
        "Show one endpoint: profile, interface and the drops on its port by reason (-o json: drops as {reason: count})",
        ["cenvero-str-ctl endpoint show web-1", "cenvero-str-ctl endpoint show web-1 -o json | jq .drops"],
      ),
      args: {
        name: { type: "positional", required: true, description: "Endpoint", valueHint: "EP" },
        ...apiArg,
        ...outputArg,
      },
      async run({ args }) {
        const fmt = parseFormat(args.output);
        const e = await client(args).showEndpoint(args.name);
        if (fmt !== "table") return printData(fmt, e);
        showEndpoint(e);
      },
    }),
  },
});
