/** The leases of gateway groups in etcd (docs/gateway.md#how-a-group-fails-over), as the HA
 * engine's machines use them: gateway-active/<group> names the holder (its modRevision is the
 * epoch; mirrored, so every node's status shows it), /stratum/ha/v1/beat/<group> is renewed by
 * the holder every half advert interval (outside the mirrored prefix). Taking the lease
 * compares both revisions a standby saw; renewing and releasing compare the epoch. The client
 * is the engine's own, with deadlines shorter than a hold: a call that hangs is a failed one. */
import type { FenceOps, LeaseView } from "../gateway/ha/machine";
import { EtcdClient, type EtcdOptions } from "./etcd-client";
import { K } from "./keys";

const dec = new TextDecoder();
const CALL_MS = 250;

export class HaLease {
  readonly #etcd: EtcdClient;

  constructor(
    o: EtcdOptions,
    readonly node: string,
  ) {
    this.#etcd = new EtcdClient({ ...o, timeoutMs: CALL_MS });
  }

  fence(group: string): FenceOps {
    const etcd = this.#etcd;
    const self = this.node;
    const active = K.gatewayActive(group);
    const beat = K.haBeat(group);
    return {
      async read(): Promise<LeaseView> {
        const r = await etcd.txn({
          success: [
            { type: "range", key: active },
            { type: "range", key: beat },
          ],
        });
        const [h, b] = r.responses;
        const hk = h?.type === "range" ? h.kvs[0] : undefined;
        const bk = b?.type === "range" ? b.kvs[0] : undefined;
        let node = "";
        try {
          node = String((JSON.parse(dec.decode(hk?.value ?? new Uint8Array())) as { node?: unknown }).node ?? "");
        } catch {} // a holder that does not parse is nobody this node knows: its lease still counts
        return { holder: hk ? { node, rev: hk.modRevision } : null, beatRev: bk?.modRevision ?? 0 };
      },
      async acquire(seen, why) {
        const r = await etcd.txn({
          compare: [
            { key: active, target: "modRevision", value: seen.holder?.rev ?? 0 },
            { key: beat, target: "modRevision", value: seen.beatRev },
          ],
          success: [
            { type: "put", key: active, value: JSON.stringify({ node: self, since: new Date().toISOString(), why }) },
            { type: "put", key: beat, value: JSON.stringify({ node: self, seq: 0 }) },
          ],
        });
        return r.succeeded ? r.revision : null;
      },
      async renew(epoch, seq) {
        const r = await etcd.txn({
          compare: [{ key: active, target: "modRevision", value: epoch }],
          success: [{ type: "put", key: beat, value: JSON.stringify({ node: self, seq }) }],
        });
        return r.succeeded;
      },
      async release(epoch) {
        await etcd.txn({
          compare: [{ key: active, target: "modRevision", value: epoch }],
          success: [{ type: "delete", key: active }],
        });
      },
    };
  }

  close(): void {
    this.#etcd.close();
  }
}
