/** `dns` commands: the user's records in a network's zone, served by the network's DNS
 * server beside the endpoints' own names. Clients of the agent's API, which validates the
 * records; here only the arguments are checked. */
import { defineCommand } from "citty";
import { StratumError } from "../errors";
import type { StoredDnsRecord } from "../store/store";
import { client } from "./api-flags";
import { apiArg, meta } from "./network-commands";
import { outputArg, parseFormat, printData, printTable } from "./output";

/** A record's owner as a full name: `@` is the zone itself. */
export function fqdn(name: string, zone: string): string {
  return name === "@" ? zone : `${name}.${zone}`;
}

const recordText = (r: StoredDnsRecord, zone: string) => `${fqdn(r.name, zone)} ${r.type} ${r.value} (ttl ${r.ttl})`;

function positiveInt(v: unknown, what: string): number {
  const s = String(v ?? "").trim();
  if (!/^\d+$/.test(s)) throw new StratumError("INVALID", `${what} must be a positive integer, not "${String(v)}"`);
  return Number(s);
}

const netArg = {
  network: {
    type: "positional",
    required: false,
    description: "Network whose zone holds the record",
    valueHint: "NETWORK",
  },
} as const;

const add = defineCommand({
  meta: meta(
    "add",
    "Add a record to a network's zone: NAME is relative to the zone (@ for the zone itself); types A, AAAA, CNAME, TXT, SRV, MX",
    [
      "# VALUE of SRV is PRIORITY WEIGHT PORT TARGET and of MX PREFERENCE EXCHANGE: quoted, or as separate words.",
      "cenvero-str-ctl dns record add app-net db A 10.20.0.50",
      "cenvero-str-ctl dns record add app-net www CNAME web-1 --ttl 60",
      'cenvero-str-ctl dns record add app-net _http._tcp SRV "10 5 8080 web-1"',
      "cenvero-str-ctl dns record add app-net @ MX 10 mail",
      'cenvero-str-ctl dns record add app-net @ TXT "v=spf1 -all"',
    ],
  ),
  args: {
    ...netArg,
    name: {
      type: "positional",
      required: false,
      description: "Owner, relative to the zone (@: the zone)",
      valueHint: "NAME",
    },
    type: { type: "positional", required: false, description: "A, AAAA, CNAME, TXT, SRV or MX", valueHint: "TYPE" },
    value: {
      type: "positional",
      required: false,
      variadic: true,
      description: "The record's data (several words are joined by spaces)",
      valueHint: "VALUE",
    },
    ttl: { type: "string", description: "Seconds resolvers may cache it (default: the server's)", valueHint: "N" },
    ...apiArg,
    ...outputArg,
  },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    const [network, name, type, ...value] = args._;
    const missing = ["NETWORK", "NAME", "TYPE", "VALUE"][[network, name, type, value[0]].indexOf(undefined)];
    if (missing) throw new StratumError("INVALID", `missing ${missing}`);
    const spec = {
      name: name as string,
      type: type as string,
      value: value.join(" "),
      ...(args.ttl === undefined ? {} : { ttl: positiveInt(args.ttl, "--ttl") }),
    };
    const api = client(args);
    const r = await api.addDnsRecord(network as string, spec);
    if (fmt !== "table") return printData(fmt, r);
    const zone = (await api.showNetwork(r.network)).dnsZone;
    process.stdout.write(`added record ${r.id} to ${r.network}: ${recordText(r, zone)}\n`);
  },
});

const del = defineCommand({
  meta: meta(
    "del",
    "Delete records: one by --id (`dns record list` shows the ids), or every record of NAME, narrowed by TYPE and VALUE",
    [
      "cenvero-str-ctl dns record del app-net --id 4",
      "# Every record of www; then only db's A record 10.20.0.50:",
      "cenvero-str-ctl dns record del app-net www",
      "cenvero-str-ctl dns record del app-net db A 10.20.0.50",
    ],
  ),
  args: {
    ...netArg,
    name: {
      type: "positional",
      required: false,
      description: "Owner, relative to the zone (@: the zone)",
      valueHint: "NAME",
    },
    type: { type: "positional", required: false, description: "Only records of this type", valueHint: "TYPE" },
    value: {
      type: "positional",
      required: false,
      variadic: true,
      description: "Only the record with this data",
      valueHint: "VALUE",
    },
    id: { type: "string", description: "The record with this id (instead of NAME)", valueHint: "N" },
    ...apiArg,
    ...outputArg,
  },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    const [network, name, type, ...value] = args._;
    if (network === undefined) throw new StratumError("INVALID", "missing NETWORK");
    let sel: { id?: number; name?: string; type?: string; value?: string };
    if (args.id !== undefined) {
      if (name !== undefined)
        throw new StratumError("INVALID", `give --id or NAME [TYPE [VALUE]], not both (unexpected "${name}")`);
      sel = { id: positiveInt(args.id, "--id") };
    } else {
      if (name === undefined) throw new StratumError("INVALID", "give the record: --id N, or NAME [TYPE [VALUE]]");
      sel = { name, ...(type ? { type } : {}), ...(value.length ? { value: value.join(" ") } : {}) };
    }
    const api = client(args);
    const gone = await api.deleteDnsRecords(network, sel);
    if (fmt !== "table") return printData(fmt, { network, deleted: gone });
    const zone = (await api.showNetwork(network)).dnsZone;
    process.stdout.write(
      gone.length === 1
        ? `deleted record ${gone[0]?.id} of ${network}: ${recordText(gone[0] as StoredDnsRecord, zone)}\n`
        : `deleted ${gone.length} records of ${network}: ${gone.map((r) => `${r.id} ${recordText(r, zone)}`).join(", ")}\n`,
    );
  },
});

const list = defineCommand({
  meta: meta("list", "List the records of one network's zone, or of every network's", [
    "# The endpoints' own names (ENDPOINT.ZONE) are answered too and are not listed here.",
    "cenvero-str-ctl dns record list app-net",
    "cenvero-str-ctl dns record list -o json",
  ]),
  args: {
    network: { type: "positional", required: false, description: "Only this network", valueHint: "NETWORK" },
    ...apiArg,
    ...outputArg,
  },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    if (args._.length > 1) throw new StratumError("INVALID", `unexpected argument "${args._[1]}"`);
    const network = args._[0];
    const api = client(args);
    const rs = await api.dnsRecords(network);
    if (fmt !== "table") return printData(fmt, rs);
    if (rs.length === 0) {
      process.stdout.write(`no DNS records${network ? ` in ${network}` : ""}\n`);
      return;
    }
    const zones = new Map((await api.listNetworks()).map((n) => [n.name, n.dnsZone]));
    printTable(
      ["ID", "NETWORK", "NAME", "TYPE", "TTL", "VALUE"],
      rs.map((r) => [
        String(r.id),
        r.network,
        fqdn(r.name, zones.get(r.network) ?? r.network),
        r.type,
        String(r.ttl),
        r.value,
      ]),
    );
  },
});

const record = defineCommand({
  meta: { name: "record", description: "Add, delete and list DNS records" },
  subCommands: { add, del, list },
});

export const dnsCommand = defineCommand({
  meta: {
    name: "dns",
    description:
      "The networks' DNS servers: records of your own in each network's zone (endpoints are named ENDPOINT.ZONE)",
  },
  subCommands: { record },
});
