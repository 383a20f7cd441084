/** Fuzzes a running agent's DHCPv4, DHCPv6 and DNS servers with a million-plus mutated
 * packets (scripts/fuzzing/corpus.ts) and checks that it survives them:
 *   1. starts the compiled agent in its own network namespace (pins under /sys/fs/bpf, state
 *      in a temporary directory), creates network fz (10.90.0.0/24 + fd90::/64) and attaches
 *      one tap endpoint, ep, whose MAC the packets use;
 *   2. runs scripts/fuzzing/sender.ts inside the namespace: concurrent lanes of bursts, each
 *      burst followed by a valid probe that must be answered (pacing and liveness in one);
 *   3. meanwhile samples the agent's RSS and /metrics and checks that it is alive;
 *   4. at the end: valid DNS (UDP, UDP over IPv6, TCP), DHCPv4 and DHCPv6 exchanges must
 *      succeed, the agent must be alive, its RSS must not have grown by more than the bound,
 *      and its log must show no internal error.
 * Prints progress lines and a summary; exits 1 on any failure. Everything it creates goes
 * on exit, pass or fail, Ctrl-C included, unless --keep.
 *   scripts/fuzz [--count N] [--seed S] [--rss-limit-mib M] [--keep] */
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statfsSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { Subprocess } from "bun";
import { duidLl } from "../../src/dhcp/v6";
import { linkLocal } from "../../src/model/network";
import { type Family, metricValue, parseExposition } from "../../test/helpers/prom";
import type { LaneName, LaneStats, Plan } from "./sender";

const ROOT = join(import.meta.dir, "../..");
const BINARY = join(ROOT, "dist/cenvero-str-ctl");
const BUN = process.execPath;

const { values: opt } = parseArgs({
  options: {
    count: { type: "string", default: "1200000" },
    seed: { type: "string", default: "1" },
    "rss-limit-mib": { type: "string", default: "150" },
    burst: { type: "string", default: "32" },
    timeout: { type: "string", default: "3600" },
    keep: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (opt.help) {
  console.log(
    "scripts/fuzz [--count N (default 1200000)] [--seed S] [--rss-limit-mib M (default 150)] [--burst N] [--timeout SECONDS] [--keep]",
  );
  process.exit(0);
}
const COUNT = Number(opt.count);
const RSS_LIMIT = Number(opt["rss-limit-mib"]) * 1024 * 1024;
if (!Number.isInteger(COUNT) || COUNT < 6) throw new Error(`--count ${opt.count}: not a count`);

// ---- the agent (TestAgent's way, with a cleanup that --keep can skip) ---------------------------

const run = (cmd: string[]) => {
  const p = Bun.spawnSync(cmd, { stdin: "ignore" });
  return { code: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
};
const runOk = (cmd: string[]) => {
  const r = run(cmd);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")}: exit ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
};

const tag = `fz${(process.pid % 100000).toString(36)}`;
const NS = tag;
const PINS = join("/sys/fs/bpf", `stm-fuzz-${tag}`);
let dir = "";
let sock = "";
let agent: Subprocess | undefined;
let sender: Subprocess | undefined;
let logFd = -1;
let cleaned = false;

function cleanup(): void {
  if (cleaned) return;
  cleaned = true;
  try {
    sender?.kill("SIGKILL");
  } catch {}
  if (opt.keep && agent) {
    console.log(
      `\nkept: agent pid ${agent.pid} in namespace ${NS} (/run/netns/${NS}), API ${sock}, log ${join(dir, "agent.log")}\n` +
        `  inspect:  ${BINARY} status --api-socket ${sock}\n` +
        `  remove:   kill ${agent.pid}; ip netns del ${NS}; rm -rf ${PINS} ${dir}`,
    );
    agent.unref();
    return;
  }
  try {
    agent?.kill("SIGKILL");
  } catch {}
  if (logFd >= 0) closeSync(logFd);
  run(["ip", "netns", "del", NS]);
  if (existsSync(PINS)) rmSync(PINS, { recursive: true, force: true });
  if (dir) rmSync(dir, { recursive: true, force: true });
}
process.on("exit", cleanup);
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const)
  process.on(sig, () => {
    console.log(`\n${sig}: stopping`);
    cleanup();
    process.exit(130);
  });

const ctl = (...args: string[]) => run([BINARY, ...args, "--api-socket", sock]);
function json<T = any>(...args: string[]): T {
  const r = ctl(...args, "-o", "json");
  if (r.code !== 0) throw new Error(`${args.join(" ")}: exit ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}
const logText = () => {
  try {
    return readFileSync(join(dir, "agent.log"), "utf8");
  } catch {
    return "";
  }
};

async function startAgent(): Promise<void> {
  if (!existsSync(BINARY)) throw new Error(`${BINARY} is missing: run scripts/build`);
  runOk(["ip", "netns", "add", NS]);
  runOk(["ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up"]);
  if (statfsSync("/sys/fs/bpf").type !== 0xcafe4a11) runOk(["mount", "-t", "bpf", "bpffs", "/sys/fs/bpf"]);
  mkdirSync(PINS);
  dir = mkdtempSync(join(tmpdir(), "stm-fuzz-"));
  sock = join(dir, "api.sock");
  writeFileSync(join(dir, "agent.log"), "");
  logFd = openSync(join(dir, "agent.log"), "a");
  agent = Bun.spawn(
    [
      "nsenter",
      `--net=/run/netns/${NS}`,
      BINARY,
      "agent",
      "--state-dir",
      join(dir, "state"),
      "--pin-root",
      PINS,
      "--api-socket",
      sock,
    ],
    { stdout: logFd, stderr: logFd },
  );
  for (let i = 0; i < 300; i++) {
    if (ctl("network", "list").code === 0) return;
    if (agent.exitCode !== null) break;
    await Bun.sleep(50);
  }
  throw new Error(`agent did not come up:\n${logText().slice(-3000)}`);
}

// ---- observation ---------------------------------------------------------------------------------

function rssOf(pid: number): { rss: number; hwm: number } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(s)?.[1] ?? 0) * 1024;
    return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
  } catch {
    return undefined;
  }
}

const alive = () =>
  agent !== undefined && agent.exitCode === null && agent.signalCode === null && existsSync(`/proc/${agent.pid}`);

async function metrics(): Promise<Map<string, Family> | undefined> {
  try {
    const res = await fetch("http://stratum/metrics", { unix: sock, signal: AbortSignal.timeout(5000) } as RequestInit);
    return parseExposition(await res.text());
  } catch {
    return undefined;
  }
}

const val = (m: Map<string, Family> | undefined, name: string, match: Record<string, string> = {}) => {
  if (!m) return Number.NaN;
  try {
    return metricValue(m, name, match);
  } catch {
    return 0;
  }
};

/** What the servers say they received, per kind. */
function serverCounts(m: Map<string, Family> | undefined) {
  const dhcp4 = val(m, "stratum_dhcp_requests_total") + val(m, "stratum_dhcp_ignored_total", { reason: "malformed" });
  const dns = val(m, "stratum_dns_queries_total");
  const dhcp6 = val(m, "stratum_dhcp6_messages_total", { event: "received" });
  return { dhcp4, dns, dhcp6 };
}

const mib = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;
const n = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "?");

// ---- the run ----------------------------------------------------------------------------------------

interface Done {
  ms: number;
  sendMs: number;
  stats: Record<LaneName, LaneStats>;
  extra: Record<string, number>;
  saturation: Record<string, unknown>;
  liveness: Record<string, boolean>;
}

async function main(): Promise<number> {
  const t0 = Date.now();
  console.log(`fuzz: ${n(COUNT)} packets, seed ${opt.seed}; starting an agent in namespace ${NS}`);
  await startAgent();
  json(
    "network",
    "create",
    "--name",
    "fz",
    "--cidr",
    "10.90.0.0/24",
    "--gateway",
    "10.90.0.1",
    "--cidr6",
    "fd90::/64",
    "--gateway6",
    "fd90::1",
  );
  const ep = json("network", "attach", "fz", "--name", "ep", "--tap", "fztap0");
  const ll = linkLocal(ep.mac);
  // Replies to the endpoint's link-local need its neighbour entry; nobody answers solicitations on the tap.
  runOk([
    "ip",
    "netns",
    "exec",
    NS,
    "ip",
    "-6",
    "neigh",
    "replace",
    ll,
    "lladdr",
    ep.mac,
    "dev",
    "cnv-user-br0",
    "nud",
    "permanent",
  ]);
  const br = JSON.parse(runOk(["ip", "netns", "exec", NS, "ip", "-j", "link", "show", "cnv-user-br0"]))[0];
  // The DHCPv6 server's DUID is its bridge's DUID-LL: REQUEST/RENEW seeds name it so they are answered.
  const serverDuid = duidLl(br.address).toString("hex");
  console.log(
    `fuzz: agent pid ${agent?.pid}; endpoint ep ${ep.mac} ${ep.ip} ${ep.ip6} (link-local ${ll}); server DUID ${serverDuid}`,
  );

  // Split: a third each for DHCPv4, DNS and DHCPv6; DNS 80 % in-subnet UDP, 5 % from outside,
  // 10 % over IPv6, 5 % over TCP.
  const third = Math.floor(COUNT / 3);
  const dnsTotal = COUNT - 2 * third;
  const counts: Record<LaneName, number> = {
    dhcp4: third,
    dhcp6: third,
    "dns-out": Math.floor(dnsTotal * 0.05),
    dns6: Math.floor(dnsTotal * 0.1),
    "dns-tcp": Math.floor(dnsTotal * 0.05),
    dns: 0,
  };
  counts.dns = dnsTotal - counts["dns-out"] - counts.dns6 - counts["dns-tcp"];
  const plan: Plan = {
    seed: opt.seed as string,
    counts,
    target: {
      mac: ep.mac,
      ip4: ep.ip,
      ip6: ep.ip6,
      gateway4: "10.90.0.1",
      gateway6: "fd90::1",
      zone: "fz.internal",
      host: "ep",
      ciaddr: "127.0.0.1",
      serverDuid,
    },
    tap: "fztap0",
    linkLocal: ll,
    burst: Number(opt.burst),
    burstBytes: 96 * 1024,
    slowloris: 32,
    progressMs: 2000,
  };

  // Baseline after set-up and a moment of rest.
  await Bun.sleep(1000);
  const pid = agent?.pid as number;
  const rss0 = rssOf(pid)?.rss ?? 0;
  let rssPeak = rss0;
  const m0 = await metrics();
  const base = serverCounts(m0);
  console.log(`fuzz: agent RSS at start ${mib(rss0)}; lanes ${JSON.stringify(counts)}`);

  sender = Bun.spawn(
    ["nsenter", `--net=/run/netns/${NS}`, BUN, join(import.meta.dir, "sender.ts"), JSON.stringify(plan)],
    {
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
      cwd: ROOT,
    },
  );
  let senderErr = "";
  (async () => {
    for await (const c of sender.stderr as ReadableStream<Uint8Array>)
      senderErr = (senderErr + new TextDecoder().decode(c)).slice(-20000);
  })();

  let done: Done | undefined;
  let senderError = "";
  const stalls: unknown[] = [];
  const warnings: string[] = [];
  let crashedAt: number | undefined;
  const samples: Array<{ t: number; rss: number }> = [];
  const timeline: Array<{ sent: number; rss: number }> = [{ sent: 0, rss: rss0 }];

  // RSS and liveness of the agent, every second.
  const watch = setInterval(() => {
    const r = rssOf(pid);
    if (r) {
      rssPeak = Math.max(rssPeak, r.rss);
      samples.push({ t: Date.now() - t0, rss: r.rss });
    }
    if (!alive() && crashedAt === undefined) {
      crashedAt = Date.now();
      console.log(`fuzz: THE AGENT EXITED (code ${agent?.exitCode}, signal ${agent?.signalCode})`);
      sender?.kill("SIGKILL");
    }
  }, 1000);
  const deadline = setTimeout(() => {
    console.log(`fuzz: timed out after ${opt.timeout} s`);
    sender?.kill("SIGKILL");
  }, Number(opt.timeout) * 1000);

  let lastSent = 0;
  let lastT = Date.now();
  const dec = new TextDecoder();
  let partial = "";
  for await (const chunk of sender.stdout as ReadableStream<Uint8Array>) {
    partial += dec.decode(chunk, { stream: true });
    let nl = partial.indexOf("\n");
    while (nl >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      nl = partial.indexOf("\n");
      let ev: any;
      try {
        ev = JSON.parse(line);
      } catch {
        continue;
      }
      if (ev.type === "progress") {
        const s = ev.stats as Record<LaneName, LaneStats>;
        const sent = Object.values(s).reduce((a, x) => a + x.sent, 0);
        const now = Date.now();
        const rate = ((sent - lastSent) * 1000) / Math.max(1, now - lastT);
        lastSent = sent;
        lastT = now;
        const m = await metrics();
        const c = serverCounts(m);
        const rss = rssOf(pid)?.rss ?? 0;
        const dnsSent = s.dns.sent + s["dns-out"].sent + s.dns6.sent + s["dns-tcp"].sent;
        timeline.push({ sent, rss });
        console.log(
          `[${((now - t0) / 1000).toFixed(0).padStart(4)}s] sent ${n(sent).padStart(9)} (${n(rate)}/s) | dhcp4 ${n(s.dhcp4.sent)} srv ${n(c.dhcp4 - base.dhcp4)} | dns ${n(dnsSent)} srv ${n(c.dns - base.dns)} | dhcp6 ${n(s.dhcp6.sent)} srv ${n(c.dhcp6 - base.dhcp6)} | stalls ${Object.values(s).reduce((a, x) => a + x.stalls, 0)} | RSS ${mib(rss)} (peak ${mib(rssPeak)})`,
        );
      } else if (ev.type === "stall") {
        stalls.push(ev);
        console.log(
          `fuzz: STALL in lane ${ev.lane}: no answer to ${5} probes after a burst (first packet #${ev.firstPacket ?? "?"})`,
        );
      } else if (ev.type === "warning") {
        warnings.push(ev.message);
        console.log(`fuzz: warning: ${ev.message}`);
      } else if (ev.type === "done") done = ev as Done;
      else if (ev.type === "error") senderError = ev.message;
    }
  }
  const senderCode = await sender.exited;
  clearTimeout(deadline);
  await Bun.sleep(1500); // a last RSS sample after the servers' queues have emptied
  clearInterval(watch);

  // ---- verdict ----------------------------------------------------------------------------------------
  const agentAlive = alive();
  const rssEnd = rssOf(pid)?.rss ?? 0;
  const hwm = rssOf(pid)?.hwm ?? 0;
  rssPeak = Math.max(rssPeak, rssEnd);
  const m1 = await metrics();
  const c1 = serverCounts(m1);
  const log = logText();
  const lines = log.split("\n");
  const internal = lines.filter((l) =>
    /TypeError|RangeError|ReferenceError|SyntaxError|Maximum call stack|uncaught|unhandled|panic|Segmentation|dhcp: parser:|^\s+at .*:\d+:\d+\)?$|dns: .*Error/i.test(
      l,
    ),
  );
  // Warning lines by kind (digits and addresses folded), for the report.
  const warnKinds = new Map<string, number>();
  for (const l of lines)
    if (/WARN/.test(l)) {
      const k = l
        .replace(/\x1b\[[0-9;]*m/g, "")
        .replace(/[0-9a-f]{2}(:[0-9a-f]{2}){5}/gi, "<mac>")
        .replace(/\d+(\.\d+){3}/g, "<ip>")
        .replace(/[0-9a-f:]*::[0-9a-f:]*/gi, "<ip6>")
        .replace(/\d+/g, "N")
        .trim()
        .slice(0, 140);
      warnKinds.set(k, (warnKinds.get(k) ?? 0) + 1);
    }

  const s = done?.stats;
  const failures: string[] = [];
  if (!agentAlive || crashedAt !== undefined)
    failures.push(`the agent exited (code ${agent?.exitCode}, signal ${agent?.signalCode})`);
  if (!done) failures.push(`the sender did not finish (exit ${senderCode})${senderError ? `: ${senderError}` : ""}`);
  for (const [k, ok] of Object.entries(done?.liveness ?? {})) if (!ok) failures.push(`liveness: ${k} failed`);
  const stallCount = s ? Object.values(s).reduce((a, x) => a + x.stalls, 0) : 0;
  if (stallCount) failures.push(`${stallCount} stall(s): a server did not answer ${5} probes in a row during the run`);
  if (rssEnd - rss0 > RSS_LIMIT) failures.push(`RSS grew by ${mib(rssEnd - rss0)} (limit ${mib(RSS_LIMIT)})`);
  if (rssPeak - rss0 > RSS_LIMIT)
    failures.push(`RSS peaked ${mib(rssPeak - rss0)} above the start (limit ${mib(RSS_LIMIT)})`);
  if (internal.length) failures.push(`${internal.length} internal-error line(s) in the agent's log`);

  const sec = (Date.now() - t0) / 1000;
  const fuzzSent = s ? Object.values(s).reduce((a, x) => a + x.sent, 0) : 0;
  console.log("\n==================== fuzz summary ====================");
  console.log(
    `seed ${opt.seed}; ${n(fuzzSent)} mutated packets in ${((done?.sendMs ?? 0) / 1000).toFixed(1)} s of sending (${n(fuzzSent / Math.max(0.001, (done?.sendMs ?? 1) / 1000))}/s); whole run ${sec.toFixed(1)} s`,
  );
  if (s) {
    const row = (k: string, x: LaneStats) =>
      `  ${k.padEnd(8)} sent ${n(x.sent).padStart(9)}  bytes ${mib(x.bytes).padStart(10)}  probes ${n(x.probes).padStart(7)} (retried ${x.probeRetries})  replies ${n(x.replies).padStart(8)}  stalls ${x.stalls}  send-errors ${x.sendErrors}`;
    console.log("per lane (sender side):");
    for (const [k, x] of Object.entries(s)) console.log(row(k, x));
    const dnsSent = s.dns.sent + s["dns-out"].sent + s.dns6.sent + s["dns-tcp"].sent;
    const dnsProbes = s.dns.probes + s["dns-out"].probes + s.dns6.probes + s["dns-tcp"].probes;
    const drops6 =
      val(m1, "stratum_drops_total", { device: "fztap0" }) - val(m0, "stratum_drops_total", { device: "fztap0" });
    console.log("per kind: sent (fuzz + probes) → counted by the server:");
    console.log(
      `  dhcp4  ${n(s.dhcp4.sent)} + ${n(s.dhcp4.probes)} → ${n(c1.dhcp4 - base.dhcp4)} (requests by type + malformed)`,
    );
    console.log(
      `  dns    ${n(dnsSent)} + ${n(dnsProbes)} → ${n(c1.dns - base.dns)} (queries_total udp+tcp; TCP frames cut short by design are never counted)`,
    );
    console.log(
      `  dhcp6  ${n(s.dhcp6.sent)} + ${n(s.dhcp6.probes)} → ${n(c1.dhcp6 - base.dhcp6)} received + ${n(drops6)} dropped by the tap's port programs (${n(done?.extra.dhcp6ViaTap ?? 0)} via the tap, ${n(done?.extra.dhcp6ViaUdp ?? 0)} via UDP)`,
    );
    const fam = (name: string, label: string) =>
      m1
        ?.get(name)
        ?.samples.filter((x) => x.value)
        .map((x) => `${x.labels[label]}=${n(x.value)}`)
        .join(" ") ?? "";
    console.log(`server counters:`);
    console.log(`  dhcp4 requests: ${fam("stratum_dhcp_requests_total", "type")}`);
    console.log(`  dhcp4 ignored:  ${fam("stratum_dhcp_ignored_total", "reason")}`);
    console.log(`  dhcp4 replies:  ${fam("stratum_dhcp_replies_total", "type")}`);
    console.log(`  dhcp6:          ${fam("stratum_dhcp6_messages_total", "event")}`);
    console.log(`  dns queries:    ${fam("stratum_dns_queries_total", "transport")}`);
    console.log(`  dns responses:  ${fam("stratum_dns_responses_total", "rcode")}`);
    console.log(`  dns events:     ${fam("stratum_dns_events_total", "event")}`);
    console.log(
      `  tap drops:      ${m1
        ?.get("stratum_drops_total")
        ?.samples.filter((x) => x.labels.device === "fztap0" && x.value)
        .map((x) => `${x.labels.reason}=${n(x.value)}`)
        .join(" ")}`,
    );
    console.log(
      `tcp: ${n(done?.extra.tcpSessions ?? 0)} sessions, slowloris connections still held at the end ${done?.extra.slowlorisHeldAtEnd}/${plan.slowloris}`,
    );
    console.log(`tcp saturation (info): ${JSON.stringify(done?.saturation)}`);
  }
  console.log(`crashes: ${agentAlive && crashedAt === undefined ? 0 : 1}; agent alive at the end: ${agentAlive}`);
  console.log(
    `RSS: start ${mib(rss0)}, peak ${mib(rssPeak)} (kernel high-water mark ${mib(hwm)}), end ${mib(rssEnd)}; limit +${mib(RSS_LIMIT)}`,
  );
  // RSS against packets sent, at about every tenth of the run: growth that keeps pace with the packets is a leak.
  const step = Math.max(1, Math.floor(timeline.length / 10));
  const points = timeline.filter((_, i) => i % step === 0 || i === timeline.length - 1);
  console.log(
    `RSS by packets sent: ${points.map((p) => `${n(p.sent)}→${(p.rss / 1048576).toFixed(0)}`).join("  ")} MiB`,
  );
  if (done)
    console.log(
      `dhcp6 lease floods through the tap: ${n(done.extra.grantFloods ?? 0)} messages carrying ${n(done.extra.grantFloodIas ?? 0)} IA_NAs`,
    );
  console.log("liveness after the run:");
  for (const [k, ok] of Object.entries(done?.liveness ?? {})) console.log(`  ${ok ? "ok  " : "FAIL"} ${k}`);
  console.log(`agent log: ${n(lines.length)} lines, ${internal.length} internal-error lines`);
  for (const l of internal.slice(0, 20)) console.log(`  ! ${l.slice(0, 300)}`);
  const kinds = [...warnKinds].sort((a, b) => b[1] - a[1]).slice(0, 8);
  if (kinds.length) console.log("warnings by kind:");
  for (const [k, v] of kinds) console.log(`  ${n(v).padStart(8)}  ${k}`);
  for (const st of stalls.slice(0, 3)) console.log(`stall: ${JSON.stringify(st).slice(0, 3000)}`);
  if (senderCode !== 0 || senderError)
    console.log(`sender: exit ${senderCode} ${senderError}\n${senderErr.slice(-3000)}`);
  console.log(failures.length ? `RESULT: FAIL\n  - ${failures.join("\n  - ")}` : "RESULT: PASS");
  return failures.length ? 1 : 0;
}

let code = 1;
try {
  code = await main();
} catch (e) {
  console.error(`fuzz: ${(e as Error)?.stack ?? e}`);
  const t = logText();
  if (t) console.error(`agent log (tail):\n${t.slice(-3000)}`);
  code = 1;
}
cleanup();
process.exit(code);
