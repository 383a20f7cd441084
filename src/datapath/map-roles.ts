/** Every map the port object pins, once, with its role. Config maps hold what the agent
 * writes from its store (ports, profiles, addresses, subnets, the firewall's tables, caps): an
 * upgrade that changes their layout refills them from the store, and a trace reads the live
 * ones (but the caps': a trace does not model egress caps). State maps hold what the datapath
 * writes (flows, counters, buckets, the monitor's lease): an upgrade copies their entries, and
 * a trace runs on small private ones of its own, so nothing live traffic counts changes. The
 * upgrade code (port-datapath.ts) and the trace (trace-instance.ts) read this one table. */

export type MapRole = "config" | "state";

interface MapDecl {
  role: MapRole;
  /** A config map the trace instance does not share (default: it shares every config map). */
  traceOwn?: true;
  /** A state map's size in the trace instance (default: the object's). */
  traceSize?: number;
}

export const MAP_ROLES = {
  stm_ports: { role: "config" },
  stm_profiles: { role: "config" },
  stm_drops: { role: "state", traceSize: 256 },
  stm_local: { role: "config" },
  stm_ifaces: { role: "config" },
  stm_subnets: { role: "config" },
  stm_block4: { role: "config" },
  stm_block6: { role: "config" },
  stm_fw_scopes: { role: "config" },
  stm_fw_src4: { role: "config" },
  stm_fw_dst4: { role: "config" },
  stm_fw_src6: { role: "config" },
  stm_fw_dst6: { role: "config" },
  stm_fw_ports: { role: "config" },
  stm_fw_rules: { role: "config" },
  stm_fw_hits: { role: "state", traceSize: 256 },
  stm_ct: { role: "state", traceSize: 1024 },
  stm_frags: { role: "state", traceSize: 64 },
  stm_fw_stats: { role: "state" },
  // A port's row is past the end of a 1-row table: the trace counts nothing of any port.
  stm_port_stats: { role: "state", traceSize: 1 },
  stm_mon_cfg: { role: "state" },
  stm_mon_pace: { role: "state" },
  stm_mon_stats: { role: "state" },
  stm_mon_ring: { role: "state", traceSize: 4096 },
  stm_shape_cfg: { role: "config", traceOwn: true },
  stm_shape_state: { role: "state" },
  stm_shape_src: { role: "config", traceOwn: true },
  stm_vteps: { role: "config" },
  stm_remote: { role: "config" },
  stm_gw: { role: "config" },
  stm_nat: { role: "state", traceSize: 256 },
  stm_nat_nets: { role: "config" },
  stm_nat_cfg: { role: "config" },
  stm_nat_addrs: { role: "config" },
  stm_nat_stats: { role: "state" },
  stm_nat_frags: { role: "state", traceSize: 64 },
  stm_nat_scratch: { role: "state" },
  // The deadlines the agent wrote: an upgrade keeps them (a restart never extends a hold).
  stm_vip: { role: "state", traceSize: 16 },
  stm_uplink_mac: { role: "config" },
  stm_mseg_cfg: { role: "config" },
  stm_mseg_groups: { role: "config" },
  stm_mseg_pol: { role: "config" },
  stm_mseg_hits: { role: "state", traceSize: 256 },
  stm_mseg_ct: { role: "state", traceSize: 1024 },
  stm_lb_cfg: { role: "config" },
  stm_lb_vips: { role: "config" },
  stm_lb_rings: { role: "config" },
  stm_lb_backends: { role: "config" },
  stm_lb_bsrc: { role: "config" },
  stm_lb_dsr: { role: "config" },
  stm_lb_ct: { role: "state", traceSize: 256 },
  stm_lb_hits: { role: "state", traceSize: 256 },
  stm_lb_stats: { role: "state" },
} as const satisfies Record<string, MapDecl>;

export type PinnedMap = keyof typeof MAP_ROLES;

/** Every pinned map, in the order the table declares them. */
export const PINNED_MAPS = Object.keys(MAP_ROLES) as PinnedMap[];

const decl = (m: PinnedMap): MapDecl => MAP_ROLES[m];

/** Maps whose content the store cannot give back: an upgrade that only resizes them copies their entries. */
export const STATE_MAPS: ReadonlySet<PinnedMap> = new Set(PINNED_MAPS.filter((m) => decl(m).role === "state"));

/** The live maps a trace instance reads through their pins. */
export const TRACE_SHARED_MAPS: readonly PinnedMap[] = PINNED_MAPS.filter(
  (m) => decl(m).role === "config" && !decl(m).traceOwn,
);

/** Sizes of the trace instance's own state maps (the rest keep the object's). Not pinned:
 * stm_counters, the counting programs' map the object also declares. */
export const TRACE_SIZES: Readonly<Record<string, number>> = {
  ...Object.fromEntries(PINNED_MAPS.flatMap((m) => (decl(m).traceSize ? [[m, decl(m).traceSize as number]] : []))),
  stm_counters: 16,
};
