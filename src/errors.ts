/** Errors of every layer: a stable `code` for scripts and exit codes, a message that
 * carries the context of each layer ("attach stm_count_tc_in to veth0: EBUSY"), and,
 * for kernel and library failures, the errno. Pure: no I/O. */

const ERRNO_NAMES = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  5: "EIO",
  6: "ENXIO",
  7: "E2BIG",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV",
  20: "ENOTDIR",
  22: "EINVAL",
  24: "EMFILE",
  28: "ENOSPC",
  34: "ERANGE",
  38: "ENOSYS",
  39: "ENOTEMPTY",
  40: "ELOOP",
  42: "ENOMSG",
  61: "ENODATA",
  71: "EPROTO",
  75: "EOVERFLOW",
  84: "EILSEQ",
  90: "EMSGSIZE",
  93: "EPROTONOSUPPORT",
  95: "EOPNOTSUPP",
  97: "EAFNOSUPPORT",
  98: "EADDRINUSE",
  99: "EADDRNOTAVAIL",
  104: "ECONNRESET",
  111: "ECONNREFUSED",
  115: "EINPROGRESS",
  100: "ENETDOWN",
  101: "ENETUNREACH",
  113: "EHOSTUNREACH",
  105: "ENOBUFS",
  54: "EXFULL",
  110: "ETIMEDOUT",
  524: "ENOTSUPP",
  4001: "LIBBPF_ERRNO__LIBELF",
  4002: "LIBBPF_ERRNO__FORMAT",
  4003: "LIBBPF_ERRNO__KVERSION",
  4004: "LIBBPF_ERRNO__ENDIAN",
  4005: "LIBBPF_ERRNO__INTERNAL",
  4006: "LIBBPF_ERRNO__RELOC",
  4007: "LIBBPF_ERRNO__LOAD",
  4008: "LIBBPF_ERRNO__VERIFY",
  4009: "LIBBPF_ERRNO__PROG2BIG",
  4010: "LIBBPF_ERRNO__KVER",
  4011: "LIBBPF_ERRNO__PROGTYPE",
  4012: "LIBBPF_ERRNO__WRNGPID",
  4013: "LIBBPF_ERRNO__INVSEQ",
  4014: "LIBBPF_ERRNO__NLPARSE",
} as const satisfies Record<number, string>;

/** The errno a name stands for ("EADDRINUSE" → 98), or undefined (Bun's and Node's error codes). */
export function errnoOf(name: string): number | undefined {
  return (ERRNO as Record<string, number>)[name];
}

/** Symbolic name of an errno ("EBUSY"), or "E<n>" when unknown. */
export function errnoName(errno: number): string {
  const n = Math.abs(errno);
  return (ERRNO_NAMES as Record<number, string>)[n] ?? `E${n}`;
}

/** errno values by name, for comparisons that read as what they mean: `e.errno === ERRNO.ENOENT`. */
export const ERRNO = Object.fromEntries(Object.entries(ERRNO_NAMES).map(([k, v]) => [v, Number(k)])) as {
  readonly [K in (typeof ERRNO_NAMES)[keyof typeof ERRNO_NAMES]]: number;
};

/** Stable error codes. Scripts and the API rely on them: never rename. */
export type ErrorCode =
  | "SYS" // a syscall or libbpf call failed; errno says which way
  | "NETLINK" // the kernel refused a netlink request
  | "BPF_LOAD" // an object failed to open or load (libbpf and verifier log attached)
  | "BPF_ATTACH"
  | "NOT_FOUND"
  | "INVALID" // bad input from the user
  | "CONFLICT" // the name (or address, or interface) is taken already
  | "PERMISSION" // this process may not do that (not root, no CAP_BPF/CAP_NET_ADMIN, a read-only path)
  | "UNAUTHORIZED" // the API's TCP listener got no token or a wrong one
  | "CAPACITY" // the request would overfill a table; nothing was applied
  | "UNSUPPORTED" // the kernel lacks a feature
  | "UNAVAILABLE" // the agent cannot be reached
  | "ETCD_UNAVAILABLE" // the cluster's etcd cannot be reached (or has no leader)
  | "INTERNAL";

export class StratumError extends Error {
  readonly code: ErrorCode;
  /** Extra lines (a libbpf or verifier log) kept out of the one-line message. */
  readonly detail?: string;
  readonly errno?: number;

  constructor(code: ErrorCode, message: string, opts: { errno?: number; detail?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "StratumError";
    this.code = code;
    this.errno = opts.errno;
    this.detail = opts.detail;
  }

  /** The same error with the caller's context in front: "attach X to Y: <message>". */
  wrap(context: string): StratumError {
    const e = new StratumError(this.code, `${context}: ${this.message}`, {
      errno: this.errno,
      detail: this.detail,
      cause: this,
    });
    return e;
  }

  /** errno name when this failure came from the kernel, e.g. "EBUSY". */
  get errnoName(): string | undefined {
    return this.errno === undefined ? undefined : errnoName(this.errno);
  }
}

/** Error for a failed call that returned -errno: message "<context>: EBUSY (Device or resource busy)". */
export function sysError(context: string, errno: number, code: ErrorCode = "SYS", detail?: string): StratumError {
  const n = Math.abs(errno);
  return new StratumError(code, `${context}: ${errnoName(n)}${describeErrno(n)}`, { errno: n, detail });
}

const DESCRIPTIONS: Record<number, string> = {
  1: "Operation not permitted",
  2: "No such file or directory",
  12: "Out of memory",
  13: "Permission denied",
  16: "Device or resource busy",
  17: "File exists",
  19: "No such device",
  22: "Invalid argument",
  28: "No space left on device",
  95: "Operation not supported",
  524: "Operation not supported by the kernel",
  4007: "Failed to load program",
  4008: "Kernel verifier blocks program loading",
};

function describeErrno(n: number): string {
  const d = DESCRIPTIONS[n];
  return d ? ` (${d})` : "";
}

/** Adds context to any error thrown by `fn`, keeping its code. */
export function withContext<T>(context: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof StratumError) throw e.wrap(context);
    throw new StratumError("INTERNAL", `${context}: ${(e as Error)?.message ?? String(e)}`, { cause: e });
  }
}
