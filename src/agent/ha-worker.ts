/** The gateway HA engine's thread (docs/gateway.md#how-a-group-fails-over): its machines,
 * heartbeat socket, etcd client and the VIP and NAT maps, away from the agent's event loop, so
 * that a reconcile, a store write waiting on etcd or a collection pause of the main thread never
 * delays an advert, a renewal or a hold. The agent (ha-client.ts) sends it the groups and the
 * nodes' management addresses as its mirror has them, and asks it for status; it sends back
 * its log lines and every change of role. */
import { parentPort } from "node:worker_threads";
import type { EtcdOptions } from "../cluster/etcd-client";
import { HaLease } from "../cluster/ha-lease";
import { HaMaps } from "../datapath/ha-maps";
import { HaService } from "../gateway/ha/service";
import { rtnl } from "../netlink";
import type { StoredGatewayGroup } from "../store/mirror";
import { BpfMap } from "../sys/bpf";

export type ToWorker =
  | { type: "init"; node: string; mgmtAddress: string | null; etcd: EtcdOptions; vipFd: number; natFd: number }
  | {
      type: "groups";
      groups: StoredGatewayGroup[];
      active: Array<[string, { node: string; since: string; why: string; epoch: number }]>;
      mgmt: Array<[string, string | null]>;
    }
  | { type: "status"; id: number }
  | { type: "stop" };

export type FromWorker =
  | { type: "ready" }
  | { type: "log"; level: "info" | "warn" | "error"; msg: string }
  | { type: "changed"; prepend: number }
  | { type: "status"; id: number; groups: ReturnType<HaService["status"]>; nat: { sent: number; received: number } }
  | { type: "stopped" };

const post = (m: FromWorker) => parentPort?.postMessage(m);
let svc: HaService | undefined;
let lease: HaLease | undefined;
let groups: StoredGatewayGroup[] = [];
let active = new Map<string, { node: string; since: string; why: string; epoch: number }>();
let mgmt = new Map<string, string | null>();

parentPort?.on("message", async (m: ToWorker) => {
  try {
    switch (m.type) {
      case "init": {
        const l = new HaLease(m.etcd, m.node);
        lease = l;
        const s: HaService = new HaService({
          source: { groups: () => groups, active: (g) => active.get(g) ?? null },
          mgmtAddresses: () => mgmt,
          mgmtAddress: m.mgmtAddress,
          fence: (g) => l.fence(g),
          node: m.node,
          changed: () => post({ type: "changed", prepend: s.prepend() }),
          dp: new HaMaps(BpfMap.fromFd(m.vipFd, false), BpfMap.fromFd(m.natFd, false)),
          nl: rtnl(),
          log: (level, msg) => post({ type: "log", level, msg }),
        });
        svc = s;
        await s.start();
        post({ type: "ready" });
        return;
      }
      case "groups":
        groups = m.groups;
        active = new Map(m.active);
        mgmt = new Map(m.mgmt);
        svc?.sync();
        return;
      case "status":
        post({
          type: "status",
          id: m.id,
          groups: svc?.status() ?? [],
          nat: { ...(svc?.nat ?? { sent: 0, received: 0 }) },
        });
        return;
      case "stop":
        await svc?.stop();
        lease?.close();
        post({ type: "stopped" });
        return;
    }
  } catch (e) {
    post({ type: "log", level: "error", msg: `gateway HA: ${(e as Error).message}` });
  }
});
