/** The thread behind EtcdSync: an EtcdClient of its own that runs one call at a time for the
 * agent's main thread, which waits on a shared word until the answer is on the port. */
import { parentPort } from "node:worker_threads";
import { StratumError } from "../errors";
import { EtcdClient, EtcdError, type EtcdOptions } from "./etcd-client";

interface Call {
  sab: SharedArrayBuffer;
  port: MessagePort;
  op: "range" | "txn" | "status" | "list";
  args: unknown[];
}

let client: EtcdClient | undefined;

parentPort?.on("message", async (m: { init: EtcdOptions } | Call) => {
  if ("init" in m) {
    client = new EtcdClient(m.init);
    return;
  }
  let answer: unknown;
  try {
    if (!client) throw new StratumError("INTERNAL", "etcd worker: not initialised");
    const fn = (client as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[m.op];
    if (typeof fn !== "function") throw new StratumError("INTERNAL", `etcd worker: no call ${m.op}`);
    answer = { ok: true, result: await fn.apply(client, m.args) };
  } catch (e) {
    const err = e instanceof StratumError ? e : new StratumError("INTERNAL", String(e));
    answer = {
      ok: false,
      code: err.code,
      message: err.message,
      maybeApplied: e instanceof EtcdError ? e.maybeApplied : false,
    };
  }
  m.port.postMessage(answer);
  m.port.close();
  const word = new Int32Array(m.sab);
  Atomics.store(word, 0, 1);
  Atomics.notify(word, 0);
});
