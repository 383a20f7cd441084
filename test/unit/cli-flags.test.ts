/** Every command's flag table, walked: unknown flags and typos are refused with the nearest
 * valid name, a flag repeats only where its table says so, values outside a flag's options
 * are refused, every leaf has examples and each example parses against its own table, and
 * global flags work before the verb. In-process (the parser is pure), so every flag of every
 * command is tried. */
import { describe, expect, test } from "bun:test";
import {
  type AnyCommand,
  argsOf,
  type FlagDef,
  GLOBAL_ARGS,
  metaOf,
  parseCommandLine,
  renderHelp,
  subCommands,
} from "../../src/cli/args";
import { rootCommand } from "../../src/cli/run";
import { StratumError } from "../../src/errors";
import { editDistance, nearest } from "../../src/model/suggest";

const root = rootCommand as AnyCommand;

interface Leaf {
  path: string[];
  cmd: AnyCommand;
  defs: Record<string, FlagDef>;
  examples: string[];
}

async function leaves(c: AnyCommand = root, path: string[] = []): Promise<Leaf[]> {
  const subs = c.run ? undefined : await subCommands(c);
  if (!subs) return [{ path, cmd: c, defs: await argsOf(c), examples: (await metaOf(c)).examples ?? [] }];
  const out: Leaf[] = [];
  for (const [k, v] of Object.entries(subs)) {
    if ((await metaOf(v)).hidden) continue;
    out.push(...(await leaves(v, [...path, k])));
  }
  return out;
}

const all = await leaves();

/** The error a command line is refused with (undefined when it parses). */
async function refusal(argv: string[]): Promise<StratumError | undefined> {
  try {
    await parseCommandLine(root, argv);
    return undefined;
  } catch (e) {
    if (!(e instanceof StratumError)) throw e;
    return e;
  }
}

/** Shell words of an example line (quotes, no expansion), up to a comment, pipe or redirection. */
function words(line: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quote = "";
  let has = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i] as string;
    if (quote) {
      if (ch === quote) quote = "";
      else cur += ch;
      continue;
    }
    if (ch === "'" || ch === '"') {
      quote = ch;
      has = true;
      continue;
    }
    if (ch === " " || ch === "\t") {
      if (has || cur) out.push(cur);
      cur = "";
      has = false;
      continue;
    }
    if ((ch === "#" && !cur && !has) || ch === "|" || ch === ">" || ch === ";" || ch === "&") break;
    cur += ch;
  }
  if (has || cur) out.push(cur);
  return out;
}

/** The command lines of a leaf's examples (each command of a pipeline): lines continued with \
 * joined; comments and other programs skipped. */
function exampleLines(examples: string[]): string[][] {
  const out: string[][] = [];
  let pending = "";
  for (const e of examples) {
    const line = pending + e.trim();
    if (line.endsWith("\\")) {
      pending = `${line.slice(0, -1)} `;
      continue;
    }
    pending = "";
    for (const part of line.split("|")) {
      const w = words(part);
      const at = w.indexOf("cenvero-str-ctl");
      if (at >= 0) out.push(w.slice(at + 1));
    }
  }
  return out;
}

test("the walk finds every command (35 leaves and counting)", () => {
  expect(all.length).toBeGreaterThanOrEqual(35);
  expect(all.map((l) => l.path.join(" "))).toContain("firewall rule add");
});

describe("every leaf command", () => {
  for (const leaf of all) {
    const name = leaf.path.join(" ");
    const flags = Object.entries(leaf.defs).filter(([, d]) => d.type !== "positional" && !d.hidden);

    test(`${name}: has a description and examples, and every example parses as this command`, async () => {
      expect((await metaOf(leaf.cmd)).description?.length ?? 0).toBeGreaterThan(10);
      const lines = exampleLines(leaf.examples);
      expect({ name, examples: lines.length > 0 }).toEqual({ name, examples: true });
      let mine = 0;
      for (const argv of lines) {
        const e = await refusal(argv);
        expect({ example: argv.join(" "), error: e?.message }).toEqual({ example: argv.join(" "), error: undefined });
        if ((await parseCommandLine(root, argv)).path.join(" ") === name) mine++;
      }
      expect({ name, examplesOfThisCommand: mine > 0 }).toEqual({ name, examplesOfThisCommand: true });
    });

    test(`${name}: an unknown flag is refused, before or after the arguments`, async () => {
      for (const argv of [
        [...leaf.path, "--no-such-flag-anywhere"],
        [...leaf.path, "--no-such-flag-anywhere=1"],
        ["--no-such-flag-anywhere", ...leaf.path],
      ]) {
        const e = await refusal(argv);
        expect({ argv, code: e?.code }).toEqual({ argv, code: "INVALID" });
        expect(e?.message).toStartWith("unknown flag --no-such-flag-anywhere");
      }
    });

    test(`${name}: a typo of each flag names the flag meant`, async () => {
      for (const [flag] of flags) {
        if (flag.length < 4) continue;
        // Two inner letters swapped: one edit away from the flag.
        const typo = `${flag.slice(0, 1)}${flag[2]}${flag[1]}${flag.slice(3)}`;
        if (typo === flag || leaf.defs[typo]) continue;
        const e = await refusal([...leaf.path, `--${typo}`, "x"]);
        expect({ flag, typo, message: e?.message }).toEqual({
          flag,
          typo,
          message: `unknown flag --${typo} (did you mean --${flag}?)`,
        });
      }
    });

    test(`${name}: a flag given twice is refused unless its table says it repeats`, async () => {
      for (const [flag, d] of flags) {
        const one = d.type === "boolean" ? [`--${flag}`] : [`--${flag}`, d.options?.[0] ?? "v"];
        const e = await refusal([...leaf.path, ...one, ...one]);
        const twice = /is given more than once/.test(e?.message ?? "");
        expect({ flag, refusedAsRepeated: twice }).toEqual({ flag, refusedAsRepeated: !d.repeatable });
      }
    });

    test(`${name}: a value outside a flag's options is refused, naming them`, async () => {
      for (const [flag, d] of flags) {
        if (!d.options) continue;
        // A flag whose value is optional (bare) takes a wrong one only inline.
        const e = await refusal([...leaf.path, ...(d.bare ? [`--${flag}=bogus-value`] : [`--${flag}`, "bogus-value"])]);
        expect(e?.message).toStartWith(`--${flag} must be `);
        for (const o of d.options) expect(e?.message).toContain(o);
      }
    });

    test(`${name}: --help teaches without colour or padding when not on a terminal`, async () => {
      const text = await renderHelp({ path: leaf.path, cmd: leaf.cmd, chain: [] }, { width: 100, color: false });
      expect(text).not.toContain("\u001b[");
      // Examples are commands to paste, kept whole; everything above them wraps at the width.
      const [body = "", examples = ""] = text.split("\nEXAMPLES\n");
      for (const line of body.split("\n")) expect({ line, width: line.length <= 100 }).toEqual({ line, width: true });
      for (const line of text.split("\n")) expect(line).toBe(line.trimEnd());
      expect(examples.length).toBeGreaterThan(0);
      for (const [flag, d] of flags) if (!(flag in GLOBAL_ARGS)) expect(text).toContain(`--${flag}`);
      expect(text).toContain("EXAMPLES");
    });
  }
});

test("the issue's dangerous lines are refused, each with the nearest flag", async () => {
  const cases: Array<[string[], string]> = [
    [
      ["firewall", "rule", "add", "app-net", "--priority", "20", "--sorce=10.9.0.0/16", "--action", "deny"],
      "unknown flag --sorce (did you mean --src?)",
    ],
    [
      ["firewall", "rule", "add", "app-net", "--priority", "20", "--dprot=22", "--action", "allow"],
      "unknown flag --dprot (did you mean --dport?)",
    ],
    [
      [
        "network",
        "create",
        "--name",
        "n",
        "--cidr",
        "10.9.0.0/24",
        "--gateway",
        "10.9.0.1",
        "--default-actoin",
        "deny",
      ],
      "unknown flag --default-actoin (did you mean --default-action?)",
    ],
    [["firewall", "import", "NET", "FILE", "--dry-run"], "unknown flag --dry-run"],
    [
      ["firewall", "rule", "add", "n", "--priority", "1", "--dport", "22", "--dport", "23", "--action", "allow"],
      "--dport is given more than once",
    ],
    [["agent", "--bogus"], "unknown flag --bogus"],
    [["nework", "list"], 'unknown command "nework" (did you mean "network"?)'],
    [["network", "lst"], 'unknown command "lst" (did you mean "list"?)'],
    [["network", "list", "extra"], 'unexpected argument "extra"'],
    [["network", "list", "-o", "xml"], '--output must be table, json or yaml, not "xml"'],
    [["network", "create", "--name"], "--name needs a value (NAME)"],
    [
      ["firewall", "rule", "add", "n", "--log=yes"],
      '--log is on or off: give --log, --no-log or --log=false, not "yes"',
    ],
    [
      ["endpoint", "list", "—network", "x"],
      'unexpected argument "—network" (a flag starts with two ASCII hyphens: --)',
    ],
  ];
  for (const [argv, msg] of cases) {
    const e = await refusal(argv);
    expect({ argv, code: e?.code }).toEqual({ argv, code: "INVALID" });
    expect({ argv, has: e?.message?.includes(msg) }).toEqual({ argv, has: true });
  }
});

test("global flags go before or after the verb; repeatable flags keep every value", async () => {
  for (const argv of [
    ["-o", "json", "network", "list"],
    ["--output=yaml", "network", "list"],
    ["-ojson", "network", "list"],
    ["--api-socket", "/x.sock", "network", "list"],
    ["network", "list", "--api-socket", "/x.sock", "-o", "json"],
    ["--api-url", "http://127.0.0.1:1", "--api-token-file", "/t", "network", "list"],
  ]) {
    const p = await parseCommandLine(root, argv);
    expect(p.path).toEqual(["network", "list"]);
  }
  const p = await parseCommandLine(root, ["-o", "json", "--api-socket", "/x.sock", "network", "list"]);
  expect(p.args.output).toBe("json");
  expect(p.args["api-socket"]).toBe("/x.sock");
  const set = await parseCommandLine(root, [
    "network",
    "set",
    "n",
    "--dns-forwarder",
    "10.0.0.1",
    "--dns-forwarder=10.0.0.2",
  ]);
  expect(set.rawArgs).toEqual(["n", "--dns-forwarder", "10.0.0.1", "--dns-forwarder=10.0.0.2"]);
  // A command's own flag of the same name wins over the global one (the agent's socket has a default).
  const agent = await parseCommandLine(root, ["agent"]);
  expect(agent.args["api-socket"]).toBe("/run/stratum/api.sock");
  // After --, everything is an argument.
  const dd = await parseCommandLine(root, ["firewall", "blocklist", "add", "--", "--not-a-flag"]);
  expect(dd.args._).toEqual(["--not-a-flag"]);
});

test("suggestions: edit distance with swaps, abbreviations, nothing for far words", () => {
  expect(editDistance("dprot", "dport")).toBe(1);
  expect(editDistance("kitten", "sitting")).toBe(3);
  expect(nearest("sorce", ["src", "dst", "sport"])).toBe("src");
  expect(nearest("source", ["src", "dst", "sport"])).toBe("src");
  expect(nearest("dst-port", ["dst", "dport", "sport"])).toBe("dport");
  expect(nearest("zzzz", ["src", "dst"])).toBeUndefined();
  expect(nearest("ip", ["to", "if"])).toBe("if");
  expect(nearest("ip", ["to", "ox"])).toBeUndefined(); // two edits are too many for a short word
  expect(nearest("xy", ["ab"])).toBeUndefined();
});
