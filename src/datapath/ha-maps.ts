/** The two maps the gateway HA engine writes (docs/gateway.md#how-a-group-fails-over): the VIPs'
 * deadlines (stm_vip) and the NAT table it mirrors between a group's nodes (stm_nat). Built on
 * map handles, so the engine's worker thread uses the agent's own descriptors. */
import type { BpfMap } from "../sys/bpf";
import { mappedAddr, unmappedAddr } from "./port-maps";

export class HaMaps {
  constructor(
    readonly vip: BpfMap,
    readonly nat: BpfMap,
  ) {}

  /** A VIP on this node: answered until `deadlineNs` (CLOCK_MONOTONIC, as bpf_ktime_get_ns),
   * 0n: not at all (bpf/include/stm_vip.h). */
  setVip(addr: string, deadlineNs: bigint): void {
    const v = Buffer.alloc(8);
    v.writeBigUInt64LE(deadlineNs);
    this.vip.update(mappedAddr(addr), v);
  }

  deleteVip(addr: string): boolean {
    return this.vip.delete(mappedAddr(addr));
  }

  /** The VIPs in the kernel with their deadlines. */
  vips(): Map<string, bigint> {
    const out = new Map<string, bigint>();
    for (const [k, v] of this.vip.entries()) out.set(unmappedAddr(k), v.readBigUInt64LE(0));
    return out;
  }

  /** Every translation (both directions of each flow), packed, in batches (an LRU map under
   * traffic). */
  *natEntries(): Generator<{ keys: Buffer; values: Buffer; count: number }> {
    for (const b of this.nat.batches()) yield b as { keys: Buffer; values: Buffer; count: number };
  }

  putNat(key: Uint8Array, value: Uint8Array): void {
    this.nat.update(key, value);
  }
}
