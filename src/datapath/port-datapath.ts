/** The agent's handle on the port datapath: the port object loaded once per agent run,
 * its maps pinned under <pin-root>/maps (taken over, not recreated, on restart), endpoint
 * profiles written in batches, and each port's two programs attached as direct-action
 * cls_bpf filters with Stratum's handle and priority. Nothing here detaches on exit: the
 * filters belong to the device, and only detachPort (or deleting the device) removes them.
 *
 * Why cls_bpf and not tcx links for ports: attaching a tcx link waits for an RCU grace
 * period inside the kernel (tcx_entry_sync, under rtnl_lock, so the two directions cannot
 * overlap): tens of milliseconds per port against well under one for cls_bpf filters (the
 * figures are in docs/benchmarks.md). Ports are created at attach time, so that wait would
 * dominate `network attach`. cls_bpf keeps the properties ports need: the filter outlives the agent, a
 * replacement (BPF_TC_F_REPLACE on the same handle) swaps the program atomically, and the
 * programs are in place before the port is brought up. */
import { existsSync, mkdirSync, readdirSync, renameSync, rmdirSync } from "node:fs";
import { ERRNO, StratumError } from "../errors";
import type { EgressCap } from "../model/egress-cap";
import { hostRange, macToBytes, parseSubnet } from "../model/ip";
import type { Rtnl } from "../netlink/rtnl";
import { BpfMap, Fd, linkInfo, linkUpdate, type MapInfo, mapInfo, objGet, progInfo, unpin } from "../sys/bpf";
import { mutated } from "../sys/mutations";
import { monotonicNs } from "../sys/os";
import {
  type Attachment,
  attachTc,
  attachXdp,
  clsProgId,
  detachCls,
  detachPinnedLink,
  openPinnedLink,
  progFingerprint,
} from "./attach";
import { readStatArray } from "./counters";
import { DROP_REASON_LIST } from "./drops";
import { encodeU32 } from "./firewall-maps";
import { HaMaps } from "./ha-maps";
import { PINNED_MAPS, type PinnedMap, STATE_MAPS } from "./map-roles";
import { loadObject, openObject } from "./objects";
import {
  decodeLocalKey,
  decodeMacKey,
  decodeNatNet,
  decodePort,
  decodeRemote,
  encodeDropKey,
  encodeGwCfg,
  encodeIface,
  encodeIfindex,
  encodeLocal,
  encodeLocalKey,
  encodeMacKey,
  encodeNatCfg,
  encodeNatNet,
  encodePort,
  encodeRemote,
  encodeSubnet,
  encodeSubnetKey,
  encodeVtep,
  encodeVtepKey,
  type IfaceConfig,
  NAT_STATS,
  type NatNetConfig,
  type PortConfig,
  type PortStats,
  PROFILE_KEY_SIZE,
  PROFILE_SIZE,
  type RemoteEndpoint,
  type SubnetConfig,
  sumPortStats,
  writeProfileKeyU32,
  writeProfileOf,
} from "./port-maps";
import { ensureBpffs } from "./probe";
import { buildStamp, type LoadedPrograms, PinnedPrograms, PROG_DIR, pinPrograms } from "./program-pins";
import {
  type BucketCounts,
  decodeShapeKey,
  decodeShapeState,
  encodeShapeCfg,
  encodeShapeKey,
  encodeShapeSrc,
  type ShapeKind,
} from "./shape-maps";

export type { PinnedMap };

export interface OpenReport {
  /** Maps of another layout: this build's are staged under maps-next until commitMaps(). */
  staged: string[];
  /** Of those, the state maps whose entries were copied over (only their size changed). */
  migrated: string[];
  /** State maps whose entries could not be carried over (key or value changed): they start empty. */
  restarted: string[];
  /** Staged maps of an upgrade cut short, of this build's layout: taken over, the upgrade rolls forward. */
  resumed: string[];
  /** Staged maps of an upgrade cut short, of another build's layout: discarded. */
  discarded: string[];
}

/** Copies every entry of the map `fromFd` into `to`, up to its room (an LRU map takes them
 * all, evicting). With `onlyMissing`, keys `to` already holds are left as they are. Reads in
 * batches: the old map may be busy (conntrack under traffic). */
function copyEntries(
  fromFd: number,
  to: BpfMap,
  o: { onlyMissing?: boolean } = {},
): { copied: number; complete: boolean } {
  const from = BpfMap.fromFd(fromFd, false);
  if (from.info.type === 27 /* ringbuf: nothing to copy */) return { copied: 0, complete: true };
  let copied = 0;
  for (const [k, v] of from.batchEntries()) {
    if (o.onlyMissing && to.lookup(k)) continue;
    try {
      to.update(k, v);
      copied++;
    } catch (e) {
      if (e instanceof StratumError && (e.errno === ERRNO.E2BIG || e.errno === ERRNO.ENOSPC))
        return { copied, complete: false }; // full
      throw e;
    }
  }
  return { copied, complete: true };
}

/** Drop counters of one device: every reason (but "unspecified"), zero included. */
export type DropCounts = Record<string, number>;

/** A profile's key as one number: the network id and the IPv4 address (a u32), 48 bits. */
export const profileId = (netId: number, ip4: number): number => netId * 2 ** 32 + ip4;
/** The network id and IPv4 address (a u32) of a profileId. */
export const profileIdParts = (id: number): { netId: number; ip4: number } => ({
  netId: Math.floor(id / 2 ** 32),
  ip4: id % 2 ** 32,
});

/** Where a port's two programs sit: from the workload on tc ingress of its host-side device
 * (a veth, a tap), to it on tc egress; a macvtap the other way round (what the guest writes
 * leaves through the macvtap's transmit path; what reaches it comes in through its receive
 * path). */
export function portHooks(macvtap?: boolean): { in: "ingress" | "egress"; out: "ingress" | "egress" } {
  return macvtap ? { in: "egress", out: "ingress" } : { in: "ingress", out: "egress" };
}

/** Whether a pinned map has the layout a build declares (type, key, value, size). */
function sameLayout(have: MapInfo, want: { type: number; keySize: number; valueSize: number; maxEntries: number }) {
  return (
    have.type === want.type &&
    have.keySize === want.keySize &&
    have.valueSize === want.valueSize &&
    have.maxEntries === want.maxEntries
  );
}

export class PortDatapath {
  readonly pinRoot: string;
  #obj: LoadedPrograms | undefined;

  readonly #sizes: Partial<Record<PinnedMap, number>>;

  readonly #programPins: boolean;

  /** `maxEntries`: other sizes for some maps than the objects declare (tests that fill a table).
   * `programPins: false`: always load the object, and leave the pinned programs alone (a tool
   * that needs programs of its own, beside the agent's). */
  constructor(pinRoot: string, o: { maxEntries?: Partial<Record<PinnedMap, number>>; programPins?: boolean } = {}) {
    this.pinRoot = pinRoot;
    this.#sizes = o.maxEntries ?? {};
    this.#programPins = o.programPins !== false;
  }

  get mapDir(): string {
    return `${this.pinRoot}/maps`;
  }

  get stageDir(): string {
    return `${this.pinRoot}/maps-next`; // bpffs refuses names with a dot
  }

  /** Maps of this build that replace pinned ones of another layout, staged until commitMaps(). */
  #staged: Array<{ name: PinnedMap; old: Fd }> = [];

  /** Loads the port programs, reusing the maps an earlier run pinned. A pinned map whose layout
   * differs from this build's (another build's) is not reused: this build's map is pinned
   * under maps-next, state that cannot be rebuilt (conntrack, counters, buckets) is copied
   * into it when only its size changed, and reconcile fills the rest from the store while
   * the ports' old programs keep enforcing with the old maps. Reconcile then swaps every
   * program, and commitMaps() moves the new pins over the old. An upgrade cut short (a
   * maps-next left by a run that died) is rolled forward: its staged maps of this build's
   * layout are taken over as they are (ports already swapped use them, with the flows
   * they tracked since), others (another build's) are discarded. Nothing pinned changes
   * before the object has loaded, so a load that fails leaves pins, maps and programs as
   * they were. */
  open(): OpenReport {
    ensureBpffs(this.pinRoot);
    mkdirSync(this.mapDir, { recursive: true });
    const report: OpenReport = { staged: [], migrated: [], restarted: [], resumed: [], discarded: [] };
    this.#ids = undefined;
    this.#prints.clear();
    this.#ownIds.clear();
    const pinned = this.#programPins ? this.#pinnedPrograms() : undefined;
    if (pinned) {
      this.#obj = pinned;
      this.#fromPins = true;
      return report;
    }
    this.#fromPins = false;
    const held = new Map<string, Fd>(); // maps/NAME
    const found = new Map<string, Fd>(); // maps-next/NAME, left by an upgrade cut short
    const changed = new Map<PinnedMap, MapInfo>();
    const resumed = new Set<string>();
    const pinnedNow: string[] = [];
    try {
      if (existsSync(this.stageDir))
        for (const f of readdirSync(this.stageDir)) found.set(f, new Fd(objGet(`${this.stageDir}/${f}`, "map")));
      const obj = loadObject("port", {
        prepare: (o) => {
          for (const [m, n] of Object.entries(this.#sizes)) o.setMaxEntries(m, n);
          for (const m of PINNED_MAPS) {
            const p = `${this.mapDir}/${m}`;
            const want = o.mapDef(m);
            const have = existsSync(p) ? new Fd(objGet(p, "map")) : undefined;
            if (have) held.set(m, have);
            const haveInfo = have ? mapInfo(have.fd) : undefined;
            if (haveInfo && sameLayout(haveInfo, want)) {
              o.reuseMap(m, (have as Fd).fd);
              continue;
            }
            if (haveInfo) changed.set(m, haveInfo);
            const staged = found.get(m);
            if (staged && sameLayout(mapInfo(staged.fd), want)) {
              o.reuseMap(m, staged.fd);
              resumed.add(m);
            }
          }
        },
      });
      this.#obj = obj;
      this.#ownIds.clear();
      this.#prints.clear();
      // Loaded: from here on the pins change.
      for (const [f, fd] of found) {
        if (resumed.has(f)) continue;
        fd.close();
        unpin(`${this.stageDir}/${f}`);
        report.discarded.push(f);
      }
      for (const m of PINNED_MAPS) {
        const old = changed.get(m);
        if (!old) {
          if (resumed.has(m)) {
            // Staged by a cut-short upgrade with nothing pinned to replace: it simply moves in.
            renameSync(`${this.stageDir}/${m}`, `${this.mapDir}/${m}`);
            mutated(`move pin of map ${m} from ${this.stageDir} into ${this.mapDir}`);
            report.resumed.push(m);
          } else if (!held.has(m)) {
            obj.map(m).pin(`${this.mapDir}/${m}`); // a new map of this build, or a first start
            pinnedNow.push(`${this.mapDir}/${m}`);
          }
          continue;
        }
        const fd = held.get(m) as Fd;
        held.delete(m); // kept open until commitMaps()
        this.#staged.push({ name: m, old: fd });
        report.staged.push(m);
        if (resumed.has(m)) {
          report.resumed.push(m);
          continue;
        }
        mkdirSync(this.stageDir, { recursive: true });
        obj.map(m).pin(`${this.stageDir}/${m}`);
        pinnedNow.push(`${this.stageDir}/${m}`);
        if (!STATE_MAPS.has(m)) continue;
        const want = obj.map(m).info;
        if (old.type === want.type && old.keySize === want.keySize && old.valueSize === want.valueSize) {
          const n = copyEntries(fd.fd, obj.map(m));
          report.migrated.push(n.complete ? m : `${m} (${n.copied} entries: the rest did not fit)`);
        } else report.restarted.push(m);
      }
      if (existsSync(this.stageDir) && readdirSync(this.stageDir).length === 0) rmdirSync(this.stageDir);
      // Bound to the maps pinned now: kept for the next start (an upgrade's, after commitMaps).
      if (!this.#staged.length && this.#programPins) pinPrograms(this.pinRoot, this.#stamp(), obj);
    } catch (e) {
      for (const s of this.#staged) s.old.close();
      this.#staged = [];
      for (const p of pinnedNow) unpin(p);
      this.#obj?.close();
      this.#obj = undefined;
      throw e;
    } finally {
      for (const f of held.values()) f.close();
      for (const [f, fd] of found) if (resumed.has(f)) fd.close(); // the object holds its own reference
    }
    return report;
  }

  #ids: Set<number> | undefined;

  /** Ids of this build's maps that are (or, staged, will be) pinned: what a port's program
   * must use to be this build's. */
  #pinnedIds(): Set<number> {
    this.#ids ??= new Set(PINNED_MAPS.map((m) => this.map(m).info.id));
    return this.#ids;
  }

  /** Whether the loaded program `id` is this build's `prog` bound to this build's maps. */
  isCurrent(id: number, prog: string): boolean {
    const ids = this.#pinnedIds();
    let own = this.#ownIds.get(prog);
    if (own === undefined) {
      own = progInfo(this.obj.program(prog).fd).id;
      this.#ownIds.set(prog, own);
    }
    if (id === own) return true;
    return this.#print(id, ids) === this.#print(own, ids);
  }

  /** A program's fingerprint by id, asked of the kernel once: a loaded program's instructions
   * and maps never change, and ids are not reused while it lives (a reconcile asks for every
   * port's). A program gone gives "" and is not kept. */
  #print(id: number, ids: Set<number>): string {
    let p = this.#prints.get(id);
    if (p === undefined) {
      p = progFingerprint(id, ids);
      if (p) this.#prints.set(id, p);
    }
    return p;
  }

  #prints = new Map<number, string>();

  /** This object's programs' ids, by name (asked once: a reconcile asks for every port). */
  #ownIds = new Map<string, number>();

  /** True while open() staged maps that commitMaps() has not moved into place. */
  get upgrading(): boolean {
    return this.#staged.length > 0;
  }

  /** Finishes an upgrade once every program runs with this build's maps: each staged pin
   * replaces the old one (a rename: the path never points nowhere), state written to an old
   * map since open() copied it (the old programs ran until their swap) is copied again where
   * the new map lacks it, and the old maps are let go. */
  commitMaps(): string[] {
    const done: string[] = [];
    for (const { name, old } of this.#staged) {
      renameSync(`${this.stageDir}/${name}`, `${this.mapDir}/${name}`);
      mutated(`move pin of map ${name} from ${this.stageDir} into ${this.mapDir}`);
      if (STATE_MAPS.has(name)) {
        const m = this.map(name);
        const o = BpfMap.fromFd(old.fd, false);
        if (o.info.keySize === m.info.keySize && o.info.valueSize === m.info.valueSize && o.info.type === m.info.type)
          copyEntries(old.fd, m, { onlyMissing: true });
      }
      old.close();
      done.push(name);
    }
    this.#staged = [];
    if (existsSync(this.stageDir)) rmdirSync(this.stageDir);
    if (this.#obj && this.#programPins) pinPrograms(this.pinRoot, this.#stamp(), this.#obj);
    return done;
  }

  /** Whether open() took the programs an earlier start of this build pinned (no load). */
  get fromPins(): boolean {
    return this.#fromPins;
  }

  #fromPins = false;

  /** buildStamp of this datapath's object and sizes (a hash of 1.2 MB: asked once). */
  #stamp(): string {
    this.#stampValue ??= buildStamp(this.#sizes);
    return this.#stampValue;
  }

  #stampValue: string | undefined;

  /** The programs an earlier load of this build pinned, when they are whole and bound to the
   * maps pinned now, every one of this build's layout (program-pins.ts); nothing staged. */
  #pinnedPrograms(): PinnedPrograms | undefined {
    if (existsSync(this.stageDir)) return undefined;
    const dir = `${this.pinRoot}/${PROG_DIR}/${this.#stamp()}`;
    if (!existsSync(dir)) return undefined;
    let names: string[];
    const ids = new Map<string, number>();
    const o = openObject("port");
    try {
      for (const [m, n] of Object.entries(this.#sizes)) o.setMaxEntries(m, n);
      names = o.programs().map((p) => p.name);
      for (const m of PINNED_MAPS) {
        const path = `${this.mapDir}/${m}`;
        if (!existsSync(path)) return undefined;
        using fd = new Fd(objGet(path, "map"));
        const info = mapInfo(fd.fd);
        if (!sameLayout(info, o.mapDef(m))) return undefined;
        ids.set(m, info.id);
      }
    } finally {
      o.close();
    }
    return PinnedPrograms.open(dir, names, this.mapDir, ids);
  }

  get obj(): LoadedPrograms {
    if (!this.#obj) throw new StratumError("INTERNAL", "port datapath is not open");
    return this.#obj;
  }

  map(name: PinnedMap): BpfMap {
    return this.obj.map(name);
  }

  /** Profile keys of hosts [from, from + count) of `cidr` (all usable hosts by default), packed for batch calls. */
  #profileKeys(netId: number, cidr: string, from = 0, count?: number): { keys: Buffer; n: number } {
    const r = hostRange(parseSubnet(cidr));
    const n = count ?? Number(r.last - r.first + 1n) - from;
    const keys = Buffer.alloc(n * PROFILE_KEY_SIZE);
    const first = Number(r.first) + from;
    for (let i = 0; i < n; i++) writeProfileKeyU32(keys, i * PROFILE_KEY_SIZE, netId, first + i);
    return { keys, n };
  }

  /** Every entry of stm_profiles, read in batches, by profileId(netId, IPv4 address as a
   * number): what a reconcile of every network compares with (one lookup per profile of
   * hundreds of networks would be a system call each). */
  profiles(): Map<number, Buffer> {
    const out = new Map<number, Buffer>();
    for (const [k, v] of this.map("stm_profiles").batchEntries())
      out.set(profileId(k.readUInt32LE(0), k.readUInt32BE(4)), v);
    return out;
  }

  /** Deletes profiles by profileId (those of no network, or outside their network's subnet). */
  deleteProfileIds(ids: number[]): void {
    const map = this.map("stm_profiles");
    const k = Buffer.alloc(PROFILE_KEY_SIZE);
    for (const id of ids) {
      const { netId, ip4 } = profileIdParts(id);
      writeProfileKeyU32(k, 0, netId, ip4);
      map.delete(k);
    }
  }

  /** Writes one profile per usable address of `cidr`: (netId, ip) → (MAC, flags), those that
   * differ from the map's in a single batch (none when the map is right). Returns how many.
   * `have`: the map as profiles() read it, compared with instead of a lookup per profile. */
  writeProfiles(netId: number, cidr: string, flagsOf: (index: number) => number, have?: Map<number, Buffer>): number {
    const { keys, n } = this.#profileKeys(netId, cidr);
    const first = Number(hostRange(parseSubnet(cidr)).first);
    const vals = Buffer.alloc(n * PROFILE_SIZE);
    for (let i = 0; i < n; i++) writeProfileOf(vals, i * PROFILE_SIZE, netId, i, flagsOf(i));
    const map = this.map("stm_profiles");
    const stale: number[] = [];
    for (let i = 0; i < n; i++) {
      const cur = have
        ? have.get(profileId(netId, first + i))
        : map.lookup(keys.subarray(i * PROFILE_KEY_SIZE, (i + 1) * PROFILE_KEY_SIZE));
      if (cur?.compare(vals, i * PROFILE_SIZE, (i + 1) * PROFILE_SIZE) !== 0) stale.push(i);
    }
    if (stale.length === 0) return 0;
    if (stale.length === n) return map.updateBatch(keys, vals);
    const k = Buffer.alloc(stale.length * PROFILE_KEY_SIZE);
    const v = Buffer.alloc(stale.length * PROFILE_SIZE);
    stale.forEach((i, j) => {
      keys.copy(k, j * PROFILE_KEY_SIZE, i * PROFILE_KEY_SIZE, (i + 1) * PROFILE_KEY_SIZE);
      vals.copy(v, j * PROFILE_SIZE, i * PROFILE_SIZE, (i + 1) * PROFILE_SIZE);
    });
    return map.updateBatch(k, v);
  }

  /** Rewrites one profile (its flags change when it is claimed or released). */
  setProfile(netId: number, cidr: string, index: number, flags: number): void {
    const { keys } = this.#profileKeys(netId, cidr, index, 1);
    const val = Buffer.alloc(PROFILE_SIZE);
    writeProfileOf(val, 0, netId, index, flags);
    this.map("stm_profiles").ensure(keys, val);
  }

  deleteProfiles(netId: number, cidr: string): void {
    const { keys, n } = this.#profileKeys(netId, cidr);
    const profiles = this.map("stm_profiles");
    try {
      profiles.deleteBatch(keys);
    } catch (e) {
      // A partly written network: fall back to deleting what is there, one by one.
      if (!(e instanceof StratumError && e.errno === ERRNO.ENOENT)) throw e;
      for (let i = 0; i < n; i++) profiles.delete(keys.subarray(i * PROFILE_KEY_SIZE, (i + 1) * PROFILE_KEY_SIZE));
    }
  }

  /** Runs `fn` (a restore of every port) with the maps only the agent writes for ports (their
   * entries, local addresses, caps) read once each: a port that is right costs no look-up. */
  readPortMapsOnce<T>(fn: () => T): T {
    return this.map("stm_ports").readOnce(() =>
      this.map("stm_local").readOnce(() => this.map("stm_shape_cfg").readOnce(fn)),
    );
  }

  /** Writes a port's configuration. A port keeps its stm_port_stats row for as long as it has
   * an entry; a new port gets the lowest free row, zeroed (0, the shared row, when all are
   * taken: its traffic is then counted with other such ports). */
  setPort(ifindex: number, cfg: PortConfig): void {
    const key = encodeIfindex(ifindex);
    const slots = this.#portSlots();
    let slot = slots.get(ifindex) ?? 0;
    if (!slot) {
      const used = new Set(slots.values());
      for (let s = 1; s < this.map("stm_port_stats").info.maxEntries; s++)
        if (!used.has(s)) {
          slot = s;
          break;
        }
      if (slot)
        this.map("stm_port_stats").update(encodeIfindex(slot), Buffer.alloc(this.map("stm_port_stats").valueBufSize));
    }
    this.map("stm_ports").ensure(key, encodePort({ ...cfg, slot }));
    slots.set(ifindex, slot);
  }

  deletePort(ifindex: number): boolean {
    this.#slots?.delete(ifindex);
    return this.map("stm_ports").delete(encodeIfindex(ifindex));
  }

  #slots: Map<number, number> | undefined;

  /** ifindex → stats row of every port, read from the map once per agent run. */
  #portSlots(): Map<number, number> {
    if (!this.#slots) {
      this.#slots = new Map();
      for (const [k, v] of this.map("stm_ports").batchEntries())
        this.#slots.set(k.readUInt32LE(0), decodePort(v).slot ?? 0);
    }
    return this.#slots;
  }

  /** Packets and bytes a port's programs saw (from and to the endpoint), summed over CPUs. */
  portStats(ifindex: number): PortStats | undefined {
    const slot = this.#portSlots().get(ifindex);
    if (!slot) return undefined;
    return sumPortStats(this.map("stm_port_stats"), slot);
  }

  /** ifindexes that have a port entry. */
  portIfindexes(): number[] {
    return this.map("stm_ports")
      .keyList()
      .map((k) => k.readUInt32LE(0));
  }

  /** Marks an address (MAC, IPv4 or IPv6) as this node's: the uplink drops frames from outside that claim it. */
  setLocal(addr: string, ifindex: number, netId: number): void {
    this.map("stm_local").ensure(encodeLocalKey(addr), encodeLocal(ifindex, netId));
  }

  deleteLocal(addr: string): boolean {
    return this.map("stm_local").delete(encodeLocalKey(addr));
  }

  /** Every local address in the map. */
  localAddresses(): string[] {
    return this.map("stm_local").keyList().map(decodeLocalKey);
  }

  /** Marks a bridge device that is not a workload port (the uplink): port egress knows a frame
   * bridged from it came straight from the LAN. */
  setIface(ifindex: number, cfg: IfaceConfig): void {
    this.map("stm_ifaces").ensure(encodeIfindex(ifindex), encodeIface(cfg));
  }

  deleteIface(ifindex: number): boolean {
    return this.map("stm_ifaces").delete(encodeIfindex(ifindex));
  }

  /** ifindexes with an stm_ifaces entry. */
  ifaceIndexes(): number[] {
    return [...this.map("stm_ifaces").keys()].map((k) => k.readUInt32LE(0));
  }

  /** A network's subnet, for the uplink's anti-spoofing (and whether it is extended onto the LAN). */
  setSubnet(cidr: string, cfg: SubnetConfig): void {
    this.map("stm_subnets").ensure(encodeSubnetKey(cidr), encodeSubnet(cfg));
  }

  deleteSubnet(cidr: string): boolean {
    return this.map("stm_subnets").delete(encodeSubnetKey(cidr));
  }

  /** Every key of stm_subnets (to collect what no network asks for). */
  subnetKeys(): Buffer[] {
    return [...this.map("stm_subnets").keys()];
  }

  deleteSubnetKey(key: Buffer): boolean {
    return this.map("stm_subnets").delete(key);
  }

  /** Drop counters of one device, summed over CPUs: one lookup per reason. */
  drops(ifindex: number): DropCounts {
    const out: DropCounts = {};
    const m = this.map("stm_drops");
    for (const r of DROP_REASON_LIST) {
      if (r.code === 0) continue;
      const perCpu = m.lookupPerCpu(encodeDropKey(ifindex, r.code));
      out[r.name] = perCpu ? perCpu.reduce((a, b) => a + Number(b.readBigUInt64LE(0)), 0) : 0;
    }
    return out;
  }

  /** Forgets the drop counters of a device (it is gone, or its ifindex is reused). */
  clearDrops(ifindex: number): void {
    const m = this.map("stm_drops");
    for (const r of DROP_REASON_LIST) m.delete(encodeDropKey(ifindex, r.code));
  }

  // ---- egress caps -------------------------------------------------------------------------

  /** Sets or changes a cap in place: the bucket's fill carries over, so flows see the new
   * rate at once and nothing else. */
  setCap(kind: ShapeKind, id: number, cap: EgressCap): void {
    this.map("stm_shape_cfg").ensure(encodeShapeKey(kind, id), encodeShapeCfg(cap));
  }

  /** Removes a cap and its bucket; true when there was one. */
  deleteCap(kind: ShapeKind, id: number): boolean {
    const k = encodeShapeKey(kind, id);
    const had = this.map("stm_shape_cfg").delete(k);
    this.map("stm_shape_state").delete(k);
    return had;
  }

  /** What a cap's bucket passed and dropped (zero before its first packet). */
  capCounts(kind: ShapeKind, id: number): BucketCounts {
    const v = this.map("stm_shape_state").lookup(encodeShapeKey(kind, id));
    if (!v) return { passed: { packets: 0, bytes: 0 }, dropped: { packets: 0, bytes: 0 } };
    const { passed, dropped } = decodeShapeState(v);
    return { passed, dropped };
  }

  /** Every cap in the map (for garbage collection). */
  caps(): Array<{ kind: number; id: number }> {
    return [...this.map("stm_shape_cfg").keys()].map(decodeShapeKey);
  }

  /** Charges packets from `cidr` leaving through the uplink to network `netId`'s cap. */
  setCapSource(cidr: string, netId: number): void {
    const v = Buffer.alloc(4);
    v.writeUInt32LE(netId);
    this.map("stm_shape_src").ensure(encodeShapeSrc(cidr), v);
  }

  deleteCapSource(cidr: string): boolean {
    return this.map("stm_shape_src").delete(encodeShapeSrc(cidr));
  }

  /** Source prefixes (raw keys) and their network. */
  capSources(): Array<{ key: Buffer; netId: number }> {
    return [...this.map("stm_shape_src").entries()].map(([key, v]) => ({ key, netId: v.readUInt32LE(0) }));
  }

  deleteCapSourceKey(key: Buffer): void {
    this.map("stm_shape_src").delete(key);
  }

  get uplinkPin(): string {
    return `${this.pinRoot}/links/uplink-xdp`;
  }

  get uplinkOutPin(): string {
    return `${this.pinRoot}/links/uplink-tc-out`;
  }

  get uplinkInPin(): string {
    return `${this.pinRoot}/links/uplink-tc-in`;
  }

  /** Attaches the uplink filter to the NIC through a pinned XDP link (native, else generic), and
   * the global scope's egress program and masquerading's ingress one through pinned tcx links
   * (the ingress one first: the filter leaves replies to a NAT address to it). A link already on that device
   * is kept and its program swapped in place when it differs; a link left on another device
   * (the uplink changed) is detached first. */
  attachUplink(ifindex: number): Attachment {
    this.#attachPinned("stm_uplink_nat_in", ifindex, this.uplinkInPin, "tc-ingress", (fd, pin) =>
      attachTc(fd, ifindex, "ingress", { mode: "tcx", pin }),
    );
    const xdp = this.#attachPinned("stm_uplink_in", ifindex, this.uplinkPin, "xdp", (fd, pin) =>
      attachXdp(fd, ifindex, { pin }),
    );
    this.#attachPinned("stm_uplink_out", ifindex, this.uplinkOutPin, "tc-egress", (fd, pin) =>
      attachTc(fd, ifindex, "egress", { mode: "tcx", pin }),
    );
    return xdp;
  }

  #attachPinned(
    prog: string,
    ifindex: number,
    pin: string,
    hook: Attachment["hook"],
    attach: (fd: number, pin: string) => Attachment,
  ): Attachment {
    const fd = this.obj.program(prog).fd;
    const link = openPinnedLink(pin);
    if (link) {
      using _ = link;
      const info = linkInfo(link.fd);
      if (info.ifindex === ifindex) {
        if (!this.isCurrent(info.progId, prog)) linkUpdate(link.fd, fd);
        const after = linkInfo(link.fd);
        return { kind: hook === "xdp" ? "xdp" : "tcx", ifindex, hook, progId: after.progId, pin };
      }
      detachPinnedLink(pin);
    }
    try {
      return attach(fd, pin);
    } catch (e) {
      unpin(pin);
      throw e;
    }
  }

  // ---- overlay ------------------------------------------------------------------------------

  get underlayPin(): string {
    return `${this.pinRoot}/links/underlay-tc-in`;
  }

  /** Where agents before the tc check pinned their XDP link on the underlay. */
  get legacyUnderlayPin(): string {
    return `${this.pinRoot}/links/underlay-xdp`;
  }

  /** The VXLAN check before decapsulation, on the device that carries the node's address (when
   * that is not the uplink, whose XDP filter makes it): a pinned tcx ingress link. tc rather
   * than XDP: once per GRO-merged packet instead of per wire frame, and native XDP on a veth
   * would turn GSO off on its peer (docs/overlay.md). An XDP link an earlier agent left is
   * removed once the tc one is in place, so the check never lapses. */
  attachUnderlay(ifindex: number): Attachment {
    const a = this.#attachPinned("stm_underlay_in", ifindex, this.underlayPin, "tc-ingress", (fd, pin) =>
      attachTc(fd, ifindex, "ingress", { mode: "tcx", pin }),
    );
    detachPinnedLink(this.legacyUnderlayPin);
    return a;
  }

  detachUnderlay(): boolean {
    const legacy = detachPinnedLink(this.legacyUnderlayPin);
    return detachPinnedLink(this.underlayPin) || legacy;
  }

  /** The overlay device's two programs, as cls_bpf filters like a port's (kept when current). */
  attachOverlay(ifindex: number, o: { force?: boolean } = {}): void {
    for (const [prog, dir] of [
      ["stm_overlay_in", "ingress"],
      ["stm_overlay_out", "egress"],
    ] as const) {
      const current = clsProgId(ifindex, dir);
      if (!o.force && current && this.isCurrent(current, prog)) continue;
      attachTc(this.obj.program(prog).fd, ifindex, dir, { mode: "cls_bpf" });
    }
  }

  /** stm_link_in and stm_link_out on one end of a link between user bridges (its stm_ifaces
   * entry first: the caller's). */
  attachLink(ifindex: number): void {
    for (const [prog, dir] of [
      ["stm_link_in", "ingress"],
      ["stm_link_out", "egress"],
    ] as const) {
      const current = clsProgId(ifindex, dir);
      if (current && this.isCurrent(current, prog)) continue;
      attachTc(this.obj.program(prog).fd, ifindex, dir, { mode: "cls_bpf" });
    }
  }

  /** stm_mvl_out on tc egress of a macvtap lower link's outer end (user-bridges.ts). */
  attachMacvtapLower(ifindex: number): void {
    const current = clsProgId(ifindex, "egress");
    if (current && this.isCurrent(current, "stm_mvl_out")) return;
    attachTc(this.obj.program("stm_mvl_out").fd, ifindex, "egress", { mode: "cls_bpf" });
  }

  /** stm_extbr_in on tc ingress of an extension bridge's own device: its stack takes
   * nothing the bridge passes up. */
  attachLinkBridge(ifindex: number): void {
    const current = clsProgId(ifindex, "ingress");
    if (current && this.isCurrent(current, "stm_extbr_in")) return;
    attachTc(this.obj.program("stm_extbr_in").fd, ifindex, "ingress", { mode: "cls_bpf" });
  }

  /** A node's address in stm_vteps ("": the switch that turns the checks on, with the overlay's MTU). */
  setVtep(addr: string, o: { self: boolean; gateway?: boolean; mtu?: number }): void {
    this.map("stm_vteps").ensure(encodeVtepKey(addr), encodeVtep(o));
  }

  /** North-south over the overlay: the gateway nodes, whether this node is one, cnv-vxlan0. */
  setGwCfg(o: { gateways: string[]; self: boolean; overlayIfindex: number }): void {
    this.map("stm_gw").ensure(encodeU32(0), encodeGwCfg(o));
  }

  /** Every key of stm_vteps, raw. */
  vtepKeys(): Buffer[] {
    return [...this.map("stm_vteps").keys()];
  }

  deleteVtepKey(key: Buffer): boolean {
    return this.map("stm_vteps").delete(key);
  }

  setRemote(mac: string, r: RemoteEndpoint): void {
    this.map("stm_remote").ensure(encodeMacKey(mac), encodeRemote(r));
  }

  deleteRemote(mac: string): boolean {
    return this.map("stm_remote").delete(encodeMacKey(mac));
  }

  /** Every endpoint of another node in stm_remote, by MAC, read in batches. */
  remotes(): Map<string, RemoteEndpoint> {
    const out = new Map<string, RemoteEndpoint>();
    for (const [k, v] of this.map("stm_remote").batchEntries()) out.set(decodeMacKey(k), decodeRemote(v));
    return out;
  }

  // ---- connection tracking carried over (a move) ---------------------------------------------

  /** The connection-tracking entries of the port `ifindex` (struct stm_ct_key starts with it),
   * with the time each has left in ms; expired ones are left out. */
  ctOf(ifindex: number): Array<{ k: Buffer; v: Buffer; ttl: number }> {
    const now = monotonicNs();
    const out: Array<{ k: Buffer; v: Buffer; ttl: number }> = [];
    for (const [k, v] of this.map("stm_ct").batchEntries()) {
      if (k.readUInt32LE(0) !== ifindex) continue;
      const left = v.readBigUInt64LE(0) - now;
      if (left <= 0n) continue;
      out.push({ k: Buffer.from(k), v: Buffer.from(v), ttl: Number(left / 1_000_000n) });
    }
    return out;
  }

  /** Puts connection-tracking entries taken from another port (another node's) on the port
   * `ifindex`: its ifindex in each key, each expiring after the time it had left. Returns how
   * many went in. */
  importCt(entries: Array<{ k: Buffer; v: Buffer; ttl: number }>, ifindex: number): number {
    const m = this.map("stm_ct");
    const now = monotonicNs();
    let n = 0;
    for (const e of entries) {
      if (e.k.length !== m.info.keySize || e.v.length !== m.info.valueSize) continue;
      const k = Buffer.from(e.k);
      k.writeUInt32LE(ifindex, 0);
      const v = Buffer.from(e.v);
      v.writeBigUInt64LE(now + BigInt(Math.round(e.ttl)) * 1_000_000n, 0);
      m.update(k, v);
      n++;
    }
    return n;
  }

  detachUplink(): boolean {
    const out = detachPinnedLink(this.uplinkOutPin);
    const xdp = detachPinnedLink(this.uplinkPin);
    return detachPinnedLink(this.uplinkInPin) || xdp || out;
  }

  // ---- masquerading ---------------------------------------------------------------------------

  /** The NAT port range and whether any network is masqueraded (stm_nat_cfg). */
  setNatCfg(c: { lo: number; hi: number; on: boolean }): void {
    this.map("stm_nat_cfg").ensure(encodeU32(0), encodeNatCfg(c));
  }

  setNatNet(netId: number, c: NatNetConfig): void {
    this.map("stm_nat_nets").ensure(encodeU32(netId), encodeNatNet(c));
  }

  natNet(netId: number): NatNetConfig | undefined {
    const v = this.map("stm_nat_nets").lookup(encodeU32(netId));
    return v ? decodeNatNet(v) : undefined;
  }

  deleteNatNet(netId: number): boolean {
    return this.map("stm_nat_nets").delete(encodeU32(netId));
  }

  /** The masqueraded networks in the kernel, by network id. */
  natNets(): Map<number, NatNetConfig> {
    const out = new Map<number, NatNetConfig>();
    for (const [k, v] of this.map("stm_nat_nets").entries()) out.set(k.readUInt32LE(0), decodeNatNet(v));
    return out;
  }

  /** The NAT addresses the uplink filter leaves to the translation: exactly `addrs`. */
  setNatAddrs(addrs: ReadonlySet<string>): void {
    const m = this.map("stm_nat_addrs");
    const want = new Map([...addrs].map((a) => [encodeVtepKey(a).toString("hex"), a]));
    for (const k of [...m.keys()]) if (!want.has(k.toString("hex"))) m.delete(k);
    for (const a of want.values()) m.ensure(encodeVtepKey(a), encodeU32(1));
  }

  /** The MAC the node's own frames carry on the uplink's LAN in place of the anycast gateway
   * MAC (null: none, the bridge's own MAC is the node's). */
  setUplinkMac(cfg: { anycast: string; own: string } | null): void {
    const v = Buffer.alloc(16);
    if (cfg) {
      macToBytes(cfg.anycast).copy(v, 0);
      macToBytes(cfg.own).copy(v, 6);
      v.writeUInt32LE(1, 12);
    }
    this.map("stm_uplink_mac").ensure(Buffer.alloc(4), v);
  }

  /** The maps the gateway HA engine writes: VIP deadlines, the NAT table. */
  haMaps(): HaMaps {
    return new HaMaps(this.map("stm_vip"), this.map("stm_nat"));
  }

  /** stm_nat_stats summed over the CPUs, by name. */
  natStats(): Record<(typeof NAT_STATS)[number], number> {
    return readStatArray(this.map("stm_nat_stats"), NAT_STATS);
  }

  /** Attaches both port programs to `ifindex`; a filter already running the same code with the
   * same maps is kept, so a restarted agent (which loads new program ids) changes nothing on
   * live ports. Another program (another build's, or one bound to other maps) is replaced in
   * place: cls_bpf swaps it on the existing filter, no packet meets the port without one.
   * `force` replaces even the same program (benchmarks and tests of the swap itself). `nl`:
   * the rtnetlink socket of the device's namespace to ask for the current filters on (else
   * libbpf asks, on a socket of the thread's namespace). `current`: the ids a caller asked for
   * already (clsProgIds, for many ports at once), per direction. */
  attachPort(
    ifindex: number,
    o: {
      force?: boolean;
      nl?: Rtnl;
      current?: Partial<Record<"ingress" | "egress", number>>;
      /** A VM's macvtap: stm_port_in on tc egress, stm_port_out on tc ingress (portHooks). */
      macvtap?: boolean;
    } = {},
  ): void {
    const hooks = portHooks(o.macvtap);
    for (const [prog, dir] of [
      ["stm_port_in", hooks.in],
      ["stm_port_out", hooks.out],
    ] as const) {
      const current = o.current?.[dir] ?? clsProgId(ifindex, dir, o.nl);
      if (!o.force && current && this.isCurrent(current, prog)) continue;
      attachTc(this.obj.program(prog).fd, ifindex, dir, { mode: "cls_bpf" });
    }
  }

  detachPort(ifindex: number): void {
    for (const dir of ["ingress", "egress"] as const) {
      try {
        detachCls(ifindex, dir);
      } catch (e) {
        if (!(e instanceof StratumError && (e.errno === ERRNO.ENODEV || e.errno === ERRNO.EINVAL))) throw e; // device or hook already gone
      }
    }
  }

  close(): void {
    this.#obj?.close();
    this.#obj = undefined;
    this.#ids = undefined;
    this.#ownIds.clear();
    this.#prints.clear();
  }

  /** The maps this datapath pins, by name (for status and metrics: fill levels). */
  pinnedMaps(): Array<{ name: PinnedMap; map: BpfMap }> {
    return PINNED_MAPS.map((name) => ({ name, map: this.map(name) }));
  }
}
