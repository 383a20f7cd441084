/** C struct layouts, the one way Stratum reads and writes structs: those crossing the FFI
 * boundary (libbpf, the kernel's UAPI), the netlink family headers and the datapath's own
 * (stm_abi.h). Each layout names its C type and header, and test/unit/abi.test.ts compiles
 * the real headers to check every size and offset. Pure data plus a reader and a writer. */

export type FieldType = "u8" | "u16" | "u32" | "i32" | "u64" | "ptr";
/** A field: its offset, its type (an array is read from its first element with bytes()),
 * and its member name in C when the codec names it otherwise. */
export type Field = readonly [offset: number, type: FieldType, cName?: string];
export interface Layout {
  /** C type, as `struct x` or `union x`, that the size test compiles against. */
  readonly ctype: string;
  /** Header that declares it. */
  readonly header: string;
  readonly size: number;
  readonly fields: Readonly<Record<string, Field>>;
}

const L = <T extends Layout>(l: T): T => l;

export const BPF_OBJECT_OPEN_OPTS = L({
  ctype: "struct bpf_object_open_opts",
  header: "bpf/libbpf.h",
  size: 80,
  fields: {
    sz: [0, "u64"],
    object_name: [8, "ptr"],
    relaxed_maps: [16, "u8"],
    pin_root_path: [24, "ptr"],
    kconfig: [40, "ptr"],
    btf_custom_path: [48, "ptr"],
    kernel_log_buf: [56, "ptr"],
    kernel_log_size: [64, "u64"],
    kernel_log_level: [72, "u32"],
  },
});

export const BPF_TEST_RUN_OPTS = L({
  ctype: "struct bpf_test_run_opts",
  header: "bpf/bpf.h",
  size: 80,
  fields: {
    sz: [0, "u64"],
    data_in: [8, "ptr"],
    data_out: [16, "ptr"],
    data_size_in: [24, "u32"],
    data_size_out: [28, "u32"],
    ctx_in: [32, "ptr"],
    ctx_out: [40, "ptr"],
    ctx_size_in: [48, "u32"],
    ctx_size_out: [52, "u32"],
    retval: [56, "u32"],
    repeat: [60, "i32"],
    duration: [64, "u32"],
    flags: [68, "u32"],
    cpu: [72, "u32"],
    batch_size: [76, "u32"],
  },
});

export const BPF_LINK_CREATE_OPTS = L({
  ctype: "struct bpf_link_create_opts",
  header: "bpf/bpf.h",
  size: 64,
  fields: { sz: [0, "u64"], flags: [8, "u32"] },
});

export const BPF_LINK_UPDATE_OPTS = L({
  ctype: "struct bpf_link_update_opts",
  header: "bpf/bpf.h",
  size: 16,
  fields: { sz: [0, "u64"], flags: [8, "u32"], old_prog_fd: [12, "u32"] },
});

export const BPF_MAP_BATCH_OPTS = L({
  ctype: "struct bpf_map_batch_opts",
  header: "bpf/bpf.h",
  size: 24,
  fields: { sz: [0, "u64"], elem_flags: [8, "u64"], flags: [16, "u64"] },
});

export const BPF_MAP_CREATE_OPTS = L({
  ctype: "struct bpf_map_create_opts",
  header: "bpf/bpf.h",
  size: 48,
  fields: { sz: [0, "u64"], inner_map_fd: [24, "u32"], map_flags: [28, "u32"] },
});

export const BPF_TC_HOOK = L({
  ctype: "struct bpf_tc_hook",
  header: "bpf/libbpf.h",
  size: 24,
  fields: { sz: [0, "u64"], ifindex: [8, "i32"], attach_point: [12, "u32"], parent: [16, "u32"] },
});

export const BPF_TC_OPTS = L({
  ctype: "struct bpf_tc_opts",
  header: "bpf/libbpf.h",
  size: 32,
  fields: {
    sz: [0, "u64"],
    prog_fd: [8, "i32"],
    flags: [12, "u32"],
    prog_id: [16, "u32"],
    handle: [20, "u32"],
    priority: [24, "u32"],
  },
});

/** Kernel UAPI: only the leading fields Stratum reads. */
export const BPF_PROG_INFO = L({
  ctype: "struct bpf_prog_info",
  header: "linux/bpf.h",
  size: 232,
  fields: {
    type: [0, "u32"],
    id: [4, "u32"],
    tag: [8, "u64"],
    nr_map_ids: [52, "u32"],
    map_ids: [56, "u64"],
    name: [64, "u8"],
    verified_insns: [216, "u32"],
  },
});

export const BPF_MAP_INFO = L({
  ctype: "struct bpf_map_info",
  header: "linux/bpf.h",
  size: 88,
  fields: {
    type: [0, "u32"],
    id: [4, "u32"],
    key_size: [8, "u32"],
    value_size: [12, "u32"],
    max_entries: [16, "u32"],
    map_flags: [20, "u32"],
    name: [24, "u8"],
  },
});

export const BPF_LINK_INFO = L({
  ctype: "struct bpf_link_info",
  header: "linux/bpf.h",
  size: 48,
  fields: { type: [0, "u32"], id: [4, "u32"], prog_id: [8, "u32"], "xdp.ifindex": [16, "u32"] },
});

/** Context of a TC program for BPF_PROG_TEST_RUN (only the fields the kernel lets a test set). */
export const SK_BUFF = L({
  ctype: "struct __sk_buff",
  header: "linux/bpf.h",
  size: 192,
  fields: { mark: [8, "u32"], priority: [32, "u32"], ingress_ifindex: [36, "u32"], ifindex: [40, "u32"] },
});

export const SOCKADDR_NL = L({
  ctype: "struct sockaddr_nl",
  header: "linux/netlink.h",
  size: 12,
  fields: { nl_family: [0, "u16"], nl_pid: [4, "u32"], nl_groups: [8, "u32"] },
});

export const IFREQ = L({
  ctype: "struct ifreq",
  header: "net/if.h",
  size: 40,
  fields: { ifr_name: [0, "u8"], ifr_flags: [16, "u16"] },
});

export const ALL_LAYOUTS: Record<string, Layout> = {
  BPF_OBJECT_OPEN_OPTS,
  BPF_TEST_RUN_OPTS,
  BPF_LINK_CREATE_OPTS,
  BPF_LINK_UPDATE_OPTS,
  BPF_MAP_BATCH_OPTS,
  BPF_MAP_CREATE_OPTS,
  BPF_TC_HOOK,
  BPF_TC_OPTS,
  BPF_PROG_INFO,
  BPF_MAP_INFO,
  BPF_LINK_INFO,
  SK_BUFF,
  SOCKADDR_NL,
  IFREQ,
};

/** A zeroed buffer for `layout` with its `sz` member (libbpf's opts convention) set. */
export function alloc(layout: Layout, values: Record<string, number | bigint> = {}): Buffer {
  const buf = Buffer.alloc(layout.size);
  if ("sz" in layout.fields) buf.writeBigUInt64LE(BigInt(layout.size), 0);
  for (const [k, v] of Object.entries(values)) put(buf, layout, k, v);
  return buf;
}

export function put(buf: Buffer, layout: Layout, field: string, v: number | bigint): void {
  const f = layout.fields[field];
  if (!f) throw new Error(`${layout.ctype} has no field ${field}`);
  const [off, t] = f;
  switch (t) {
    case "u8":
      buf.writeUInt8(Number(v), off);
      break;
    case "u16":
      buf.writeUInt16LE(Number(v), off);
      break;
    case "u32":
      buf.writeUInt32LE(Number(v) >>> 0, off);
      break;
    case "i32":
      buf.writeInt32LE(Number(v), off);
      break;
    case "u64":
    case "ptr":
      buf.writeBigUInt64LE(BigInt(v), off);
      break;
  }
}

/** A u64 field as a bigint (nanosecond clocks, counters past 2^53). */
export function getBig(buf: Buffer, layout: Layout, field: string): bigint {
  const f = layout.fields[field];
  if (!f) throw new Error(`${layout.ctype} has no field ${field}`);
  return buf.readBigUInt64LE(f[0]);
}

/** `n` bytes of an array field (an address, a MAC), as a view of `buf`. */
export function bytes(buf: Buffer, layout: Layout, field: string, n: number): Buffer {
  const f = layout.fields[field];
  if (!f) throw new Error(`${layout.ctype} has no field ${field}`);
  return buf.subarray(f[0], f[0] + n);
}

/** Writes `src` into an array field. */
export function putBytes(buf: Buffer, layout: Layout, field: string, src: Uint8Array): void {
  const f = layout.fields[field];
  if (!f) throw new Error(`${layout.ctype} has no field ${field}`);
  buf.set(src, f[0]);
}

/** Every scalar field of `layout` read from `buf`, by its codec name (u64 as number). */
export function decode<K extends string>(layout: Layout, buf: Buffer): Record<K, number> {
  const out = {} as Record<K, number>;
  for (const k of Object.keys(layout.fields) as K[]) out[k] = get(buf, layout, k);
  return out;
}

/** A zeroed struct with the given fields written (no libbpf `sz` convention). */
export function encode(layout: Layout, values: Record<string, number | bigint>): Buffer {
  const buf = Buffer.alloc(layout.size);
  for (const [k, v] of Object.entries(values)) put(buf, layout, k, v);
  return buf;
}

export function get(buf: Buffer, layout: Layout, field: string): number {
  const f = layout.fields[field];
  if (!f) throw new Error(`${layout.ctype} has no field ${field}`);
  const [off, t] = f;
  switch (t) {
    case "u8":
      return buf.readUInt8(off);
    case "u16":
      return buf.readUInt16LE(off);
    case "u32":
      return buf.readUInt32LE(off);
    case "i32":
      return buf.readInt32LE(off);
    default:
      return Number(buf.readBigUInt64LE(off));
  }
}
