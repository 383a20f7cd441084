/** A scope's prefix entries of one address table (keys as firewall-maps.ts writes them: the
 * length, the generation, the address), kept in address order and counted by length: what a
 * one-rule edit asks of a table of 10,000 prefixes (the prefixes inside a rule's, its nearest
 * stored ancestor) without walking all of them. The /0 and any-address entries are not kept. */
import { lowerBound } from "../model/sorted";

/** Address bytes first, then the length: every prefix inside another sits right after it. */
function compareKeys(a: Buffer, b: Buffer): number {
  return a.compare(b, 8, b.length, 8, a.length) || a.readUInt32LE(0) - b.readUInt32LE(0);
}

export class AddrIndex {
  readonly #keys: Buffer[] = [];
  readonly #lens = new Map<number, number>();

  constructor(keys: Iterable<Buffer>) {
    for (const k of keys) if (k.readUInt32LE(0) > 0) this.#keys.push(k);
    this.#keys.sort(compareKeys);
    for (const k of this.#keys) this.#count(k, 1);
  }

  #count(k: Buffer, d: number): void {
    const len = k.readUInt32LE(0);
    const n = (this.#lens.get(len) ?? 0) + d;
    if (n > 0) this.#lens.set(len, n);
    else this.#lens.delete(len);
  }

  /** The first position whose key is not before `k` (by compareKeys; `addrOnly`: by address). */
  #lower(k: Buffer, addrOnly: boolean): number {
    return lowerBound(this.#keys, (m) => (addrOnly ? m.compare(k, 8, k.length, 8, m.length) : compareKeys(m, k)) < 0);
  }

  add(k: Buffer): void {
    if (k.readUInt32LE(0) === 0) return;
    const i = this.#lower(k, false);
    const at = this.#keys[i];
    if (at && compareKeys(at, k) === 0) return;
    this.#keys.splice(i, 0, k);
    this.#count(k, 1);
  }

  remove(k: Buffer): void {
    if (k.readUInt32LE(0) === 0) return;
    const i = this.#lower(k, false);
    const at = this.#keys[i];
    if (!at || compareKeys(at, k) !== 0) return;
    this.#keys.splice(i, 1);
    this.#count(at, -1);
  }

  /** The keys inside prefix key `outer` (its own included), in order. */
  within(outer: Buffer): Buffer[] {
    const len = outer.readUInt32LE(0);
    const full = len >>> 3;
    const rest = len & 7;
    const m = rest ? (0xff << (8 - rest)) & 0xff : 0;
    const out: Buffer[] = [];
    for (let i = this.#lower(outer, true); i < this.#keys.length; i++) {
      const k = this.#keys[i] as Buffer;
      // Past the outer prefix's addresses: nothing further is inside.
      if (k.compare(outer, 8, 8 + full, 8, 8 + full) !== 0) break;
      if (rest && ((k[8 + full] as number) & m) !== ((outer[8 + full] as number) & m)) break;
      if (k.readUInt32LE(0) >= len) out.push(k);
    }
    return out;
  }

  /** The lengths of the kept prefixes shorter than `len`, longest first. */
  lengthsBelow(len: number): number[] {
    return [...this.#lens.keys()].filter((l) => l < len).sort((a, b) => b - a);
  }

  get size(): number {
    return this.#keys.length;
  }
}
