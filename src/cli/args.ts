/** The command line, strictly: which command a list of words names, and its flags and
 * arguments checked against that command's table (citty's `args`, plus `repeatable`,
 * `variadic` and `options`). Whatever the table does not name is refused with one line and,
 * for a typo, the nearest valid name; a flag repeats only where its table says so. Global
 * flags (-o, --api-socket, --api-url, --api-token-file, --verbose) go before or after the
 * verb. Pure: no I/O; src/cli/index.ts runs what this returns. */
import type { CommandDef } from "citty";
import { StratumError } from "../errors";
import { nearest } from "../model/suggest";

export const BIN = "cenvero-str-ctl";

/** One flag or positional argument of a command's table. */
export interface FlagDef {
  type?: "string" | "boolean" | "positional" | "enum";
  description?: string;
  valueHint?: string;
  alias?: string | string[];
  default?: string | boolean;
  required?: boolean;
  /** The only values the flag takes (checked here, listed in --help and completion). */
  options?: readonly string[];
  /** The flag may be given more than once; every value counts. */
  repeatable?: boolean;
  /** A last positional that takes every remaining word. */
  variadic?: boolean;
  /** Left out of --help and completion (kept working). */
  hidden?: boolean;
  /** The value of a flag given alone: its value is then optional, taken from the next word
   * only when that is one of `options` (`--nat`, `--nat off`). */
  bare?: string;
}

export type AnyCommand = CommandDef<any>;

/** Flags every command understands, before or after the verb. */
export const GLOBAL_ARGS = {
  output: {
    type: "string",
    alias: "o",
    description: "Output format: table (for people), json or yaml (for scripts)",
    default: "table",
    valueHint: "FORMAT",
    options: ["table", "json", "yaml"],
  },
  "api-socket": {
    type: "string",
    description: "The agent's API socket (default: $STRATUM_API_SOCKET, else /run/stratum/api.sock)",
    valueHint: "PATH",
  },
  "api-url": {
    type: "string",
    description:
      "Talk to the agent's TCP listener instead, e.g. http://10.0.0.5:7443, with --api-token-file (default: $STRATUM_API_URL)",
    valueHint: "URL",
  },
  "api-token-file": {
    type: "string",
    description: "File holding the bearer token of --api-url (default: $STRATUM_API_TOKEN_FILE)",
    valueHint: "FILE",
  },
  verbose: {
    type: "boolean",
    description: "Errors with their whole detail (libbpf and verifier logs, stacks)",
    default: false,
  },
} as const satisfies Record<string, FlagDef>;

const GLOBAL: Record<string, FlagDef> = GLOBAL_ARGS;

export interface Resolved {
  /** The command words, e.g. ["firewall", "rule", "add"]. */
  path: string[];
  cmd: AnyCommand;
  /** Every command from the root to `cmd`. */
  chain: AnyCommand[];
}

export interface ParsedLine extends Resolved {
  /** Flag values by name (defaults filled in) and `_`, the positional arguments. */
  args: Record<string, unknown> & { _: string[] };
  /** The words after the command path as given (for the values of repeatable flags). */
  rawArgs: string[];
  /** --help or -h was given: show the command's help, run nothing. */
  help: boolean;
}

type Resolvable<T> = T | Promise<T> | (() => T | Promise<T>);

export async function resolve<T>(v: Resolvable<T> | undefined): Promise<T | undefined> {
  return typeof v === "function" ? await (v as () => T | Promise<T>)() : await v;
}

export async function subCommands(cmd: AnyCommand): Promise<Record<string, AnyCommand> | undefined> {
  const subs = (await resolve(cmd.subCommands as never)) as Record<string, Resolvable<AnyCommand>> | undefined;
  if (!subs) return undefined;
  const out: Record<string, AnyCommand> = {};
  for (const [k, v] of Object.entries(subs)) out[k] = (await resolve(v)) as AnyCommand;
  return out;
}

export async function argsOf(cmd: AnyCommand): Promise<Record<string, FlagDef>> {
  return ((await resolve(cmd.args as never)) ?? {}) as Record<string, FlagDef>;
}

export async function metaOf(cmd: AnyCommand): Promise<{
  name?: string;
  description?: string;
  hidden?: boolean;
  examples?: string[];
  /** What to say to a word the command takes no argument for ("select a network with --network NAME"). */
  argumentHint?: string;
}> {
  return ((await resolve(cmd.meta as never)) ?? {}) as never;
}

const aliases = (d: FlagDef) => (d.alias === undefined ? [] : Array.isArray(d.alias) ? d.alias : [d.alias]);

const takesValue = (d: FlagDef) => d.type === "string" || d.type === "enum";

/** The flag a word names, in a table: `--name`, `--name=…`, `--no-name` (booleans), `-x`, `-x=…`, `-xVALUE`. */
function matchFlag(
  word: string,
  defs: Record<string, FlagDef>,
): { name: string; def: FlagDef; inline?: string; negated?: boolean } | undefined {
  if (word.startsWith("--")) {
    const eq = word.indexOf("=");
    const name = eq < 0 ? word.slice(2) : word.slice(2, eq);
    const inline = eq < 0 ? undefined : word.slice(eq + 1);
    const d = defs[name];
    if (d && d.type !== "positional") return { name, def: d, inline };
    if (name.startsWith("no-")) {
      const b = defs[name.slice(3)];
      if (b?.type === "boolean" && inline === undefined) return { name: name.slice(3), def: b, negated: true };
    }
    return undefined;
  }
  const short = word[1] as string;
  for (const [name, d] of Object.entries(defs))
    if (d.type !== "positional" && aliases(d).includes(short)) {
      const rest = word.slice(2);
      if (rest === "") return { name, def: d };
      if (rest.startsWith("=")) return { name, def: d, inline: rest.slice(1) };
      if (takesValue(d)) return { name, def: d, inline: rest };
      return undefined;
    }
  return undefined;
}

const isFlagWord = (w: string) => w.startsWith("-") && w !== "-" && !/^-\d/.test(w);

function flagSpelling(name: string, d: FlagDef): string {
  const a = aliases(d).filter((x) => x.length === 1);
  return a.length ? `-${a[0]}/--${name}` : `--${name}`;
}

/** Refusal of an unknown flag, with the nearest valid one. */
function unknownFlag(word: string, defs: Record<string, FlagDef>, path: string[], beforeVerb: boolean): StratumError {
  const name = word.replace(/^-+/, "").split("=")[0] as string;
  const names = Object.entries(defs)
    .filter(([, d]) => d.type !== "positional")
    .map(([n]) => n);
  const guess = nearest(name, names);
  const shown = word.split("=")[0];
  const where = [BIN, ...path].join(" ");
  const hint = guess
    ? ` (did you mean --${guess}?)`
    : beforeVerb
      ? ` (only global flags go before the command: ${Object.keys(GLOBAL)
          .map((n) => `--${n}`)
          .join(", ")})`
      : ` (${where} --help lists the flags)`;
  return new StratumError("INVALID", `unknown flag ${shown}${hint}`);
}

function unknownCommand(word: string, subs: Record<string, AnyCommand>, path: string[]): StratumError {
  const guess = nearest(word, Object.keys(subs));
  const where = [BIN, ...path].join(" ");
  return new StratumError(
    "INVALID",
    `unknown command "${word}"${guess ? ` (did you mean "${guess}"?` : ` (${where} --help lists them)`}${guess ? ")" : ""}`,
  );
}

function checkOption(name: string, d: FlagDef, v: string): void {
  if (d.options && !d.options.includes(v)) {
    const what = d.type === "positional" ? (d.valueHint ?? name.toUpperCase()) : `--${name}`;
    const list =
      d.options.length === 2 ? d.options.join(" or ") : `${d.options.slice(0, -1).join(", ")} or ${d.options.at(-1)}`;
    const guess = nearest(v, d.options);
    throw new StratumError(
      "INVALID",
      `${what} must be ${list}, not "${v}"${guess && guess !== v ? ` (did you mean ${guess}?)` : ""}`,
    );
  }
}

function booleanValue(name: string, v: string): boolean {
  if (v === "true") return true;
  if (v === "false") return false;
  throw new StratumError(
    "INVALID",
    `--${name} is on or off: give --${name}, --no-${name} or --${name}=false, not "${v}"`,
  );
}

/** Which command the words name, ignoring flags (for --help, which must work whatever else is wrong). */
export async function resolveCommand(root: AnyCommand, argv: string[], strict: boolean): Promise<Resolved> {
  let cmd = root;
  const path: string[] = [];
  const chain = [root];
  for (let i = 0; i < argv.length; i++) {
    const w = argv[i] as string;
    if (w === "--") break;
    if (isFlagWord(w)) {
      // A global flag's value is not a command word.
      const m = matchFlag(w, GLOBAL);
      if (m && takesValue(m.def) && m.inline === undefined) i++;
      continue;
    }
    const subs = await subCommands(cmd);
    if (!subs) break;
    const next = subs[w];
    // A command that runs on its own takes other words as its arguments.
    if (!next && cmd.run) break;
    if (!next) {
      if (strict) throw unknownCommand(w, subs, path);
      break;
    }
    path.push(w);
    cmd = next;
    chain.push(next);
  }
  return { path, cmd, chain };
}

/** Parses a whole command line: the command, then every flag and argument against its table.
 * Throws INVALID (exit 2) with one line for anything it does not understand. */
export async function parseCommandLine(root: AnyCommand, argv: string[]): Promise<ParsedLine> {
  const dashdash = argv.indexOf("--");
  const before = dashdash < 0 ? argv : argv.slice(0, dashdash);
  const help = before.includes("--help") || before.includes("-h");
  if (help) {
    const r = await resolveCommand(root, argv, true);
    return { ...r, args: { _: [] }, rawArgs: [], help: true };
  }

  let cmd = root;
  const path: string[] = [];
  const chain = [root];
  let leafDefs: Record<string, FlagDef> | undefined;
  const given = new Map<string, string[]>();
  const positionals: string[] = [];
  const rawArgs: string[] = [];
  let subs = await subCommands(cmd);
  if (!subs || cmd.run) leafDefs = { ...GLOBAL, ...(await argsOf(cmd)) };

  const set = (name: string, d: FlagDef, value: string) => {
    const prev = given.get(name);
    if (prev && !d.repeatable)
      throw new StratumError(
        "INVALID",
        `${flagSpelling(name, d)} is given more than once: it takes one value (only flags marked "repeatable" in --help repeat)`,
      );
    given.set(name, [...(prev ?? []), value]);
  };

  for (let i = 0; i < argv.length; i++) {
    const w = argv[i] as string;
    if (leafDefs && w === "--") {
      positionals.push(...argv.slice(i + 1));
      rawArgs.push(...argv.slice(i));
      break;
    }
    // "-6" is a flag where a table has that alias (trace -6), else a value such as "-1".
    if (isFlagWord(w) || (w.startsWith("-") && w !== "-" && leafDefs && matchFlag(w, leafDefs))) {
      const defs = leafDefs ?? GLOBAL;
      const m = matchFlag(w, defs);
      if (!m) throw unknownFlag(w, defs, path, !leafDefs);
      let value: string;
      if (m.def.type === "boolean") {
        value = m.negated ? "false" : m.inline === undefined ? "true" : String(booleanValue(m.name, m.inline));
      } else if (m.inline !== undefined) {
        value = m.inline;
      } else if (m.def.bare !== undefined && !m.def.options?.includes(argv[i + 1] ?? "")) {
        value = m.def.bare;
        if (leafDefs) rawArgs.push(w);
      } else {
        const next = argv[i + 1];
        if (next === undefined || (next.startsWith("--") && next.length > 2))
          throw new StratumError(
            "INVALID",
            `${flagSpelling(m.name, m.def)} needs a value (${m.def.valueHint ?? "VALUE"})`,
          );
        value = next;
        if (leafDefs) rawArgs.push(w);
        i++;
        if (leafDefs) rawArgs.push(next);
        if (takesValue(m.def)) checkOption(m.name, m.def, value);
        set(m.name, m.def, value);
        continue;
      }
      if (takesValue(m.def)) checkOption(m.name, m.def, value);
      set(m.name, m.def, value);
      if (leafDefs) rawArgs.push(w);
      continue;
    }
    if (!leafDefs) {
      const next = (subs as Record<string, AnyCommand>)[w];
      if (!next) throw unknownCommand(w, subs as Record<string, AnyCommand>, path);
      path.push(w);
      cmd = next;
      chain.push(next);
      subs = await subCommands(cmd);
      if (!subs || cmd.run) leafDefs = { ...GLOBAL, ...(await argsOf(cmd)) };
      continue;
    }
    // A command that runs on its own and has commands too (export, export networkd): its
    // first word may name one of them.
    const sub = subs && !positionals.length ? (subs as Record<string, AnyCommand>)[w] : undefined;
    if (sub) {
      path.push(w);
      cmd = sub;
      chain.push(sub);
      subs = await subCommands(cmd);
      leafDefs = !subs || cmd.run ? { ...GLOBAL, ...(await argsOf(cmd)) } : undefined;
      continue;
    }
    positionals.push(w);
    rawArgs.push(w);
  }
  if (!leafDefs) return { path, cmd, chain, args: { _: [] }, rawArgs, help: false };

  // Values, defaults, required flags, positional arguments.
  const args: Record<string, unknown> & { _: string[] } = { _: positionals };
  const posDefs: Array<[string, FlagDef]> = [];
  for (const [name, d] of Object.entries(leafDefs)) {
    if (d.type === "positional") {
      posDefs.push([name, d]);
      continue;
    }
    const vs = given.get(name);
    // A boolean with no default is undefined when not given ("unchanged" for a set command).
    if (d.type === "boolean") args[name] = vs ? vs.at(-1) === "true" : d.default;
    else if (vs) args[name] = vs.at(-1);
    else if (d.default !== undefined) args[name] = d.default;
    else if (d.required)
      throw new StratumError("INVALID", `missing ${flagSpelling(name, d)} (${[BIN, ...path].join(" ")} --help)`);
    else args[name] = undefined;
  }
  const variadic = posDefs.at(-1)?.[1].variadic === true;
  posDefs.forEach(([name, d], k) => {
    const v = positionals[k];
    if (v === undefined && d.required !== false && d.default === undefined)
      throw new StratumError(
        "INVALID",
        `missing ${d.valueHint ?? name.toUpperCase()} (${[BIN, ...path].join(" ")} --help)`,
      );
    if (v !== undefined) checkOption(name, d, v);
    args[name] = v ?? d.default;
  });
  if (!variadic && positionals.length > posDefs.length) {
    const extra = positionals[posDefs.length] as string;
    const own = (await metaOf(cmd)).argumentHint;
    const hint =
      extra.startsWith("—") || extra.startsWith("–")
        ? " (a flag starts with two ASCII hyphens: --)"
        : own
          ? ` (${own})`
          : "";
    throw new StratumError("INVALID", `unexpected argument "${extra}"${hint}`);
  }
  return { path, cmd, chain, args, rawArgs, help: false };
}

/** Every value of a repeatable flag, in order. */
export function allValues(rawArgs: string[], flag: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < rawArgs.length; i++) {
    const a = rawArgs[i] as string;
    if (a === "--") break;
    if (a === `--${flag}` && rawArgs[i + 1] !== undefined) out.push(rawArgs[++i] as string);
    else if (a.startsWith(`--${flag}=`)) out.push(a.slice(flag.length + 3));
  }
  return out;
}

// ---- help -----------------------------------------------------------------------------------

export interface HelpStyle {
  /** Columns to wrap at. */
  width: number;
  /** ANSI bold headings (a terminal that asked for them). */
  color: boolean;
}

export function helpStyle(stream: { isTTY?: boolean; columns?: number } = process.stdout): HelpStyle {
  const tty = stream.isTTY === true;
  const env = process.env;
  return {
    width: tty ? Math.max(60, Math.min(stream.columns ?? 100, 120)) : 100,
    color: tty && !env.NO_COLOR && env.TERM !== "dumb",
  };
}

/** Words of `text` in lines of at most `width` columns (a longer word gets its own line). */
export function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines.length ? lines : [""];
}

function flagLabel(name: string, d: FlagDef): string {
  const short = aliases(d)
    .filter((a) => a.length === 1)
    .map((a) => `-${a}, `)
    .join("");
  const value = takesValue(d) ? ` ${d.valueHint ?? "VALUE"}` : "";
  return `${short}--${name}${value}`;
}

function flagText(d: FlagDef, isGlobalDefault = false): string {
  const notes: string[] = [];
  if (d.required) notes.push("required");
  if (d.repeatable) notes.push("repeatable");
  // A default the description does not state already (booleans default to off).
  if (
    !isGlobalDefault &&
    d.default !== undefined &&
    d.type !== "boolean" &&
    !/\(default/i.test(d.description ?? "") &&
    d.default !== ""
  )
    notes.push(`default ${d.default}`);
  return `${d.description ?? ""}${notes.length ? ` (${notes.join(", ")})` : ""}`;
}

function table(rows: Array<[string, string]>, s: HelpStyle): string[] {
  const indent = 2;
  const col = Math.min(Math.max(...rows.map(([l]) => l.length)), 30);
  const descWidth = Math.max(30, s.width - indent - col - 2);
  const out: string[] = [];
  for (const [label, text] of rows) {
    const lines = wrap(text, descWidth);
    if (label.length > col) {
      out.push(`${" ".repeat(indent)}${label}`);
      for (const l of lines) out.push(`${" ".repeat(indent + col + 2)}${l}`.trimEnd());
    } else {
      out.push(`${" ".repeat(indent)}${label.padEnd(col)}  ${lines[0]}`.trimEnd());
      for (const l of lines.slice(1)) out.push(`${" ".repeat(indent + col + 2)}${l}`);
    }
  }
  return out;
}

/** The help of a command: what it does, usage, arguments, options, global options, commands, examples. */
export async function renderHelp(r: Resolved, s: HelpStyle = helpStyle()): Promise<string> {
  const h = (t: string) => (s.color ? `\u001b[1m${t}\u001b[22m` : t);
  const meta = await metaOf(r.cmd);
  const name = [BIN, ...r.path].join(" ");
  const out: string[] = [...wrap(meta.description ?? "", s.width), ""];
  const subs = r.cmd.run ? undefined : await subCommands(r.cmd);
  if (subs) {
    out.push(h("USAGE"), `  ${name}${r.path.length ? "" : " [GLOBAL OPTIONS]"} COMMAND ...`, "", h("COMMANDS"));
    const rows: Array<[string, string]> = [];
    for (const [k, c] of Object.entries(subs)) {
      const m = await metaOf(c);
      if (!m.hidden) rows.push([k, m.description ?? ""]);
    }
    out.push(...table(rows, s), "", `Run \`${name} COMMAND --help\` for one command's flags and examples.`);
    if (!r.path.length) {
      out.push("", h("GLOBAL OPTIONS"));
      out.push(
        ...table(
          Object.entries(GLOBAL).map(([n, d]) => [flagLabel(n, d), flagText(d, true)]),
          s,
        ),
      );
      out.push("", h("EXIT CODES"), ...table(EXIT_CODE_HELP, s));
    }
    return `${out.join("\n")}\n`;
  }
  const defs = await argsOf(r.cmd);
  const own = Object.entries(defs).filter(([n, d]) => !d.hidden && !(n in GLOBAL && GLOBAL[n] === d));
  const pos = own.filter(([, d]) => d.type === "positional");
  const flags = own.filter(([, d]) => d.type !== "positional");
  const usage = [name];
  for (const [n, d] of pos) {
    const label = `${d.valueHint ?? n.toUpperCase()}${d.variadic ? "..." : ""}`;
    usage.push(d.required === false || d.default !== undefined ? `[${label}]` : label);
  }
  for (const [n, d] of flags) if (d.required) usage.push(`--${n} ${d.valueHint ?? "VALUE"}`);
  if (flags.some(([, d]) => !d.required)) usage.push("[OPTIONS]");
  out.push(h("USAGE"), ...wrap(usage.join(" "), s.width - 4).map((l, i) => `${i ? "      " : "  "}${l}`), "");
  // A command that runs on its own and has commands too (export, export networkd).
  const also = r.cmd.run ? await subCommands(r.cmd) : undefined;
  if (also) {
    const rows: Array<[string, string]> = [];
    for (const [k, c] of Object.entries(also)) {
      const m = await metaOf(c);
      if (!m.hidden) rows.push([k, m.description ?? ""]);
    }
    out.push(h("COMMANDS"), ...table(rows, s), "");
  }
  if (pos.length) {
    out.push(h("ARGUMENTS"));
    out.push(
      ...table(
        pos.map(([n, d]) => [`${d.valueHint ?? n.toUpperCase()}${d.variadic ? "..." : ""}`, flagText(d)]),
        s,
      ),
      "",
    );
  }
  if (flags.length) {
    out.push(h("OPTIONS"));
    out.push(
      ...table(
        flags.map(([n, d]) => [flagLabel(n, d), flagText(d)]),
        s,
      ),
      "",
    );
  }
  const globals = Object.entries(GLOBAL).filter(([n]) => !(n in defs) || defs[n] === GLOBAL[n]);
  out.push(h("GLOBAL OPTIONS"));
  out.push(
    ...table(
      globals.map(([n, d]) => [flagLabel(n, d), flagText(d, true)]),
      s,
    ),
    "",
  );
  if (meta.examples?.length) {
    out.push(h("EXAMPLES"));
    for (const e of meta.examples) out.push(`  ${e}`);
    out.push("");
  }
  return `${out.join("\n")}\n`;
}

/** Exit codes as --help lists them (src/cli/index.ts maps error codes to these numbers). */
export const EXIT_CODE_HELP: Array<[string, string]> = [
  ["0", "done"],
  ["1", "done, with a finding: status degraded, trace --exit-code dropped, reconcile with errors"],
  ["2", "bad input or usage: nothing was changed"],
  ["3", "not found"],
  ["4", "not supported by this kernel"],
  ["5", "a system or netlink call failed"],
  ["6", "a BPF program failed to load or attach"],
  ["7", "the agent cannot be reached"],
  ["8", "a table would overfill: nothing was changed"],
  ["9", "the name, address or interface is taken already"],
  ["10", "not permitted: not root, or a read-only path"],
  ["11", "no or a wrong API token"],
  ["12", "the cluster's etcd cannot be reached"],
  ["70", "internal error (a bug: please report it with --verbose)"],
];
