/** The agent's side of the gateway HA engine's thread (ha-worker.ts): it starts the thread,
 * sends it the groups, their holders and the nodes' management addresses whenever the mirror
 * may have changed them (and every second), relays its log lines and role changes, and asks it
 * for status. The BGP speaker reads the path prepend it last reported. */
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import type { EtcdOptions } from "../cluster/etcd-client";
import { type GroupSource, type GroupStatus, groupStatus } from "../gateway/ha/service";
import type { FromWorker, ToWorker } from "./ha-worker";

export interface HaClientOptions {
  node: string;
  mgmtAddress: string | null;
  etcd: EtcdOptions;
  vipFd: number;
  natFd: number;
  source: GroupSource;
  mgmtAddresses(): Map<string, string | null>;
  /** After any change of role (and of membership): the BGP speaker announces again. */
  changed(): void;
  log(level: "info" | "warn" | "error", msg: string): void;
}

const REFRESH_MS = 1000;
const ASK_MS = 2000;

export class HaClient {
  readonly #o: HaClientOptions;
  #w: Worker;
  #stopping = false;
  #prepend = 0;
  #id = 0;
  readonly #asked = new Map<number, (m: Extract<FromWorker, { type: "status" }>) => void>();
  #ready?: () => void;
  #stopped?: () => void;
  #timer: ReturnType<typeof setInterval> | undefined;
  nat = { sent: 0, received: 0 };

  constructor(o: HaClientOptions) {
    this.#o = o;
    this.#w = this.#spawn();
  }

  #spawn(): Worker {
    const w = new Worker(workerPath());
    w.on("message", (m: FromWorker) => this.#message(m));
    w.on("error", (e: unknown) => this.#o.log("error", `gateway HA thread: ${(e as Error).message}`));
    // A thread that ended on its own is started again: without it the node's holds lapse (the
    // datapath stops answering for the VIPs) and it never takes part again.
    w.on("exit", () => {
      if (this.#stopping) return;
      this.#o.log("error", "gateway HA thread ended: starting it again");
      this.#w = this.#spawn();
      void this.start();
    });
    return w;
  }

  #post(m: ToWorker): void {
    this.#w.postMessage(m);
  }

  #message(m: FromWorker): void {
    switch (m.type) {
      case "ready":
        this.#ready?.();
        return;
      case "log":
        this.#o.log(m.level, m.msg);
        return;
      case "changed":
        this.#prepend = m.prepend;
        this.#o.changed();
        return;
      case "status":
        this.nat = m.nat;
        this.#asked.get(m.id)?.(m);
        this.#asked.delete(m.id);
        return;
      case "stopped":
        this.#stopped?.();
        return;
    }
  }

  async start(): Promise<void> {
    const ready = new Promise<void>((res) => {
      this.#ready = res;
    });
    const { node, mgmtAddress, etcd, vipFd, natFd } = this.#o;
    this.#post({ type: "init", node, mgmtAddress, etcd, vipFd, natFd });
    await Promise.race([ready, Bun.sleep(5000)]);
    this.sync();
    clearInterval(this.#timer);
    this.#timer = setInterval(() => this.sync(), REFRESH_MS);
  }

  /** Sends the groups, their holders and the management addresses as the mirror has them. */
  sync(): void {
    const groups = this.#o.source.groups();
    this.#post({
      type: "groups",
      groups,
      active: groups.flatMap((g) => {
        const a = this.#o.source.active(g.name);
        return a ? [[g.name, a] as [string, typeof a]] : [];
      }),
      mgmt: [...this.#o.mgmtAddresses()],
    });
  }

  /** The AS_PATH prepend of this node's BGP announcements (a standby's worse path). */
  prepend(): number {
    return this.#prepend;
  }

  /** The engine's view of every group; the cluster's records alone if the thread does not answer. */
  async status(): Promise<GroupStatus[]> {
    const id = ++this.#id;
    const answer = new Promise<GroupStatus[]>((res) => this.#asked.set(id, (m) => res(m.groups)));
    this.#post({ type: "status", id });
    const late = Bun.sleep(ASK_MS).then(() => {
      this.#asked.delete(id);
      return groupStatus(this.#o.source, this.#o.node);
    });
    return Promise.race([answer, late]);
  }

  /** Active groups let go and release their leases (at most a second and a half), then the thread ends. */
  async stop(): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#timer);
    const stopped = new Promise<void>((res) => {
      this.#stopped = res;
    });
    this.#post({ type: "stop" });
    await Promise.race([stopped, Bun.sleep(1500)]);
    await this.#w.terminate();
  }
}

/** The thread's module: beside this one from source; in the compiled binary, where the build
 * put it (an entry point of its own, under the binary's root). */
function workerPath(): string | URL {
  if (!import.meta.url.includes("/$bunfs/")) return new URL("./ha-worker.ts", import.meta.url);
  return `${dirname(fileURLToPath(import.meta.url))}/agent/ha-worker.ts`;
}
