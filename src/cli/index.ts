/** The command tree and the one place errors become what a user sees: a one-line
 * message on stderr (or `{code, message}` with `-o json`) and a stable exit code. */
import { type CommandDef, defineCommand, runCommand, showUsage } from "citty";
import { type ErrorCode, StratumError } from "../errors";
import { agentCommand } from "./agent";
import { datapathCommand } from "./datapath";
import { dhcpCommand } from "./dhcp";
import { dnsCommand } from "./dns";
import { firewallCommand } from "./firewall";
import { monitorCommand } from "./monitor";
import { endpointCommand, networkCommand } from "./network";
import { reconcileCommand } from "./reconcile";
import { statusCommand } from "./status";
import { traceCommand } from "./trace";
import { uninstallCommand } from "./uninstall";
import { VERSION, versionCommand } from "./version";

export const BIN = "cenvero-str-ctl";

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
    trace: traceCommand,
    monitor: monitorCommand,
    status: statusCommand,
    reconcile: reconcileCommand,
    uninstall: uninstallCommand,
    datapath: datapathCommand,
    version: versionCommand,
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
  SYS: 5,
  NETLINK: 5,
  BPF_LOAD: 6,
  BPF_ATTACH: 6,
  INTERNAL: 70,
};

type AnyCommand = CommandDef<any>;

async function resolve<T>(v: T | (() => T | Promise<T>) | Promise<T> | undefined): Promise<T | undefined> {
  return typeof v === "function" ? await (v as () => T | Promise<T>)() : await v;
}

/** The sub-command a list of arguments names, and its parent, for usage output. */
async function commandFor(argv: string[]): Promise<[AnyCommand, AnyCommand | undefined]> {
  let cmd: AnyCommand = rootCommand as AnyCommand;
  const path: string[] = [];
  for (const a of argv) {
    if (a.startsWith("-")) continue;
    const subs = (await resolve(cmd.subCommands as never)) as Record<string, AnyCommand> | undefined;
    if (!subs) break;
    const next = await resolve(subs[a]);
    if (!next) {
      await showUsage(
        cmd,
        path.length ? ({ meta: { name: [BIN, ...path.slice(0, -1)].join(" ") } } as AnyCommand) : undefined,
      );
      throw new StratumError("INVALID", `unknown command "${a}" (${[BIN, ...path].join(" ")} --help lists them)`);
    }
    path.push(a);
    cmd = next;
  }
  // citty prints "<parent name> <command name>": give it the whole path so usage lines can be pasted.
  const parent = path.length ? ({ meta: { name: [BIN, ...path.slice(0, -1)].join(" ") } } as AnyCommand) : undefined;
  return [cmd, parent];
}

/** Examples a command lists in its meta (`examples`, beside citty's fields), after the usage. */
async function showExamples(cmd: AnyCommand): Promise<void> {
  const meta = (await resolve(cmd.meta as never)) as { examples?: string[] } | undefined;
  if (meta?.examples?.length) process.stdout.write(`EXAMPLES\n\n${meta.examples.map((e) => `  ${e}`).join("\n")}\n\n`);
}

function wantsJson(argv: string[]): boolean {
  const i = argv.findIndex((a) => a === "-o" || a === "--output");
  return (i >= 0 && argv[i + 1] === "json") || argv.includes("--output=json") || argv.includes("-o=json");
}

/** Runs the CLI and returns the exit code; never throws. */
export async function runCli(argv: string[]): Promise<number> {
  const verbose = argv.includes("--verbose") || process.env.STRATUM_VERBOSE === "1";
  const args = argv.filter((a) => a !== "--verbose");
  try {
    if (args.length === 0 || args.includes("--help") || args.includes("-h")) {
      const [cmd, parent] = await commandFor(args);
      await showUsage(cmd, parent);
      await showExamples(cmd);
      return args.length === 0 ? 2 : 0;
    }
    if (args.length === 1 && (args[0] === "--version" || args[0] === "-v")) {
      process.stdout.write(`${VERSION}\n`);
      return 0;
    }
    const [cmd, parent] = await commandFor(args);
    if (cmd.subCommands && !cmd.run) {
      await showUsage(cmd, parent);
      const word = args.filter((a) => !a.startsWith("-")).at(-1);
      throw new StratumError("INVALID", word ? `"${word}" needs a sub-command` : "a sub-command is needed");
    }
    await runCommand(rootCommand, { rawArgs: args });
    return 0;
  } catch (e) {
    return report(e, { json: wantsJson(args), verbose });
  }
}

function report(e: unknown, o: { json: boolean; verbose: boolean }): number {
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
  if (o.json) {
    process.stderr.write(`${JSON.stringify({ code, message, ...(detail && o.verbose ? { detail } : {}) })}\n`);
  } else {
    process.stderr.write(`${BIN}: ${message}\n`);
    if (detail && o.verbose) process.stderr.write(`${detail}\n`);
    else if (detail)
      process.stderr.write(
        `(run with --verbose for the full ${code === "BPF_LOAD" ? "libbpf and verifier " : ""}log)\n`,
      );
  }
  return EXIT_CODES[code] ?? 1;
}
