/** How full the pinned maps are, for `status` and `/metrics`: hash, LRU and LPM maps are
 * counted; arrays (always "full") and ring buffers (bytes, not entries) report their
 * capacity only. The kernel keeps no element count a program outside BPF can read, so
 * counting means walking the map: BPF_MAP_LOOKUP_BATCH (thousands of entries per syscall),
 * or key by key where a map type has no batch operations (LPM tries). The walk hands the
 * event loop back between batches, so a full 262144-entry conntrack table delays the API's
 * other requests by one batch at a time, not by the whole walk; concurrent callers share
 * one walk. */
import { errnoName, sysError } from "../errors";
import { BPF_MAP_TYPE, type BpfMap } from "../sys/bpf";

const TYPE_NAMES: Record<number, string> = {
  [BPF_MAP_TYPE.HASH]: "hash",
  [BPF_MAP_TYPE.ARRAY]: "array",
  [BPF_MAP_TYPE.PERCPU_HASH]: "percpu_hash",
  [BPF_MAP_TYPE.PERCPU_ARRAY]: "percpu_array",
  [BPF_MAP_TYPE.LRU_HASH]: "lru_hash",
  [BPF_MAP_TYPE.LRU_PERCPU_HASH]: "lru_percpu_hash",
  [BPF_MAP_TYPE.LPM_TRIE]: "lpm_trie",
  [BPF_MAP_TYPE.RINGBUF]: "ringbuf",
};

export function mapTypeName(type: number): string {
  return TYPE_NAMES[type] ?? `type-${type}`;
}

/** Map types whose entries come and go (so "entries" means something). */
const COUNTED = new Set<number>([
  BPF_MAP_TYPE.HASH,
  BPF_MAP_TYPE.PERCPU_HASH,
  BPF_MAP_TYPE.LRU_HASH,
  BPF_MAP_TYPE.LRU_PERCPU_HASH,
  BPF_MAP_TYPE.LPM_TRIE,
]);

export function isCounted(type: number): boolean {
  return COUNTED.has(type);
}

/** Entries per lookup-batch syscall: ~0.2 ms of kernel time for stm_ct's entries, and
 * bounded buffers (4096 × key and value) whatever the map's size. */
export const BATCH = 4096;
const ENOENT = 2;
const ENOSPC = 28;

const yieldToLoop = () => new Promise<void>((r) => setImmediate(r));

export interface CountResult {
  entries: number;
  method: "batch" | "keys";
}

/** Counts a map's entries by batch lookup; maps without batch operations are walked key by
 * key. Either way the event loop gets a turn every `batch` entries. */
export async function countEntries(map: BpfMap, batch = BATCH): Promise<CountResult> {
  const r = await countBatch(map, batch);
  if (r !== undefined) return { entries: r, method: "batch" };
  return { entries: await countKeys(map, batch), method: "keys" };
}

/** undefined when the map type has no batch lookup (EINVAL, ENOTSUPP). */
async function countBatch(map: BpfMap, batch: number): Promise<number | undefined> {
  // The batch token: a bucket number (u32) for hash maps, a key for the generic walk.
  const tokenSize = Math.max(8, map.info.keySize);
  let inTok: Buffer | null = null;
  let outTok: Buffer = Buffer.alloc(tokenSize);
  let size = batch;
  let keys = Buffer.alloc(size * map.info.keySize);
  let vals = Buffer.alloc(size * map.valueBufSize);
  let total = 0;
  for (;;) {
    const { count, errno } = map.lookupBatch(inTok, outTok, keys, vals, size);
    if (errno && errno !== ENOENT) {
      if (errno === ENOSPC && size < 1 << 20) {
        // One bucket holds more entries than fit: retry that bucket with more room.
        size *= 4;
        keys = Buffer.alloc(size * map.info.keySize);
        vals = Buffer.alloc(size * map.valueBufSize);
        continue;
      }
      if (total === 0 && inTok === null && (errno === 22 || errno === 95 || errno === 524)) return undefined;
      throw sysError(`count entries of map ${map.name} (${errnoName(errno)} after ${total})`, errno);
    }
    total += count;
    if (errno === ENOENT) return total;
    // The kernel wrote where the next batch starts into outTok; it is the next call's inTok.
    const next: Buffer = inTok ?? Buffer.alloc(tokenSize);
    inTok = outTok;
    outTok = next;
    await yieldToLoop();
  }
}

async function countKeys(map: BpfMap, every: number): Promise<number> {
  let n = 0;
  for (const _ of map.keys()) if (++n % every === 0) await yieldToLoop();
  return n;
}

export interface MapFillInfo {
  name: string;
  type: string;
  keySize: number;
  valueSize: number;
  /** max_entries: entries for hash maps and arrays, bytes for ring buffers. */
  capacity: number;
  /** Counted entries; null for arrays and ring buffers. */
  entries: number | null;
}

export interface MapFillReport {
  maps: MapFillInfo[];
  /** Wall time of the whole walk, event-loop turns included. */
  seconds: number;
}

/** Fill levels of a set of maps; calls while a walk is running share it. */
export class MapFill {
  #inflight: Promise<MapFillReport> | undefined;

  constructor(readonly maps: () => Array<{ name: string; map: BpfMap }>) {}

  read(): Promise<MapFillReport> {
    this.#inflight ??= this.#walk().finally(() => {
      this.#inflight = undefined;
    });
    return this.#inflight;
  }

  async #walk(): Promise<MapFillReport> {
    const t0 = performance.now();
    const out: MapFillInfo[] = [];
    for (const { name, map } of this.maps()) {
      const i = map.info;
      out.push({
        name,
        type: mapTypeName(i.type),
        keySize: i.keySize,
        valueSize: i.valueSize,
        capacity: i.maxEntries,
        entries: isCounted(i.type) ? (await countEntries(map)).entries : null,
      });
    }
    return { maps: out, seconds: (performance.now() - t0) / 1000 };
  }
}
