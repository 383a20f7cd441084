/** What this node's datapath holds for the load balancer: each VIP of the document with its
 * backends' addresses (the endpoints' own, of the VIP's family), whether each is up (healthy,
 * its endpoint known), and its Maglev table built from the live ones. Every node builds the same
 * table from the same live set: backends are hashed by address and port. A DSR VIP's table
 * holds the backends running on this node only (its frames go to a MAC on this node's bridge). */
import type { LbKernelBackend, LbKernelVip } from "../datapath/lb-tables";
import type { LbDoc, LbVip } from "../model/vip";
import { buildMaglev, murmur3 } from "./maglev";

/** A VIP's table, when a backend of it can take flows. */
export function withTable(v: Omit<LbKernelVip, "table">): LbKernelVip {
  const live = v.backends
    .filter((b) => b.up && b.weight > 0)
    .map((b) => ({ key: `${b.address}|${b.port}`, weight: b.weight, id: b.id }));
  if (!live.length) return v;
  const names = live
    .map((b) => `${b.id}:${b.key}:${b.weight}`)
    .sort()
    .join(",");
  const sig = murmur3(new TextEncoder().encode(`${v.size};${names}`), 0x4c42) || 1;
  return { ...v, table: { sig, build: () => buildMaglev(live, v.size) } };
}

export interface BackendAddress {
  ip4?: string;
  ip6?: string;
  /** The cluster node it runs on (absent on a single node). */
  node?: string;
  mac?: string;
  netId?: number;
}

/** `health(vip, backendId, node)`: whether the backend passes its checks (a VIP whose check is
 * "none" counts every backend with a known endpoint as up). `here(node)`: whether an endpoint
 * on `node` runs on this node. */
export function kernelVips(
  doc: LbDoc,
  endpoint: (name: string) => BackendAddress | undefined,
  health: (vip: LbVip, backendId: number, node: string | undefined) => boolean,
  here: (node: string | undefined) => boolean = () => true,
): LbKernelVip[] {
  return doc.vips.map((v) => {
    const v6 = v.address.includes(":");
    const backends: LbKernelBackend[] = [];
    for (const b of v.backends) {
      const ep = endpoint(b.endpoint);
      const address = v6 ? ep?.ip6 : ep?.ip4;
      // An endpoint gone (or without an address of the family) has nothing to write.
      if (!address) continue;
      // DSR: another node's backend is not reachable at L2 from here.
      if (v.mode === "dsr" && !here(ep?.node)) continue;
      backends.push({
        id: b.id,
        address,
        port: b.port,
        weight: b.weight,
        up: v.check.kind === "none" || health(v, b.id, ep?.node),
        ...(ep?.mac ? { mac: ep.mac } : {}),
        ...(ep?.netId ? { netId: ep.netId } : {}),
      });
    }
    return withTable({
      id: v.id,
      address: v.address,
      port: v.port,
      proto: v.proto,
      size: v.tableSize,
      backends,
      ...(v.mode === "dsr" ? { dsr: true } : {}),
    });
  });
}
