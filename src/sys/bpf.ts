/** Typed wrappers over libbpf: objects opened from memory, programs, maps (single,
 * iterate, batch, per-CPU), pins, BPF links (tcx, XDP) with atomic program
 * replacement, cls_bpf and legacy XDP through libbpf's netlink, BPF_PROG_TEST_RUN
 * and ring buffers. Every failure is a StratumError carrying errno and libbpf's log. */
import { unlinkSync } from "node:fs";
import { ERRNO, errnoName, StratumError, sysError } from "../errors";
import {
  addressOf,
  captureLibbpfLog,
  copyFrom,
  cstr,
  errno,
  FFIType,
  JSCallback,
  libbpf,
  libc,
  type Pointer,
  readCString,
} from "./ffi";
import {
  alloc,
  BPF_LINK_CREATE_OPTS,
  BPF_LINK_INFO,
  BPF_LINK_UPDATE_OPTS,
  BPF_MAP_BATCH_OPTS,
  BPF_MAP_CREATE_OPTS,
  BPF_MAP_INFO,
  BPF_OBJECT_OPEN_OPTS,
  BPF_PROG_INFO,
  BPF_TC_HOOK,
  BPF_TC_OPTS,
  BPF_TEST_RUN_OPTS,
  get,
  type Layout,
  put,
} from "./layout";
import { mutated } from "./mutations";

// Kernel ABI numbers (include/uapi/linux/bpf.h); stable by kernel policy.
export const BPF_PROG_TYPE = { SCHED_CLS: 3, XDP: 6 } as const;
export const BPF_MAP_TYPE = {
  HASH: 1,
  ARRAY: 2,
  PERCPU_HASH: 5,
  PERCPU_ARRAY: 6,
  LPM_TRIE: 11,
  ARRAY_OF_MAPS: 12,
  LRU_HASH: 9,
  LRU_PERCPU_HASH: 10,
  RINGBUF: 27,
} as const;
export const BPF_ATTACH = { XDP: 37, TCX_INGRESS: 46, TCX_EGRESS: 47 } as const;
export const BPF_LINK_TYPE = { XDP: 6, TCX: 11 } as const;
export const BPF_F = { ANY: 0, NOEXIST: 1, EXIST: 2, REPLACE: 4, TEST_XDP_LIVE_FRAMES: 2, INNER_MAP: 0x1000 } as const;
export const XDP_FLAGS = { UPDATE_IF_NOEXIST: 1, SKB_MODE: 2, DRV_MODE: 4, HW_MODE: 8, REPLACE: 16 } as const;

const PERCPU_TYPES = new Set<number>([
  BPF_MAP_TYPE.PERCPU_HASH,
  BPF_MAP_TYPE.PERCPU_ARRAY,
  BPF_MAP_TYPE.LRU_PERCPU_HASH,
  15 /* PERCPU_CGROUP_STORAGE */,
]);

function check(ret: number, context: string): number {
  if (ret < 0) throw sysError(context, -ret);
  return ret;
}

/** An owned file descriptor; closed by `close()` or `using`. */
export class Fd implements Disposable {
  #fd: number;
  constructor(fd: number) {
    this.#fd = fd;
  }
  get fd(): number {
    if (this.#fd < 0) throw new StratumError("INTERNAL", "use of a closed file descriptor");
    return this.#fd;
  }
  get closed(): boolean {
    return this.#fd < 0;
  }
  close(): void {
    if (this.#fd >= 0) libc().close(this.#fd);
    this.#fd = -1;
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

export function numPossibleCpus(): number {
  return check(libbpf().libbpf_num_possible_cpus(), "count possible CPUs");
}

// ---- objects and programs -------------------------------------------------------------

export interface ProgramHandle {
  readonly name: string;
  readonly fd: number;
  readonly type: number;
}

/** A libbpf bpf_object opened from bytes in memory (the binary embeds its objects). */
export class BpfObject implements Disposable {
  #obj: Pointer | null;
  /** Memory libbpf points into: libelf reads the ELF bytes in place, and the open options'
   * strings are referenced by address. Held until close. */
  #held: Buffer[];
  readonly name: string;
  #loaded = false;

  private constructor(obj: Pointer, name: string, held: Buffer[]) {
    this.#obj = obj;
    this.#held = held;
    this.name = name;
  }

  /** Opens (parses) an object from its ELF bytes; `pinRoot` is where maps marked for pinning go. */
  static openMem(bytes: Uint8Array, name: string, opts: { pinRoot?: string } = {}): BpfObject {
    const lib = libbpf();
    const buf = Buffer.from(bytes);
    const nameBuf = cstr(name);
    const held = [buf, nameBuf];
    const o = alloc(BPF_OBJECT_OPEN_OPTS, { object_name: addressOf(nameBuf) });
    if (opts.pinRoot) {
      const pr = cstr(opts.pinRoot);
      held.push(pr);
      o.writeBigUInt64LE(BigInt(addressOf(pr)), BPF_OBJECT_OPEN_OPTS.fields.pin_root_path[0]);
    }
    const { result: obj, log } = captureLibbpfLog(() => lib.bpf_object__open_mem(buf, BigInt(buf.length), o));
    if (!obj) throw sysError(`open BPF object ${name}`, errno(), "BPF_LOAD", log.trimEnd() || undefined);
    return new BpfObject(obj as Pointer, name, held);
  }

  private get handle(): Pointer {
    if (!this.#obj) throw new StratumError("INTERNAL", `BPF object ${this.name} is closed`);
    return this.#obj;
  }

  /** Loads every program and creates (or reuses) every map. A verifier rejection names the program, the
   * verifier's reason and the source line in the message; the whole log travels in the error's detail. */
  load(): this {
    const { result: ret, log } = captureLibbpfLog(() => libbpf().bpf_object__load(this.handle));
    if (ret < 0) {
      const why = summarizeLoadLog(log);
      throw sysError(
        `load BPF object ${this.name}${why ? `: ${why}` : ""}`,
        -ret,
        "BPF_LOAD",
        log.trimEnd() || undefined,
      );
    }
    this.#loaded = true;
    return this;
  }

  get loaded(): boolean {
    return this.#loaded;
  }

  programs(): ProgramHandle[] {
    const lib = libbpf();
    const out: ProgramHandle[] = [];
    for (let p = lib.bpf_object__next_program(this.handle, null); p; p = lib.bpf_object__next_program(this.handle, p)) {
      out.push({
        name: readCString(lib.bpf_program__name(p)) ?? "",
        fd: lib.bpf_program__fd(p),
        type: lib.bpf_program__type(p),
      });
    }
    return out;
  }

  program(name: string): ProgramHandle {
    const p = this.programs().find((x) => x.name === name);
    if (!p) throw new StratumError("NOT_FOUND", `BPF object ${this.name} has no program ${name}`);
    if (p.fd < 0) throw new StratumError("INTERNAL", `program ${name} of ${this.name} is not loaded`);
    return p;
  }

  #mapPtrs(): Array<{ name: string; ptr: Pointer }> {
    const lib = libbpf();
    const out: Array<{ name: string; ptr: Pointer }> = [];
    for (let m = lib.bpf_object__next_map(this.handle, null); m; m = lib.bpf_object__next_map(this.handle, m)) {
      out.push({ name: readCString(lib.bpf_map__name(m)) ?? "", ptr: m as Pointer });
    }
    return out;
  }

  mapNames(): string[] {
    return this.#mapPtrs().map((m) => m.name);
  }

  /** A loaded map of this object (the object keeps ownership of the fd). */
  map(name: string): BpfMap {
    const hit = this.#maps.get(name);
    if (hit) return hit;
    const m = this.#mapPtrs().find((x) => x.name === name);
    if (!m) throw new StratumError("NOT_FOUND", `BPF object ${this.name} has no map ${name}`);
    const fd = libbpf().bpf_map__fd(m.ptr);
    if (fd < 0) throw new StratumError("INTERNAL", `map ${name} of ${this.name} is not loaded`);
    const map = BpfMap.fromFd(fd, false);
    this.#maps.set(name, map);
    return map;
  }

  /** Maps handed out since load, by name: finding one walks every map of the object through
   * libbpf and reads its info (tens of microseconds, paid on every map access before). The fd
   * is the object's until it closes. */
  #maps = new Map<string, BpfMap>();

  /** A map's definition as the object declares it (before load) or as created (after). */
  mapDef(name: string): { type: number; keySize: number; valueSize: number; maxEntries: number } {
    const m = this.#mapPtrs().find((x) => x.name === name);
    if (!m) throw new StratumError("NOT_FOUND", `BPF object ${this.name} has no map ${name}`);
    const lib = libbpf();
    return {
      type: lib.bpf_map__type(m.ptr),
      keySize: lib.bpf_map__key_size(m.ptr),
      valueSize: lib.bpf_map__value_size(m.ptr),
      maxEntries: lib.bpf_map__max_entries(m.ptr),
    };
  }

  /** Before load: resize map `name` (tests size a table down to fill it). */
  setMaxEntries(name: string, n: number): void {
    const m = this.#mapPtrs().find((x) => x.name === name);
    if (!m) throw new StratumError("NOT_FOUND", `BPF object ${this.name} has no map ${name}`);
    check(libbpf().bpf_map__set_max_entries(m.ptr, n), `resize map ${name} in ${this.name}`);
  }

  /** Before load: make map `name` reuse an existing (e.g. pinned) map instead of creating one. */
  reuseMap(name: string, fd: number): void {
    const m = this.#mapPtrs().find((x) => x.name === name);
    if (!m) throw new StratumError("NOT_FOUND", `BPF object ${this.name} has no map ${name}`);
    check(libbpf().bpf_map__reuse_fd(m.ptr, fd), `reuse map ${name} in ${this.name}`);
  }

  close(): void {
    this.#maps.clear();
    if (this.#obj) libbpf().bpf_object__close(this.#obj);
    this.#obj = null;
    this.#held = [];
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

/** One line out of libbpf's load log: which program the verifier rejected, why, and where in the source. */
export function summarizeLoadLog(log: string): string | undefined {
  const begin = log.match(/prog '([^']+)': -- BEGIN PROG LOAD LOG --\n([\s\S]*?)-- END PROG LOAD LOG --/);
  if (!begin) return undefined;
  const [, prog, body] = begin as unknown as [string, string, string];
  const lines = body.split("\n").map((l) => l.trimEnd());
  const end = lines.findIndex((l) => /^processed \d+ insns/.test(l));
  const upTo = end < 0 ? lines.length : end;
  // The verifier's reason follows the last instruction it printed ("12: (71) r1 = …").
  let lastInsn = -1;
  for (let i = 0; i < upTo; i++) if (/^\d+: /.test(lines[i] as string)) lastInsn = i;
  const reason = lines.slice(lastInsn + 1, upTo).find((l) => l && !l.startsWith(";"));
  let where: string | undefined;
  for (let i = 0; i <= Math.max(lastInsn, 0); i++) {
    const m = (lines[i] ?? "").match(/^; .* @ (\S+:\d+)$/);
    if (m) where = m[1];
  }
  if (!reason) return `program ${prog} rejected by the verifier`;
  return `program ${prog} rejected by the verifier: ${reason}${where ? ` (${where})` : ""}`;
}

// ---- maps -------------------------------------------------------------------------------

export interface MapInfo {
  id: number;
  type: number;
  name: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
}

/** BPF_OBJ_GET_INFO_BY_FD into a buffer laid out as `layout`. */
function objInfo(fd: number, layout: Layout, what: string): Buffer {
  const info = Buffer.alloc(layout.size);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(info.length);
  check(libbpf().bpf_obj_get_info_by_fd(fd, info, len), `read ${what} info`);
  return info;
}

/** The NUL-terminated name (BPF_OBJ_NAME_LEN, 16 bytes) at `field`. */
function objName(info: Buffer, layout: Layout, field = "name"): string {
  const off = (layout.fields[field] as readonly [number, string])[0];
  return info.toString("latin1", off, off + 16).replace(/\0.*$/s, "");
}

export function mapInfo(fd: number): MapInfo {
  const info = objInfo(fd, BPF_MAP_INFO, "map");
  return {
    id: get(info, BPF_MAP_INFO, "id"),
    type: get(info, BPF_MAP_INFO, "type"),
    name: objName(info, BPF_MAP_INFO),
    keySize: get(info, BPF_MAP_INFO, "key_size"),
    valueSize: get(info, BPF_MAP_INFO, "value_size"),
    maxEntries: get(info, BPF_MAP_INFO, "max_entries"),
    flags: get(info, BPF_MAP_INFO, "map_flags"),
  };
}

/** A BPF map by fd. Per-CPU maps read and write `valueSize` per possible CPU (8-byte aligned). */
export class BpfMap implements Disposable {
  readonly info: MapInfo;
  readonly #fd: Fd | number;
  /** Bytes of one lookup/update value buffer: valueSize, or aligned valueSize × CPUs for per-CPU maps. */
  readonly valueBufSize: number;
  readonly perCpu: boolean;
  readonly cpus: number;

  private constructor(fd: Fd | number) {
    this.#fd = fd;
    this.info = mapInfo(this.fd);
    this.perCpu = PERCPU_TYPES.has(this.info.type);
    this.cpus = this.perCpu ? numPossibleCpus() : 1;
    this.valueBufSize = this.perCpu ? align8(this.info.valueSize) * this.cpus : this.info.valueSize;
  }

  /** A new map of the kernel's, owned (closed on dispose): an inner map for a map of maps
   * (`mapFlags` as its outer map's template has them, BPF_F_INNER_MAP among them). */
  static create(
    type: number,
    name: string,
    keySize: number,
    valueSize: number,
    maxEntries: number,
    mapFlags = 0,
  ): BpfMap {
    const opts = alloc(BPF_MAP_CREATE_OPTS, { map_flags: mapFlags });
    const fd = libbpf().bpf_map_create(type, cstr(name), keySize, valueSize, maxEntries, opts);
    if (fd < 0) throw sysError(`create map ${name} (${maxEntries} entries)`, -fd);
    mutated(`create map ${name}`);
    return new BpfMap(new Fd(fd));
  }

  /** Wraps `fd`; with `owned` the map closes it on dispose. */
  static fromFd(fd: number, owned: boolean): BpfMap {
    return new BpfMap(owned ? new Fd(fd) : fd);
  }

  static openPinned(path: string): BpfMap {
    const fd = objGet(path, "map");
    try {
      return new BpfMap(new Fd(fd));
    } catch (e) {
      libc().close(fd);
      throw e;
    }
  }

  get fd(): number {
    return typeof this.#fd === "number" ? this.#fd : this.#fd.fd;
  }

  get name(): string {
    return this.info.name;
  }

  #key(key: Uint8Array): Uint8Array {
    if (key.length !== this.info.keySize)
      throw new StratumError("INVALID", `map ${this.name}: key is ${key.length} bytes, map wants ${this.info.keySize}`);
    return key;
  }

  lookup(key: Uint8Array): Buffer | null {
    const val = Buffer.alloc(this.valueBufSize);
    const ret = libbpf().bpf_map_lookup_elem(this.fd, this.#key(key), val);
    if (ret === -ERRNO.ENOENT) return null;
    check(ret, `lookup in map ${this.name}`);
    return val;
  }

  /** Per-CPU lookup split into one value per CPU. */
  lookupPerCpu(key: Uint8Array): Buffer[] | null {
    const raw = this.lookup(key);
    return raw ? this.splitPerCpu(raw) : null;
  }

  splitPerCpu(raw: Buffer): Buffer[] {
    const stride = align8(this.info.valueSize);
    return Array.from({ length: this.cpus }, (_, i) => raw.subarray(i * stride, i * stride + this.info.valueSize));
  }

  update(key: Uint8Array, value: Uint8Array, flags: number = BPF_F.ANY): void {
    if (value.length !== this.valueBufSize)
      throw new StratumError(
        "INVALID",
        `map ${this.name}: value is ${value.length} bytes, map wants ${this.valueBufSize}`,
      );
    check(libbpf().bpf_map_update_elem(this.fd, this.#key(key), value, BigInt(flags)), `update map ${this.name}`);
    this.#known?.set(hexKey(key), Buffer.from(value));
    mutated(`update map ${this.name}`);
  }

  /** Writes `value` under `key` unless the map already holds exactly that: a reconcile of a
   * kernel that is right then changes nothing. True when it wrote. */
  ensure(key: Uint8Array, value: Uint8Array): boolean {
    const have = this.#known ? (this.#known.get(hexKey(this.#key(key))) ?? null) : this.lookup(key);
    if (have?.equals(value)) return false;
    this.update(key, value);
    return true;
  }

  /** Every entry as one reading took it, while readOnce runs (see there). */
  #known: Map<string, Buffer> | undefined;

  /** Runs `fn` with the whole map read at once (in batches): ensure() and delete() inside it
   * judge by that reading, kept current by this object's own writes, instead of asking the
   * kernel key by key (a reconcile of thousands of ports). Only for maps no one else writes:
   * the programs, another process. Nested calls share the outer reading. */
  readOnce<T>(fn: () => T): T {
    if (this.#known) return fn();
    this.#known = this.snapshot();
    try {
      return fn();
    } finally {
      this.#known = undefined;
    }
  }

  /** Deletes `key`; false when it was not there. */
  delete(key: Uint8Array): boolean {
    if (this.#known) {
      const hex = hexKey(this.#key(key));
      if (!this.#known.delete(hex)) return false;
    }
    const ret = libbpf().bpf_map_delete_elem(this.fd, this.#key(key));
    if (ret === -ERRNO.ENOENT) return false;
    check(ret, `delete from map ${this.name}`);
    mutated(`delete from map ${this.name}`);
    return true;
  }

  /** Every key, in kernel order. Keys deleted while iterating may restart the walk (hash maps). */
  *keys(): Generator<Buffer> {
    const lib = libbpf();
    let prev: Buffer | null = null;
    for (;;) {
      const next = Buffer.alloc(this.info.keySize);
      const ret = lib.bpf_map_get_next_key(this.fd, prev, next);
      if (ret === -ERRNO.ENOENT) return;
      check(ret, `iterate map ${this.name}`);
      yield next;
      prev = next;
    }
  }

  *entries(): Generator<[Buffer, Buffer]> {
    for (const k of this.keys()) {
      const v = this.lookup(k);
      if (v) yield [k, v];
    }
  }

  /** Every entry, read in chunks of up to `batch` by BPF_MAP_LOOKUP_BATCH: the kernel walks
   * buckets, so entries that change while it walks (an LRU map under traffic replaces an
   * element on every update) do not restart it as a key-by-key walk would. Each chunk is
   * yielded as packed keys and values with its count. A map type without batch lookup
   * throws UNSUPPORTED before the first chunk. */
  *batches(batch = 4096): Generator<{ keys: Buffer<ArrayBufferLike>; values: Buffer<ArrayBufferLike>; count: number }> {
    // The batch token: a bucket number (u32) for hash maps, a key for the generic walk.
    const tokenSize = Math.max(8, this.info.keySize);
    let inTok: Buffer<ArrayBufferLike> | null = null;
    let outTok: Buffer<ArrayBufferLike> = Buffer.alloc(tokenSize);
    let size = batch;
    let total = 0;
    for (;;) {
      const keys = Buffer.alloc(size * this.info.keySize);
      const values = Buffer.alloc(size * this.valueBufSize);
      const { count, errno } = this.lookupBatch(inTok, outTok, keys, values, size);
      if (errno && errno !== ERRNO.ENOENT /* the walk is done */) {
        if (errno === ERRNO.ENOSPC /* one bucket holds more than fits */ && size < 1 << 20) {
          size *= 4;
          continue;
        }
        if (
          inTok === null &&
          count === 0 &&
          (errno === ERRNO.EINVAL || errno === ERRNO.EOPNOTSUPP || errno === ERRNO.ENOTSUPP)
        )
          throw new StratumError("UNSUPPORTED", `map ${this.name} has no batch lookup`, { errno });
        throw sysError(`batch lookup in map ${this.name} (${errnoName(errno)} after ${total})`, errno);
      }
      total += count;
      if (count)
        yield {
          keys: keys.subarray(0, count * this.info.keySize),
          values: values.subarray(0, count * this.valueBufSize),
          count,
        };
      if (errno === ERRNO.ENOENT) return;
      // The kernel wrote where the next batch starts into outTok; it is the next call's inTok.
      const next: Buffer<ArrayBufferLike> = inTok ?? Buffer.alloc(tokenSize);
      inTok = outTok;
      outTok = next;
    }
  }

  /** Every entry, read in batches (chunks()): key and value as views into the chunk (each
   * chunk is its own memory; copy what must outlive a change of the map). */
  *batchEntries(): Generator<[key: Buffer, value: Buffer]> {
    const ks = this.info.keySize;
    const vs = this.valueBufSize;
    for (const { keys, values, count } of this.chunks())
      for (let i = 0; i < count; i++)
        yield [keys.subarray(i * ks, (i + 1) * ks) as Buffer, values.subarray(i * vs, (i + 1) * vs) as Buffer];
  }

  /** Every key, read in batches: for listing a large map at once. */
  keyList(): Buffer[] {
    return Array.from(this.batchEntries(), ([k]) => Buffer.from(k));
  }

  /** The whole map, key (hex) → a copy of its value, read in batches. */
  snapshot(): Map<string, Buffer> {
    const out = new Map<string, Buffer>();
    for (const [k, v] of this.batchEntries()) out.set(k.toString("hex"), Buffer.from(v));
    return out;
  }

  /** The whole map's bytes as one reading took them (keys and values, in the kernel's
   * order): two readings are equal when nothing was written between them (a hash map's walk
   * order moves only with its entries). What a quick reconcile compares, not a decoding. */
  fingerprint(): Buffer {
    const parts: Buffer[] = [];
    for (const { keys, values } of this.chunks()) parts.push(keys as Buffer, values as Buffer);
    return Buffer.concat(parts);
  }

  /** batches(), or for a map type without batch lookup the key walk, one entry a chunk. */
  *chunks(batch = 4096): Generator<{ keys: Buffer<ArrayBufferLike>; values: Buffer<ArrayBufferLike>; count: number }> {
    const it = this.batches(batch);
    let first: IteratorResult<{ keys: Buffer<ArrayBufferLike>; values: Buffer<ArrayBufferLike>; count: number }>;
    try {
      first = it.next();
    } catch (e) {
      if (!(e instanceof StratumError && e.code === "UNSUPPORTED")) throw e;
      for (const [k, v] of this.entries()) yield { keys: k, values: v, count: 1 };
      return;
    }
    if (first.done) return;
    yield first.value;
    yield* it;
  }

  /** One BPF_MAP_LOOKUP_BATCH call of up to `max` entries into `keys`/`values`, from where
   * `inToken` left off (null: the start); the kernel writes the next position to `outToken`.
   * Returns the entries it gave and 0 or the errno (ENOENT: the walk is done). */
  lookupBatch(
    inToken: Buffer | null,
    outToken: Buffer,
    keys: Buffer,
    values: Buffer,
    max: number,
  ): { count: number; errno: number } {
    const cnt = Buffer.alloc(4);
    cnt.writeUInt32LE(max);
    const ret = libbpf().bpf_map_lookup_batch(this.fd, inToken, outToken, keys, values, cnt, alloc(BPF_MAP_BATCH_OPTS));
    return { count: cnt.readUInt32LE(0), errno: ret < 0 ? -ret : 0 };
  }

  /** Inserts or replaces `count` entries in one syscall; returns how many the kernel applied. */
  updateBatch(keys: Uint8Array, values: Uint8Array, flags: number = BPF_F.ANY): number {
    this.#known = undefined; // a reading readOnce took is not kept current by batches
    const count = this.#batchCount(keys, values);
    const cnt = Buffer.alloc(4);
    cnt.writeUInt32LE(count);
    const opts = alloc(BPF_MAP_BATCH_OPTS, { elem_flags: flags });
    const ret = libbpf().bpf_map_update_batch(this.fd, keys, values, cnt, opts);
    if (ret < 0) {
      if (cnt.readUInt32LE()) mutated(`batch update of map ${this.name} (partly)`);
      throw sysError(`batch update of ${count} entries in map ${this.name} (${cnt.readUInt32LE()} applied)`, -ret);
    }
    mutated(`batch update of ${count} entries in map ${this.name}`);
    return cnt.readUInt32LE();
  }

  /** Deletes `count` keys in one syscall; fails with ENOENT when a key is absent. */
  deleteBatch(keys: Uint8Array): number {
    this.#known = undefined;
    const count = keys.length / this.info.keySize;
    if (!Number.isInteger(count))
      throw new StratumError("INVALID", `map ${this.name}: keys buffer is not a multiple of ${this.info.keySize}`);
    const cnt = Buffer.alloc(4);
    cnt.writeUInt32LE(count);
    const opts = alloc(BPF_MAP_BATCH_OPTS);
    const ret = libbpf().bpf_map_delete_batch(this.fd, keys, cnt, opts);
    if (ret < 0) {
      if (cnt.readUInt32LE()) mutated(`batch delete from map ${this.name} (partly)`);
      throw sysError(`batch delete of ${count} keys in map ${this.name} (${cnt.readUInt32LE()} applied)`, -ret);
    }
    mutated(`batch delete of ${count} keys from map ${this.name}`);
    return cnt.readUInt32LE();
  }

  #batchCount(keys: Uint8Array, values: Uint8Array): number {
    const count = keys.length / this.info.keySize;
    if (!Number.isInteger(count) || values.length !== count * this.valueBufSize)
      throw new StratumError(
        "INVALID",
        `map ${this.name}: batch of ${keys.length} key bytes and ${values.length} value bytes does not match its layout`,
      );
    return count;
  }

  pin(path: string): void {
    pinFd(this.fd, path, `map ${this.name}`);
  }

  close(): void {
    if (typeof this.#fd !== "number") this.#fd.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

// ---- pins ----------------------------------------------------------------------------------

export function pinFd(fd: number, path: string, what: string): void {
  check(libbpf().bpf_obj_pin(fd, cstr(path)), `pin ${what} at ${path}`);
  mutated(`pin ${what} at ${path}`);
}

/** Removes a pin (the object lives on while fds or other pins hold it); false when there was none. */
export function unpin(path: string): boolean {
  try {
    unlinkSync(path);
    mutated(`unpin ${path}`);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return false;
    throw new StratumError("SYS", `unpin ${path}: ${code ?? (e as Error).message}`, { cause: e });
  }
}

/** Opens a pinned object (map, program or link) and returns a new fd. */
export function objGet(path: string, what = "object"): number {
  const fd = libbpf().bpf_obj_get(cstr(path));
  if (fd < 0) throw sysError(`open pinned ${what} ${path}`, -fd);
  return fd;
}

// ---- program and link info ------------------------------------------------------------------

export interface ProgInfo {
  id: number;
  type: number;
  name: string;
  tag: string;
  /** Instructions the verifier processed to accept the program (all its subprograms). */
  verifiedInsns: number;
}

export function progInfo(fd: number): ProgInfo {
  const info = objInfo(fd, BPF_PROG_INFO, "program");
  const tagOff = BPF_PROG_INFO.fields.tag[0];
  return {
    id: get(info, BPF_PROG_INFO, "id"),
    type: get(info, BPF_PROG_INFO, "type"),
    name: objName(info, BPF_PROG_INFO),
    tag: info.subarray(tagOff, tagOff + 8).toString("hex"),
    verifiedInsns: get(info, BPF_PROG_INFO, "verified_insns"),
  };
}

/** Ids of the maps a loaded program uses, sorted: two programs with one tag (the same
 * instructions) still differ when they use other maps. */
export function progMapIds(fd: number): number[] {
  const first = objInfo(fd, BPF_PROG_INFO, "program");
  const n = get(first, BPF_PROG_INFO, "nr_map_ids");
  if (n === 0) return [];
  const raw = Buffer.alloc(n * 4);
  const info = Buffer.alloc(BPF_PROG_INFO.size);
  put(info, BPF_PROG_INFO, "nr_map_ids", n);
  put(info, BPF_PROG_INFO, "map_ids", BigInt(addressOf(raw)));
  const len = Buffer.alloc(4);
  len.writeUInt32LE(info.length);
  check(libbpf().bpf_obj_get_info_by_fd(fd, info, len), "read program map ids");
  const got = Math.min(n, get(info, BPF_PROG_INFO, "nr_map_ids"));
  return Array.from({ length: got }, (_, i) => raw.readUInt32LE(i * 4)).sort((a, b) => a - b);
}

export interface LinkInfo {
  id: number;
  type: number;
  progId: number;
  /** For tcx and XDP links: the device. 0 once the device is gone. */
  ifindex: number;
}

export function linkInfo(fd: number): LinkInfo {
  const info = objInfo(fd, BPF_LINK_INFO, "link");
  return {
    id: get(info, BPF_LINK_INFO, "id"),
    type: get(info, BPF_LINK_INFO, "type"),
    progId: get(info, BPF_LINK_INFO, "prog_id"),
    ifindex: get(info, BPF_LINK_INFO, "xdp.ifindex"),
  };
}

export function progFdById(id: number): number {
  const fd = libbpf().bpf_prog_get_fd_by_id(id);
  if (fd < 0) throw sysError(`open program id ${id}`, -fd);
  return fd;
}

export function mapFdById(id: number): number {
  const fd = libbpf().bpf_map_get_fd_by_id(id);
  if (fd < 0) throw sysError(`open map id ${id}`, -fd);
  return fd;
}

// ---- links: tcx and XDP ----------------------------------------------------------------------

/** Creates a BPF link of `attachType` on `ifindex`; the returned fd owns the attachment. */
export function linkCreate(progFd: number, ifindex: number, attachType: number, flags = 0): number {
  const opts = alloc(BPF_LINK_CREATE_OPTS, { flags });
  const ret = libbpf().bpf_link_create(progFd, ifindex, attachType, opts);
  if (ret < 0) throw sysError(`create link (attach type ${attachType}) on ifindex ${ifindex}`, -ret, "BPF_ATTACH");
  mutated(`create link (attach type ${attachType}) on ifindex ${ifindex}`);
  return ret;
}

/** Swaps the program of an existing link in one step; with `expectProgFd` only if that program is still attached. */
export function linkUpdate(linkFd: number, newProgFd: number, expectProgFd?: number): void {
  const opts =
    expectProgFd === undefined
      ? alloc(BPF_LINK_UPDATE_OPTS)
      : alloc(BPF_LINK_UPDATE_OPTS, { flags: BPF_F.REPLACE, old_prog_fd: expectProgFd });
  const ret = libbpf().bpf_link_update(linkFd, newProgFd, opts);
  if (ret < 0) throw sysError("replace program on link", -ret, "BPF_ATTACH");
  mutated("replace program on link");
}

/** Detaches a link's program now, even if other fds or pins still hold the link. */
export function linkDetach(linkFd: number): void {
  check(libbpf().bpf_link_detach(linkFd), "detach link");
  mutated("detach link");
}

// ---- cls_bpf (clsact) and legacy XDP through libbpf's netlink -------------------------------

export const TC_ATTACH_POINT = { INGRESS: 1, EGRESS: 2 } as const;

function tcHook(ifindex: number, point: number): Buffer {
  return alloc(BPF_TC_HOOK, { ifindex, attach_point: point });
}

/** Attaches `progFd` as a direct-action cls_bpf filter under clsact; returns the program id attached. */
export function tcAttach(
  ifindex: number,
  point: number,
  progFd: number,
  opts: { handle?: number; priority?: number; replace?: boolean } = {},
): number {
  const lib = libbpf();
  const hook = tcHook(ifindex, point);
  const created = lib.bpf_tc_hook_create(hook);
  if (created < 0 && created !== -17 /* EEXIST */)
    throw sysError(`create clsact qdisc on ifindex ${ifindex}`, -created, "BPF_ATTACH");
  if (created === 0) mutated(`create clsact qdisc on ifindex ${ifindex}`);
  const o = alloc(BPF_TC_OPTS, {
    prog_fd: progFd,
    handle: opts.handle ?? 1,
    priority: opts.priority ?? 1,
    flags: opts.replace ? 1 : 0,
  });
  const ret = lib.bpf_tc_attach(hook, o);
  if (ret < 0) throw sysError(`attach cls_bpf filter on ifindex ${ifindex}`, -ret, "BPF_ATTACH");
  mutated(`attach cls_bpf filter (${point === TC_ATTACH_POINT.INGRESS ? "ingress" : "egress"}) on ifindex ${ifindex}`);
  return get(o, BPF_TC_OPTS, "prog_id");
}

/** Program id of the cls_bpf filter (handle, priority), or 0 when there is none. */
export function tcQuery(ifindex: number, point: number, opts: { handle?: number; priority?: number } = {}): number {
  const o = alloc(BPF_TC_OPTS, { handle: opts.handle ?? 1, priority: opts.priority ?? 1 });
  const ret = libbpf().bpf_tc_query(tcHook(ifindex, point), o);
  if (ret === -ERRNO.ENOENT || ret === -ERRNO.EINVAL) return 0;
  check(ret, `query cls_bpf filter on ifindex ${ifindex}`);
  return get(o, BPF_TC_OPTS, "prog_id");
}

export function tcDetach(ifindex: number, point: number, opts: { handle?: number; priority?: number } = {}): void {
  const o = alloc(BPF_TC_OPTS, { handle: opts.handle ?? 1, priority: opts.priority ?? 1 });
  const ret = libbpf().bpf_tc_detach(tcHook(ifindex, point), o);
  if (ret < 0 && ret !== -2) throw sysError(`detach cls_bpf filter on ifindex ${ifindex}`, -ret, "BPF_ATTACH");
  if (ret === 0) mutated(`detach cls_bpf filter on ifindex ${ifindex}`);
}

/** Legacy (netlink) XDP attach, for kernels without XDP links. */
export function xdpAttachLegacy(ifindex: number, progFd: number, flags: number): void {
  const ret = libbpf().bpf_xdp_attach(ifindex, progFd, flags, null);
  if (ret < 0) throw sysError(`attach XDP on ifindex ${ifindex}`, -ret, "BPF_ATTACH");
  mutated(`attach XDP on ifindex ${ifindex}`);
}

export function xdpDetachLegacy(ifindex: number, flags: number): void {
  const ret = libbpf().bpf_xdp_detach(ifindex, flags, null);
  if (ret < 0) throw sysError(`detach XDP on ifindex ${ifindex}`, -ret, "BPF_ATTACH");
  mutated(`detach XDP on ifindex ${ifindex}`);
}

function hexKey(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString("hex");
}

// ---- BPF_PROG_TEST_RUN --------------------------------------------------------------------

export interface TestRunInput {
  data: Uint8Array;
  repeat?: number;
  /** Context (struct __sk_buff / struct xdp_md) in; out is returned when given. */
  ctx?: Uint8Array;
  /** Room for the output packet (defaults to input length + 256 for headroom changes). */
  dataOutSize?: number;
  flags?: number;
  /** XDP live-frames mode: frames per batch. */
  batchSize?: number;
}

export interface TestRunResult {
  retval: number;
  /** Average run time per repetition, ns, as the kernel measured it. */
  durationNs: number;
  dataOut: Buffer;
  ctxOut?: Buffer;
}

export function testRun(progFd: number, input: TestRunInput): TestRunResult {
  const live = ((input.flags ?? 0) & BPF_F.TEST_XDP_LIVE_FRAMES) !== 0;
  const dataIn = Buffer.from(input.data);
  const dataOut = live ? null : Buffer.alloc(input.dataOutSize ?? dataIn.length + 256);
  const ctxIn = input.ctx ? Buffer.from(input.ctx) : null;
  // Live frames take a context in (the receiving device) but give none back.
  const ctxOut = input.ctx && !live ? Buffer.alloc(input.ctx.length) : null;
  const o = alloc(BPF_TEST_RUN_OPTS, {
    data_in: addressOf(dataIn),
    data_size_in: dataIn.length,
    repeat: input.repeat ?? 1,
    flags: input.flags ?? 0,
    batch_size: input.batchSize ?? 0,
  });
  if (dataOut) {
    o.writeBigUInt64LE(BigInt(addressOf(dataOut)), BPF_TEST_RUN_OPTS.fields.data_out[0]);
    o.writeUInt32LE(dataOut.length, BPF_TEST_RUN_OPTS.fields.data_size_out[0]);
  }
  if (ctxIn) {
    o.writeBigUInt64LE(BigInt(addressOf(ctxIn)), BPF_TEST_RUN_OPTS.fields.ctx_in[0]);
    o.writeUInt32LE(ctxIn.length, BPF_TEST_RUN_OPTS.fields.ctx_size_in[0]);
  }
  if (ctxOut) {
    o.writeBigUInt64LE(BigInt(addressOf(ctxOut)), BPF_TEST_RUN_OPTS.fields.ctx_out[0]);
    o.writeUInt32LE(ctxOut.length, BPF_TEST_RUN_OPTS.fields.ctx_size_out[0]);
  }
  const ret = libbpf().bpf_prog_test_run_opts(progFd, o);
  if (ret < 0) throw sysError("BPF_PROG_TEST_RUN", -ret);
  const outLen = get(o, BPF_TEST_RUN_OPTS, "data_size_out");
  const ctxLen = get(o, BPF_TEST_RUN_OPTS, "ctx_size_out");
  return {
    retval: get(o, BPF_TEST_RUN_OPTS, "retval") | 0,
    durationNs: get(o, BPF_TEST_RUN_OPTS, "duration"),
    dataOut: dataOut ? Buffer.from(dataOut.subarray(0, outLen)) : Buffer.alloc(0),
    ctxOut: ctxOut ? Buffer.from(ctxOut.subarray(0, ctxLen)) : undefined,
  };
}

// ---- ring buffers ----------------------------------------------------------------------------

/** Consumer of a BPF ring buffer map; `onSample` gets a copy of each record. */
export class RingBuffer implements Disposable {
  #rb: Pointer | null;
  #cb: JSCallback;

  constructor(mapFd: number, onSample: (data: Buffer) => void) {
    this.#cb = new JSCallback(
      (_ctx: Pointer, data: Pointer, size: number | bigint) => {
        onSample(copyFrom(data, Number(size)));
        return 0;
      },
      { args: [FFIType.ptr, FFIType.ptr, FFIType.u64], returns: FFIType.i32 },
    );
    const rb = libbpf().ring_buffer__new(mapFd, this.#cb.ptr, null, null);
    if (!rb) {
      const e = errno();
      this.#cb.close();
      throw sysError("open ring buffer", e);
    }
    this.#rb = rb as Pointer;
  }

  /** Waits up to `timeoutMs` for records and delivers them; returns how many were consumed. */
  poll(timeoutMs: number): number {
    const n = libbpf().ring_buffer__poll(this.handle, timeoutMs);
    if (n < 0 && n !== -4 /* EINTR */) throw sysError("poll ring buffer", -n);
    return Math.max(n, 0);
  }

  /** Delivers whatever is ready without waiting. */
  consume(): number {
    const n = libbpf().ring_buffer__consume(this.handle);
    if (n < 0) throw sysError("consume ring buffer", -n);
    return n;
  }

  /** An epoll fd that becomes readable when records arrive. */
  get epollFd(): number {
    return libbpf().ring_buffer__epoll_fd(this.handle);
  }

  private get handle(): Pointer {
    if (!this.#rb) throw new StratumError("INTERNAL", "ring buffer is closed");
    return this.#rb;
  }

  close(): void {
    if (this.#rb) {
      libbpf().ring_buffer__free(this.#rb);
      this.#rb = null;
      this.#cb.close();
    }
  }
  [Symbol.dispose](): void {
    this.close();
  }
}
