/** `export networkd`: writes the systemd-networkd files that recreate this node's Stratum
 * interfaces (docs/networks.md#systemd-networkd) into a directory, each file whole or not at
 * all (written beside, then renamed), and removes the files of an earlier export that name a
 * device the node no longer has; nothing else in the directory is touched. */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type CommandMeta, defineCommand } from "citty";
import { StratumError } from "../errors";
import { client } from "./api-flags";
import { exportFabric } from "./apply-commands";
import { apiArg } from "./network-commands";
import { outputArg, parseFormat, printData, printTable } from "./output";

/** What an export writes its files as (ops/networkd.ts NETWORKD_PREFIX). */
const PREFIX = "50-stratum-";

const networkd = defineCommand({
  meta: {
    name: "networkd",
    description:
      "Write the systemd-networkd .netdev/.network files that recreate this node's Stratum interfaces (bridges, the links between them, VMs' taps and macvtaps with their MACs and modes); networkd makes the devices at boot, the agent wires them (programs first, bridge, FDB) as it adopts them",
    examples: [
      "cenvero-str-ctl export networkd                       # into /etc/systemd/network",
      "cenvero-str-ctl export networkd --dir /tmp/stratum-networkd",
      "cenvero-str-ctl export networkd --dry-run             # list what would be written",
    ],
  } as CommandMeta,
  args: {
    dir: {
      type: "string",
      default: "/etc/systemd/network",
      description: "Directory to write into (made if missing)",
      valueHint: "DIR",
    },
    "dry-run": { type: "boolean", description: "Write nothing: list the files (with -o json, their text)" },
    ...apiArg,
    ...outputArg,
  },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    const { files } = await client(args).exportNetworkd();
    const dir = args.dir;
    const names = new Set(files.map((f) => f.name));
    const earlier = existsSync(dir) ? readdirSync(dir).filter((n) => n.startsWith(PREFIX) && !names.has(n)) : [];
    const changed = files.filter((f) => {
      const p = join(dir, f.name);
      return !existsSync(p) || readFileSync(p, "utf8") !== f.text;
    });
    if (!args["dry-run"]) {
      try {
        mkdirSync(dir, { recursive: true });
        for (const f of changed) {
          const tmp = join(dir, `.${f.name}.tmp`);
          writeFileSync(tmp, f.text, { mode: 0o644 });
          renameSync(tmp, join(dir, f.name));
        }
        for (const n of earlier) rmSync(join(dir, n), { force: true });
      } catch (e) {
        throw new StratumError("SYS", `export networkd into ${dir}: ${(e as Error).message}`);
      }
    }
    const result = {
      dir,
      dryRun: args["dry-run"] === true,
      files: files.map((f) => ({ ...f, changed: changed.includes(f) })),
      removed: earlier,
    };
    if (fmt !== "table") return printData(fmt, result);
    printTable(
      ["FILE", args["dry-run"] ? "WOULD BE" : "NOW"],
      [
        ...files.map((f) => [f.name, changed.includes(f) ? "written" : "unchanged"]),
        ...earlier.map((n) => [n, "removed (no such device now)"]),
      ],
    );
  },
});

export const exportCommand = defineCommand({
  meta: {
    name: "export",
    description:
      "Print the fabric as a document (YAML; -o json) that `apply -f` takes back: networks with their settings, firewall scopes and DNS records, the global scope, the blocklist. `export networkd` writes systemd-networkd's files instead",
    examples: [
      "cenvero-str-ctl export > fabric.yaml",
      "cenvero-str-ctl export -o json",
      "cenvero-str-ctl diff -f fabric.yaml   # later: what changed since",
    ],
  } as CommandMeta,
  args: { ...apiArg, ...outputArg },
  run: ({ args }) => exportFabric(args as Record<string, unknown>),
  subCommands: { networkd },
});
