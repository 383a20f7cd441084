/** The agent's handle on the port datapath: the port object loaded once per agent run,
 * its maps pinned under <pin-root>/maps (taken over, not recreated, on restart), endpoint
 * profiles written in batches, and each port's programs held by pinned tcx links under
 * <pin-root>/links. Nothing here detaches on exit: only detachPort and uninstall do. */
import { existsSync, mkdirSync, readdirSync } from "node:fs";
import { attachTc, detachPinnedLink } from "../datapath/attach";
import { loadObject } from "../datapath/objects";
import {
  encodeIfindex,
  encodePort,
  type PortConfig,
  PROFILE_KEY_SIZE,
  PROFILE_SIZE,
  writeProfile,
  writeProfileKey,
} from "../datapath/port";
import { ensureBpffs } from "../datapath/probe";
import { StratumError } from "../errors";
import { hostRange, parseSubnet } from "../model/ip";
import { profileMac } from "../model/network";
import { macToBytes } from "../netlink/codec";
import { type BpfMap, type BpfObject, Fd, linkInfo, objGet } from "../sys/bpf";

const PINNED_MAPS = ["stm_ports", "stm_profiles", "stm_drops"] as const;

export class PortDatapath {
  readonly pinRoot: string;
  #obj: BpfObject | undefined;

  constructor(pinRoot: string) {
    this.pinRoot = pinRoot;
  }

  get mapDir(): string {
    return `${this.pinRoot}/maps`;
  }
  get linkDir(): string {
    return `${this.pinRoot}/links`;
  }

  /** Loads the port programs, reusing maps already pinned by an earlier run. */
  open(): void {
    ensureBpffs(this.pinRoot);
    mkdirSync(this.mapDir, { recursive: true });
    mkdirSync(this.linkDir, { recursive: true });
    const reuse: Record<string, number> = {};
    const held: Fd[] = [];
    try {
      for (const m of PINNED_MAPS) {
        const p = `${this.mapDir}/${m}`;
        if (existsSync(p)) {
          const fd = new Fd(objGet(p, "map"));
          held.push(fd);
          reuse[m] = fd.fd;
        }
      }
      this.#obj = loadObject("port", { reuse });
      for (const m of PINNED_MAPS) if (!reuse[m]) this.#obj.map(m).pin(`${this.mapDir}/${m}`);
    } finally {
      for (const f of held) f.close();
    }
  }

  get obj(): BpfObject {
    if (!this.#obj) throw new StratumError("INTERNAL", "port datapath is not open");
    return this.#obj;
  }

  map(name: (typeof PINNED_MAPS)[number]): BpfMap {
    return this.obj.map(name);
  }

  /** Writes one profile per usable address of `cidr` in a single batch: (netId, ip) → (MAC, flags). */
  writeProfiles(netId: number, cidr: string, flagsOf: (index: number) => number): number {
    const s = parseSubnet(cidr);
    const r = hostRange(s);
    const n = Number(r.last - r.first + 1n);
    const keys = Buffer.alloc(n * PROFILE_KEY_SIZE);
    const vals = Buffer.alloc(n * PROFILE_SIZE);
    const ip = Buffer.alloc(4);
    for (let i = 0; i < n; i++) {
      ip.writeUInt32BE(Number(r.first) + i);
      writeProfileKey(keys, i * PROFILE_KEY_SIZE, netId, ip);
      writeProfile(vals, i * PROFILE_SIZE, macToBytes(profileMac(netId, i)), flagsOf(i));
    }
    return this.map("stm_profiles").updateBatch(keys, vals);
  }

  /** Rewrites one profile (its flags change when it is claimed or released). */
  setProfile(netId: number, cidr: string, index: number, flags: number): void {
    const r = hostRange(parseSubnet(cidr));
    const key = Buffer.alloc(PROFILE_KEY_SIZE);
    const ip = Buffer.alloc(4);
    ip.writeUInt32BE(Number(r.first) + index);
    writeProfileKey(key, 0, netId, ip);
    const val = Buffer.alloc(PROFILE_SIZE);
    writeProfile(val, 0, macToBytes(profileMac(netId, index)), flags);
    this.map("stm_profiles").update(key, val);
  }

  deleteProfiles(netId: number, cidr: string): void {
    const s = parseSubnet(cidr);
    const r = hostRange(s);
    const n = Number(r.last - r.first + 1n);
    const keys = Buffer.alloc(n * PROFILE_KEY_SIZE);
    const ip = Buffer.alloc(4);
    for (let i = 0; i < n; i++) {
      ip.writeUInt32BE(Number(r.first) + i);
      writeProfileKey(keys, i * PROFILE_KEY_SIZE, netId, ip);
    }
    const profiles = this.map("stm_profiles");
    try {
      profiles.deleteBatch(keys);
    } catch (e) {
      // A partly written network: fall back to deleting what is there, one by one.
      if (!(e instanceof StratumError && e.errno === 2)) throw e;
      for (let i = 0; i < n; i++) profiles.delete(keys.subarray(i * PROFILE_KEY_SIZE, (i + 1) * PROFILE_KEY_SIZE));
    }
  }

  setPort(ifindex: number, cfg: PortConfig): void {
    this.map("stm_ports").update(encodeIfindex(ifindex), encodePort(cfg));
  }

  deletePort(ifindex: number): boolean {
    return this.map("stm_ports").delete(encodeIfindex(ifindex));
  }

  /** ifindexes that have a port entry. */
  portIfindexes(): number[] {
    return [...this.map("stm_ports").keys()].map((k) => k.readUInt32LE(0));
  }

  linkPin(hostIf: string, dir: "in" | "out"): string {
    return `${this.linkDir}/${hostIf}_${dir}`;
  }

  /** Ifindex a pinned port link is attached to, or 0 when the pin is missing or the device is gone. */
  linkIfindex(hostIf: string, dir: "in" | "out"): number {
    const p = this.linkPin(hostIf, dir);
    if (!existsSync(p)) return 0;
    using l = new Fd(objGet(p, "link"));
    return linkInfo(l.fd).ifindex;
  }

  /** Attaches both port programs to `ifindex` through pinned tcx links (kept if already right). */
  attachPort(hostIf: string, ifindex: number): void {
    for (const [dir, prog, hook] of [
      ["in", "stm_port_in", "ingress"],
      ["out", "stm_port_out", "egress"],
    ] as const) {
      const cur = this.linkIfindex(hostIf, dir);
      if (cur === ifindex) continue;
      if (existsSync(this.linkPin(hostIf, dir))) detachPinnedLink(this.linkPin(hostIf, dir));
      attachTc(this.obj.program(prog).fd, ifindex, hook, { mode: "tcx", pin: this.linkPin(hostIf, dir) });
    }
  }

  detachPort(hostIf: string): void {
    for (const dir of ["in", "out"] as const) detachPinnedLink(this.linkPin(hostIf, dir));
  }

  /** Host interfaces that have pinned port links. */
  linkedPorts(): string[] {
    if (!existsSync(this.linkDir)) return [];
    return [...new Set(readdirSync(this.linkDir).map((f) => f.replace(/_(in|out)$/, "")))];
  }

  close(): void {
    this.#obj?.close();
    this.#obj = undefined;
  }
}
