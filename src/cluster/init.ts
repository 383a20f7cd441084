/** `cluster init`: a node's single-node state becomes a new cluster. Every object of its SQLite
 * store goes into an empty etcd with its id kept (network ids, and so VNIs and profile MACs;
 * rule ids; DNS record ids), the counters above every id the store ever handed out, each
 * endpoint on this node. A marker key, created only while the prefix is empty, makes the
 * upload one writer's; the cluster's identity comes last, in a transaction that requires it
 * absent and the marker still this upload's: an upload cut short is not a cluster, and no
 * agent adopts it (run init again with `forceCleanPartial`, or delete the prefix). The store
 * is then stamped a mirror of the new cluster at revision 0: the agent's first start lists
 * everything. */
import { StratumError } from "../errors";
import { FW_GLOBAL_SCOPE } from "../model/firewall-rule";
import { MirrorWriter } from "../store/mirror";
import type { SqliteStore } from "../store/sqlite";
import { EtcdClient, type EtcdOptions, type TxnOp } from "./etcd-client";
import { type ClusterIdentity, K, networkValue, PREFIX, parseKey, vniOf } from "./keys";

/** Puts per transaction: under etcd's --max-txn-ops default (128), with room to spare. */
export const INIT_TXN_PUTS = 120;
/** Bytes of values per transaction: well under etcd's --max-request-bytes default (1.5 MiB). */
const INIT_TXN_BYTES = 512 * 1024;
const MIRROR_CLUSTER_ID = "clusterId";

export interface InitOptions extends Omit<EtcdOptions, "endpoints" | "watchIdleMs"> {
  endpoints: string[];
  /** This node's name in the cluster: every endpoint of the store runs on it. */
  nodeName: string;
  /** etcd holds keys under the prefix but no cluster (an upload cut short): delete them first. */
  forceCleanPartial?: boolean;
  /** A line of progress for the operator (counts); an exception from it stops the upload. */
  progress?: (line: string) => void;
}

export interface InitSummary {
  clusterId: string;
  networks: number;
  endpoints: number;
  rules: number;
  blocklist: number;
  dnsRecords: number;
  /** etcd's revision once the cluster exists. */
  revision: number;
  /** Keys written, the identity included. */
  keys: number;
}

export interface UploadPlan {
  puts: Array<{ key: string; value: string }>;
  counts: Omit<InitSummary, "clusterId" | "revision" | "keys">;
  /** What the counters are set to: the highest id ever handed out on this node. */
  counters: { network: number; rule: number; dns: number };
}

interface Marker {
  token: string;
  by: string;
  startedAt: string;
}

/** The highest id an AUTOINCREMENT table ever handed out (deleted rows included: an id is
 * never handed out twice, and a rule's id keys its hit counters). */
function highestId(store: SqliteStore, table: string, ids: number[]): number {
  let seq = 0;
  try {
    const r = store.db.query("SELECT seq FROM sqlite_sequence WHERE name = ?").get(table) as { seq: number } | null;
    seq = r?.seq ?? 0;
  } catch {}
  return Math.max(0, seq, ...ids);
}

/** Every key the store's state becomes, each checked to parse as the mirror will parse it
 * (a value that did not would be set aside on every node: lost). Reads only. */
export function planUpload(store: SqliteStore, nodeName: string): UploadPlan {
  const puts: UploadPlan["puts"] = [];
  const networks = store.listNetworks();
  const endpoints = store.listEndpoints();
  const records = store.listDnsRecords();
  const scopes = [FW_GLOBAL_SCOPE, ...networks.map((n) => n.id)];
  const rules = scopes.map((s) => ({ scope: s, rules: store.listRules(s) }));
  const blocks = store.blockList();
  const counters = {
    network: highestId(
      store,
      "networks",
      networks.map((n) => n.id),
    ),
    rule: highestId(
      store,
      "fw_rules",
      rules.flatMap((s) => s.rules.map((r) => r.id)),
    ),
    dns: highestId(
      store,
      "dns_records",
      records.map((r) => r.id),
    ),
  };
  puts.push({ key: K.counter("network"), value: String(counters.network) });
  puts.push({ key: K.counter("rule"), value: String(counters.rule) });
  puts.push({ key: K.counter("dns"), value: String(counters.dns) });
  for (const n of networks) {
    puts.push({ key: K.network(n.name), value: networkValue(n, vniOf(n.id)) });
    puts.push({ key: K.networkId(n.id), value: n.name });
  }
  for (const s of rules)
    if (s.rules.length)
      puts.push({
        key: K.rules(s.scope),
        value: JSON.stringify({ rules: [...s.rules].sort((a, b) => a.priority - b.priority) }),
      });
  puts.push({ key: K.globalDefault, value: JSON.stringify(store.getGlobalDefault()) });
  // Microsegmentation: groups keep their ids (the endpoints' records name their groups).
  const mseg = store.getMicroseg();
  if (mseg.groups.length || mseg.rules.length) puts.push({ key: K.microseg, value: JSON.stringify(mseg) });
  const lb = store.getLb();
  if (lb.vips.length) puts.push({ key: K.lb, value: JSON.stringify(lb) });
  const netId = new Map(networks.map((n) => [n.name, n.id]));
  for (const e of endpoints) {
    const { node: _node, ...rest } = e;
    puts.push({ key: K.endpoint(e.name), value: JSON.stringify({ ...rest, node: nodeName }) });
    puts.push({ key: K.claim(netId.get(e.network) as number, e.hostIndex), value: e.name });
  }
  for (const b of blocks)
    puts.push({ key: K.block(b.prefix), value: JSON.stringify({ family: b.family, addedAt: b.addedAt }) });
  for (const n of networks) {
    const recs = records
      .filter((r) => r.network === n.name)
      .map(({ network: _n, ...r }) => r)
      .sort((a, b) => a.id - b.id);
    if (recs.length) puts.push({ key: K.dns(n.id), value: JSON.stringify({ records: recs }) });
  }
  const enc = new TextEncoder();
  for (const p of puts)
    try {
      parseKey(p.key, enc.encode(p.value));
    } catch (e) {
      throw new StratumError(
        "INVALID",
        `this node's state cannot be uploaded as it is: ${(e as Error).message}; nothing was uploaded`,
      );
    }
  const seen = new Set<string>();
  for (const p of puts) {
    if (seen.has(p.key))
      throw new StratumError("INVALID", `two objects of this node's state map to ${p.key}; nothing was uploaded`);
    seen.add(p.key);
  }
  return {
    puts,
    counts: {
      networks: networks.length,
      endpoints: endpoints.length,
      rules: rules.reduce((a, s) => a + s.rules.length, 0),
      blocklist: blocks.length,
      dnsRecords: records.length,
    },
    counters,
  };
}

/** The operator's line for keys under the prefix without a cluster: whose upload, and the ways out. */
export function partialUploadAdvice(endpoints: string[], keys: number, marker: Uint8Array | undefined): string {
  let whose = "keys no `cluster init` of this version marked as its upload";
  if (marker)
    try {
      const m = JSON.parse(new TextDecoder().decode(marker)) as Marker;
      whose = `an upload by \`cluster init\` on node ${m.by} (started ${m.startedAt}) that has not finished`;
    } catch {}
  return `etcd at ${endpoints.join(",")} holds ${keys} key(s) under ${PREFIX} but no cluster: ${whose}. It is not a cluster and no agent adopts it. If that upload still runs, wait for it; if it failed, run \`cenvero-str-ctl cluster init … --force-clean-partial\` on that node again, or delete the keys first: ETCDCTL_API=3 etcdctl --endpoints ${endpoints.join(",")} del --prefix ${PREFIX}`;
}

/** Uploads the store's state into the empty etcd at `o.endpoints` as a new cluster, then
 * stamps the store a mirror of it. The caller makes sure no agent uses the store meanwhile. */
export async function initCluster(store: SqliteStore, o: InitOptions): Promise<InitSummary> {
  const progress = o.progress ?? (() => {});
  const writer = new MirrorWriter(store, parseKey);
  const mine = writer.meta(MIRROR_CLUSTER_ID);
  if (mine)
    throw new StratumError(
      "CONFLICT",
      `this node's state is already a copy of cluster ${mine}: there is nothing to upload (start the agent with --cluster), or move the state directory away to start anew`,
    );
  // Before etcd is asked anything: a state that cannot be uploaded whole is refused untouched.
  const plan = planUpload(store, o.nodeName);
  const client = new EtcdClient({
    endpoints: o.endpoints,
    ca: o.ca,
    cert: o.cert,
    key: o.key,
    username: o.username,
    password: o.password,
    timeoutMs: o.timeoutMs ?? 5000,
  });
  const where = o.endpoints.join(",");
  try {
    const identity = await client.get(K.cluster);
    if (identity) {
      let id = "(unreadable identity)";
      try {
        id = (JSON.parse(new TextDecoder().decode(identity.value)) as ClusterIdentity).id;
      } catch {}
      const { count } = await client.range(PREFIX, { prefix: true, countOnly: true });
      throw new StratumError(
        "CONFLICT",
        `etcd at ${where} already holds cluster ${id} (${count} key(s) under ${PREFIX}): cluster init makes a new cluster in an empty etcd only. To join that cluster, start the agent with --cluster ${where} (this node's state must agree with it); nothing was uploaded`,
      );
    }
    const { count } = await client.range(PREFIX, { prefix: true, countOnly: true });
    if (count) {
      const marker = await client.get(K.init);
      if (!o.forceCleanPartial)
        throw new StratumError(
          "CONFLICT",
          `${partialUploadAdvice(o.endpoints, count, marker?.value)}; nothing was uploaded`,
        );
      const r = await client.txn({
        compare: [{ key: K.cluster, target: "version", value: 0 }],
        success: [{ type: "delete", key: PREFIX, prefix: true }],
      });
      if (!r.succeeded)
        throw new StratumError("CONFLICT", `a cluster appeared in etcd at ${where} meanwhile: nothing was uploaded`);
      progress(`deleted ${count} key(s) of an upload that did not finish`);
    }

    const marker: Marker = { token: crypto.randomUUID(), by: o.nodeName, startedAt: new Date().toISOString() };
    const markerValue = JSON.stringify(marker);
    const claimed = await client.txn({
      compare: [{ key: PREFIX, target: "version", value: 0, prefix: true }],
      success: [{ type: "put", key: K.init, value: markerValue }],
    });
    if (!claimed.succeeded)
      throw new StratumError(
        "CONFLICT",
        `etcd at ${where} got keys under ${PREFIX} meanwhile (another node's init or agent): nothing was uploaded`,
      );
    const c = plan.counts;
    progress(
      `uploading ${plan.puts.length} key(s) to etcd at ${where}: ${c.networks} network(s), ${c.endpoints} endpoint(s), ${c.rules} firewall rule(s), ${c.blocklist} blocklisted prefix(es), ${c.dnsRecords} DNS record(s)`,
    );
    const guard = [
      { key: K.init, target: "value" as const, value: markerValue },
      { key: K.cluster, target: "version" as const, value: 0 },
    ];
    let done = 0;
    let reported = 0;
    let atIdentity = false;
    const id: ClusterIdentity = { id: crypto.randomUUID(), createdAt: new Date().toISOString(), by: o.nodeName };
    let revision: number;
    try {
      for (const batch of batches(plan.puts)) {
        const r = await client.txn({
          compare: guard,
          success: batch.map((p): TxnOp => ({ type: "put", key: p.key, value: p.value })),
        });
        if (!r.succeeded)
          throw new StratumError(
            "CONFLICT",
            `etcd changed under the upload (its marker ${K.init} is gone or another's, or a cluster identity appeared)`,
          );
        done += batch.length;
        // A line per tenth of a big upload; one at the end of a small one.
        if (done === plan.puts.length || done - reported >= Math.max(1000, plan.puts.length / 10)) {
          progress(`uploaded ${done}/${plan.puts.length} key(s)`);
          reported = done;
        }
      }
      atIdentity = true;
      const r = await client.txn({
        compare: guard,
        success: [
          { type: "put", key: K.cluster, value: JSON.stringify(id) },
          { type: "delete", key: K.init },
        ],
      });
      if (!r.succeeded)
        throw new StratumError(
          "CONFLICT",
          `etcd changed under the upload before its cluster identity was written (its marker ${K.init} is gone or another's, or a cluster identity appeared)`,
        );
      revision = r.revision;
    } catch (e) {
      const err = e as Error;
      const lost = atIdentity && (e as { maybeApplied?: boolean }).maybeApplied;
      throw new StratumError(
        e instanceof StratumError ? e.code : "INTERNAL",
        `the upload stopped after ${done} of ${plan.puts.length} key(s): ${err.message}. ${
          lost
            ? `etcd may have written the cluster's identity and lost its answer: see ETCDCTL_API=3 etcdctl --endpoints ${where} get ${K.cluster}; if it is there, start the agent with --cluster (this node's state agrees with it and joins); if not, `
            : "etcd holds a partial upload, which is not a cluster (no agent adopts it), and this node's state is unchanged: "
        }run cluster init again with --force-clean-partial, or delete the keys first: ETCDCTL_API=3 etcdctl --endpoints ${where} del --prefix ${PREFIX}`,
        { cause: e },
      );
    }
    try {
      stamp(store, writer, id.id, o.nodeName);
    } catch (e) {
      throw new StratumError(
        "SYS",
        `cluster ${id.id} is in etcd, but this node's state could not be marked as its copy: ${(e as Error).message}. Start the agent with --cluster ${where}: its state agrees with the cluster and it joins`,
        { cause: e },
      );
    }
    return { clusterId: id.id, ...plan.counts, revision, keys: plan.puts.length + 1 };
  } finally {
    client.close();
  }
}

/** Transactions of at most INIT_TXN_PUTS puts and INIT_TXN_BYTES of keys and values (one
 * bigger value alone in its own). */
function* batches(puts: UploadPlan["puts"]): Generator<UploadPlan["puts"]> {
  let cur: UploadPlan["puts"] = [];
  let bytes = 0;
  for (const p of puts) {
    const n = p.key.length + p.value.length;
    if (cur.length && (cur.length >= INIT_TXN_PUTS || bytes + n > INIT_TXN_BYTES)) {
      yield cur;
      cur = [];
      bytes = 0;
    }
    cur.push(p);
    bytes += n;
  }
  if (cur.length) yield cur;
}

/** The store becomes a mirror of cluster `id` that has seen nothing yet (revision 0: the
 * agent's first start lists every key), its endpoints this node's (as etcd has them now: an
 * agent that starts while etcd is away serves them from the mirror). One transaction. */
function stamp(store: SqliteStore, writer: MirrorWriter, id: string, nodeName: string): void {
  store.db.transaction(() => {
    store.db.query("UPDATE endpoints SET node = ?").run(nodeName);
    store.db.query("DELETE FROM cluster_kv").run();
    writer.setMeta("revision", "0");
    writer.setMeta(MIRROR_CLUSTER_ID, id);
  })();
}
