/** `group` and `microseg`: microsegmentation groups of endpoints (a tree), and the policy
 * between groups that holds wherever the endpoints run (docs/microseg.md). Clients of the
 * agent's API. */
import { defineCommand } from "citty";
import YAML from "yaml";
import type { MsegDocument, MsegGroupView, MsegRuleView } from "../api/contract";
import { StratumError } from "../errors";
import { client } from "./api-flags";
import { readInput } from "./firewall-commands";
import { apiArg, meta } from "./network-commands";
import { outputArg, parseFormat, printData, printKv, printTable } from "./output";

const num = (n: number) => n.toLocaleString("en-US");
const groupArg = { type: "positional", required: true, description: "Group name", valueHint: "GROUP" } as const;

export function printGroups(gs: MsegGroupView[]): void {
  if (!gs.length) {
    process.stdout.write("no groups: group create NAME [--parent P]\n");
    return;
  }
  printTable(
    ["NAME", "ID", "PARENT", "MEMBERS", "DESCRIPTION"],
    gs.map((g) => [g.name, String(g.id), g.parent ?? "-", String(g.members.length), g.description ?? ""]),
  );
}

const ruleText = (r: Pick<MsegRuleView, "proto" | "dport">) =>
  r.proto ? `${r.proto}${r.dport !== null ? `/${r.dport}` : ""}` : "any";

export function printRules(l: { rules: MsegRuleView[]; defaultHits: { packets: number } }): void {
  if (!l.rules.length) process.stdout.write("no entries: every packet to an endpoint in a group is denied\n");
  else
    printTable(
      ["ID", "FROM", "TO", "PROTO", "ACTION", "LOG", "HITS", "DESCRIPTION"],
      l.rules.map((r) => [
        String(r.id),
        r.from,
        r.to,
        ruleText(r),
        r.action,
        r.log ? "yes" : "",
        num(r.hits.packets),
        r.description ?? "",
      ]),
    );
  process.stdout.write(`no entry (denied): ${num(l.defaultHits.packets)} packets\n`);
}

/** The YAML (or JSON) document export writes, checked for shape: a bad top-level key or a list
 * that is not one is refused here, the rest by the agent (naming the group or entry by index). */
export function parsePolicyYaml(text: string, file: string): MsegDocument {
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (e) {
    throw new StratumError("INVALID", `${file}: not YAML: ${(e as Error).message.split("\n")[0]}`);
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc))
    throw new StratumError("INVALID", `${file}: expected a mapping with groups: and rules:`);
  const o = doc as Record<string, unknown>;
  const extra = Object.keys(o).filter((k) => k !== "groups" && k !== "rules");
  if (extra.length) throw new StratumError("INVALID", `${file}: unknown key "${extra[0]}" (expected groups, rules)`);
  for (const k of ["groups", "rules"] as const)
    if (o[k] !== undefined && o[k] !== null && !Array.isArray(o[k]))
      throw new StratumError("INVALID", `${file}: ${k}: expected a list`);
  return { groups: (o.groups ?? []) as MsegDocument["groups"], rules: (o.rules ?? []) as MsegDocument["rules"] };
}

export const groupCommand = defineCommand({
  meta: {
    name: "group",
    description:
      "Microsegmentation groups: sort endpoints into a tree of groups (web, db, prod/web…), then write policy between groups (microseg rule add)",
  },
  subCommands: {
    create: defineCommand({
      meta: meta(
        "create",
        "Create a group. A name with '/' is under the group its part before the last '/' names (prod/web is under prod); --parent puts a group anywhere. At most 8 levels",
        [
          "cenvero-str-ctl group create prod",
          "cenvero-str-ctl group create prod/web",
          "cenvero-str-ctl group create api --parent prod/web --description 'the API servers'",
        ],
      ),
      args: {
        name: groupArg,
        parent: { type: "string", description: "The group it is under", valueHint: "GROUP" },
        description: { type: "string", description: "Free text, at most 200 characters", valueHint: "TEXT" },
        ...apiArg,
        ...outputArg,
      },
      async run({ args }) {
        const fmt = parseFormat(args.output);
        const g = await client(args).createMsegGroup({
          name: args.name,
          ...(args.parent !== undefined ? { parent: args.parent } : {}),
          ...(args.description !== undefined ? { description: args.description } : {}),
        });
        if (fmt !== "table") return printData(fmt, g);
        process.stdout.write(`created group ${g.name} (id ${g.id}${g.parent ? `, under ${g.parent}` : ""})\n`);
      },
    }),
    delete: defineCommand({
      meta: meta(
        "delete",
        "Delete a group: refused while a group is under it, an entry names it or an endpoint is in it",
        ["cenvero-str-ctl group delete prod/web"],
      ),
      args: { name: groupArg, ...apiArg },
      async run({ args }) {
        await client(args).deleteMsegGroup(args.name);
        process.stdout.write(`deleted group ${args.name}\n`);
      },
    }),
    list: defineCommand({
      meta: meta("list", "List the groups: id (what packets carry), parent, how many endpoints", [
        "cenvero-str-ctl group list",
        "cenvero-str-ctl group list -o json | jq -r '.[] | \"\\(.name) \\(.members | length)\"'",
      ]),
      args: { ...apiArg, ...outputArg },
      async run({ args }) {
        const fmt = parseFormat(args.output);
        const gs = await client(args).msegGroups();
        if (fmt !== "table") return printData(fmt, gs);
        printGroups(gs);
      },
    }),
    show: defineCommand({
      meta: meta("show", "Show a group: its line up the tree, the groups under it, its endpoints", [
        "cenvero-str-ctl group show prod/web",
      ]),
      args: { name: groupArg, ...apiArg, ...outputArg },
      async run({ args }) {
        const fmt = parseFormat(args.output);
        const g = await client(args).msegGroup(args.name);
        if (fmt !== "table") return printData(fmt, g);
        printKv([
          ["name", g.name],
          ["id", String(g.id)],
          ["line", g.line.join(" → ")],
          ["children", g.children.join(", ") || "none"],
          ["members", g.members.join(", ") || "none"],
          ...(g.description ? ([["description", g.description]] as Array<[string, string]>) : []),
          ["created", g.createdAt],
        ]);
      },
    }),
    assign: defineCommand({
      meta: meta(
        "assign",
        "Put an endpoint in a group (none: in no group, untagged). Its port stamps the new group at once; flows let in under the old one are judged again",
        ["cenvero-str-ctl group assign web-1 prod/web", "cenvero-str-ctl group assign web-1 none"],
      ),
      args: {
        endpoint: { type: "positional", required: true, description: "Endpoint", valueHint: "EP" },
        group: { type: "positional", required: true, description: "Group, or none", valueHint: "GROUP|none" },
        ...apiArg,
        ...outputArg,
      },
      async run({ args }) {
        const fmt = parseFormat(args.output);
        const e = await client(args).setEndpoint(args.endpoint, { group: args.group === "none" ? null : args.group });
        if (fmt !== "table") return printData(fmt, e);
        process.stdout.write(e.group ? `${e.name} is in group ${e.group}\n` : `${e.name} is in no group (untagged)\n`);
      },
    }),
  },
});

const ruleAdd = defineCommand({
  meta: meta(
    "add",
    "Add a policy entry: what --from may send to the endpoints of --to (and of every group under it). The most specific entry decides: the destination nearest in the tree, then the source, then an entry with a port before one with a protocol before one with neither; equally specific entries that disagree: deny; none: deny. --from untagged: endpoints in no group and everything from outside the fabric",
    [
      "cenvero-str-ctl microseg rule add --from prod/web --to prod/db --proto tcp --dport 5432 --action allow",
      "cenvero-str-ctl microseg rule add --from prod --to prod --action deny --log",
      "cenvero-str-ctl microseg rule add --from untagged --to prod/web --proto tcp --dport 443 --action allow",
    ],
  ),
  args: {
    from: { type: "string", required: true, description: 'A group, or "untagged"', valueHint: "GROUP" },
    to: { type: "string", required: true, description: "A group", valueHint: "GROUP" },
    action: {
      type: "string",
      required: true,
      description: "allow or deny",
      valueHint: "allow|deny",
      options: ["allow", "deny"],
    },
    proto: {
      type: "string",
      description: "Only this protocol",
      valueHint: "PROTO",
      options: ["tcp", "udp", "icmp", "icmpv6", "sctp"],
    },
    dport: { type: "string", description: "Only this TCP or UDP destination port (with --proto)", valueHint: "PORT" },
    log: { type: "boolean", default: false, description: "Every packet it decides is a monitor log event" },
    description: { type: "string", description: "Free text, at most 200 characters", valueHint: "TEXT" },
    ...apiArg,
    ...outputArg,
  },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    const r = await client(args).addMsegRule({
      from: args.from,
      to: args.to,
      action: args.action as "allow" | "deny",
      ...(args.proto !== undefined ? { proto: args.proto as "tcp" } : {}),
      ...(args.dport !== undefined ? { dport: args.dport } : {}),
      ...(args.log ? { log: true } : {}),
      ...(args.description !== undefined ? { description: args.description } : {}),
    });
    if (fmt !== "table") return printData(fmt, r);
    process.stdout.write(`added entry ${r.id}: ${r.from} → ${r.to} ${ruleText(r)} ${r.action}\n`);
  },
});

export const microsegCommand = defineCommand({
  meta: {
    name: "microseg",
    description:
      "The policy between microsegmentation groups: enforced where the destination endpoint runs, on the sender's group as the packet carries it",
  },
  subCommands: {
    rule: defineCommand({
      meta: { name: "rule", description: "Policy entries: add, delete, list with hit counters" },
      subCommands: {
        add: ruleAdd,
        del: defineCommand({
          meta: meta("del", "Delete policy entries by id", ["cenvero-str-ctl microseg rule del 7"]),
          args: {
            id: { type: "positional", required: true, description: "Entry id", valueHint: "ID" },
            ...apiArg,
          },
          async run({ args }) {
            if (!/^\d{1,9}$/.test(args.id)) throw new StratumError("INVALID", `entry id "${args.id}" is not a number`);
            await client(args).deleteMsegRule(Number(args.id));
            process.stdout.write(`deleted entry ${args.id}\n`);
          },
        }),
        list: defineCommand({
          meta: meta("list", "List the policy entries with this node's hit counters", [
            "cenvero-str-ctl microseg rule list",
            "cenvero-str-ctl microseg rule list -o json | jq '.rules[] | select(.hits.packets > 0)'",
          ]),
          args: { ...apiArg, ...outputArg },
          async run({ args }) {
            const fmt = parseFormat(args.output);
            const l = await client(args).msegRules();
            if (fmt !== "table") return printData(fmt, l);
            printRules(l);
          },
        }),
      },
    }),
    export: defineCommand({
      meta: meta("export", "Print the whole policy as YAML: groups (parents first) and entries", [
        "cenvero-str-ctl microseg export > policy.yaml",
      ]),
      args: { ...apiArg, ...outputArg },
      async run({ args }) {
        const fmt = parseFormat(args.output);
        const doc = await client(args).exportMicroseg();
        if (fmt !== "table") return printData(fmt, doc);
        process.stdout.write(YAML.stringify(doc));
      },
    }),
    import: defineCommand({
      meta: meta(
        "import",
        "Replace the whole policy from a YAML file as export writes it, all or nothing: a group of the same name and parent keeps its id; one that goes must have no endpoints. FILE - reads stdin",
        [
          "cenvero-str-ctl microseg import policy.yaml",
          "cenvero-str-ctl microseg export | cenvero-str-ctl microseg import -",
        ],
      ),
      args: {
        file: { type: "positional", required: true, description: "YAML file, or - for stdin", valueHint: "FILE" },
        ...apiArg,
        ...outputArg,
      },
      async run({ args }) {
        const fmt = parseFormat(args.output);
        const doc = parsePolicyYaml(readInput(args.file), args.file);
        const r = await client(args).importMicroseg(doc);
        if (fmt !== "table") return printData(fmt, r);
        process.stdout.write(
          `imported: groups ${r.groups.kept} kept, ${r.groups.added} added, ${r.groups.removed} removed; ${num(r.rules)} entr${r.rules === 1 ? "y" : "ies"}\n`,
        );
      },
    }),
  },
});
