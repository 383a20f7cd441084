/** The command tree and the one place errors become what a user sees: a one-line
 * message on stderr (or `{code, message}` with `-o json`) and a stable exit code. */
import { defineCommand } from "citty";
import YAML from "yaml";
import { detectLogFormat } from "../agent/logging";
import { type ErrorCode, StratumError } from "../errors";
import { agentCommand } from "./agent-command";
import { declareCommands } from "./apply-commands";
import { type AnyCommand, BIN, parseCommandLine, renderHelp } from "./args";
import { bgpCommand } from "./bgp-commands";
import { clusterCommand, nodeCommand } from "./cluster-commands";
import { completionCommand, runComplete } from "./completion";
import { datapathCommand } from "./datapath-commands";
import { dhcpCommand } from "./dhcp-commands";
import { dnsCommand } from "./dns-commands";
import { exportCommand } from "./export-command";
import { firewallCommand } from "./firewall-commands";
import { gatewayCommand } from "./gateway-commands";
import { lbCommand } from "./lb-commands";
import { groupCommand, microsegCommand } from "./microseg-commands";
import { monitorCommand } from "./monitor-command";
import { endpointCommand, networkCommand } from "./network-commands";
import { reconcileCommand } from "./reconcile-command";
import { statusCommand } from "./status-command";
import { traceCommand } from "./trace-command";
import { uninstallCommand } from "./uninstall-command";
import { VERSION, versionCommand } from "./version-command";

export { BIN };

export const rootCommand = defineCommand({
  meta: {
    name: BIN,
    version: VERSION,
    description: "Stratum: eBPF virtual networks for the VMs and containers of this node",
  },
  subCommands: {
    agent: agentCommand,
    network: networkCommand,
    endpoint: endpointCommand,
    firewall: firewallCommand,
    dhcp: dhcpCommand,
    dns: dnsCommand,
    node: nodeCommand,
    cluster: clusterCommand,
    bgp: bgpCommand,
    gateway: gatewayCommand,
    group: groupCommand,
    microseg: microsegCommand,
    lb: lbCommand,
    trace: traceCommand,
    monitor: monitorCommand,
    status: statusCommand,
    reconcile: reconcileCommand,
    apply: declareCommands.apply,
    diff: declareCommands.diff,
    export: exportCommand,
    schema: declareCommands.schema,
    uninstall: uninstallCommand,
    datapath: datapathCommand,
    version: versionCommand,
    completion: completionCommand,
  },
});

/** Exit codes by error code. Scripts rely on them: never renumber. */
export const EXIT_CODES: Record<ErrorCode | "USAGE", number> = {
  USAGE: 2,
  INVALID: 2,
  NOT_FOUND: 3,
  CAPACITY: 8,
  CONFLICT: 9,
  PERMISSION: 10,
  UNAUTHORIZED: 11,
  UNSUPPORTED: 4,
  UNAVAILABLE: 7,
  ETCD_UNAVAILABLE: 12,
  SYS: 5,
  NETLINK: 5,
  BPF_LOAD: 6,
  BPF_ATTACH: 6,
  INTERNAL: 70,
};

/** Runs the CLI and returns the exit code; never throws. */
export async function runCli(argv: string[]): Promise<number> {
  quietOnClosedPipe();
  const verbose = argv.includes("--verbose") || process.env.STRATUM_VERBOSE === "1";
  try {
    if (argv.length === 0) {
      process.stdout.write(await renderHelp({ path: [], cmd: rootCommand as AnyCommand, chain: [] }));
      return 2;
    }
    if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-v")) {
      process.stdout.write(`${VERSION}\n`);
      return 0;
    }
    // The shells' completion scripts ask here; the words are whatever is typed so far.
    if (argv[0] === "__complete") return await runComplete(argv.slice(1));
    const line = await parseCommandLine(rootCommand as AnyCommand, argv);
    if (line.help) {
      process.stdout.write(await renderHelp(line));
      return 0;
    }
    if (!line.cmd.run) {
      process.stdout.write(await renderHelp(line));
      const word = line.path.at(-1);
      throw new StratumError("INVALID", word ? `"${word}" needs a sub-command` : "a sub-command is needed");
    }
    const ctx = { args: line.args, rawArgs: line.rawArgs, cmd: line.cmd, data: undefined };
    for (const c of line.chain) if (typeof c.setup === "function") await c.setup(ctx as never);
    const r = await line.cmd.run(ctx as never);
    await flushStdout();
    // A command that reports a finding (status degraded, trace --exit-code) returns its exit code.
    return typeof r === "number" ? r : ((process.exitCode as number | undefined) ?? 0);
  } catch (e) {
    return report(e, { format: errorFormat(argv), verbose });
  }
}

/** `cenvero-str-ctl status | head -1`: the reader went away; end quietly, as if done. */
function quietOnClosedPipe(): void {
  for (const s of [process.stdout, process.stderr])
    s.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "EPIPE") process.exit(0);
      throw e;
    });
}

/** Resolves once what was written to stdout is handed to the kernel (or the pipe closed). */
function flushStdout(): Promise<void> {
  return new Promise((res) => {
    if (process.stdout.writableLength === 0) return res();
    process.stdout.write("", () => res());
  });
}

/** The format of errors: as the output's (-o/--output anywhere before `--`). */
function errorFormat(argv: string[]): "table" | "json" | "yaml" {
  const words = argv.includes("--") ? argv.slice(0, argv.indexOf("--")) : argv;
  for (let i = 0; i < words.length; i++) {
    const a = words[i] as string;
    const v =
      a === "-o" || a === "--output"
        ? words[i + 1]
        : a.startsWith("--output=")
          ? a.slice(9)
          : a.startsWith("-o=")
            ? a.slice(3)
            : a.startsWith("-o") && a.length > 2
              ? a.slice(2)
              : undefined;
    if (v === "json" || v === "yaml") return v;
  }
  return "table";
}

function report(e: unknown, o: { format: "table" | "json" | "yaml"; verbose: boolean }): number {
  let code: ErrorCode | "USAGE";
  let message: string;
  let detail: string | undefined;
  if (e instanceof StratumError) {
    code = e.code;
    message = e.message;
    detail = e.detail;
  } else if (e instanceof Error && e.name === "CLIError") {
    code = "USAGE";
    message = e.message;
  } else {
    code = "INTERNAL";
    message = e instanceof Error ? e.message : String(e);
    if (o.verbose && e instanceof Error) detail = e.stack;
  }
  if (o.format !== "table") {
    const doc = { code, message, ...(detail && o.verbose ? { detail } : {}) };
    process.stderr.write(o.format === "json" ? `${JSON.stringify(doc)}\n` : YAML.stringify(doc));
  } else {
    // Under systemd (the agent's unit), the journal reads the line's priority: an error.
    const prio = detectLogFormat() === "journal" ? "<3>" : "";
    process.stderr.write(`${prio}${BIN}: ${message}\n`);
    if (detail && o.verbose) process.stderr.write(`${detail}\n`);
    else if (detail)
      process.stderr.write(
        `(run with --verbose for the full ${code === "BPF_LOAD" ? "libbpf and verifier " : ""}log)\n`,
      );
  }
  return EXIT_CODES[code] ?? 1;
}
