/** Attaching programs to devices, the way Stratum keeps them: a BPF link (tcx or XDP)
 * pinned under the pin root so the attachment outlives the process, cls_bpf and legacy
 * XDP only as fallbacks for kernels without those links. Replacement swaps the program
 * inside the existing link (no window without a program); detach is explicit. */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { ERRNO, StratumError } from "../errors";
import type { Rtnl } from "../netlink/rtnl";
import { clsBpfProgId, clsBpfProgIds } from "../netlink/tc";
import {
  BPF_ATTACH,
  BpfMap,
  Fd,
  linkCreate,
  linkDetach,
  linkInfo,
  linkUpdate,
  mapFdById,
  objGet,
  pinFd,
  progFdById,
  progInfo,
  progMapIds,
  TC_ATTACH_POINT,
  tcAttach,
  tcDetach,
  tcQuery,
  unpin,
  XDP_FLAGS,
  xdpAttachLegacy,
} from "../sys/bpf";
import { supportsTcx } from "./probe";

export type TcDirection = "ingress" | "egress";
export type TcMode = "auto" | "tcx" | "cls_bpf";
export type XdpMode = "auto" | "native" | "generic";

export interface Attachment {
  /** How the program is held on the device. */
  kind: "tcx" | "cls_bpf" | "xdp" | "xdp-legacy";
  ifindex: number;
  hook: "tc-ingress" | "tc-egress" | "xdp";
  progId: number;
  /** Pinned link, for link-based attachments. */
  pin?: string;
  /** XDP only: native (driver) or generic (skb) mode. */
  xdpMode?: "native" | "generic";
}

/** cls_bpf handle and priority Stratum uses, so its filters are found again. */
export const CLS_HANDLE = 0x5354; // "ST"
export const CLS_PRIORITY = 0x5354;

function pinLink(fd: number, pin: string | undefined, what: string): void {
  if (!pin) return;
  mkdirSync(dirname(pin), { recursive: true });
  pinFd(fd, pin, what);
}

/** Attaches a SCHED_CLS program at tc ingress/egress. `mode: "auto"` uses tcx when the kernel has it. */
export function attachTc(
  progFd: number,
  ifindex: number,
  dir: TcDirection,
  opts: { mode?: TcMode; pin?: string } = {},
): Attachment {
  const mode = opts.mode ?? "auto";
  const hook = dir === "ingress" ? "tc-ingress" : "tc-egress";
  const progId = progInfo(progFd).id;
  if (mode === "tcx" || (mode === "auto" && supportsTcx())) {
    using link = new Fd(
      linkCreate(progFd, ifindex, dir === "ingress" ? BPF_ATTACH.TCX_INGRESS : BPF_ATTACH.TCX_EGRESS),
    );
    pinLink(link.fd, opts.pin, `tcx ${dir} link of ifindex ${ifindex}`);
    return { kind: "tcx", ifindex, hook, progId, pin: opts.pin };
  }
  const point = dir === "ingress" ? TC_ATTACH_POINT.INGRESS : TC_ATTACH_POINT.EGRESS;
  tcAttach(ifindex, point, progFd, { handle: CLS_HANDLE, priority: CLS_PRIORITY, replace: true });
  return { kind: "cls_bpf", ifindex, hook, progId };
}

/** Attaches an XDP program through a link: native mode, falling back to generic when the driver lacks XDP. */
export function attachXdp(progFd: number, ifindex: number, opts: { mode?: XdpMode; pin?: string } = {}): Attachment {
  const mode = opts.mode ?? "auto";
  const progId = progInfo(progFd).id;
  const tryMode = (m: "native" | "generic"): Attachment => {
    const flags = m === "native" ? XDP_FLAGS.DRV_MODE : XDP_FLAGS.SKB_MODE;
    try {
      using link = new Fd(linkCreate(progFd, ifindex, BPF_ATTACH.XDP, flags));
      pinLink(link.fd, opts.pin, `XDP link of ifindex ${ifindex}`);
      return { kind: "xdp", ifindex, hook: "xdp", progId, pin: opts.pin, xdpMode: m };
    } catch (e) {
      // Kernels before XDP links: the netlink attach, held by the device rather than a pin.
      if (e instanceof StratumError && e.errno === ERRNO.EINVAL && !opts.pin) {
        xdpAttachLegacy(ifindex, progFd, flags | XDP_FLAGS.UPDATE_IF_NOEXIST);
        return { kind: "xdp-legacy", ifindex, hook: "xdp", progId, xdpMode: m };
      }
      throw e;
    }
  };
  if (mode === "generic") return tryMode("generic");
  try {
    return tryMode("native");
  } catch (e) {
    if (mode === "auto" && e instanceof StratumError && (e.errno === ERRNO.EOPNOTSUPP || e.errno === ERRNO.ENOTSUPP))
      return tryMode("generic");
    throw e;
  }
}

/** Swaps the program held by a pinned link in one step; with `expectProgId` only if that program is still there. */
export function replaceProgram(
  pin: string,
  newProgFd: number,
  expectProgId?: number,
): { oldProgId: number; newProgId: number } {
  using link = new Fd(objGet(pin, "link"));
  const before = linkInfo(link.fd);
  if (expectProgId !== undefined && before.progId !== expectProgId)
    throw new StratumError(
      "BPF_ATTACH",
      `replace program on ${pin}: link holds program ${before.progId}, expected ${expectProgId}`,
    );
  linkUpdate(link.fd, newProgFd);
  return { oldProgId: before.progId, newProgId: linkInfo(link.fd).progId };
}

/** The link pinned at `pin`, opened; null when nothing is pinned there. */
export function openPinnedLink(pin: string): Fd | null {
  try {
    return new Fd(objGet(pin, "link"));
  } catch (e) {
    if (e instanceof StratumError && e.errno === ERRNO.ENOENT) return null;
    throw e;
  }
}

/** The program and device of the link pinned at `pin`; null when nothing is pinned there. */
export function pinnedLinkInfo(pin: string): { progId: number; ifindex: number } | null {
  const link = openPinnedLink(pin);
  if (!link) return null;
  using _ = link;
  const i = linkInfo(link.fd);
  return { progId: i.progId, ifindex: i.ifindex };
}

const tagCache = new Map<number, string>();

/** Tag (instruction hash) of a loaded program by id; "" when it is gone. Ids are not reused
 * while the system runs, so a found tag is kept. */
export function progTag(id: number): string {
  const hit = tagCache.get(id);
  if (hit !== undefined) return hit;
  try {
    using fd = new Fd(progFdById(id));
    const tag = progInfo(fd.fd).tag;
    tagCache.set(id, tag);
    return tag;
  } catch {
    return "";
  }
}

const identityCache = new Map<number, { tag: string; maps: number[]; rodata: string }>();
const BPF_F_RDONLY_PROG = 0x80;

/** A loaded program's instructions (tag), the ids of the maps it uses, and the content of
 * its read-only data (.rodata: constants the instructions load from a map, so a build that
 * changes only them has the same tag); null when it is gone. Ids are not reused while the
 * system runs, and neither a loaded program's maps nor its frozen .rodata change, so a found
 * answer is kept. */
export function progIdentity(id: number): { tag: string; maps: number[]; rodata: string } | null {
  const hit = identityCache.get(id);
  if (hit) return hit;
  try {
    using fd = new Fd(progFdById(id));
    const maps = progMapIds(fd.fd);
    const rodata: string[] = [];
    for (const m of maps) {
      using mfd = new Fd(mapFdById(m));
      const map = BpfMap.fromFd(mfd.fd, false);
      if (map.info.flags & BPF_F_RDONLY_PROG && map.info.type === 2 /* array */)
        rodata.push(map.lookup(Buffer.alloc(4))?.toString("hex") ?? "");
    }
    const v = { tag: progInfo(fd.fd).tag, maps, rodata: rodata.sort().join("/") };
    identityCache.set(id, v);
    return v;
  } catch {
    return null;
  }
}

/** What makes two loaded programs the same for a port: their instructions, their read-only
 * data and, of the maps they use, those in `pinned` (the ids of the maps pinned under the
 * pin root; a program's own data maps differ with every load and count by content only). A
 * program of another agent run with the same code and the same pinned maps is the same; one
 * bound to other maps (a cut-short upgrade's) is not. "" when the program is gone. */
export function progFingerprint(id: number, pinned: ReadonlySet<number>): string {
  const p = progIdentity(id);
  return p ? `${p.tag}/${p.rodata}/${p.maps.filter((m) => pinned.has(m)).join(",")}` : "";
}

/** Detaches the program of a pinned link and removes the pin. Missing pins are not an error. */
export function detachPinnedLink(pin: string): boolean {
  const link = openPinnedLink(pin);
  if (!link) return false;
  using _ = link;
  linkDetach(link.fd);
  unpin(pin);
  return true;
}

/** Program id of Stratum's cls_bpf filter at `dir`, or 0. With `nl`, asked on that rtnetlink
 * socket (of the namespace the device is in): no socket opened per question, as libbpf does. */
export function clsProgId(ifindex: number, dir: TcDirection, nl?: Rtnl): number {
  if (nl) return clsBpfProgId(nl, ifindex, dir, { handle: CLS_HANDLE, priority: CLS_PRIORITY });
  return tcQuery(ifindex, dir === "ingress" ? TC_ATTACH_POINT.INGRESS : TC_ATTACH_POINT.EGRESS, {
    handle: CLS_HANDLE,
    priority: CLS_PRIORITY,
  });
}

/** clsProgId for many devices at once, on `nl` (Rtnl.getMany): each id in its place, or the
 * error its question met. */
export function clsProgIds(ifindexes: number[], dir: TcDirection, nl: Rtnl): Array<number | StratumError> {
  return clsBpfProgIds(nl, ifindexes, dir, { handle: CLS_HANDLE, priority: CLS_PRIORITY });
}

export function detachCls(ifindex: number, dir: TcDirection): void {
  tcDetach(ifindex, dir === "ingress" ? TC_ATTACH_POINT.INGRESS : TC_ATTACH_POINT.EGRESS, {
    handle: CLS_HANDLE,
    priority: CLS_PRIORITY,
  });
}
