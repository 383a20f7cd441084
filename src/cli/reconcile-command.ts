/** `reconcile`: asks the agent to make the kernel match the store now, and prints every
 * kernel change that took. On a node where nothing drifted it prints none: that is how an
 * operator checks, after a crash or by hand, that the kernel is what the store says. A run
 * is quick when nothing touched the ports since the last whole run (docs/operations.md#quick-reconcile);
 * `--full` checks every port regardless. */
import { type CommandMeta, defineCommand } from "citty";
import { client } from "./api-flags";
import { apiArg } from "./network-commands";
import { outputArg, parseFormat, printData, printKv } from "./output";

export const reconcileCommand = defineCommand({
  meta: {
    name: "reconcile",
    description: "Reconcile the kernel to the store now and list every kernel change it made (none: nothing drifted)",
    examples: [
      "cenvero-str-ctl reconcile",
      "cenvero-str-ctl reconcile --full",
      "cenvero-str-ctl reconcile -o json | jq '.changes | length'",
    ],
  } as CommandMeta,
  args: {
    full: {
      type: "boolean",
      description:
        "Check every port against the kernel even when a quick pass could vouch for them (nothing touched them since the last whole run)",
    },
    ...apiArg,
    ...outputArg,
  },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    const run = await client(args).reconcile({ full: args.full === true });
    if (fmt !== "table") return printData(fmt, run);
    const pass =
      run.pass === "quick"
        ? "quick (ports as the last whole run found them: nothing touched them since)"
        : run.wholeBecause
          ? `whole (${run.wholeBecause})`
          : run.pass;
    printKv([
      ["reconciled", `${run.at} in ${run.durationMs} ms`],
      ["pass", pass],
      [
        "restored",
        `${run.networks} network(s), ${run.endpoints} endpoint(s), ${run.firewall.scopes} firewall scope(s)`,
      ],
      [
        "kernel changes",
        run.changes.length ? String(run.changes.length) : "none (the kernel already matched the store)",
      ],
      ...run.changes.map((c) => ["  change", c] as [string, string]),
      ...run.collected.map((c) => ["  collected", c] as [string, string]),
      ...run.errors.map((e) => ["  error", e] as [string, string]),
    ]);
    if (run.errors.length) process.exitCode = 1;
  },
});
