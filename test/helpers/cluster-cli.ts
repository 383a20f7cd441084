/** The CLI from source with `cluster init` reachable: the command is wired into the `cluster`
 * group when run.ts has none yet (or one without `init`). Run as `bun cluster-cli.ts ARGS…`;
 * exits with the CLI's exit code. */
import { defineCommand } from "citty";
import type { AnyCommand } from "../../src/cli/args";
import { clusterInitCommand } from "../../src/cli/cluster-init";
import { rootCommand, runCli } from "../../src/cli/run";

const root = rootCommand.subCommands as Record<string, AnyCommand>;
const group = root.cluster;
if (!group)
  root.cluster = defineCommand({
    meta: { name: "cluster", description: "The cluster this node belongs to" },
    subCommands: { init: clusterInitCommand },
  }) as AnyCommand;
else {
  const subs = group.subCommands as Record<string, AnyCommand> | undefined;
  if (subs && !subs.init) subs.init = clusterInitCommand as AnyCommand;
}
process.exitCode = await runCli(process.argv.slice(2));
