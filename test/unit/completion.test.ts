/** Shell completion, in the real shells: the scripts `completion bash|zsh|fish` print are
 * sourced into bash, zsh and fish, which ask the built binary what comes next. Names that
 * only the agent knows come from a real API (createApp on a unix socket, no kernel needed). */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { complete } from "../../src/cli/completion";
import { BINARY, run } from "../helpers/netns";

const dir = mkdtempSync(join(tmpdir(), "stm-complete-"));
const env = { ...process.env, PATH: `${dir}:${process.env.PATH}` };
let server: ReturnType<typeof Bun.serve> | undefined;
const sock = join(dir, "api.sock");

beforeAll(() => {
  symlinkSync(BINARY, join(dir, "cenvero-str-ctl"));
  // A stand-in agent that knows two networks and one endpoint: completion asks GET /v1/networks and /v1/endpoints.
  server = Bun.serve({
    unix: sock,
    fetch: (req) => {
      const p = new URL(req.url).pathname;
      if (p === "/v1/networks") return Response.json([{ name: "app-net" }, { name: "db-net" }]);
      if (p === "/v1/endpoints") return Response.json([{ name: "web-1" }]);
      return new Response("{}", { status: 404 });
    },
  });
});

afterAll(() => {
  server?.stop(true);
  rmSync(dir, { recursive: true, force: true });
});

/** Runs a shell without blocking this process, which serves the stand-in agent. */
async function shell(argv: string[]): Promise<string[]> {
  const p = Bun.spawn(argv, { env, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [stdout, stderr, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  expect({ argv: argv.slice(0, 2), code, stderr }).toEqual({ argv: argv.slice(0, 2), code: 0, stderr: "" });
  return stdout.split("\n").filter(Boolean);
}

/** COMPREPLY for a command line (the last word is the one being typed), from bash. */
const bash = (...words: string[]) =>
  shell([
    "bash",
    "-c",
    `source <(cenvero-str-ctl completion bash)
     COMP_WORDS=(cenvero-str-ctl "$@"); COMP_CWORD=$#
     _cenvero_str_ctl; printf '%s\\n' "\${COMPREPLY[@]}"`,
    "bash",
    ...words,
  ]);

test("bash: commands, sub-commands, flags, a flag's options, after = too", async () => {
  expect(await bash("net")).toEqual(["network"]);
  expect(await bash("firewall", "")).toEqual(["blocklist", "default", "export", "import", "rule"]);
  expect(await bash("firewall", "rule", "add", "app-net", "--pro")).toEqual(["--proto"]);
  expect(await bash("firewall", "rule", "add", "--proto", "icmp")).toEqual(["icmp", "icmpv6"]);
  // bash splits --output=js at "="; the reply completes the value.
  expect(await bash("network", "list", "--output", "=", "y")).toEqual(["yaml"]);
  // A flag already given is not offered again; a repeatable one is.
  expect(await bash("network", "create", "--name", "x", "--nam")).toEqual([]);
  expect(await bash("network", "create", "--dns-forwarder", "1.1.1.1", "--dns-f")).toEqual(["--dns-forwarder"]);
  expect(await bash("completion", "")).toEqual(["bash", "fish", "zsh"]);
});

test("bash: network and endpoint names from the agent named by --api-socket", async () => {
  expect(await bash("--api-socket", sock, "network", "show", "")).toEqual(["app-net", "db-net"]);
  // --api-socket=PATH, which bash hands over as three words.
  expect(await bash("--api-socket", "=", sock, "network", "show", "d")).toEqual(["db-net"]);
  expect(await bash("--api-socket", sock, "endpoint", "show", "w")).toEqual(["web-1"]);
  expect(await bash("--api-socket", sock, "trace", "--from", "")).toEqual(["web-1"]);
  expect(await bash("--api-socket", sock, "firewall", "rule", "list", "a")).toEqual(["app-net"]);
  // No agent: no names, and no error on the terminal.
  expect(await bash("--api-socket", "/nonexistent.sock", "network", "show", "")).toEqual([]);
});

test("zsh: the script runs in zsh and adds the same candidates", async () => {
  const out = await shell([
    "zsh",
    "-f",
    "-c",
    `compdef() { :; }; compadd() { shift 2; print -l -- "$@"; }; _files() { print FILES; }
     source <(cenvero-str-ctl completion zsh)
     words=(cenvero-str-ctl firewall rule add --pro); CURRENT=5; _cenvero_str_ctl
     words=(cenvero-str-ctl network list --output=j); CURRENT=4; _cenvero_str_ctl
     words=(cenvero-str-ctl firewall import app-net ''); CURRENT=5; _cenvero_str_ctl`,
  ]);
  expect(out).toEqual(["--proto", "--output=json", "FILES"]);
});

test("fish: complete -C asks the binary", async () => {
  const out = await shell([
    "fish",
    "--no-config",
    "-c",
    `cenvero-str-ctl completion fish | source
     complete -C 'cenvero-str-ctl firewall rule add --proto ic'
     complete -C 'cenvero-str-ctl dhcp le'`,
  ]);
  expect(out).toEqual(["icmp", "icmpv6", "leases"]);
});

test("the engine: positional options, variadic arguments, unknown commands", async () => {
  expect((await complete("bash", ["completion", ""])).items).toEqual(["bash", "fish", "zsh"]);
  expect((await complete("bash", ["completion", "bash", ""])).items).toEqual([]);
  expect((await complete("bash", ["nosuch", ""])).items).toEqual([]);
  expect((await complete("bash", ["firewall", "blocklist", "import", ""])).files).toBe(true);
  expect((await complete("bash", ["datapath", "counter", "attach", "--dev", "l"])).items).toContain("lo");
  expect((await complete("bash", ["-o", "json", "ver"])).items).toEqual(["version"]);
  const r = run([BINARY, "__complete", "bash", "status", "--"]);
  expect(r.stdout.split("\n")).toContain("--output");
  expect(r.stdout.trimEnd().split("\n").at(-1)).toBe(":nofiles");
});
