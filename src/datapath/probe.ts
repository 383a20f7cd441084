/** What this kernel and libbpf can do, asked of the kernel itself (never inferred from
 * the version alone where a direct probe exists). Used by the start-up smoke check,
 * `version`, and the attach paths to choose tcx or cls_bpf. */
import { existsSync, statfsSync } from "node:fs";
import { release } from "node:os";
import { ERRNO, StratumError } from "../errors";
import { BPF_ATTACH, BPF_MAP_TYPE, BPF_PROG_TYPE, linkCreate } from "../sys/bpf";
import { cstr, libbpf, libbpfLibraryName, readCString } from "../sys/ffi";
import { BPF_FS_MAGIC, CAP, closeFd, effectiveCapabilities, hasCapability, mountBpffs } from "../sys/os";
import { loadObject } from "./objects";

export interface Features {
  /** The bpf() syscall works for this process (root or CAP_BPF). */
  bpf: boolean;
  btf: boolean;
  tcx: boolean;
  xdp: boolean;
  cls_bpf: boolean;
  ringbuf: boolean;
  lpm_trie: boolean;
  lru_hash: boolean;
  percpu_hash: boolean;
  /** BPF_PROG_TEST_RUN live-frames mode for XDP (kernel 5.18+). */
  xdp_live_frames: boolean;
  /** bpffs mounted at /sys/fs/bpf. */
  bpffs: boolean;
}

export interface ProbeReport {
  libbpf: string;
  libbpfPath: string;
  kernel: string;
  features: Features;
}

function probeProg(type: number): boolean {
  return libbpf().libbpf_probe_bpf_prog_type(type, null) === 1;
}
function probeMap(type: number): boolean {
  return libbpf().libbpf_probe_bpf_map_type(type, null) === 1;
}

function kernelAtLeast(major: number, minor: number): boolean {
  const m = release().match(/^(\d+)\.(\d+)/);
  if (!m) return false;
  const [a, b] = [Number(m[1]), Number(m[2])];
  return a > major || (a === major && b >= minor);
}

let tcxCache: boolean | undefined;

/** tcx links exist when BPF_LINK_CREATE for BPF_TCX_INGRESS on a missing device says ENODEV, not EINVAL. */
export function supportsTcx(): boolean {
  if (tcxCache !== undefined) return tcxCache;
  // A program of the right type is needed for the kernel to get as far as the device lookup.
  using obj = loadObject("baseline");
  try {
    linkCreate(obj.program("stm_empty_tc").fd, 0, BPF_ATTACH.TCX_INGRESS);
    tcxCache = true; // cannot happen with ifindex 0, but a link means support
  } catch (e) {
    tcxCache = e instanceof StratumError && e.errno === ERRNO.ENODEV;
  }
  return tcxCache;
}

function isBpffs(path: string): boolean {
  try {
    return existsSync(path) && statfsSync(path).type === BPF_FS_MAGIC;
  } catch {
    return false;
  }
}

let reportCache: ProbeReport | undefined;

export function probe(): ProbeReport {
  if (reportCache) return reportCache;
  const lib = libbpf(); // throws when libbpf or one of its symbols is missing
  const bpf = probeProg(BPF_PROG_TYPE.SCHED_CLS);
  reportCache = {
    libbpf: readCString(lib.libbpf_version_string()) ?? `${lib.libbpf_major_version()}.${lib.libbpf_minor_version()}`,
    libbpfPath: libbpfLibraryName(),
    kernel: release(),
    features: {
      bpf,
      btf: existsSync("/sys/kernel/btf/vmlinux"),
      tcx: bpf && supportsTcx(),
      xdp: probeProg(BPF_PROG_TYPE.XDP),
      cls_bpf: bpf,
      ringbuf: probeMap(BPF_MAP_TYPE.RINGBUF),
      lpm_trie: probeMap(BPF_MAP_TYPE.LPM_TRIE),
      lru_hash: probeMap(BPF_MAP_TYPE.LRU_HASH),
      percpu_hash: probeMap(BPF_MAP_TYPE.PERCPU_HASH),
      xdp_live_frames: kernelAtLeast(5, 18),
      bpffs: isBpffs("/sys/fs/bpf"),
    },
  };
  return reportCache;
}

/** bpffs at `path` (or its nearest existing ancestor). */
export function onBpffs(path: string): boolean {
  let p = path;
  while (p && !existsSync(p)) p = p.slice(0, Math.max(p.lastIndexOf("/"), 0));
  return isBpffs(p || "/");
}

export const BPFFS_DEFAULT = "/sys/fs/bpf";

/** Makes sure `pinRoot` can hold pins: mounts bpffs on /sys/fs/bpf when the root lives
 * there and nothing is mounted yet (as systemd would); any other location must already be
 * bpffs. Call it before creating anything under the pin root: until bpffs is mounted,
 * /sys/fs/bpf is a directory of sysfs, where nothing can be created. Returns true when it
 * mounted bpffs. */
export function ensureBpffs(pinRoot: string): boolean {
  if (onBpffs(pinRoot)) return false;
  if (pinRoot === BPFFS_DEFAULT || pinRoot.startsWith(`${BPFFS_DEFAULT}/`)) {
    if (existsSync(BPFFS_DEFAULT) && !isBpffs(BPFFS_DEFAULT)) {
      mountBpffs(BPFFS_DEFAULT);
      reportCache = undefined;
      if (onBpffs(pinRoot)) return true;
    }
  }
  throw new StratumError("INVALID", `pin root ${pinRoot} is not on a bpffs mount (mount -t bpf bpffs DIR first)`);
}

/** What Stratum needs of the kernel's permission checks: loading and pinning BPF programs
 * (CAP_BPF, or CAP_SYS_ADMIN on kernels before 5.8) and attaching them and making links
 * (CAP_NET_ADMIN). The agent needs more once it runs (CAP_SYS_ADMIN to mount bpffs and
 * enter workload namespaces, CAP_NET_RAW, CAP_NET_BIND_SERVICE): the message names them. */
export const PRIVILEGE_HINT =
  "run it as root (sudo), or with CAP_BPF and CAP_NET_ADMIN (the agent also needs CAP_SYS_ADMIN for bpffs and network namespaces, CAP_NET_RAW and CAP_NET_BIND_SERVICE)";

/** Refuses (PERMISSION) when this process lacks the capabilities `what` ("the agent") needs:
 * not root, or root stripped of them (a container, a unit's CapabilityBoundingSet). */
export function requirePrivilege(what: string): void {
  const caps = effectiveCapabilities();
  const missing: string[] = [];
  if (!hasCapability(caps, CAP.BPF) && !hasCapability(caps, CAP.SYS_ADMIN)) missing.push("CAP_BPF");
  if (!hasCapability(caps, CAP.NET_ADMIN)) missing.push("CAP_NET_ADMIN");
  if (missing.length === 0) return;
  const uid = process.getuid?.();
  const who = uid === 0 ? "this root process (its capabilities are bounded)" : `user ${uid ?? "?"}`;
  throw new StratumError(
    "PERMISSION",
    `${what} needs privileges ${who} lacks (${missing.join(", ")}): ${PRIVILEGE_HINT}`,
  );
}

/** Why bpf() fails for this process: EPERM/EACCES is a permission (a capability, lockdown, an
 * LSM, a seccomp filter), ENOSYS a kernel built without BPF. Asks the kernel with the
 * smallest map there is. */
function bpfDenied(): StratumError | undefined {
  const fd = libbpf().bpf_map_create(BPF_MAP_TYPE.ARRAY, cstr("stm_probe"), 4, 4, 1, null);
  if (fd >= 0) {
    closeFd(fd);
    return undefined;
  }
  const e = -fd;
  if (e === ERRNO.EPERM || e === ERRNO.EACCES)
    return new StratumError(
      "PERMISSION",
      `the kernel refuses bpf() to this process (${e === ERRNO.EPERM ? "EPERM" : "EACCES"}: a missing capability, kernel lockdown, an LSM or a seccomp filter): ${PRIVILEGE_HINT}`,
      { errno: e },
    );
  if (e === ERRNO.ENOSYS)
    return new StratumError(
      "UNSUPPORTED",
      "the kernel has no bpf() syscall (ENOSYS): Stratum needs a kernel built with CONFIG_BPF_SYSCALL",
      { errno: e },
    );
  return undefined;
}

/** The start-up smoke check of every command that touches the datapath: libbpf loads with
 * every symbol Stratum binds, this process may use bpf() (PERMISSION when not: run as root
 * or with the capabilities), and the kernel has what the objects need (UNSUPPORTED when
 * not). `what` names the command in the message ("the agent"). */
export function smokeCheck(what = "this command"): ProbeReport {
  libbpf(); // UNSUPPORTED, naming the library, when it is missing
  requirePrivilege(what);
  const r = probe();
  if (!r.features.bpf)
    throw (
      bpfDenied() ??
      new StratumError(
        "UNSUPPORTED",
        "the kernel does not load SCHED_CLS programs for this process: Stratum needs a kernel with BPF and tc (cls_bpf) support",
      )
    );
  if (!r.features.btf)
    throw new StratumError(
      "UNSUPPORTED",
      "the kernel has no BTF (/sys/kernel/btf/vmlinux): Stratum's objects need CONFIG_DEBUG_INFO_BTF",
    );
  return r;
}
