/** What an agent put in the kernel, as sorted text lines a test can compare: links (kind,
 * master, up, MTU), the user bridge's static FDB entries and addresses, each port's
 * programs (by name and tag), and every pinned map that holds configuration (ports,
 * profiles, local addresses, firewall scopes and their active generation, blocklist, egress
 * caps). Counters, conntrack and bucket fill are left out: they move with traffic.
 *
 * Everything an agent run picks for itself is named instead of numbered, so two runs that
 * reach the same desired state give the same lines: ifindexes become link names, network
 * ids network names (and profile MACs NAME#index), firewall generations the scope they
 * serve, and their epochs are left out; rule ids are left out, rules are named by their
 * rank in their scope (the slots the agent picks for them are left out). */
import { readdirSync } from "node:fs";
import { decodeScope, FW_GEN_MAPS, type FwMapName, keyGen } from "../../src/datapath/firewall-maps";
import { decodeLocalKey, decodePort } from "../../src/datapath/port-maps";
import { decodeShapeKey, SHAPE_KIND } from "../../src/datapath/shape-maps";
import { linkLocal, profileMac } from "../../src/model/network";
import { BpfMap } from "../../src/sys/bpf";
import type { Netns } from "./netns";

export interface KernelState {
  links: string[];
  fdb: string[];
  addresses: string[];
  programs: string[];
  maps: Record<string, string[]>;
}

const hex = (b: Buffer) => b.toString("hex");

function withMap<T>(pinRoot: string, name: string, fn: (m: BpfMap) => T): T {
  const m = BpfMap.openPinned(`${pinRoot}/maps/${name}`);
  try {
    return fn(m);
  } finally {
    m.close();
  }
}

/** `networks`: id → name of every network the store holds (from `network list`). */
export function kernelState(ns: Netns, pinRoot: string, networks: Map<number, string>): KernelState {
  const links: any[] = ns.ipJson(["-d", "link", "show"]);
  const byIndex = new Map<number, string>(links.map((l) => [l.ifindex as number, l.ifname as string]));
  const ifname = (i: number) => byIndex.get(i) ?? `ifindex?${i}`;
  const net = (id: number) => networks.get(id) ?? `net?${id}`;
  // Profile link-local addresses (fe80:: from the profile MAC) named like the MACs.
  const lls = new Map<string, string>();
  for (const [id, name] of networks)
    for (let i = 0; i < 256; i++) lls.set(linkLocal(profileMac(id, i)), `${name}#${i}-ll`);
  const macs = (s: string) =>
    s
      .replace(/\bfe80::[0-9a-f:]+/g, (m) => lls.get(m) ?? m)
      .replace(/\b02:([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2})\b/gi, (m, a, b, c, d, e) => {
        const name = networks.get(Number.parseInt(a + b, 16));
        return name ? `${name}#${Number.parseInt(c + d + e, 16)}` : m;
      });

  const state: KernelState = {
    links: links
      .map(
        (l) =>
          `${l.ifname} ${l.linkinfo?.info_kind ?? "-"} master=${l.master ?? "-"} ${l.flags.includes("UP") ? "up" : "down"} mtu=${l.mtu}`,
      )
      .sort(),
    fdb: (JSON.parse(ns.execOk(["bridge", "-j", "fdb", "show", "br", "cnv-user-br0"]) || "[]") as any[])
      // The agent's entries are static; the bridge's own (permanent: each port's random MAC, multicast) are not its doing.
      .filter((f) => f.state === "static")
      .map((f) => macs(`${f.ifname} ${f.mac} ${f.state ?? ""}`))
      .sort(),
    addresses: (ns.ipJson(["addr", "show", "dev", "cnv-user-br0"])[0]?.addr_info ?? [])
      .filter((a: any) => a.scope === "global")
      .map((a: any) => `${a.local}/${a.prefixlen}`)
      .sort(),
    programs: links
      .filter((l) => String(l.ifname).startsWith("stm"))
      .flatMap((l) =>
        (["ingress", "egress"] as const).map((dir) => {
          const out = ns.execOk(["tc", "filter", "show", "dev", l.ifname, dir]);
          const progs = [...out.matchAll(/(stm_\w+)\S* .*?tag ([0-9a-f]+)/g)].map((m) => `${m[1]}:${m[2]}`);
          return `${l.ifname} ${dir} ${progs.join(",") || "none"}`;
        }),
      )
      .sort(),
    maps: {},
  };
  const m = state.maps;
  m.ports = withMap(pinRoot, "stm_ports", (map) =>
    [...map.entries()].map(([k, v]) => {
      const { slot: _slot, netId, ...p } = decodePort(v);
      return macs(`${ifname(k.readUInt32LE(0))} ${net(netId)} ${JSON.stringify(p)}`);
    }),
  ).sort();
  m.profiles = withMap(pinRoot, "stm_profiles", (map) =>
    [...map.entries()].map(([k, v]) => macs(`${net(k.readUInt32LE(0))} ${hex(k.subarray(4))} ${hex(v)}`)),
  ).sort();
  // A profile's value holds its MAC as raw bytes: named like the others.
  m.profiles = m.profiles.map((l) =>
    l.replace(
      / (02[0-9a-f]{10})([0-9a-f]*)$/,
      (_x, mac: string, rest: string) => ` ${macs(mac.match(/../g)?.join(":") ?? mac)} ${rest}`,
    ),
  );
  m.local = withMap(pinRoot, "stm_local", (map) =>
    [...map.entries()].map(
      ([k, v]) =>
        `${macs(decodeLocalKey(k))} ${ifname(v.readUInt32LE(0))} ${v.readUInt32LE(4) ? net(v.readUInt32LE(4)) : "-"}`,
    ),
  ).sort();
  const genScope = new Map<number, string>();
  m.fwScopes = withMap(pinRoot, "stm_fw_scopes", (map) =>
    [...map.entries()].map(([k, v]) => {
      const id = k.readUInt32LE(0);
      const name = id === 0 ? "global" : net(id);
      genScope.set(decodeScope(v).gen, name);
      // The default and flags, then the length masks: not the generation (named by its
      // scope), the summary words in use (they follow the slots) or the epoch (a run's own).
      return `${name} ${hex(v.subarray(4, 6))} ${hex(v.subarray(8, 72))}`;
    }),
  ).sort();
  // Rules sit at slots the agent picks (with room between them): each is named by its rank in
  // its generation, and a bitmap by the ranks it holds.
  const rank = new Map<number, Map<number, number>>();
  withMap(pinRoot, "stm_fw_rules", (map) => {
    const slots = new Map<number, number[]>();
    for (const k of map.keys()) {
      const g = k.readUInt32LE(0);
      slots.set(g, [...(slots.get(g) ?? []), k.readUInt32LE(4)]);
    }
    for (const [g, list] of slots) rank.set(g, new Map([...list].sort((a, b) => a - b).map((x, i) => [x, i])));
    return [];
  });
  const ranks = (gen: number, bits: Buffer): string => {
    const r = rank.get(gen);
    const out: string[] = [];
    for (let w = 0; w < (bits.length - 32) / 4; w++) {
      const v = bits.readUInt32LE(32 + w * 4);
      for (let b = 0; b < 32; b++) if (v & (1 << b)) out.push(String(r?.get(w * 32 + b) ?? `slot${w * 32 + b}`));
    }
    return `rules[${out.join(",")}]`;
  };
  for (const mapName of FW_GEN_MAPS)
    m[mapName] = withMap(pinRoot, mapName, (map) =>
      [...map.entries()].map(([k, v]) => {
        const gen = keyGen(mapName as FwMapName, k);
        const scope = genScope.get(gen) ?? `orphan-generation-${gen}`;
        if (mapName === "stm_fw_rules") {
          const val = Buffer.from(v);
          val.writeUInt32LE(0, 0);
          return `${scope} rule ${rank.get(gen)?.get(k.readUInt32LE(4))} ${hex(val)}`;
        }
        const key = Buffer.from(k);
        key.writeUInt32LE(0, 4);
        return `${scope} ${hex(key)} ${ranks(gen, v)}`;
      }),
    ).sort();
  for (const b of ["stm_block4", "stm_block6"]) m[b] = withMap(pinRoot, b, (map) => [...map.keys()].map(hex)).sort();
  m.caps = withMap(pinRoot, "stm_shape_cfg", (map) =>
    [...map.entries()].map(([k, v]) => {
      const { kind, id } = decodeShapeKey(k);
      return `${kind === SHAPE_KIND.NETWORK ? `network ${net(id)}` : `port ${ifname(id)}`} ${hex(v)}`;
    }),
  ).sort();
  m.capSources = withMap(pinRoot, "stm_shape_src", (map) =>
    [...map.entries()].map(([k, v]) => `${hex(k)} ${net(v.readUInt32LE(0))}`),
  ).sort();
  return state;
}

/** Pins under `pinRoot`, as paths relative to it (directories end in /). */
export function pinsUnder(pinRoot: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) {
        out.push(`${rel}${e.name}/`);
        walk(`${d}/${e.name}`, `${rel}${e.name}/`);
      } else out.push(`${rel}${e.name}`);
    }
  };
  walk(pinRoot, "");
  return out.sort();
}
