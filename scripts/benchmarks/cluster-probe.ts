/** The cluster benchmarks' helper, run inside a lab namespace (`ip netns exec NS bun
 * cluster-probe.ts MODE JSON`); it prints one JSON line, its result. Every time it takes is
 * CLOCK_MONOTONIC (monotonicNs), the kernel's, in one process:
 *   propagate  networks created on one node's API until their gateway address is on this
 *              namespace's cnv-user-br0 (an rtnetlink listener on a thread of its own,
 *              blocked in recv: the time is taken when the kernel's notice arrives); each is
 *              deleted again and its address seen gone before the next;
 *   floor      an etcd put until this process's watch delivers it (EtcdClient, two clients);
 *   write      a cluster's state into etcd: nodes, networks, endpoints and their claims, as
 *              ClusterStore writes them, in transactions of 128 operations, many at once;
 *   resync     Cluster.open on an empty store file: what a node joining from an empty
 *              state directory does before anything else;
 *   list       EtcdClient.list of the same keys, nothing else;
 *   etcdctl    etcdctl get --prefix of the same keys (gRPC, one response), to stdout;
 *   fanout     etcd's CPU time per endpoint attach while N watchers watch the keyspace.
 * All modes load the same modules, so their peak memory (VmHWM) is compared like for like. */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { ApiClient } from "../../src/api/api-client";
import { Cluster } from "../../src/cluster/cluster";
import { EtcdClient, prefixEnd, type TxnOp } from "../../src/cluster/etcd-client";
import { K, networkValue, PREFIX, vniOf } from "../../src/cluster/keys";
import { hostAddress, profileMac, validateNetwork } from "../../src/model/network";
import { hostIfName } from "../../src/model/topology";
import { SqliteStore } from "../../src/store/sqlite";
import { monotonicNs } from "../../src/sys/os";

const nowMs = () => Number(monotonicNs()) / 1e6;
const MAX_TXN_OPS = 128;

/** This process's peak and current resident memory, MiB. */
function memory(): { hwm: number; rss: number } {
  const s = readFileSync("/proc/self/status", "utf8");
  const kib = (f: string) => Number(new RegExp(`${f}:\\s+(\\d+) kB`).exec(s)?.[1] ?? Number.NaN);
  return { hwm: kib("VmHWM") / 1024, rss: kib("VmRSS") / 1024 };
}

/** Resolves when `pred` holds for an item pushed to `list` at or after `from`. */
class Log<T> {
  readonly items: Array<T & { t: number }> = [];
  #waiters: Array<() => void> = [];
  push(item: T & { t: number }): void {
    this.items.push(item);
    for (const w of this.#waiters.splice(0)) w();
  }
  async until(from: number, pred: (x: T) => boolean, what: string, ms = 60_000): Promise<number> {
    const end = nowMs() + ms;
    for (let i = from; ; ) {
      for (; i < this.items.length; i++) {
        const x = this.items[i] as T & { t: number };
        if (pred(x)) return x.t;
      }
      const left = end - nowMs();
      if (left <= 0) throw new Error(`no ${what} in ${ms} ms`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }
}

/** The gateway of the i-th sample's network: 10.70-71.x.0/24, rotating. */
const sampleNet = (i: number) => {
  const x = i % 400;
  const base = `10.${70 + (x >> 8)}.${x & 255}`;
  return { cidr: `${base}.0/24`, gateway: `${base}.1` };
};

async function propagate(o: { api: string; etcd: string; samples: number; tag: string }) {
  const addrs = new Log<{ op: string; cidr: string }>();
  const worker = new Worker(new URL("./cluster-addr-watch.ts", import.meta.url));
  worker.unref();
  await new Promise<void>((resolve, reject) => {
    worker.on("error", reject);
    worker.on("message", (m: { ready?: true; op?: string; cidr?: string; t?: number; error?: string }) => {
      if (m.error) reject(new Error(m.error));
      else if (m.ready) resolve();
      else addrs.push({ op: m.op as string, cidr: m.cidr as string, t: m.t as number });
    });
  });
  // When node3's namespace could first have heard of the change: a watch of its own there.
  const etcd = new EtcdClient({ endpoints: [o.etcd] });
  const puts = new Log<{ key: string }>();
  const w = etcd.watch(
    K.network(""),
    { prefix: true },
    {
      onEvents: (events) => {
        const t = nowMs();
        for (const e of events) if (e.type === "put") puts.push({ key: e.kv.key, t });
      },
      onCompacted: () => {},
    },
  );
  await w.ready;
  const api = new ApiClient(o.api);
  const out = { ms: [] as number[], apiMs: [] as number[], watchMs: [] as number[] };
  const WARMUP = 2;
  for (let i = 0; i < o.samples + WARMUP; i++) {
    const name = `${o.tag}${i}`;
    const { cidr, gateway } = sampleNet(i);
    const gw = `${gateway}/24`;
    const fromAddr = addrs.items.length;
    const fromPut = puts.items.length;
    const t0 = nowMs();
    const answered = api.createNetwork({ name, cidr, gateway }).then(() => nowMs());
    const tKernel = await addrs.until(fromAddr, (a) => a.op === "new" && a.cidr === gw, `address ${gw}`);
    const tApi = await answered;
    const tWatch = await puts.until(fromPut, (p) => p.key === K.network(name), `watch event of ${name}`);
    if (i >= WARMUP) {
      out.ms.push(tKernel - t0);
      out.apiMs.push(tApi - t0);
      out.watchMs.push(tWatch - t0);
    }
    const fromDel = addrs.items.length;
    await api.deleteNetwork(name, true);
    await addrs.until(fromDel, (a) => a.op === "del" && a.cidr === gw, `address ${gw} gone`);
  }
  w.close();
  etcd.close();
  return out;
}

/** A value of the size a network's record has: the floor carries the same bytes. */
const networkSized = () =>
  networkValue(
    {
      ...validateNetwork({ name: "floor", cidr: "10.70.0.0/24", gateway: "10.70.0.1" }),
      id: 1,
      createdAt: new Date().toISOString(),
    },
    vniOf(1),
  );

async function floor(o: { etcd: string; samples: number; tag: string }) {
  const prefix = `/stratum-bench/floor/${o.tag}/`;
  const watcher = new EtcdClient({ endpoints: [o.etcd] });
  const writer = new EtcdClient({ endpoints: [o.etcd] });
  const seen = new Log<{ key: string }>();
  const w = watcher.watch(
    prefix,
    { prefix: true },
    {
      onEvents: (events) => {
        const t = nowMs();
        for (const e of events) seen.push({ key: e.kv.key, t });
      },
      onCompacted: () => {},
    },
  );
  await w.ready;
  const value = networkSized();
  const ms: number[] = [];
  const WARMUP = 2;
  for (let i = 0; i < o.samples + WARMUP; i++) {
    const key = `${prefix}${i}`;
    const from = seen.items.length;
    const t0 = nowMs();
    await writer.put(key, value);
    const t1 = await seen.until(from, (x) => x.key === key, `watch event of ${key}`);
    if (i >= WARMUP) ms.push(t1 - t0);
  }
  w.close();
  await writer.delete(prefix, { prefix: true });
  watcher.close();
  writer.close();
  return { ms };
}

/** etcd's own account of its database: the file's size and the part of it in use. */
async function dbStatus(url: string): Promise<{ dbSize: number; dbSizeInUse: number; revision: number }> {
  const r = (await (await fetch(`${url}/v3/maintenance/status`, { method: "POST", body: "{}" })).json()) as {
    dbSize?: string;
    dbSizeInUse?: string;
    header?: { revision?: string };
  };
  return {
    dbSize: Number(r.dbSize ?? 0),
    dbSizeInUse: Number(r.dbSizeInUse ?? 0),
    revision: Number(r.header?.revision ?? 0),
  };
}

/** Runs `jobs` with at most `n` at a time. */
async function pool<T>(jobs: Array<() => Promise<T>>, n: number): Promise<T[]> {
  const out: T[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < jobs.length) {
        const i = next++;
        out[i] = await (jobs[i] as () => Promise<T>)();
      }
    }),
  );
  return out;
}

/** The first watch response that carries events, as the JSON gateway sends it: its bytes and
 * its events (a transaction's events come in one response). */
async function firstEventLine(
  url: string,
  prefix: string,
  signal: AbortSignal,
): Promise<{ bytes: number; events: number }> {
  const b64 = (v: string | Uint8Array) => Buffer.from(v).toString("base64");
  const res = await fetch(`${url}/v3/watch`, {
    method: "POST",
    body: JSON.stringify({ create_request: { key: b64(prefix), range_end: b64(prefixEnd(prefix)) } }),
    signal,
  });
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) throw new Error("the watch ended before an event");
    buf += dec.decode(value, { stream: true });
    for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      const events = (JSON.parse(line) as { result?: { events?: unknown[] } }).result?.events?.length ?? 0;
      if (events) {
        void reader.cancel();
        return { bytes: Buffer.byteLength(line) + 1, events };
      }
    }
  }
}

/** An endpoint's record as ClusterStore writes it for a veth attach (its fields in that order). */
function endpointRecord(
  name: string,
  n: { id: number; name: string; cidr: string },
  h: number,
  node: string,
  createdAt: string,
): string {
  return JSON.stringify({
    name,
    network: n.name,
    ip: hostAddress(n.cidr, h),
    mac: profileMac(n.id, h),
    hostIndex: h,
    kind: "veth",
    hostIf: hostIfName(name),
    netns: `ctr-${name}`,
    ifname: "eth0",
    node,
    createdAt,
  });
}

async function write(o: { etcd: string; nodes: number; networks: number; perNetwork: number; parallel: number }) {
  const client = new EtcdClient({ endpoints: [o.etcd], timeoutMs: 60_000 });
  const t0 = nowMs();
  const createdAt = new Date().toISOString();
  const before = await dbStatus(o.etcd);
  // Phase 1: the cluster, its members (alive: under one lease) and its networks.
  const lease = await client.leaseGrant(24 * 3600);
  const nodeName = (k: number) => `node-${String(k).padStart(4, "0")}`;
  const phase1: TxnOp[] = [
    { type: "put", key: K.cluster, value: JSON.stringify({ id: crypto.randomUUID(), createdAt, by: nodeName(0) }) },
    { type: "put", key: K.counter("network"), value: String(o.networks) },
  ];
  for (let k = 0; k < o.nodes; k++) {
    const name = nodeName(k);
    const address = `172.16.${k >> 8}.${k & 255}`;
    const mgmtAddress = `172.17.${k >> 8}.${k & 255}`;
    phase1.push({
      type: "put",
      key: K.member(name),
      value: JSON.stringify({ name, address, mgmtAddress, joinedAt: createdAt }),
    });
    phase1.push({
      type: "put",
      key: K.node(name),
      value: JSON.stringify({ name, address, mgmtAddress, version: "0.0.0-bench", roles: [], startedAt: createdAt }),
      lease: lease.id,
    });
  }
  const nets: Array<{ id: number; name: string; cidr: string }> = [];
  for (let id = 1; id <= o.networks; id++) {
    const name = `net-${String(id).padStart(4, "0")}`;
    const x = id - 1;
    const cidr = `10.${100 + (x >> 8)}.${x & 255}.0/24`;
    const net = validateNetwork({ name, cidr, gateway: cidr.replace(/0\/24$/, "1") });
    nets.push({ id, name, cidr });
    phase1.push({ type: "put", key: K.network(name), value: networkValue({ ...net, id, createdAt }, vniOf(id)) });
    phase1.push({ type: "put", key: K.networkId(id), value: name });
  }
  const txns = (ops: TxnOp[]) =>
    Array.from({ length: Math.ceil(ops.length / MAX_TXN_OPS) }, (_, i) => async () => {
      await client.txn({ success: ops.slice(i * MAX_TXN_OPS, (i + 1) * MAX_TXN_OPS) });
    });
  await pool(txns(phase1), o.parallel);
  const mid = await dbStatus(o.etcd);
  // Phase 2: the endpoints, each its record and its claim in one transaction's worth; a
  // watch of the whole keyspace, as every node has, sees the first transaction.
  const abort = new AbortController();
  const line = firstEventLine(o.etcd, PREFIX, abort.signal);
  await Bun.sleep(100); // the watch is open before the first write
  let recordBytes = 0;
  let claimBytes = 0;
  let endpoints = 0;
  const phase2: TxnOp[] = [];
  for (const n of nets)
    for (let h = 1; h <= o.perNetwork; h++) {
      const j = endpoints++;
      const node = nodeName(j % o.nodes);
      const name = `${node}-ep${Math.floor(j / o.nodes)}`;
      const value = endpointRecord(name, n, h, node, createdAt);
      recordBytes += Buffer.byteLength(K.endpoint(name)) + Buffer.byteLength(value);
      claimBytes += Buffer.byteLength(K.claim(n.id, h)) + Buffer.byteLength(name);
      phase2.push({ type: "put", key: K.endpoint(name), value }, { type: "put", key: K.claim(n.id, h), value: name });
    }
  const t2 = nowMs();
  await pool(txns(phase2), o.parallel);
  const writeMs = nowMs() - t2;
  const event = await Promise.race([line, Bun.sleep(5000).then(() => ({ bytes: 0, events: 0 }))]);
  abort.abort();
  const after = await dbStatus(o.etcd);
  const keys = (await client.range(PREFIX, { prefix: true, countOnly: true })).count;
  client.close();
  return {
    ms: nowMs() - t0,
    endpointWriteMs: writeMs,
    endpoints,
    keys,
    phase1Keys: phase1.length,
    phase2Keys: phase2.length,
    recordBytes,
    claimBytes,
    before,
    mid,
    after,
    event,
  };
}

async function resync(o: { etcd: string; etcdPid?: number }) {
  const dir = mkdtempSync(join(tmpdir(), "stm-bench-resync-"));
  try {
    const store = new SqliteStore(join(dir, "stratum.db"));
    let synced = "";
    const cpu0 = o.etcdPid ? cpuUs(o.etcdPid) : 0;
    const t0 = nowMs();
    const c = await Cluster.open(store, {
      endpoints: [o.etcd],
      nodeName: "bench-mirror",
      nodeAddress: "10.99.0.250",
      version: "bench",
      log: (_level, msg) => {
        if (msg.startsWith("synced")) synced = msg;
      },
    });
    const ms = nowMs() - t0;
    const etcdCpuMs = o.etcdPid ? (cpuUs(o.etcdPid) - cpu0) / 1000 : undefined;
    const mem = memory();
    const count = (table: string) => (store.db.query(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    const out = {
      ms,
      ...mem,
      keys: c.writer.count(),
      networks: count("networks"),
      endpoints: count("endpoints"),
      synced,
      etcdCpuMs,
    };
    await c.stop();
    store.close();
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function list(o: { etcd: string; etcdPid?: number }) {
  const client = new EtcdClient({ endpoints: [o.etcd], timeoutMs: 30_000 });
  const cpu0 = o.etcdPid ? cpuUs(o.etcdPid) : 0;
  const t0 = nowMs();
  const { kvs } = await client.list(PREFIX, { pageSize: 2000 });
  const ms = nowMs() - t0;
  const etcdCpuMs = o.etcdPid ? (cpuUs(o.etcdPid) - cpu0) / 1000 : undefined;
  const out = { ms, ...memory(), keys: kvs.length, etcdCpuMs };
  client.close();
  return out;
}

/** etcd's own client over gRPC, one range of every key: what listing costs etcd itself. */
async function etcdctl(o: { etcd: string; etcdPid?: number }) {
  const cpu0 = o.etcdPid ? cpuUs(o.etcdPid) : 0;
  const t0 = nowMs();
  const p = Bun.spawnSync(["etcdctl", "--endpoints", o.etcd, "get", "--prefix", PREFIX, "-w", "protobuf"], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const ms = nowMs() - t0;
  if (p.exitCode !== 0) throw new Error(`etcdctl get: ${p.stderr.toString()}`);
  return { ms, bytes: p.stdout.length, etcdCpuMs: o.etcdPid ? (cpuUs(o.etcdPid) - cpu0) / 1000 : undefined };
}

/** CPU time etcd (every thread of `pid`) has used, in µs: schedstat's nanoseconds. */
function cpuUs(pid: number): number {
  let ns = 0;
  for (const t of readdirSync(`/proc/${pid}/task`))
    ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, "utf8").split(" ")[0]);
  return ns / 1000;
}

/** `watchers` watches of the whole keyspace (the JSON gateway's stream, as EtcdClient opens
 * it; here raw, counting lines and bytes only, so the client parses nothing), then `writes`
 * endpoint attaches (record and claim, one transaction each, one after another): etcd's CPU
 * time from the first write until every watcher has had the last one. */
async function fanout(o: { etcd: string; watchers: number; writes: number; etcdPid: number; tag: string }) {
  const b64 = (v: string | Uint8Array) => Buffer.from(v).toString("base64");
  const abort = new AbortController();
  const got = new Array<number>(o.writes).fill(0);
  const last = new Array<number>(o.writes).fill(0);
  let bytes = 0;
  let created = 0;
  const streams = Array.from({ length: o.watchers }, async () => {
    const res = await fetch(`${o.etcd}/v3/watch`, {
      method: "POST",
      body: JSON.stringify({ create_request: { key: b64(PREFIX), range_end: b64(prefixEnd(PREFIX)) } }),
      signal: abort.signal,
    });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const dec = new TextDecoder();
    let buf = "";
    let first = true;
    let events = 0;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        buf += dec.decode(value, { stream: true });
        for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          // The first line says the watch is created; then events, a write's two together
          // (or several writes' in one line for a watcher that fell behind).
          if (first) {
            first = false;
            created++;
            continue;
          }
          bytes += line.length + 1;
          const before = events >> 1;
          for (let at = line.indexOf('"kv":'); at >= 0; at = line.indexOf('"kv":', at + 5)) events++;
          const t = nowMs();
          for (let k = before; k < events >> 1 && k < o.writes; k++)
            if (++(got[k] as number) === o.watchers) last[k] = t;
        }
      }
    } catch {
      // aborted at the end
    }
  });
  const end = nowMs() + 30_000;
  while (created < o.watchers) {
    if (nowMs() > end) throw new Error(`${created} of ${o.watchers} watches created in 30 s`);
    await Bun.sleep(5);
  }
  const client = new EtcdClient({ endpoints: [o.etcd] });
  const n = { id: 1, name: "net-fanout", cidr: "10.70.0.0/16" };
  const createdAt = new Date().toISOString();
  const t0: number[] = [];
  const cpu0 = cpuUs(o.etcdPid);
  for (let k = 0; k < o.writes; k++) {
    const name = `${o.tag}-ep${k}`;
    t0.push(nowMs());
    await client.txn({
      success: [
        { type: "put", key: K.endpoint(name), value: endpointRecord(name, n, k + 1, "node-0001", createdAt) },
        { type: "put", key: K.claim(n.id, k + 1), value: name },
      ],
    });
  }
  while ((got[o.writes - 1] as number) < o.watchers) {
    if (nowMs() > end + 120_000) throw new Error("the watchers did not get every write in 150 s");
    await Bun.sleep(1);
  }
  const cpu = cpuUs(o.etcdPid) - cpu0;
  abort.abort();
  await Promise.all(streams);
  await client.delete(PREFIX, { prefix: true });
  client.close();
  return {
    cpuUsPerWrite: cpu / o.writes,
    bytesPerWrite: bytes / o.writes / o.watchers,
    lastMs: last.map((t, k) => t - (t0[k] as number)),
  };
}

const MODES: Record<string, (o: never) => Promise<unknown>> = {
  propagate,
  floor,
  write,
  resync,
  list,
  etcdctl,
  fanout,
};

const [mode, arg] = process.argv.slice(2);
const fn = MODES[mode ?? ""];
if (!fn) {
  process.stderr.write(`usage: cluster-probe.ts ${Object.keys(MODES).join("|")} JSON\n`);
  process.exit(2);
}
try {
  const result = await fn(JSON.parse(arg ?? "{}") as never);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
} catch (e) {
  process.stderr.write(`cluster-probe ${mode}: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
}
