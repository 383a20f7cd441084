/** A real etcd (Debian's etcd-server) for tests and benchmarks: one member, its own data
 * directory, listening on loopback of this namespace or on an address inside a network
 * namespace; or a cluster of several members on loopback (EtcdServer.cluster). Stopped by
 * its PID; restart keeps the data (the same cluster comes back at a later revision).
 * Everything it made goes on destroy(), on process exit, pass or fail. */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";

export const ETCD = "/usr/bin/etcd";

export interface EtcdServerOptions {
  /** Network namespace (a name under /run/netns) to run in; default: this one. */
  netns?: string;
  /** Address to listen on; default 127.0.0.1. */
  host?: string;
  /** Client port; default: a free one on loopback, 2379 inside a namespace. */
  clientPort?: number;
  /** Extra etcd flags (e.g. "--auto-compaction-retention=1"). */
  args?: string[];
  /** Serve clients over TLS with these files (PEM), requiring a client certificate signed by ca. */
  tls?: { cert: string; key: string; ca: string };
}

/** A member of a cluster: its name, peer port and the whole cluster's --initial-cluster. */
interface MemberOptions extends EtcdServerOptions {
  name: string;
  peerPort: number;
  initialCluster: () => string;
}

const live = new Set<EtcdServer>();
process.on("exit", () => {
  for (const s of [...live]) s.destroy();
});

/** Bun reports a process ended by a signal with signalCode, its exitCode staying null. */
const running = (p: Subprocess) => p.exitCode === null && p.signalCode === null;

/** A loopback TCP port nobody listens on now (the OS picks it). */
function freePort(): number {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = s.port;
  s.stop(true);
  return port;
}

export class EtcdServer {
  readonly dataDir: string;
  readonly host: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly netns?: string;
  readonly name: string;
  readonly tls?: { cert: string; key: string; ca: string };
  #initialCluster?: () => string;
  #args: string[];
  #proc?: Subprocess;
  #log = "";

  private constructor(o: EtcdServerOptions | MemberOptions) {
    this.netns = o.netns;
    this.host = o.host ?? "127.0.0.1";
    this.clientPort = o.clientPort ?? (o.netns ? 2379 : freePort());
    this.peerPort = "peerPort" in o ? o.peerPort : o.netns ? 2380 : freePort();
    this.name = "name" in o ? o.name : "stm";
    this.#initialCluster = "initialCluster" in o ? o.initialCluster : undefined;
    this.tls = o.tls;
    this.dataDir = mkdtempSync(join(tmpdir(), "stm-etcd-"));
    this.#args = o.args ?? [];
    live.add(this);
  }

  /** Starts a fresh member and waits until it answers. */
  static async start(o: EtcdServerOptions = {}): Promise<EtcdServer> {
    const s = new EtcdServer(o);
    try {
      await s.resume();
    } catch (e) {
      s.destroy();
      throw e;
    }
    return s;
  }

  /** Starts a cluster of `size` members on loopback (their elections need them all up, so
   * they start together) and waits until every member answers. */
  static async cluster(size: number, o: Pick<EtcdServerOptions, "args"> = {}): Promise<EtcdCluster> {
    const peers = Array.from({ length: size }, (_, i) => ({ name: `stm${i}`, peerPort: freePort() }));
    const initialCluster = () => peers.map((p) => `${p.name}=http://127.0.0.1:${p.peerPort}`).join(",");
    const members = peers.map((p) => new EtcdServer({ ...o, ...p, initialCluster }));
    const cluster = new EtcdCluster(members);
    try {
      await Promise.all(members.map((m) => m.resume()));
    } catch (e) {
      cluster.destroy();
      throw e;
    }
    return cluster;
  }

  /** The client URL, as an agent or a client is given it. */
  get url(): string {
    return `${this.tls ? "https" : "http"}://${this.host}:${this.clientPort}`;
  }

  get pid(): number | undefined {
    return this.#proc && running(this.#proc) ? this.#proc.pid : undefined;
  }

  /** etcd's own output so far (for a failing test's message); it is never printed otherwise. */
  get log(): string {
    return this.#log;
  }

  /** The last lines of the log, for an error message. */
  #tail(lines = 10): string {
    return this.#log.trimEnd().split("\n").slice(-lines).join("\n");
  }

  /** Starts the member again on its data (after stop or kill) and waits until it answers. */
  async resume(timeoutMs = 15_000): Promise<void> {
    if (this.pid) return;
    const peer = `http://${this.host}:${this.peerPort}`;
    const tls = this.tls
      ? [
          "--cert-file",
          this.tls.cert,
          "--key-file",
          this.tls.key,
          "--trusted-ca-file",
          this.tls.ca,
          "--client-cert-auth",
        ]
      : [];
    const cmd = [
      ETCD,
      "--name",
      this.name,
      "--data-dir",
      this.dataDir,
      "--listen-client-urls",
      this.url,
      "--advertise-client-urls",
      this.url,
      "--listen-peer-urls",
      peer,
      "--initial-advertise-peer-urls",
      peer,
      "--initial-cluster",
      this.#initialCluster?.() ?? `${this.name}=${peer}`,
      "--initial-cluster-state",
      "new",
      "--logger",
      "zap",
      "--log-level",
      "warn",
      ...tls,
      ...this.#args,
    ];
    const proc = Bun.spawn(this.netns ? ["ip", "netns", "exec", this.netns, ...cmd] : cmd, {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    this.#proc = proc;
    const dec = new TextDecoder();
    for (const s of [proc.stdout, proc.stderr])
      void (async () => {
        for await (const c of s) this.#log = (this.#log + dec.decode(c)).slice(-20_000);
      })();
    const end = Date.now() + timeoutMs;
    for (;;) {
      if (!running(proc)) throw new Error(`etcd exited ${proc.exitCode ?? proc.signalCode}:\n${this.#tail()}`);
      if (await this.healthy()) return;
      if (Date.now() > end) throw new Error(`etcd did not answer at ${this.url} in ${timeoutMs} ms:\n${this.#tail()}`);
      await Bun.sleep(50);
    }
  }

  /** GET /health answers {"health":"true"} (asked from inside its namespace when it has one). */
  async healthy(): Promise<boolean> {
    if (this.netns) {
      const tls = this.tls ? ["--cacert", this.tls.ca, "--cert", this.tls.cert, "--key", this.tls.key] : [];
      const p = Bun.spawnSync([
        "ip",
        "netns",
        "exec",
        this.netns,
        "curl",
        "-sf",
        "-m",
        "1",
        ...tls,
        `${this.url}/health`,
      ]);
      return p.exitCode === 0 && p.stdout.toString().includes('"true"');
    }
    try {
      const tls = this.tls && {
        ca: readFileSync(this.tls.ca, "utf8"),
        cert: readFileSync(this.tls.cert, "utf8"),
        key: readFileSync(this.tls.key, "utf8"),
      };
      const r = await fetch(`${this.url}/health`, { signal: AbortSignal.timeout(1000), tls } as RequestInit);
      return r.ok && (await r.text()).includes('"true"');
    } catch {
      return false;
    }
  }

  /** Ends the member by its PID (SIGTERM: a clean stop; SIGKILL: a crash) and waits for it. */
  async stop(signal: "SIGTERM" | "SIGKILL" = "SIGTERM"): Promise<void> {
    const p = this.#proc;
    if (!p || !running(p)) return;
    p.kill(signal);
    await p.exited;
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.resume();
  }

  /** Kills the member and removes its data. Synchronous: safe in afterAll and on exit. */
  destroy(): void {
    const p = this.#proc;
    if (p && running(p)) {
      // Removing the data under a dying process is safe: it writes nothing after SIGKILL.
      p.kill("SIGKILL");
    }
    rmSync(this.dataDir, { recursive: true, force: true });
    live.delete(this);
  }
}

/** Members of one etcd cluster on loopback; destroy() removes them all. */
export class EtcdCluster {
  constructor(readonly members: EtcdServer[]) {}

  get urls(): string[] {
    return this.members.map((m) => m.url);
  }

  destroy(): void {
    for (const m of this.members) m.destroy();
  }
}
