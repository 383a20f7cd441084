/** The fabric as a document (docs/declarative.md): `apply -f FILE [--dry-run] [--prune]`,
 * `diff -f FILE` (exit 1 when the fabric differs), `export` (the document of the fabric as it
 * is), `schema` (the document's JSON Schema) and `network edit NAME` ($EDITOR on one network). */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type CommandMeta, defineCommand } from "citty";
import YAML from "yaml";
import type { ApiClient } from "../api/api-client";
import type { OperationId } from "../api/contract";
import { ApplyError, type Call, exportDoc, readCurrent, runPlan } from "../apply/apply";
import { docErrors, fabricJsonSchema, type Parsed, parseFabric } from "../apply/fabric";
import { type Plan, plan, stepView } from "../apply/plan";
import { StratumError } from "../errors";
import { client } from "./api-flags";
import { GLOBAL_ARGS } from "./args";
import { outputArg, parseFormat, printData, printTable } from "./output";

// Not network-commands' helpers: it imports `edit` from here.
const apiArg = { "api-socket": GLOBAL_ARGS["api-socket"] } as const;
const meta = (name: string, description: string, examples: string[] = []) =>
  ({ name, description, examples }) as CommandMeta;

const fileArg = {
  file: {
    type: "string",
    alias: "f",
    required: true,
    description: "The fabric document (YAML or JSON; - reads standard input)",
    valueHint: "FILE",
  },
} as const;

const pruneArg = {
  prune: {
    type: "boolean",
    description: "Also delete what the document does not name (networks, DNS records, blocklist prefixes)",
  },
} as const;

/** The API's operations through the CLI's client. */
const callOf =
  (api: ApiClient): Call =>
  (op: OperationId, args) =>
    (api.call as (op: OperationId, a: unknown) => Promise<unknown>)(op, args);

function readDoc(file: string): { text: string; name: string } {
  try {
    return file === "-"
      ? { text: readFileSync(0, "utf8"), name: "<stdin>" }
      : { text: readFileSync(file, "utf8"), name: file };
  } catch (e) {
    throw new StratumError("INVALID", `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? e}`);
  }
}

/** The document checked, the fabric read and the plan made: every problem of either at once. */
async function planFor(
  api: ApiClient,
  text: string,
  name: string,
  prune: boolean,
  only?: (n: string) => boolean,
): Promise<{ parsed: Parsed; plan: Plan }> {
  const parsed = parseFabric(text);
  if (parsed.errors.length || !parsed.desired) throw docErrors(name, parsed.errors);
  const cur = await readCurrent(callOf(api));
  if (only) cur.networks = cur.networks.filter((n) => only(n.name));
  const p = plan(cur, parsed.desired, { prune });
  if (p.errors.length)
    throw docErrors(
      name,
      p.errors.map((e) => ({ path: e.path, line: parsed.lineOf(e.path), message: e.message })),
    );
  return { parsed, plan: p };
}

function printPlan(p: Plan, name: string): void {
  if (!p.steps.length) {
    process.stdout.write(`no changes: the fabric is as ${name} says\n`);
    return;
  }
  printTable(
    ["ACTION", "KIND", "NAME", "CHANGES"],
    p.steps.map((s) => [s.action, s.kind, s.name, s.changes.join("; ")]),
  );
  const n = (a: string) => p.steps.filter((s) => s.action === a).length;
  process.stdout.write(`${n("create")} to create, ${n("change")} to change, ${n("delete")} to delete\n`);
}

async function applyPlan(api: ApiClient, p: Plan, quiet: boolean) {
  try {
    return await runPlan(callOf(api), p, (i, total, s) => {
      if (!quiet && i < total) process.stderr.write(`[${i + 1}/${total}] ${s.action} ${s.kind} ${s.name}\n`);
    });
  } catch (e) {
    if (e instanceof ApplyError && !quiet) {
      for (const u of e.report.undone ?? []) process.stderr.write(`undone: ${u.action} ${u.kind} ${u.name}\n`);
    }
    throw e;
  }
}

const apply = defineCommand({
  meta: meta(
    "apply",
    "Make the fabric what a document says: check the whole document first (every problem, with its line), print the plan (create, change, delete, in dependency order), then apply it; a failure part-way undoes what the apply did. What the document leaves out is left as it is; nothing is deleted without --prune",
    [
      "cenvero-str-ctl apply -f fabric.yaml --dry-run   # the plan only",
      "cenvero-str-ctl apply -f fabric.yaml",
      "cenvero-str-ctl apply -f fabric.yaml --prune     # also delete what it does not name",
      "cenvero-str-ctl export > fabric.yaml             # start from the fabric as it is",
    ],
  ),
  args: {
    ...fileArg,
    "dry-run": { type: "boolean", description: "Stop after the plan: change nothing" },
    ...pruneArg,
    ...apiArg,
    ...outputArg,
  },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    const { text, name } = readDoc(args.file as string);
    const api = client(args);
    const { plan: p } = await planFor(api, text, name, args.prune === true);
    const steps = p.steps.map(stepView);
    if (args["dry-run"] || !p.steps.length) {
      if (fmt !== "table") return printData(fmt, { dryRun: args["dry-run"] === true, changed: false, plan: steps });
      printPlan(p, name);
      return;
    }
    if (fmt === "table") printPlan(p, name);
    await applyPlan(api, p, fmt !== "table");
    if (fmt !== "table") return printData(fmt, { dryRun: false, changed: true, plan: steps });
    process.stdout.write(`applied: ${p.steps.length} step${p.steps.length === 1 ? "" : "s"}\n`);
  },
});

const diff = defineCommand({
  meta: meta(
    "diff",
    "What an apply of the document would change, as its plan; exit 1 when the fabric differs from it, 0 when not (for CI)",
    ["cenvero-str-ctl diff -f fabric.yaml", "cenvero-str-ctl diff -f fabric.yaml --prune -o json"],
  ),
  args: { ...fileArg, ...pruneArg, ...apiArg, ...outputArg },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    const { text, name } = readDoc(args.file as string);
    const { plan: p } = await planFor(client(args), text, name, args.prune === true);
    if (fmt !== "table") printData(fmt, { differs: p.steps.length > 0, plan: p.steps.map(stepView) });
    else printPlan(p, name);
    return p.steps.length ? 1 : 0;
  },
});

/** `export`'s own run (its sub-command `networkd` writes networkd's files). */
export async function exportFabric(args: Record<string, unknown>): Promise<void> {
  const fmt = parseFormat(args.output);
  const doc = exportDoc(await readCurrent(callOf(client(args))));
  if (fmt === "json") printData("json", doc);
  else process.stdout.write(YAML.stringify(doc, { lineWidth: 0 }));
}

const schema = defineCommand({
  meta: meta(
    "schema",
    "Print the fabric document's JSON Schema (what apply reads): point an editor's YAML support at it to check and complete documents as they are written",
    [
      "cenvero-str-ctl schema > stratum-fabric.schema.json",
      "# then, first line of fabric.yaml:",
      "# yaml-language-server: $schema=./stratum-fabric.schema.json",
    ],
  ),
  args: {},
  run() {
    process.stdout.write(`${JSON.stringify(fabricJsonSchema(), null, 2)}\n`);
  },
});

export const edit = defineCommand({
  meta: meta(
    "edit",
    "Open one network as YAML in $VISUAL or $EDITOR (else vi) and apply what is saved, as apply would: checked whole first, undone on a failure; a bad edit is kept in a file to fix and apply",
    ["cenvero-str-ctl network edit app-net", "EDITOR=nano cenvero-str-ctl network edit app-net"],
  ),
  args: {
    name: { type: "positional", required: true, description: "Network to edit", valueHint: "NETWORK" },
    ...apiArg,
  },
  async run({ args }) {
    const api = client(args);
    const name = args.name as string;
    const cur = await readCurrent(callOf(api));
    const net = cur.networks.find((n) => n.name === name);
    if (!net) throw new StratumError("NOT_FOUND", `network "${name}" does not exist`);
    const doc = exportDoc({ ...cur, networks: [net] });
    const before = `# Network ${name}: save to apply, or leave unchanged to cancel. cidr and gateway are fixed.\n${YAML.stringify(
      { version: doc.version, networks: doc.networks },
      { lineWidth: 0 },
    )}`;
    const dir = mkdtempSync(join(tmpdir(), "stratum-edit-"));
    const file = join(dir, `${name}.yaml`);
    writeFileSync(file, before, { mode: 0o600 });
    const editor = process.env.VISUAL || process.env.EDITOR || "vi";
    const r = spawnSync("sh", ["-c", `${editor} "$1"`, "editor", file], { stdio: "inherit" });
    if (r.status !== 0) {
      rmSync(dir, { recursive: true, force: true });
      throw new StratumError("INVALID", `the editor (${editor}) exited with ${r.status ?? r.signal}: nothing applied`);
    }
    const after = readFileSync(file, "utf8");
    if (after === before) {
      rmSync(dir, { recursive: true, force: true });
      process.stdout.write("no changes\n");
      return;
    }
    try {
      const parsed = parseFabric(after);
      const names = parsed.doc?.networks?.map((n) => n.name) ?? [];
      if (!parsed.errors.length && (names.length !== 1 || names[0] !== name))
        throw new StratumError(
          "INVALID",
          `the edit must hold network "${name}" alone (it holds ${names.map((n) => `"${n}"`).join(", ") || "none"}); rename with a new network`,
        );
      if (parsed.doc?.firewall || parsed.doc?.blocklist)
        throw new StratumError("INVALID", "the edit holds one network: firewall.global and blocklist belong to apply");
      const { plan: p } = await planFor(api, after, file, false, (n) => n === name);
      printPlan(p, "the edit");
      if (p.steps.length) await applyPlan(api, p, false);
      rmSync(dir, { recursive: true, force: true });
    } catch (e) {
      process.stderr.write(`your edit is kept in ${file}: fix it and run apply -f ${file}\n`);
      throw e;
    }
  },
});

export const declareCommands = { apply, diff, schema };
