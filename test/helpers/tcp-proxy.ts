/** A TCP relay on loopback between a client and one server, to fail the path between them
 * while both stay up: cut() resets every connection and refuses new ones (a partition that
 * the client sees), stall() keeps the connections but lets no byte through either way (a
 * partition that it does not), restore() forwards again. */
import type { Socket, TCPSocketListener } from "bun";

interface Pair {
  client: Socket<Side>;
  server?: Socket<Side>;
  /** Bytes from the client not yet written to the server (it was connecting, or full). */
  toServer: Uint8Array[];
  toClient: Uint8Array[];
}

interface Side {
  pair: Pair;
  role: "client" | "server";
}

const live = new Set<TcpProxy>();
process.on("exit", () => {
  for (const p of [...live]) p.destroy();
});

export class TcpProxy {
  readonly port: number;
  #listener?: TCPSocketListener<Side>;
  #pairs = new Set<Pair>();
  #mode: "open" | "stalled" | "cut" = "open";

  private constructor(
    readonly targetHost: string,
    readonly targetPort: number,
    port: number,
  ) {
    this.port = port;
  }

  /** A relay on a free loopback port to host:port. */
  static start(target: string): TcpProxy {
    const u = new URL(target);
    const p = new TcpProxy(u.hostname, Number(u.port), 0);
    p.#listen(0);
    live.add(p);
    return p;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get connections(): number {
    return this.#pairs.size;
  }

  #listen(port: number): void {
    const self = this;
    this.#listener = Bun.listen<Side>({
      hostname: "127.0.0.1",
      port,
      socket: {
        open(client) {
          const pair: Pair = { client, toServer: [], toClient: [] };
          client.data = { pair, role: "client" };
          self.#pairs.add(pair);
          void Bun.connect<Side>({
            hostname: self.targetHost,
            port: self.targetPort,
            socket: {
              open(server) {
                server.data = { pair, role: "server" };
                pair.server = server;
                self.#flush(pair);
              },
              data(_s, chunk) {
                pair.toClient.push(new Uint8Array(chunk));
                self.#flush(pair);
              },
              drain() {
                self.#flush(pair);
              },
              close() {
                self.#drop(pair);
              },
              error() {
                self.#drop(pair);
              },
              connectError() {
                self.#drop(pair);
              },
            },
          }).catch(() => self.#drop(pair));
        },
        data(s, chunk) {
          s.data.pair.toServer.push(new Uint8Array(chunk));
          self.#flush(s.data.pair);
        },
        drain(s) {
          self.#flush(s.data.pair);
        },
        close(s) {
          self.#drop(s.data.pair);
        },
        error(s) {
          self.#drop(s.data.pair);
        },
      },
    });
    (this as { port: number }).port = this.#listener.port;
  }

  /** Writes what is queued each way, as far as the sockets take it (nothing while stalled). */
  #flush(pair: Pair): void {
    if (this.#mode !== "open" || !pair.server) return;
    for (const [q, to] of [
      [pair.toServer, pair.server],
      [pair.toClient, pair.client],
    ] as const) {
      while (q.length) {
        const head = q[0] as Uint8Array;
        const n = to.write(head);
        if (n < head.length) {
          q[0] = head.subarray(Math.max(n, 0));
          break;
        }
        q.shift();
      }
    }
  }

  #drop(pair: Pair): void {
    if (!this.#pairs.delete(pair)) return;
    pair.client.end();
    pair.server?.end();
  }

  /** Resets every connection and refuses new ones until restore(). */
  cut(): void {
    this.#mode = "cut";
    this.#listener?.stop(true);
    this.#listener = undefined;
    for (const p of [...this.#pairs]) {
      this.#pairs.delete(p);
      p.client.terminate();
      p.server?.terminate();
    }
  }

  /** Keeps every connection open and accepts new ones, but passes no byte until restore(). */
  stall(): void {
    this.#mode = "stalled";
  }

  /** Forwards again (a stalled connection gets what was held back; a cut one is gone). */
  restore(): void {
    const was = this.#mode;
    this.#mode = "open";
    if (was === "cut") this.#listen(this.port);
    for (const p of this.#pairs) this.#flush(p);
  }

  destroy(): void {
    this.cut();
    live.delete(this);
  }
}
