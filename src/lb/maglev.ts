/** Maglev consistent hashing (Eisenbud et al., NSDI 2016) and the flow hash it is indexed by.
 * Pure and deterministic: every node given the same backends builds the same table, and
 * flowHash is bit-for-bit what the eBPF datapath computes, so both pick the same slot. */
import { isPrime, MAGLEV_DEFAULT_SIZE, MAGLEV_MAX_SIZE } from "../model/vip";

export { isPrime, MAGLEV_DEFAULT_SIZE, MAGLEV_MAX_SIZE };

/** MurmurHash3 x86_32 of `data`, as an unsigned 32-bit number. */
export function murmur3(data: Uint8Array, seed: number): number {
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  const len = data.length;
  const blocks = len & ~3;
  let h = seed >>> 0;
  let k = 0;
  for (let i = 0; i < blocks; i += 4) {
    k = data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  k = 0;
  switch (len & 3) {
    // biome-ignore lint/suspicious/noFallthroughSwitchClause: the tail bytes accumulate like the reference C
    case 3:
      k ^= data[blocks + 2]! << 16;
    // biome-ignore lint/suspicious/noFallthroughSwitchClause: as above
    case 2:
      k ^= data[blocks + 1]! << 8;
    case 1:
      k ^= data[blocks]!;
      k = Math.imul(k, c1);
      k = (k << 15) | (k >>> 17);
      k = Math.imul(k, c2);
      h ^= k;
  }
  h ^= len;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Seed of the flow hash ("STRM"); the datapath uses the same constant. */
export const FLOW_HASH_SEED = 0x5354524d;

/**
 * The flow hash the eBPF datapath also computes; the C side must mirror this layout exactly.
 * murmur3 over 24 bytes = six little-endian u32 words, seed FLOW_HASH_SEED:
 *   bytes  0..15  w0..w3  the 16 source address bytes as they are (IPv4 as ::ffff:a.b.c.d)
 *   bytes 16..19  w4      (sport << 16 | dport) as a u32, little-endian; ports are numeric
 *                         host-order values, i.e. bytes dport_lo, dport_hi, sport_lo, sport_hi
 *   bytes 20..23  w5      proto as a u32, little-endian
 */
export function flowHash(src: Uint8Array, sport: number, dport: number, proto: number): number {
  if (src.length !== 16) throw new RangeError(`flowHash: address must be 16 bytes, got ${src.length}`);
  if (!isU16(sport) || !isU16(dport)) throw new RangeError(`flowHash: ports must be 0..65535 (${sport}, ${dport})`);
  if (!Number.isInteger(proto) || proto < 0 || proto > 0xffffffff) {
    throw new RangeError(`flowHash: proto must be a u32 (${proto})`);
  }
  const buf = new Uint8Array(24);
  buf.set(src, 0);
  const view = new DataView(buf.buffer);
  view.setUint32(16, ((sport << 16) | dport) >>> 0, true);
  view.setUint32(20, proto, true);
  return murmur3(buf, FLOW_HASH_SEED);
}

function isU16(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 0xffff;
}

export const MAGLEV_MAX_WEIGHT = 1000;
/** Table value of a slot no backend holds (empty or all-zero-weight backend set). */
export const MAGLEV_NO_BACKEND = 0xffffffff;

const OFFSET_SEED = 0x0b5eed01;
const SKIP_SEED = 0x5a1f0002;

export interface MaglevBackend {
  /** Stable identity (e.g. "10.20.0.5:8080"): the permutation derives from it alone. */
  key: string;
  /** Integer 0..1000; 0 = present but receives no slot. */
  weight: number;
  /** Value stored in the backend's slots; u32, not MAGLEV_NO_BACKEND. */
  id: number;
}

/**
 * The Maglev lookup table: slot → backend id. Each round, every backend takes `weight` turns,
 * each claiming its next unclaimed preferred slot, so shares follow weights. Backends go in key
 * order (UTF-16 code units, not locale) so the table does not depend on input order or host.
 */
export function buildMaglev(backends: MaglevBackend[], size: number = MAGLEV_DEFAULT_SIZE): Uint32Array {
  if (!Number.isInteger(size) || size < 3 || size > MAGLEV_MAX_SIZE || !isPrime(size)) {
    throw new RangeError(`maglev: table size must be a prime in 3..${MAGLEV_MAX_SIZE}, got ${size}`);
  }
  const seen = new Set<string>();
  for (const b of backends) {
    if (typeof b.key !== "string") throw new RangeError("maglev: backend key must be a string");
    if (seen.has(b.key)) throw new RangeError(`maglev: duplicate backend key ${JSON.stringify(b.key)}`);
    seen.add(b.key);
    if (!Number.isInteger(b.weight) || b.weight < 0 || b.weight > MAGLEV_MAX_WEIGHT) {
      throw new RangeError(`maglev: weight of ${b.key} must be an integer 0..${MAGLEV_MAX_WEIGHT}, got ${b.weight}`);
    }
    if (!Number.isInteger(b.id) || b.id < 0 || b.id >= MAGLEV_NO_BACKEND) {
      throw new RangeError(`maglev: id of ${b.key} must be a u32 below 0xffffffff, got ${b.id}`);
    }
  }

  const table = new Uint32Array(size).fill(MAGLEV_NO_BACKEND);
  const live = backends.filter((b) => b.weight > 0).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const n = live.length;
  if (n === 0) return table;

  const enc = new TextEncoder();
  // Per backend: the slot its permutation points at next, and the stride between preferences.
  const pos = new Uint32Array(n);
  const skip = new Uint32Array(n);
  const weight = new Uint32Array(n);
  const ids = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const b = live[i]!;
    const bytes = enc.encode(b.key);
    pos[i] = murmur3(bytes, OFFSET_SEED) % size;
    skip[i] = (murmur3(bytes, SKIP_SEED) % (size - 1)) + 1;
    weight[i] = b.weight;
    ids[i] = b.id;
  }

  // Claimed is tracked separately from table: an id may legitimately equal any u32 but the sentinel.
  const claimed = new Uint8Array(size);
  let filled = 0;
  for (;;) {
    for (let i = 0; i < n; i++) {
      const step = skip[i]!;
      const id = ids[i]!;
      let p = pos[i]!;
      for (let t = weight[i]!; t > 0; t--) {
        // size is prime and 0 < step < size, so the walk visits every slot: a free one exists.
        while (claimed[p] === 1) {
          p += step;
          if (p >= size) p -= size;
        }
        claimed[p] = 1;
        table[p] = id;
        if (++filled === size) return table;
        p += step;
        if (p >= size) p -= size;
      }
      pos[i] = p;
    }
  }
}

export function lookupMaglev(table: Uint32Array, hash: number): number {
  return table[(hash >>> 0) % table.length]!;
}

/** Fraction of slots whose backend differs between two tables of the same size. */
export function remapShare(before: Uint32Array, after: Uint32Array): number {
  if (before.length !== after.length) {
    throw new RangeError(`remapShare: tables differ in size (${before.length} vs ${after.length})`);
  }
  if (before.length === 0) return 0;
  let changed = 0;
  for (let i = 0; i < before.length; i++) if (before[i] !== after[i]) changed++;
  return changed / before.length;
}
