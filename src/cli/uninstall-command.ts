/** `uninstall`: takes Stratum off this node with the agent stopped (see src/agent/uninstall.ts):
 * interfaces, programs, pinned links, bridges, addresses and pins; the store only with
 * --purge. --dry-run prints the plan and changes nothing. */
import { type CommandMeta, defineCommand } from "citty";
import { DEFAULT_API_SOCKET } from "../api/api-client";
import { plainReport, uninstall } from "../ops/uninstall";
import { DEFAULT_PIN_ROOT } from "./datapath-commands";
import { outputArg, parseFormat, printData } from "./output";

export const uninstallCommand = defineCommand({
  meta: {
    name: "uninstall",
    description:
      "Remove everything the agent put on this node (stop the agent first): endpoint interfaces and their programs, the uplink's filter, pinned links, bridges, gateway addresses, every pin; the store too with --purge",
    examples: [
      "systemctl stop cenvero-stratum && cenvero-str-ctl uninstall --dry-run",
      "cenvero-str-ctl uninstall            # keeps /var/lib/stratum: an agent started again restores it all",
      "cenvero-str-ctl uninstall --purge    # and forgets every network, endpoint and rule",
    ],
  } as CommandMeta,
  args: {
    purge: {
      type: "boolean",
      description: "Also delete the store (networks, endpoints, rules, leases) and the API socket",
    },
    "dry-run": { type: "boolean", description: "Print what would be removed; change nothing" },
    "state-dir": {
      type: "string",
      default: "/var/lib/stratum",
      description: "State database directory (the agent's --state-dir)",
      valueHint: "DIR",
    },
    "pin-root": {
      type: "string",
      default: DEFAULT_PIN_ROOT,
      description: "bpffs directory of Stratum's pins (the agent's --pin-root)",
      valueHint: "DIR",
    },
    "api-socket": {
      type: "string",
      default: DEFAULT_API_SOCKET,
      description: "The agent's API socket (removed with --purge)",
      valueHint: "PATH",
    },
    ...outputArg,
  },
  run({ args }) {
    const fmt = parseFormat(args.output);
    const r = plainReport(
      uninstall({
        pinRoot: args["pin-root"],
        stateDir: args["state-dir"],
        apiSocket: args["api-socket"],
        purge: !!args.purge,
        dryRun: !!args["dry-run"],
      }),
    );
    const failed = r.steps.filter((s) => s.error);
    if (failed.length) process.exitCode = 5;
    if (fmt !== "table") return printData(fmt, r);
    const out = (s: string) => process.stdout.write(`${s}\n`);
    if (r.steps.length === 0) out("nothing of Stratum's is on this node");
    const verb = (s: { error?: string }) => (r.dryRun ? "would remove" : s.error ? "FAILED to remove" : "removed");
    // Pins one line for all (-o json lists each), unless one failed.
    const pins = r.steps.filter((s) => s.kind === "pin");
    for (const s of r.steps)
      if (s.kind !== "pin" || s.error) out(`${verb(s)} ${s.what}${s.error ? `: ${s.error}` : ""}`);
    if (pins.length) {
      const files = pins.filter((s) => s.what.startsWith("pin ")).length;
      const dirs = pins.length - files;
      out(
        `${verb({})} ${files} pin${files === 1 ? "" : "s"} and ${dirs} director${dirs === 1 ? "y" : "ies"} under ${args["pin-root"]}${pins.some((s) => s.what === `directory ${args["pin-root"]}`) ? ", the pin root included" : ""}`,
      );
    }
    for (const n of r.notes) out(`note: ${n}`);
    if (failed.length) out(`${failed.length} step(s) failed: run uninstall again once the cause is fixed`);
  },
});
