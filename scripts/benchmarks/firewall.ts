/** Firewall classification cost: stm_port_in on a packet that the rules classify (no tracked
 * state to short-cut it: the deciding rule denies, so no flow is recorded and every repeat
 * classifies again), with N rules installed, against the same program with one rule. The
 * goal: the cost does not grow with the number of rules (10,000 rules ≤ 1.5× one rule). */
import { FirewallTables } from "../../src/datapath/firewall-tables";
import { loadObject } from "../../src/datapath/objects";
import { ETH_P, ethernet, IPPROTO, ipv4, tcp } from "../../src/datapath/packet";
import { encodeIfindex, encodePort } from "../../src/datapath/port-maps";
import { parseRule, type RuleSpec, type StoredRule } from "../../src/model/firewall-rule";
import { type BpfObject, testRun } from "../../src/sys/bpf";
import { alloc, SK_BUFF } from "../../src/sys/layout";
import type { Benchmark } from "./harness";

const MAC = "02:00:0a:00:05:07";
const SRC = "10.0.5.7";
const DST = "10.0.9.9";
const frame = ethernet(
  { src: MAC, dst: "02:00:0a:00:09:09", type: ETH_P.IP },
  ipv4(
    { src: SRC, dst: DST, proto: IPPROTO.TCP },
    tcp({ src: SRC, dst: DST, sport: 40000, dport: 22, flags: 2 }, new Uint8Array(64)),
  ),
);
const ctx = alloc(SK_BUFF, { ifindex: 1 });
const REPEAT = 100_000;

/** An allow-list of N-1 rules (a /24 of sources each, to a web port) and, last, the deny
 * the benchmark packet meets: its source is inside one allow's /24, its port in none. */
export function ruleSet(n: number): StoredRule[] {
  const specs: RuleSpec[] = [];
  for (let i = 0; i < n - 1; i++)
    specs.push({
      priority: i + 1,
      direction: "egress",
      src: `10.${(i >> 8) & 255}.${i & 255}.0/24`,
      proto: "tcp",
      dport: [80, 443, `${8000 + (i % 100)}`][i % 3] as string | number,
      action: "allow",
    });
  specs.push({ priority: n, direction: "egress", src: "10.0.0.0/8", proto: "tcp", dport: 22, action: "deny" });
  return specs.map((s, i) => ({ ...parseRule(s), id: i + 1 }));
}

/** The worst case of the bitmap AND: every word of the rule space holds rules that match the
 * packet's source and rules that match its port, never both, so the summary points at every
 * word and none yields a rule. */
export function adversarialSet(n: number): StoredRule[] {
  const specs: RuleSpec[] = [];
  for (let i = 0; i < n; i++)
    specs.push(
      i % 2
        ? { priority: i + 1, direction: "egress", src: "10.0.0.0/8", proto: "tcp", dport: 1, action: "allow" }
        : { priority: i + 1, direction: "egress", src: "192.168.0.0/16", proto: "tcp", dport: 22, action: "allow" },
    );
  return specs.map((s, i) => ({ ...parseRule(s), id: i + 1 }));
}

function portWith(rules: StoredRule[]): BpfObject {
  const obj = loadObject("port");
  obj
    .map("stm_ports")
    .update(encodeIfindex(1), encodePort({ netId: 1, ip4: SRC, mac: MAC, cidr4: "10.0.0.0/8", gw4: "10.0.0.1" }));
  new FirewallTables({ map: (n) => obj.map(n) }).apply(1, rules, "deny");
  const r = testRun(obj.program("stm_port_in").fd, { data: frame, ctx });
  if (r.retval !== 2) throw new Error(`the benchmark packet is not denied with ${rules.length} rules (${r.retval})`);
  return obj;
}

function nsPerPacket(obj: BpfObject): number {
  const t0 = Bun.nanoseconds();
  testRun(obj.program("stm_port_in").fd, { data: frame, repeat: REPEAT, ctx });
  return (Bun.nanoseconds() - t0) / REPEAT;
}

export function classifyBench(n: number, adversarial = false): Benchmark {
  let cand: BpfObject | undefined;
  let base: BpfObject | undefined;
  return {
    name: `fw/classify-${n}${adversarial ? "-worst" : ""}`,
    unit: "ns/packet",
    setup() {
      cand = portWith(adversarial ? adversarialSet(n) : ruleSet(n));
      base = portWith(ruleSet(1));
    },
    teardown() {
      cand?.close();
      base?.close();
    },
    candidate: {
      label: `stm_port_in, ${n} rules${adversarial ? " (no word matches)" : ""}`,
      measure: () => nsPerPacket(cand as BpfObject),
    },
    baseline: { label: "stm_port_in, 1 rule", measure: () => nsPerPacket(base as BpfObject) },
  };
}

/** One rule against no firewall at all (the port's network has no scope): what enforcing costs. */
export function firewallOnBench(): Benchmark {
  let cand: BpfObject | undefined;
  let base: BpfObject | undefined;
  return {
    name: "fw/classify-1-vs-off",
    unit: "ns/packet",
    setup() {
      cand = portWith(ruleSet(1));
      base = loadObject("port");
      base
        .map("stm_ports")
        .update(encodeIfindex(1), encodePort({ netId: 1, ip4: SRC, mac: MAC, cidr4: "10.0.0.0/8", gw4: "10.0.0.1" }));
    },
    teardown() {
      cand?.close();
      base?.close();
    },
    candidate: { label: "stm_port_in, 1 rule (deny)", measure: () => nsPerPacket(cand as BpfObject) },
    baseline: { label: "stm_port_in, firewall off", measure: () => nsPerPacket(base as BpfObject) },
  };
}
