/** Synchronous etcd calls for the store: the services are synchronous over their store, and in
 * a cluster a store write is an etcd transaction. The call runs on a worker thread with its own
 * client; this thread waits for the answer (one round trip to etcd, a few milliseconds; at
 * most the client's deadline when etcd does not answer, then ETCD_UNAVAILABLE). Only writes
 * come this way; reads are served from the node's mirror, watches and leases run async. */

import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { MessageChannel, receiveMessageOnPort, Worker } from "node:worker_threads";
import type { ErrorCode } from "../errors";
import {
  type Compare,
  EtcdError,
  type EtcdOptions,
  type RangeOptions,
  type RangeResult,
  type TxnOp,
  type TxnResult,
} from "./etcd-client";

export class EtcdSync {
  readonly #worker: Worker;
  readonly #waitMs: number;
  /** Calls made, and calls that failed because etcd did not answer. */
  calls = 0;
  unavailable = 0;

  constructor(readonly options: EtcdOptions) {
    this.#worker = new Worker(workerPath());
    this.#worker.unref();
    this.#worker.postMessage({ init: options });
    // The client's deadline covers every endpoint; a little more for the thread hop.
    this.#waitMs = (options.timeoutMs ?? 5000) + 1000;
  }

  #call<T>(op: string, args: unknown[]): T {
    this.calls++;
    const { port1, port2 } = new MessageChannel();
    const sab = new SharedArrayBuffer(4);
    this.#worker.postMessage({ sab, port: port2, op, args }, [port2 as never]);
    const waited = Atomics.wait(new Int32Array(sab), 0, 0, this.#waitMs);
    const m = receiveMessageOnPort(port1)?.message as
      | { ok: true; result: T }
      | { ok: false; code: ErrorCode; message: string; maybeApplied: boolean }
      | undefined;
    port1.close();
    if (!m) {
      this.unavailable++;
      throw this.#refused(`no answer in ${this.#waitMs} ms (${waited})`, op === "txn");
    }
    if (m.ok) return m.result;
    if (m.code === "ETCD_UNAVAILABLE") {
      this.unavailable++;
      throw this.#refused(m.message, m.maybeApplied);
    }
    throw new EtcdError(m.code, m.message, { maybeApplied: m.maybeApplied });
  }

  /** The one line an operator gets for a change while etcd is away. */
  #refused(detail: string, maybeApplied: boolean): EtcdError {
    return new EtcdError(
      "ETCD_UNAVAILABLE",
      `the cluster's etcd (${this.options.endpoints.join(",")}) cannot be reached, so nothing was changed${maybeApplied ? " (unless etcd got the change and its answer was lost: list to see)" : ""}; reads are answered from this node's copy and the datapath keeps enforcing [${detail}]`,
      { maybeApplied },
    );
  }

  range(key: string, o: RangeOptions = {}): RangeResult {
    return this.#call("range", [key, o]);
  }

  list(prefix: string): { kvs: RangeResult["kvs"]; revision: number } {
    return this.#call("list", [prefix]);
  }

  txn(t: { compare?: Compare[]; success?: TxnOp[]; failure?: TxnOp[] }): TxnResult {
    return this.#call("txn", [t]);
  }

  close(): void {
    void this.#worker.terminate();
  }
}

/** The worker's module: beside this one from source; in the compiled binary, where the build
 * put it (an entry point of its own, under the binary's root). */
function workerPath(): string | URL {
  if (!import.meta.url.includes("/$bunfs/")) return new URL("./etcd-worker.ts", import.meta.url);
  return `${dirname(fileURLToPath(import.meta.url))}/cluster/etcd-worker.ts`;
}
