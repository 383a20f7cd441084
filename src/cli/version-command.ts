/** `version`: the binary's version, libbpf's, the kernel's, and what the kernel supports. */
import { type CommandMeta, defineCommand } from "citty";
import pkg from "../../package.json" with { type: "json" };
import { probe } from "../datapath/probe";
import { outputArg, parseFormat, printData, printKv } from "./output";

export const VERSION: string = pkg.version;

export const versionCommand = defineCommand({
  meta: {
    name: "version",
    description: "Show the version, libbpf, the kernel and its BPF features",
    examples: ["cenvero-str-ctl version", "cenvero-str-ctl version -o json | jq .features"],
  } as CommandMeta,
  args: { ...outputArg },
  run({ args }) {
    const fmt = parseFormat(args.output);
    const r = probe();
    const out = {
      version: VERSION,
      libbpf: r.libbpf,
      libbpfPath: r.libbpfPath,
      kernel: r.kernel,
      features: r.features,
    };
    if (fmt !== "table") return printData(fmt, out);
    printKv([
      ["version", VERSION],
      ["libbpf", `${r.libbpf} (${r.libbpfPath})`],
      ["kernel", r.kernel],
      [
        "features",
        Object.entries(r.features)
          .map(([k, v]) => `${k}${v ? "" : " (missing)"}`)
          .join(", "),
      ],
    ]);
  },
});
