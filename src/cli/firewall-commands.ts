/** `firewall` commands: a network's rules (or, with --global, the node-wide scope's), its
 * default action, the rule set as YAML, and the node's blocklist. Clients of the agent's
 * API; files (YAML, blocklists) are read and checked here first, so errors name their lines. */
import { readFileSync } from "node:fs";
import { type CommandMeta, defineCommand } from "citty";
import type { BodyIn, RuleListView, RuleView } from "../api/contract";
import type { Hits } from "../datapath/firewall-tables";
import { StratumError } from "../errors";
import { parseRuleSetYaml, ruleSetYaml } from "../model/ruleset";
import { client } from "./api-flags";
import { apiArg } from "./network-commands";
import { formatBytes, outputArg, parseFormat, printData, printTable } from "./output";

/** citty's meta plus examples, which `--help` prints after the options (src/cli/index.ts). */
function meta(name: string, description: string, examples: string[] = []): CommandMeta {
  return { name, description, examples } as CommandMeta;
}

const globalArg = {
  global: {
    type: "boolean",
    description: "The node-wide (global) scope instead of a network: give no NETWORK",
    default: false,
  },
} as const;

const netArg = {
  network: {
    type: "positional",
    required: false,
    description: "Network whose rules to use (or --global)",
    valueHint: "NETWORK",
  },
} as const;

/** The scope (`global` or a network) and the remaining positional arguments, which must be
 * exactly `want` (their names, for messages). */
function scoped(args: { _: string[]; global?: boolean }, want: string[]): [string, string[]] {
  const pos = [...args._];
  let scope: string;
  if (args.global) scope = "global";
  else {
    const n = pos.shift();
    if (n === undefined) throw new StratumError("INVALID", "give a NETWORK, or --global for the node-wide scope");
    scope = n;
  }
  if (pos.length < want.length) throw new StratumError("INVALID", `missing ${want[pos.length]}`);
  if (pos.length > want.length)
    throw new StratumError(
      "INVALID",
      `unexpected argument "${pos[want.length]}"${args.global ? " (--global takes the place of NETWORK)" : ""}`,
    );
  return [scope, pos];
}

function int(v: unknown, what: string): number {
  const s = String(v ?? "").trim();
  if (!/^\d+$/.test(s)) throw new StratumError("INVALID", `${what} must be a positive integer, not "${String(v)}"`);
  return Number(s);
}

const where = (scope: string) => (scope === "global" ? "the global scope" : scope);
const num = (n: number) => n.toLocaleString("en-US");

const bytes = (n: number) => formatBytes(n);

const hitText = (h: Hits) => `${num(h.packets)} packets, ${bytes(h.bytes)}`;

/** Ports or ICMP type/code of a rule, as one table cell. */
function matchCell(r: Record<string, unknown>): string {
  const parts: string[] = [];
  if (r.sport != null) parts.push(`sport ${r.sport}`);
  if (r.dport != null) parts.push(`dport ${r.dport}`);
  if (r["icmp-type"] != null) parts.push(`type ${r["icmp-type"]}`);
  return parts.join(" ") || "*";
}

function printRules(v: RuleListView): void {
  printTable(
    ["ID", "PRIORITY", "DIRECTION", "SRC", "DST", "PROTO", "PORTS/ICMP", "ACTION", "LOG", "PACKETS", "BYTES"],
    v.rules.map((r: RuleView) => [
      String(r.id),
      String(r.priority),
      String(r.direction),
      String(r.src ?? "*"),
      String(r.dst ?? "*"),
      String(r.proto),
      matchCell(r),
      String(r.action),
      r.log ? "yes" : "-",
      num(r.hits.packets),
      bytes(r.hits.bytes),
    ]),
  );
  process.stdout.write(`default: ${v.default} (${hitText(v.defaultHits)})\n`);
}

// ---- rules ----------------------------------------------------------------------------------

const ruleAdd = defineCommand({
  meta: meta(
    "add",
    "Add a rule and print its id: the first rule that matches (lowest priority number first) decides, else the default action",
    [
      "# Fields left out match anything; --direction is from the endpoint's view (ingress: to it).",
      "cenvero-str-ctl firewall rule add app-net --priority 100 --proto tcp --dport 443 --action allow",
      "cenvero-str-ctl firewall rule add app-net --priority 200 --direction ingress --src 10.9.0.0/16 --action reject --log",
      "cenvero-str-ctl firewall rule add app-net --priority 300 --proto icmp --icmp-type 8 --action allow",
      "cenvero-str-ctl firewall rule add --global --priority 10 --src 2001:db8::/32 --action deny",
    ],
  ),
  args: {
    ...netArg,
    ...globalArg,
    priority: {
      type: "string",
      required: true,
      description: "Order of evaluation, 1-1000000, lowest first; unique in the scope",
      valueHint: "N",
    },
    direction: {
      type: "string",
      description: "From the endpoint's view: ingress (to it), egress (from it) or both",
      default: "both",
      valueHint: "ingress|egress|both",
      options: ["ingress", "egress", "both"],
    },
    src: { type: "string", description: "Source address or CIDR (IPv4 or IPv6)", valueHint: "CIDR" },
    dst: { type: "string", description: "Destination address or CIDR", valueHint: "CIDR" },
    proto: {
      type: "string",
      description: "tcp, udp, icmp, icmpv6 or any",
      default: "any",
      valueHint: "tcp|udp|icmp|icmpv6|any",
      options: ["tcp", "udp", "icmp", "icmpv6", "any"],
    },
    sport: { type: "string", description: "Source port or range (tcp/udp)", valueHint: "A[-B]" },
    dport: { type: "string", description: "Destination port or range (tcp/udp)", valueHint: "A[-B]" },
    "icmp-type": { type: "string", description: "ICMP type, optionally /code (icmp/icmpv6)", valueHint: "T[/C]" },
    action: {
      type: "string",
      required: true,
      description: "allow, deny (drop silently) or reject (TCP reset / ICMP administratively prohibited)",
      valueHint: "allow|deny|reject",
      options: ["allow", "deny", "reject"],
    },
    log: {
      type: "boolean",
      description: "Report each packet this rule classifies (shown by `monitor`)",
      default: false,
    },
    ...apiArg,
    ...outputArg,
  },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    const [scope] = scoped(args, []);
    const spec: Record<string, unknown> = {
      priority: int(args.priority, "--priority"),
      direction: args.direction,
      proto: args.proto,
      action: args.action,
      log: args.log,
    };
    for (const k of ["src", "dst", "sport", "dport", "icmp-type"] as const)
      if (args[k] !== undefined) spec[k] = args[k];
    // The agent validates the fields (and names a bad one): here they go as given.
    const r = await client(args).addRule(scope, spec as BodyIn<"addRule">);
    if (fmt !== "table") return printData(fmt, r);
    process.stdout.write(`${r.id}\n`);
  },
});

const ruleDel = defineCommand({
  meta: meta("del", "Delete a rule by id (`firewall rule list` shows the ids)", [
    "cenvero-str-ctl firewall rule del app-net 7",
    "cenvero-str-ctl firewall rule del --global 3",
  ]),
  args: {
    ...netArg,
    id: { type: "positional", required: false, description: "Rule id", valueHint: "ID" },
    ...globalArg,
    ...apiArg,
    ...outputArg,
  },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    const [scope, [id]] = scoped(args, ["ID"]);
    const n = int(id, "ID");
    await client(args).deleteRule(scope, n);
    if (fmt !== "table") return printData(fmt, { scope, deleted: n });
    process.stdout.write(`deleted rule ${n} of ${where(scope)}\n`);
  },
});

const ruleList = defineCommand({
  meta: meta("list", "List rules in priority order with their hit counters, and the default action's", [
    "# Hits count classified packets: the first packets of flows (replies pass as state) and stateless ones.",
    "cenvero-str-ctl firewall rule list app-net",
    "cenvero-str-ctl firewall rule list --global -o json",
  ]),
  args: { ...netArg, ...globalArg, ...apiArg, ...outputArg },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    const [scope] = scoped(args, []);
    const v = await client(args).listRules(scope);
    if (fmt !== "table") return printData(fmt, v);
    printRules(v);
  },
});

const ruleMove = defineCommand({
  meta: meta("move", "Give a rule another priority (its id and counters stay)", [
    "cenvero-str-ctl firewall rule move app-net 7 --priority 50",
  ]),
  args: {
    ...netArg,
    id: { type: "positional", required: false, description: "Rule id", valueHint: "ID" },
    ...globalArg,
    priority: { type: "string", required: true, description: "The new priority (unique in the scope)", valueHint: "N" },
    ...apiArg,
    ...outputArg,
  },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    const [scope, [id]] = scoped(args, ["ID"]);
    const r = await client(args).moveRule(scope, int(id, "ID"), int(args.priority, "--priority"));
    if (fmt !== "table") return printData(fmt, r);
    process.stdout.write(`rule ${r.id} of ${where(scope)} now has priority ${r.priority}\n`);
  },
});

const rule = defineCommand({
  meta: { name: "rule", description: "Add, delete, list and reorder firewall rules" },
  subCommands: { add: ruleAdd, del: ruleDel, list: ruleList, move: ruleMove },
});

// ---- default, export, import ------------------------------------------------------------------

const defaultCmd = defineCommand({
  meta: meta("default", "Set the action for traffic no rule matches: allow or deny", [
    "# Always allowed whatever the rules: ND/MLD, DHCP/DHCPv6, DNS to the gateway (the failsafe).",
    "cenvero-str-ctl firewall default app-net deny",
    "cenvero-str-ctl firewall default --global allow",
  ]),
  args: {
    ...netArg,
    action: { type: "positional", required: false, description: "allow or deny", valueHint: "allow|deny" },
    ...globalArg,
    ...apiArg,
    ...outputArg,
  },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    const [scope, [action]] = scoped(args, ["allow|deny"]);
    if (action !== "allow" && action !== "deny")
      throw new StratumError("INVALID", `the default action is allow or deny, not "${action}"`);
    const r = await client(args).setDefault(scope, action);
    if (fmt !== "table") return printData(fmt, r);
    process.stdout.write(`default action of ${where(scope)}: ${r.default}\n`);
  },
});

const exportCmd = defineCommand({
  meta: meta(
    "export",
    "Print a scope's rule set as YAML: default: and rules:, whose fields are named like the flags of rule add",
    [
      "cenvero-str-ctl firewall export app-net > app-net.yaml",
      "# default: deny",
      "# rules:",
      "#   - priority: 100",
      "#     direction: both",
      "#     proto: tcp",
      "#     dport: 443",
      "#     action: allow",
      "#     log: false",
    ],
  ),
  args: { ...netArg, ...globalArg, ...apiArg, ...outputArg },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    const [scope] = scoped(args, []);
    const doc = await client(args).exportRules(scope);
    if (fmt !== "table") return printData(fmt, doc);
    process.stdout.write(ruleSetYaml(doc));
  },
});

const importCmd = defineCommand({
  meta: meta("import", "Replace a scope's whole rule set from a YAML file as export writes it: all or nothing", [
    "# A bad rule is named by line and index and nothing changes; without default: the default action stays;",
    "# rules identical to existing ones keep their ids and counters. FILE - reads stdin.",
    "cenvero-str-ctl firewall import db-net app-net.yaml",
    "cenvero-str-ctl firewall export app-net | cenvero-str-ctl firewall import --global -",
  ]),
  args: {
    ...netArg,
    file: { type: "positional", required: false, description: "YAML file, or - for stdin", valueHint: "FILE" },
    ...globalArg,
    ...apiArg,
    ...outputArg,
  },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    const [scope, [file]] = scoped(args, ["FILE"]);
    const { doc } = parseRuleSetYaml(readInput(file as string), file as string);
    const r = await client(args).importRules(scope, doc);
    if (fmt !== "table") return printData(fmt, r);
    process.stdout.write(
      `imported ${num(r.rules)} rule${r.rules === 1 ? "" : "s"} into ${where(scope)} (default ${r.default}; ${num(r.kept)} unchanged)\n`,
    );
  },
});

/** A file's text, or standard input's for "-"; INVALID with why when it cannot be read. */
export function readInput(file: string): string {
  try {
    return readFileSync(file === "-" ? 0 : file, "utf8");
  } catch (e) {
    throw new StratumError(
      "INVALID",
      `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
}

// ---- blocklist --------------------------------------------------------------------------------

const blockAdd = defineCommand({
  meta: meta("add", "Add source prefixes to the blocklist (a bare address is a host prefix); all or nothing", [
    "# Sources on the blocklist are dropped at the uplink and at every port, before any rule.",
    "cenvero-str-ctl firewall blocklist add 198.51.100.0/24 2001:db8:bad::/48 203.0.113.7",
  ]),
  args: {
    prefix: {
      type: "positional",
      required: false,
      variadic: true,
      description: "Prefixes or addresses",
      valueHint: "PREFIX",
    },
    ...apiArg,
    ...outputArg,
  },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    if (args._.length === 0) throw new StratumError("INVALID", "give one or more PREFIXes to block");
    const r = await client(args).blockAdd(args._);
    if (fmt !== "table") return printData(fmt, r);
    process.stdout.write(
      `blocked ${num(r.added)} new prefix${r.added === 1 ? "" : "es"}${r.listed ? ` (${num(r.listed)} listed already)` : ""}; blocklist: ${num(r.counts.ipv4)} IPv4, ${num(r.counts.ipv6)} IPv6\n`,
    );
  },
});

const blockDel = defineCommand({
  meta: meta("del", "Remove a prefix from the blocklist", ["cenvero-str-ctl firewall blocklist del 198.51.100.0/24"]),
  args: {
    prefix: { type: "positional", required: true, description: "Prefix or address", valueHint: "PREFIX" },
    ...apiArg,
    ...outputArg,
  },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    if (args._.length > 1) throw new StratumError("INVALID", `one PREFIX at a time (unexpected "${args._[1]}")`);
    await client(args).blockDel(args.prefix);
    if (fmt !== "table") return printData(fmt, { deleted: args.prefix });
    process.stdout.write(`removed ${args.prefix} from the blocklist\n`);
  },
});

/** Entries per request while `blocklist list` streams the whole list. */
const LIST_PAGE = 10_000;

const blockList = defineCommand({
  meta: meta(
    "list",
    "List the blocklist by family, then numerically; --contains ADDR only the prefixes that cover an address",
    [
      "# Streamed a page at a time: a list of a million prefixes starts printing at once.",
      "cenvero-str-ctl firewall blocklist list",
      "cenvero-str-ctl firewall blocklist list --contains 198.51.100.7",
      "cenvero-str-ctl firewall blocklist list -o json | jq '.counts'",
    ],
  ),
  args: {
    contains: {
      type: "string",
      description: "Only the prefixes that cover this address (or every address of this prefix)",
      valueHint: "ADDR",
    },
    ...apiArg,
    ...outputArg,
  },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    if (args._.length)
      throw new StratumError("INVALID", `unexpected argument "${args._[0]}" (filter with --contains ADDR)`);
    const out = (t: string) => process.stdout.write(t);
    let counts: { ipv4: number; ipv6: number } | undefined;
    let shown = 0;
    let width = 0;
    const pages = client(args).blockPages({ limit: LIST_PAGE, ...(args.contains ? { contains: args.contains } : {}) });
    for await (const page of pages) {
      const rows = page.prefixes;
      if (!counts) {
        counts = page.counts;
        // The widest prefix decides the column: IPv6 ones are longer, and come last.
        width = counts.ipv6 ? 43 : 18;
        if (fmt === "json") out(`{\n  "counts": ${JSON.stringify(counts)},\n  "prefixes": [`);
        else if (fmt === "yaml") out(`counts:\n  ipv4: ${counts.ipv4}\n  ipv6: ${counts.ipv6}\nprefixes:`);
        else if (rows.length) out(`${"PREFIX".padEnd(width)}  ADDED\n`);
      }
      // The document is written as the pages come: the same keys as one GET would give.
      if (fmt === "json") out(rows.map((e, i) => `${shown + i ? "," : ""}\n    ${JSON.stringify(e)}`).join(""));
      else if (fmt === "yaml") out(rows.map((e) => `\n  - prefix: ${e.prefix}\n    addedAt: ${e.addedAt}`).join(""));
      else out(rows.map((e) => `${e.prefix.padEnd(width)}  ${e.addedAt}\n`).join(""));
      shown += rows.length;
    }
    const c = counts ?? { ipv4: 0, ipv6: 0 };
    if (fmt === "json") return out(`${shown ? "\n  " : ""}],\n  "next": null\n}\n`);
    if (fmt === "yaml") return out(`${shown ? "" : " []"}\nnext: null\n`);
    out(
      args.contains
        ? `${num(shown)} listed prefix${shown === 1 ? "" : "es"} cover${shown === 1 ? "s" : ""} ${args.contains} (of ${num(c.ipv4)} IPv4 and ${num(c.ipv6)} IPv6)\n`
        : `${num(c.ipv4)} IPv4 and ${num(c.ipv6)} IPv6 prefixes\n`,
    );
  },
});

const blockTest = defineCommand({
  meta: meta(
    "test",
    "Is an address blocked? Names the listed prefix that matches it (the longest), or none; exit 0 either way",
    [
      "cenvero-str-ctl firewall blocklist test 198.51.100.7",
      "cenvero-str-ctl firewall blocklist test 2001:db8:bad::1 -o json",
    ],
  ),
  args: {
    address: { type: "positional", required: true, description: "Address (or prefix)", valueHint: "ADDR" },
    ...apiArg,
    ...outputArg,
  },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    if (args._.length > 1) throw new StratumError("INVALID", `one ADDR at a time (unexpected "${args._[1]}")`);
    const r = await client(args).blockTest(args.address);
    if (fmt !== "table") return printData(fmt, r);
    const also = r.matches.slice(1);
    process.stdout.write(
      r.match
        ? `${r.address} is blocked by ${r.match}${also.length ? ` (also covered by ${also.join(", ")})` : ""}\n`
        : `${r.address} is not blocked: no listed prefix covers it\n`,
    );
  },
});

const blockClear = defineCommand({
  meta: meta("clear", "Remove every prefix from the blocklist and print how many went", [
    "cenvero-str-ctl firewall blocklist clear",
  ]),
  args: { ...apiArg, ...outputArg },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    if (args._.length) throw new StratumError("INVALID", `unexpected argument "${args._[0]}" (clear takes none)`);
    const r = await client(args).blockClear();
    if (fmt !== "table") return printData(fmt, r);
    process.stdout.write(`removed ${num(r.removed)} prefix${r.removed === 1 ? "" : "es"} from the blocklist\n`);
  },
});

const blockImport = defineCommand({
  meta: meta(
    "import",
    "Add every prefix of a file, one per line; every line is checked first and nothing is added if one is bad",
    [
      "# '#' starts a comment, blank lines are ignored, bare addresses are host prefixes, FILE - reads stdin;",
      "# the agent checks every line and reports bad ones by number; a big file says so on a terminal.",
      "cenvero-str-ctl firewall blocklist import /etc/stratum/blocklist.txt",
    ],
  ),
  args: {
    file: { type: "positional", required: true, description: "Blocklist file, or - for stdin", valueHint: "FILE" },
    ...apiArg,
    ...outputArg,
  },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    const text = readInput(args.file);
    if (process.stderr.isTTY && text.length >= 4 << 20)
      process.stderr.write(
        `sending ${(text.length / (1 << 20)).toFixed(1)} MiB to the agent, which checks every line…\n`,
      );
    // The agent checks the lines (one parse, not one here and one there) and names bad ones.
    const r = await client(args).blockAddText(text, args.file);
    const lines = r.lines ?? 0;
    if (fmt !== "table") return printData(fmt, { file: args.file, ...r, lines });
    const n = r.given;
    if (n === 0) {
      process.stdout.write(`${args.file}: no prefixes in ${num(lines)} lines; nothing to add\n`);
      return;
    }
    process.stdout.write(
      `${args.file}: ${num(n)} prefix${n === 1 ? "" : "es"} in ${num(lines)} lines: ${num(r.added)} added, ${num(r.listed)} listed already; blocklist: ${num(r.counts.ipv4)} IPv4, ${num(r.counts.ipv6)} IPv6\n`,
    );
  },
});

const blocklist = defineCommand({
  meta: {
    name: "blocklist",
    description: "Source prefixes dropped before any rule, node-wide (IPv4 and IPv6 tries of 1,000,000 each)",
  },
  subCommands: {
    add: blockAdd,
    del: blockDel,
    list: blockList,
    test: blockTest,
    clear: blockClear,
    import: blockImport,
  },
});

export const firewallCommand = defineCommand({
  meta: {
    name: "firewall",
    description:
      "Stateful L3/L4 firewall: rules per network (or --global), the default action, YAML export/import, the blocklist",
  },
  subCommands: { rule, default: defaultCmd, export: exportCmd, import: importCmd, blocklist },
});
