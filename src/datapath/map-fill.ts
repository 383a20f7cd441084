/** How full the pinned maps are, for `status` and `/metrics`: hash, LRU and LPM maps are
 * counted; arrays (always "full") and ring buffers (bytes, not entries) report their
 * capacity only. The kernel keeps no element count a program outside BPF can read, so
 * counting means walking the map: BPF_MAP_LOOKUP_BATCH (thousands of entries per syscall),
 * or key by key where a map type has no batch operations (LPM tries). The walk hands the
 * event loop back between batches, so a full 262144-entry conntrack table delays the API's
 * other requests by one batch at a time, not by the whole walk; concurrent callers share
 * one walk. */
import { StratumError } from "../errors";
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

/** Entries per lookup-batch syscall: a short stretch of kernel time per call, and bounded
 * buffers (4096 × key and value) whatever the map's size. */
export const BATCH = 4096;

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
  let total = 0;
  try {
    for (const c of map.batches(batch)) {
      total += c.count;
      await yieldToLoop();
    }
  } catch (e) {
    if (e instanceof StratumError && e.code === "UNSUPPORTED") return undefined;
    throw e;
  }
  return total;
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
