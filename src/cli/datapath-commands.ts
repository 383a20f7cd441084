/** `datapath`: direct, agent-less operations on the datapath of this node (or of the
 * network namespace the command runs in): attach the counting programs to a device,
 * read their counters from the pins, detach them. The first thing to run on a new node. */
import { type CommandMeta, defineCommand } from "citty";
import { attachCounter, detachCounters, HOOKS, type HookName, readPinnedCounts } from "../datapath/counters";
import { smokeCheck } from "../datapath/probe";
import { StratumError } from "../errors";
import { listLinks, mustGetLink } from "../netlink";
import { outputArg, parseFormat, printData, printTable } from "./output";

export const DEFAULT_PIN_ROOT = "/sys/fs/bpf/stratum";

const pinRootArg = {
  "pin-root": {
    type: "string",
    description: "bpffs directory holding Stratum's pins",
    default: DEFAULT_PIN_ROOT,
    valueHint: "DIR",
  },
} as const;

function parseHook(v: string): HookName {
  if (v in HOOKS) return v as HookName;
  throw new StratumError("INVALID", `unknown hook "${v}" (use ${Object.keys(HOOKS).join(", ")})`);
}

const attach = defineCommand({
  meta: {
    name: "attach",
    description:
      "Attach the counting program to a device and pin it (tcx link, cls_bpf if the kernel lacks tcx; XDP native, generic as fallback)",
    examples: [
      "# The first thing to run on a new node: does this kernel run Stratum's programs?",
      "cenvero-str-ctl datapath counter attach --dev eth1",
      "cenvero-str-ctl datapath counter attach --dev eth1 --hook xdp --mode native",
    ],
  } as CommandMeta,
  args: {
    dev: { type: "string", description: "Device to attach to", required: true, valueHint: "IFACE" },
    hook: {
      type: "string",
      description: "tc-ingress, tc-egress or xdp",
      default: "tc-ingress",
      valueHint: "HOOK",
      options: ["tc-ingress", "tc-egress", "xdp"],
    },
    mode: {
      type: "string",
      description: "auto, tcx or cls_bpf for tc hooks; auto, native or generic for xdp",
      default: "auto",
      valueHint: "MODE",
    },
    ...pinRootArg,
    ...outputArg,
  },
  run({ args }) {
    const fmt = parseFormat(args.output);
    const hook = parseHook(args.hook);
    const allowed = hook === "xdp" ? ["auto", "native", "generic"] : ["auto", "tcx", "cls_bpf"];
    if (!allowed.includes(args.mode))
      throw new StratumError("INVALID", `mode "${args.mode}" does not apply to ${hook} (use ${allowed.join(", ")})`);
    const link = mustGetLink(args.dev);
    const a = attachCounter(args["pin-root"], link.name, link.index, hook, args.mode as never);
    if (fmt !== "table") return printData(fmt, { dev: link.name, ...a });
    process.stdout.write(
      `attached stm counter at ${hook} of ${link.name} (ifindex ${link.index}) as ${a.kind}${a.xdpMode ? ` ${a.xdpMode}` : ""}, program id ${a.progId}${a.pin ? `, pinned at ${a.pin}` : ""}\n`,
    );
  },
});

const read = defineCommand({
  meta: {
    name: "read",
    description: "Print packet and byte counters from the pinned counter map",
    examples: ["cenvero-str-ctl datapath counter read", "cenvero-str-ctl datapath counter read --dev eth1 -o json"],
  } as CommandMeta,
  args: {
    dev: { type: "string", description: "Only this device", valueHint: "IFACE" },
    ...pinRootArg,
    ...outputArg,
  },
  run({ args }) {
    const fmt = parseFormat(args.output);
    const only = args.dev ? mustGetLink(args.dev).index : undefined;
    const names = new Map(listLinks().map((l) => [l.index, l.name]));
    const rows = readPinnedCounts(args["pin-root"])
      .filter((c) => only === undefined || c.ifindex === only)
      .map((c) => ({ dev: names.get(c.ifindex) ?? null, ...c }));
    if (fmt !== "table") return printData(fmt, rows);
    printTable(
      ["DEV", "IFINDEX", "HOOK", "PACKETS", "BYTES"],
      rows.map((r) => [r.dev ?? "-", String(r.ifindex), r.hook, String(r.packets), String(r.bytes)]),
    );
  },
});

const detach = defineCommand({
  meta: {
    name: "detach",
    description: "Detach every pinned counter and remove its pins",
    examples: ["cenvero-str-ctl datapath counter detach", "cenvero-str-ctl datapath counter detach --dev eth1"],
  } as CommandMeta,
  args: {
    dev: { type: "string", description: "Also remove Stratum's cls_bpf filters from this device", valueHint: "IFACE" },
    ...pinRootArg,
    ...outputArg,
  },
  run({ args }) {
    const fmt = parseFormat(args.output);
    const ifindexes = args.dev ? [mustGetLink(args.dev).index] : [];
    const r = detachCounters(args["pin-root"], ifindexes);
    if (fmt !== "table") return printData(fmt, r);
    process.stdout.write(`detached ${r.links} link(s) and ${r.filters} cls_bpf filter(s)\n`);
  },
});

export const datapathCommand = defineCommand({
  meta: { name: "datapath", description: "Work on this node's datapath directly, without the agent" },
  setup() {
    smokeCheck("the datapath command");
  },
  subCommands: {
    counter: defineCommand({
      meta: { name: "counter", description: "Count packets on a device with the counting program" },
      subCommands: { attach, read, detach },
    }),
  },
});
