/** The fabric as a document and the web view (docs/declarative.md, docs/web.md).
 *
 * apply/apply-1000: `apply -f` of a document of 1,000 objects (100 networks, 400 DNS records,
 * 400 firewall rules in their scopes, 100 blocklist prefixes) onto an empty fabric, against the
 * same objects made by the same API calls from a script (no document, no plan, no undo kept).
 * apply/plan-1000: `apply --dry-run` of that document onto the fabric that holds it (read,
 * check, plan: nothing to do), against `export` of it (reading the fabric alone).
 * web/page-load-1000: the web view's overview and a network's page loaded in chromium
 * (navigation to the page's data on screen, body[data-ready]) with 1,000 endpoints on the
 * node, against the same with 10.
 * web/rss: the agent's resident memory with the web view in use (its counters' history sampled,
 * pages loaded, the live feed watched once) against an agent holding the same 1,000 endpoints
 * whose web view nobody opened. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import YAML from "yaml";
import { ApiClient } from "../../src/api/api-client";
import { TestAgent } from "../../test/helpers/agent";
import { BUN, ROOT } from "../../test/helpers/netns";
import type { Benchmark } from "./harness";

const NETS = 100;

/** The 1,000-object document. */
function bigDoc(): string {
  const networks = Array.from({ length: NETS }, (_, i) => ({
    name: `n${i}`,
    cidr: `10.${100 + Math.floor(i / 50)}.${(i % 50) * 4}.0/22`,
    gateway: `10.${100 + Math.floor(i / 50)}.${(i % 50) * 4}.1`,
    firewall: {
      default: "deny",
      rules: Array.from({ length: 4 }, (_, k) => ({
        priority: 10 * (k + 1),
        proto: "tcp",
        dport: 8000 + k,
        action: "allow",
      })),
    },
    dns: {
      records: Array.from({ length: 4 }, (_, k) => ({
        name: `h${k}`,
        type: "A",
        value: `10.${100 + Math.floor(i / 50)}.${(i % 50) * 4}.${10 + k}`,
      })),
    },
  }));
  const blocklist = Array.from({ length: 100 }, (_, i) => `198.18.${i}.0/24`);
  return YAML.stringify({ version: 1, networks, blocklist });
}

function ctl(agent: TestAgent, args: string[]): void {
  const r = agent.ctl(...args);
  if (r.code !== 0) throw new Error(`${args.join(" ")}: exit ${r.code}: ${r.stderr.slice(-2000)}`);
}

let dir = "";
let agent: TestAgent | undefined;
let docFile = "";
let emptyFile = "";

async function setupApply(): Promise<void> {
  dir = mkdtempSync(join(tmpdir(), "stm-bench-apply-"));
  docFile = join(dir, "fabric.yaml");
  emptyFile = join(dir, "empty.yaml");
  writeFileSync(docFile, bigDoc());
  writeFileSync(emptyFile, "version: 1\n");
  agent = new TestAgent("bapply");
  await agent.start();
}

function teardownApply(): void {
  agent?.destroy();
  agent = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
}

const emptyFabric = () => ctl(agent as TestAgent, ["apply", "-f", emptyFile, "--prune"]);

/** The document's objects by API calls from this process, one at a time. */
async function script(): Promise<void> {
  const api = new ApiClient((agent as TestAgent).sock);
  const doc = YAML.parse(readFileSync(docFile, "utf8"));
  for (const n of doc.networks) {
    await api.createNetwork({ name: n.name, cidr: n.cidr, gateway: n.gateway, defaultAction: n.firewall.default });
    await api.importRules(n.name, { default: n.firewall.default, rules: n.firewall.rules });
    for (const r of n.dns.records) await api.call("addDnsRecord", { params: { name: n.name }, body: r });
  }
  await api.call("addBlocklist", { body: { prefixes: doc.blocklist } });
}

const timed = async (fn: () => unknown): Promise<number> => {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
};

const applyBench: Benchmark = {
  name: "apply/apply-1000",
  unit: "ms",
  candidate: {
    label: "apply -f of 1,000 objects (100 networks, 400 records, 400 rules, 100 prefixes) onto an empty fabric",
    measure: async () => {
      emptyFabric();
      return timed(() => ctl(agent as TestAgent, ["apply", "-f", docFile]));
    },
  },
  baseline: {
    label: "the same objects by the same API calls from a script",
    measure: async () => {
      emptyFabric();
      return timed(script);
    },
  },
  setup: setupApply,
  teardown: teardownApply,
};

const planBench: Benchmark = {
  name: "apply/plan-1000",
  unit: "ms",
  candidate: {
    label: "apply --dry-run of the 1,000-object document onto the fabric that holds it (nothing to do)",
    measure: () => timed(() => ctl(agent as TestAgent, ["apply", "-f", docFile, "--dry-run"])),
  },
  baseline: {
    label: "export of that fabric (reading it alone)",
    measure: () => timed(() => ctl(agent as TestAgent, ["export"])),
  },
  async setup() {
    await setupApply();
    ctl(agent as TestAgent, ["apply", "-f", docFile]);
  },
  teardown: teardownApply,
};

// ---- the web view --------------------------------------------------------------------------

const WEB_PORT = 18_088;
interface WebLab {
  big: TestAgent;
  small: TestAgent;
  quiet: TestAgent;
}
let web: WebLab | undefined;
let webUsers = 0;

/** An agent with the web view on loopback in its namespace and `n` VM endpoints (taps: no
 * namespace each) on one network. */
async function webAgent(tag: string, n: number, withWeb: boolean): Promise<TestAgent> {
  const a = new TestAgent(tag);
  a.ns.execOk(["ip", "link", "set", "lo", "up"]);
  await a.start(withWeb ? ["--web-listen", `127.0.0.1:${WEB_PORT}`, "--api-token-file", join(a.dir, "token")] : []);
  const api = new ApiClient(a.sock);
  await api.createNetwork({ name: "app", cidr: "10.64.0.0/20", gateway: "10.64.0.1" });
  for (let i = 0; i < n; i++) await api.attach("app", { name: `vm-${i}`, tap: `bt${tag}${i}` });
  return a;
}

function browse(a: TestAgent, times: number): { overview: number[]; network: number[] } {
  const job = {
    base: `http://127.0.0.1:${WEB_PORT}`,
    token: a.token,
    shots: a.dir,
    network: "app",
    endpoint: "vm-0",
    timeLoads: times,
  };
  const r = Bun.spawnSync([
    "nsenter",
    `--net=${a.ns.path}`,
    BUN,
    join(ROOT, "test/helpers/web-browse.ts"),
    JSON.stringify(job),
  ]);
  if (r.exitCode !== 0) throw new Error(`browse: ${r.stderr.toString().slice(-2000)}`);
  return JSON.parse(r.stdout.toString()).times;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] as number;

function rssKiB(a: TestAgent): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${a.pid}/status`, "utf8"));
  return Number(m?.[1]);
}

async function webSetup(): Promise<void> {
  webUsers++;
  if (web) return;
  const big = await webAgent("bwb", 1000, true);
  const small = await webAgent("bws", 10, true);
  const quiet = await webAgent("bwq", 1000, false);
  web = { big, small, quiet };
}

function webTeardown(): void {
  if (--webUsers > 0 || !web) return;
  web.big.destroy();
  web.small.destroy();
  web.quiet.destroy();
  web = undefined;
}

const pageLoad = (page: "overview" | "network"): Benchmark => ({
  name: `web/page-load-${page}`,
  unit: "ms",
  candidate: {
    label: `the web view's ${page === "overview" ? "overview" : "network page"} in chromium, 1,000 endpoints`,
    measure: () => median(browse((web as WebLab).big, 3)[page]),
  },
  baseline: { label: "the same, 10 endpoints", measure: () => median(browse((web as WebLab).small, 3)[page]) },
  setup: webSetup,
  teardown: webTeardown,
});

const rssBench: Benchmark = {
  name: "web/rss",
  unit: "MiB",
  candidate: {
    label: "agent RSS, 1,000 endpoints, web view in use (history sampled, pages loaded, live feed watched)",
    measure: async () => {
      const a = (web as WebLab).big;
      browse(a, 1);
      // The live feed, watched for a moment.
      a.ns.exec([
        "curl",
        "-s",
        "-m",
        "2",
        "-H",
        `Authorization: Bearer ${a.token}`,
        `http://127.0.0.1:${WEB_PORT}/web/events`,
      ]);
      return rssKiB(a) / 1024;
    },
  },
  baseline: {
    label: "agent RSS, the same 1,000 endpoints, web view never opened",
    measure: () => rssKiB((web as WebLab).quiet) / 1024,
  },
  setup: webSetup,
  teardown: webTeardown,
};

export const DECLARATIVE_BENCHMARKS: Record<string, () => Benchmark> = {
  "apply/apply-1000": () => applyBench,
  "apply/plan-1000": () => planBench,
  "web/page-load-overview": () => pageLoad("overview"),
  "web/page-load-network": () => pageLoad("network"),
  "web/rss": () => rssBench,
};
