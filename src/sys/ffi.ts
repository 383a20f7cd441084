/** The one place Stratum touches bun:ffi: libc and libbpf symbol tables, errno,
 * and pointer helpers. Everything above this file sees plain numbers (fds,
 * -errno) and Buffers. Symbols are resolved lazily so `--help` never needs libbpf. */
import { CString, dlopen, JSCallback, type Pointer, ptr, read, FFIType as T, toArrayBuffer } from "bun:ffi";
import { StratumError } from "../errors";

const LIBBPF_NAMES = ["libbpf.so.1", "libbpf.so"];

const libbpfSymbols = {
  libbpf_major_version: { args: [], returns: T.u32 },
  libbpf_minor_version: { args: [], returns: T.u32 },
  libbpf_version_string: { args: [], returns: T.ptr },
  libbpf_set_print: { args: [T.ptr], returns: T.ptr },
  libbpf_num_possible_cpus: { args: [], returns: T.i32 },
  libbpf_probe_bpf_prog_type: { args: [T.u32, T.ptr], returns: T.i32 },
  libbpf_probe_bpf_map_type: { args: [T.u32, T.ptr], returns: T.i32 },
  libbpf_probe_bpf_helper: { args: [T.u32, T.u32, T.ptr], returns: T.i32 },
  bpf_object__open_mem: { args: [T.ptr, T.u64, T.ptr], returns: T.ptr },
  bpf_object__load: { args: [T.ptr], returns: T.i32 },
  bpf_object__close: { args: [T.ptr], returns: T.void },
  bpf_object__next_program: { args: [T.ptr, T.ptr], returns: T.ptr },
  bpf_object__next_map: { args: [T.ptr, T.ptr], returns: T.ptr },
  bpf_program__name: { args: [T.ptr], returns: T.ptr },
  bpf_program__fd: { args: [T.ptr], returns: T.i32 },
  bpf_program__type: { args: [T.ptr], returns: T.u32 },
  bpf_map__name: { args: [T.ptr], returns: T.ptr },
  bpf_map__fd: { args: [T.ptr], returns: T.i32 },
  bpf_map__type: { args: [T.ptr], returns: T.u32 },
  bpf_map__key_size: { args: [T.ptr], returns: T.u32 },
  bpf_map__value_size: { args: [T.ptr], returns: T.u32 },
  bpf_map__max_entries: { args: [T.ptr], returns: T.u32 },
  bpf_map__set_max_entries: { args: [T.ptr, T.u32], returns: T.i32 },
  bpf_map__reuse_fd: { args: [T.ptr, T.i32], returns: T.i32 },
  bpf_map__set_pin_path: { args: [T.ptr, T.ptr], returns: T.i32 },
  bpf_map_create: { args: [T.u32, T.ptr, T.u32, T.u32, T.u32, T.ptr], returns: T.i32 },
  bpf_map_lookup_elem: { args: [T.i32, T.ptr, T.ptr], returns: T.i32 },
  bpf_map_update_elem: { args: [T.i32, T.ptr, T.ptr, T.u64], returns: T.i32 },
  bpf_map_delete_elem: { args: [T.i32, T.ptr], returns: T.i32 },
  bpf_map_get_next_key: { args: [T.i32, T.ptr, T.ptr], returns: T.i32 },
  bpf_map_update_batch: { args: [T.i32, T.ptr, T.ptr, T.ptr, T.ptr], returns: T.i32 },
  bpf_map_delete_batch: { args: [T.i32, T.ptr, T.ptr, T.ptr], returns: T.i32 },
  bpf_map_lookup_batch: { args: [T.i32, T.ptr, T.ptr, T.ptr, T.ptr, T.ptr, T.ptr], returns: T.i32 },
  bpf_obj_pin: { args: [T.i32, T.ptr], returns: T.i32 },
  bpf_obj_get: { args: [T.ptr], returns: T.i32 },
  bpf_obj_get_info_by_fd: { args: [T.i32, T.ptr, T.ptr], returns: T.i32 },
  bpf_prog_get_fd_by_id: { args: [T.u32], returns: T.i32 },
  bpf_map_get_fd_by_id: { args: [T.u32], returns: T.i32 },
  bpf_link_create: { args: [T.i32, T.i32, T.u32, T.ptr], returns: T.i32 },
  bpf_link_update: { args: [T.i32, T.i32, T.ptr], returns: T.i32 },
  bpf_link_detach: { args: [T.i32], returns: T.i32 },
  bpf_prog_test_run_opts: { args: [T.i32, T.ptr], returns: T.i32 },
  bpf_tc_hook_create: { args: [T.ptr], returns: T.i32 },
  bpf_tc_hook_destroy: { args: [T.ptr], returns: T.i32 },
  bpf_tc_attach: { args: [T.ptr, T.ptr], returns: T.i32 },
  bpf_tc_detach: { args: [T.ptr, T.ptr], returns: T.i32 },
  bpf_tc_query: { args: [T.ptr, T.ptr], returns: T.i32 },
  bpf_xdp_attach: { args: [T.i32, T.i32, T.u32, T.ptr], returns: T.i32 },
  bpf_xdp_detach: { args: [T.i32, T.u32, T.ptr], returns: T.i32 },
  bpf_xdp_query_id: { args: [T.i32, T.i32, T.ptr], returns: T.i32 },
  ring_buffer__new: { args: [T.i32, T.ptr, T.ptr, T.ptr], returns: T.ptr },
  ring_buffer__poll: { args: [T.ptr, T.i32], returns: T.i32 },
  ring_buffer__consume: { args: [T.ptr], returns: T.i32 },
  ring_buffer__epoll_fd: { args: [T.ptr], returns: T.i32 },
  ring_buffer__free: { args: [T.ptr], returns: T.void },
} as const;

const libcSymbols = {
  __errno_location: { args: [], returns: T.ptr },
  close: { args: [T.i32], returns: T.i32 },
  flock: { args: [T.i32, T.i32], returns: T.i32 },
  open: { args: [T.ptr, T.i32, T.u32], returns: T.i32 },
  ioctl: { args: [T.i32, T.u64, T.ptr], returns: T.i32 },
  socket: { args: [T.i32, T.i32, T.i32], returns: T.i32 },
  bind: { args: [T.i32, T.ptr, T.u32], returns: T.i32 },
  connect: { args: [T.i32, T.ptr, T.u32], returns: T.i32 },
  setsockopt: { args: [T.i32, T.i32, T.i32, T.ptr, T.u32], returns: T.i32 },
  getsockopt: { args: [T.i32, T.i32, T.i32, T.ptr, T.ptr], returns: T.i32 },
  getsockname: { args: [T.i32, T.ptr, T.ptr], returns: T.i32 },
  sendto: { args: [T.i32, T.ptr, T.u64, T.i32, T.ptr, T.u32], returns: T.i64 },
  recv: { args: [T.i32, T.ptr, T.u64, T.i32], returns: T.i64 },
  read: { args: [T.i32, T.ptr, T.u64], returns: T.i64 },
  write: { args: [T.i32, T.ptr, T.u64], returns: T.i64 },
  mknod: { args: [T.ptr, T.u32, T.u64], returns: T.i32 },
  sendmsg: { args: [T.i32, T.ptr, T.i32], returns: T.i64 },
  recvmsg: { args: [T.i32, T.ptr, T.i32], returns: T.i64 },
  listen: { args: [T.i32, T.i32], returns: T.i32 },
  accept4: { args: [T.i32, T.ptr, T.ptr, T.i32], returns: T.i32 },
  mmap: { args: [T.ptr, T.u64, T.i32, T.i32, T.i32, T.i64], returns: T.ptr },
  munmap: { args: [T.ptr, T.u64], returns: T.i32 },
  poll: { args: [T.ptr, T.u64, T.i32], returns: T.i32 },
  if_nametoindex: { args: [T.ptr], returns: T.u32 },
  vsnprintf: { args: [T.ptr, T.u64, T.ptr, T.ptr], returns: T.i32 },
  strerror: { args: [T.i32], returns: T.ptr },
  mount: { args: [T.ptr, T.ptr, T.ptr, T.u64, T.ptr], returns: T.i32 },
  setns: { args: [T.i32, T.i32], returns: T.i32 },
  chmod: { args: [T.ptr, T.u32], returns: T.i32 },
  clock_gettime: { args: [T.i32, T.ptr], returns: T.i32 },
} as const;

type LibbpfSyms = ReturnType<typeof dlopen<typeof libbpfSymbols>>["symbols"];
type LibcSyms = ReturnType<typeof dlopen<typeof libcSymbols>>["symbols"];

let libbpfLib: LibbpfSyms | undefined;
let libbpfPath = "";
let libcLib: LibcSyms | undefined;

/** libbpf's symbols; throws UNSUPPORTED with the reason when the library is missing. */
export function libbpf(): LibbpfSyms {
  if (libbpfLib) return libbpfLib;
  const errors: string[] = [];
  for (const name of LIBBPF_NAMES) {
    try {
      libbpfLib = dlopen(name, libbpfSymbols).symbols;
      libbpfPath = name;
      installPrintHook(libbpfLib);
      return libbpfLib;
    } catch (e) {
      errors.push(`${name}: ${(e as Error).message}`);
    }
  }
  throw new StratumError("UNSUPPORTED", `cannot load libbpf (install libbpf1): ${errors.join("; ")}`);
}

export function libbpfLibraryName(): string {
  libbpf();
  return libbpfPath;
}

export function libc(): LibcSyms {
  if (!libcLib) libcLib = dlopen("libc.so.6", libcSymbols).symbols;
  return libcLib;
}

/** errno of the last failed libc call on this thread. Read it right after the call. */
export function errno(): number {
  const p = libc().__errno_location();
  return p ? read.i32(p, 0) : 0;
}

/** NUL-terminated copy of a JS string, for `const char *` arguments. */
export function cstr(s: string): Buffer {
  return Buffer.from(`${s}\0`, "utf8");
}

/** Reads a C string at `p` (null when `p` is 0). */
export function readCString(p: Pointer | number | bigint | null): string | null {
  return p ? new CString(p as Pointer).toString() : null;
}

/** Address of a buffer, for pointers stored inside structs. Keep `buf` referenced while used. */
export function addressOf(buf: Uint8Array): number {
  return ptr(buf);
}

/** Copies `len` bytes at native address `p` into a fresh Buffer. */
export function copyFrom(p: Pointer, len: number): Buffer {
  if (len === 0) return Buffer.alloc(0);
  return Buffer.from(new Uint8Array(toArrayBuffer(p, 0, len)).slice());
}

// ---- libbpf's log, captured into errors ---------------------------------------------

let logSink: string[] | null = null;
let printCallback: JSCallback | undefined;
const LOG_BUF = Buffer.alloc(8192);

function installPrintHook(lib: LibbpfSyms): void {
  // libbpf prints through a C varargs callback; on LP64 SysV a va_list argument is a
  // pointer to the va_list state, which vsnprintf consumes directly.
  printCallback = new JSCallback(
    (level: number, fmt: number, ap: number) => {
      const n = libc().vsnprintf(LOG_BUF, BigInt(LOG_BUF.length), fmt as never, ap as never);
      if (n <= 0) return 0;
      const text = LOG_BUF.toString("utf8", 0, Math.min(n, LOG_BUF.length - 1));
      // Outside a capture, libbpf's chatter is only wanted when debugging (STRATUM_LIBBPF_DEBUG=1).
      if (logSink) logSink.push(text);
      else if (process.env.STRATUM_LIBBPF_DEBUG) process.stderr.write(`libbpf[${level}]: ${text}`);
      return 0;
    },
    { args: [T.i32, T.ptr, T.ptr], returns: T.i32 },
  );
  lib.libbpf_set_print(printCallback.ptr);
}

/** Runs `fn` collecting everything libbpf prints meanwhile (warnings, verifier log). */
export function captureLibbpfLog<R>(fn: () => R): { result: R; log: string } {
  const prev = logSink;
  const sink: string[] = [];
  logSink = sink;
  try {
    const result = fn();
    return { result, log: sink.join("") };
  } finally {
    logSink = prev;
    if (prev) prev.push(...sink);
  }
}

/** Like captureLibbpfLog, but the log travels with an error thrown by `fn`. */
export function withLibbpfLog<R>(fn: () => R): R {
  const prev = logSink;
  const sink: string[] = [];
  logSink = sink;
  try {
    return fn();
  } catch (e) {
    if (e instanceof StratumError && !e.detail && sink.length > 0) {
      throw new StratumError(e.code, e.message, { errno: e.errno, detail: sink.join("").trimEnd(), cause: e });
    }
    throw e;
  } finally {
    logSink = prev;
  }
}

export { JSCallback, type Pointer, ptr, read, T as FFIType, toArrayBuffer };
