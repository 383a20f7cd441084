/** Shell completion: `completion bash|zsh|fish` prints a script that asks the binary itself
 * (`__complete SHELL WORDS…`, hidden) what may come next: commands, flags (those of the
 * command typed so far and the global ones), a flag's options, and names that only the agent
 * knows (networks, endpoints, a cluster's nodes and gateway groups), asked with a short
 * timeout. One engine for every shell. */
import { readdirSync } from "node:fs";
import { type CommandMeta, defineCommand } from "citty";
import { client } from "./api-flags";
import { type AnyCommand, argsOf, type FlagDef, GLOBAL_ARGS, metaOf, subCommands } from "./args";

export type Shell = "bash" | "zsh" | "fish";

export interface Completion {
  items: string[];
  /** The shell should offer file names too. */
  files: boolean;
}

const GLOBAL: Record<string, FlagDef> = GLOBAL_ARGS;

const takesValue = (d: FlagDef) => d.type === "string" || d.type === "enum";

/** What a value of `name`/`d` names, for the shell: networks, endpoints, interfaces or files. */
function valueKind(
  name: string,
  d: FlagDef,
  path: string[],
): "network" | "endpoint" | "node" | "group" | "iface" | "file" | undefined {
  const hint = d.valueHint ?? "";
  if (hint === "NETWORK" || name === "network") return "network";
  if (hint === "NODE") return "node";
  if (hint === "GROUP" && path[0] === "gateway") return "group";
  if (hint === "EP" || hint === "ENDPOINT" || name === "from" || name === "to-endpoint" || name === "endpoint")
    return "endpoint";
  if (d.type === "positional" && hint === "NAME" && path[0] === "network") return "network";
  if (hint === "IFACE" || hint === "IF") return "iface";
  if (["FILE", "PATH", "DIR"].includes(hint)) return "file";
  return undefined;
}

async function names(kind: "network" | "endpoint" | "node" | "group", api: Record<string, unknown>): Promise<string[]> {
  const c = client(api);
  const t = AbortSignal.timeout(500);
  try {
    const list = await Promise.race([
      kind === "network"
        ? c.listNetworks()
        : kind === "node"
          ? c.listNodes()
          : kind === "group"
            ? c.gatewayGroups()
            : c.listEndpoints(),
      new Promise<never>((_, rej) => t.addEventListener("abort", () => rej(new Error("timeout")))),
    ]);
    return (list as Array<{ name: string }>).map((x) => x.name);
  } catch {
    return []; // no agent, no names: completion must never fail loudly
  }
}

function interfaces(): string[] {
  try {
    return readdirSync("/sys/class/net");
  } catch {
    return [];
  }
}

async function values(
  name: string,
  d: FlagDef,
  path: string[],
  api: Record<string, unknown>,
): Promise<{ items: string[]; files: boolean }> {
  if (d.options) return { items: [...d.options], files: false };
  const kind = valueKind(name, d, path);
  if (kind === "file") return { items: [], files: true };
  if (kind === "iface") return { items: interfaces(), files: false };
  if (kind) return { items: await names(kind, api), files: false };
  return { items: [], files: false };
}

/** Words as the shell split them, with `--flag` `=` `value` (bash splits at =) joined again. */
function rejoin(words: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < words.length; i++) {
    const w = words[i] as string;
    const last = out.at(-1);
    if (w === "=" && last?.startsWith("-")) {
      out[out.length - 1] = `${last}=${words[i + 1] ?? ""}`;
      i++;
    } else out.push(w);
  }
  return out;
}

/** Candidates for the last of `words` (the word being typed; "" for a new one). */
export async function complete(shell: Shell, raw: string[]): Promise<Completion> {
  const words = rejoin(raw.length ? raw : [""]);
  const cur = words.at(-1) ?? "";
  let cmd: AnyCommand | undefined;
  let node: AnyCommand = (await import("./run")).rootCommand as AnyCommand;
  const path: string[] = [];
  let defs: Record<string, FlagDef> = { ...GLOBAL };
  const seen = new Set<string>();
  const api: Record<string, unknown> = {};
  let positionals = 0;
  let pendingFlag: [string, FlagDef] | undefined;

  for (const w of words.slice(0, -1)) {
    if (pendingFlag) {
      if (pendingFlag[0] in GLOBAL) api[pendingFlag[0]] = w;
      pendingFlag = undefined;
      continue;
    }
    if (w.startsWith("-") && w !== "-") {
      const [flag, inline] = w.startsWith("--") ? [w.slice(2).split("=")[0] as string, w.includes("=")] : ["", false];
      const name = flag || Object.entries(defs).find(([, d]) => [d.alias].flat().includes(w.slice(1, 2)))?.[0] || "";
      const d = defs[name];
      if (d) {
        seen.add(name);
        if (takesValue(d) && !inline && (flag || w.length === 2)) pendingFlag = [name, d];
        else if (inline && name in GLOBAL) api[name] = w.slice(w.indexOf("=") + 1);
      }
      continue;
    }
    if (!cmd) {
      const subs = node.run ? undefined : await subCommands(node);
      const next = subs?.[w];
      if (next) {
        path.push(w);
        node = next;
        if (next.run || !(await subCommands(next))) {
          cmd = next;
          defs = { ...GLOBAL, ...(await argsOf(next)) };
        }
        continue;
      }
      if (!node.run) return { items: [], files: false }; // an unknown command: nothing to offer
      cmd = node;
    }
    positionals++;
  }
  const match = (xs: string[]) => [...new Set(xs)].filter((x) => x.startsWith(cur)).sort();

  if (pendingFlag) {
    const v = await values(pendingFlag[0], pendingFlag[1], path, api);
    return { items: match(v.items), files: v.files };
  }
  if (cur.startsWith("--") && cur.includes("=")) {
    const name = cur.slice(2, cur.indexOf("="));
    const d = defs[name];
    if (!d || !takesValue(d)) return { items: [], files: false };
    const v = await values(name, d, path, api);
    const typed = cur.slice(cur.indexOf("=") + 1);
    const items = v.items.filter((x) => x.startsWith(typed));
    // bash completes the part after "=" (it split the word there); zsh and fish the whole word.
    return { items: shell === "bash" ? items.sort() : items.map((x) => `--${name}=${x}`).sort(), files: v.files };
  }
  if (cur.startsWith("-")) {
    const flags = Object.entries(defs)
      .filter(([n, d]) => d.type !== "positional" && !d.hidden && (d.repeatable || !seen.has(n)))
      .map(([n]) => `--${n}`);
    return { items: match([...flags, "--help"]), files: false };
  }
  if (!cmd) {
    const subs = (await subCommands(node)) ?? {};
    const visible: string[] = [];
    for (const [k, c] of Object.entries(subs)) if (!(await metaOf(c)).hidden) visible.push(k);
    return { items: match(visible), files: false };
  }
  const pos = Object.entries(defs).filter(([, d]) => d.type === "positional");
  const at = pos[Math.min(positionals, pos.length - 1)];
  if (!at || (positionals >= pos.length && !at[1].variadic)) return { items: [], files: false };
  const v = await values(at[0], at[1], path, api);
  return { items: match(v.items), files: v.files };
}

const BASH = `# bash completion for cenvero-str-ctl
#   source <(cenvero-str-ctl completion bash)        # this shell
#   cenvero-str-ctl completion bash > /etc/bash_completion.d/cenvero-str-ctl
_cenvero_str_ctl() {
  local IFS=$'\\n' lines directive
  mapfile -t lines < <("\${COMP_WORDS[0]}" __complete bash "\${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null)
  ((\${#lines[@]})) || return
  directive=\${lines[-1]}
  unset 'lines[-1]'
  COMPREPLY=("\${lines[@]}")
  if [[ $directive == :files ]]; then
    local cur=\${COMP_WORDS[COMP_CWORD]}
    [[ $cur == = ]] && cur=
    COMPREPLY+=($(compgen -f -- "$cur"))
    compopt -o filenames 2>/dev/null
  fi
}
complete -F _cenvero_str_ctl cenvero-str-ctl
`;

const ZSH = `#compdef cenvero-str-ctl
# zsh completion for cenvero-str-ctl
#   source <(cenvero-str-ctl completion zsh)         # this shell (after compinit)
#   cenvero-str-ctl completion zsh > "\${fpath[1]}/_cenvero-str-ctl"
_cenvero_str_ctl() {
  local -a lines
  lines=("\${(@f)$("\${words[1]}" __complete zsh "\${(@)words[2,CURRENT]}" 2>/dev/null)}")
  (( \${#lines} )) || return 1
  local directive=\${lines[-1]}
  lines=("\${(@)lines[1,-2]}")
  (( \${#lines} )) && compadd -Q -- "\${lines[@]}"
  [[ $directive == :files ]] && _files
  return 0
}
compdef _cenvero_str_ctl cenvero-str-ctl
`;

const FISH = `# fish completion for cenvero-str-ctl
#   cenvero-str-ctl completion fish | source         # this shell
#   cenvero-str-ctl completion fish > ~/.config/fish/completions/cenvero-str-ctl.fish
function __cenvero_str_ctl_complete
    set -l words (commandline -opc)[2..-1] (commandline -ct)
    set -l out (command cenvero-str-ctl __complete fish $words 2>/dev/null)
    for line in $out
        switch $line
            case ':files'
                __fish_complete_path (commandline -ct)
            case ':*'
            case '*'
                echo $line
        end
    end
end
complete -c cenvero-str-ctl -f -a '(__cenvero_str_ctl_complete)'
`;

export const SCRIPTS: Record<Shell, string> = { bash: BASH, zsh: ZSH, fish: FISH };

export const completionCommand = defineCommand({
  meta: {
    name: "completion",
    description:
      "Print the shell completion script for bash, zsh or fish: commands, flags, their values, and network and endpoint names from the agent",
    examples: [
      "source <(cenvero-str-ctl completion bash)",
      "cenvero-str-ctl completion bash > /etc/bash_completion.d/cenvero-str-ctl",
      'cenvero-str-ctl completion zsh > "${fpath[1]}/_cenvero-str-ctl"',
      "cenvero-str-ctl completion fish > ~/.config/fish/completions/cenvero-str-ctl.fish",
    ],
  } as CommandMeta,
  args: {
    shell: {
      type: "positional",
      required: true,
      description: "bash, zsh or fish",
      valueHint: "SHELL",
      options: ["bash", "zsh", "fish"],
    },
  },
  run({ args }) {
    process.stdout.write(SCRIPTS[args.shell as Shell]);
  },
});

/** `__complete SHELL WORDS…`: candidates, one per line, then `:files` or `:nofiles`. */
export async function runComplete(argv: string[]): Promise<number> {
  const [shell, ...words] = argv;
  if (shell !== "bash" && shell !== "zsh" && shell !== "fish") return 2;
  const c = await complete(shell, words);
  process.stdout.write([...c.items, c.files ? ":files" : ":nofiles"].map((l) => `${l}\n`).join(""));
  return 0;
}
