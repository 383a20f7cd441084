/** A client of etcd's v3 JSON gateway (grpc-gateway, HTTP/1.1) on Bun's fetch: key-value
 * reads and writes, transactions, watches that resume across restarts and failover, leases
 * kept alive. Keys are UTF-8 text, values bytes; revisions are numbers, lease ids strings
 * (they pass 2^53). Failures are StratumErrors: ETCD_UNAVAILABLE when no endpoint answered
 * (or none has a leader), INVALID / NOT_FOUND / PERMISSION when etcd refused the request.
 * A write is sent to one endpoint only, unless the failure proves it never left: a write
 * whose answer was lost carries `maybeApplied` (a claim must be read back, not retried). */

import { type ErrorCode, StratumError } from "../errors";
import { GrpcSession, GrpcUnusable } from "./etcd-grpc";

export interface EtcdOptions {
  /** Client URLs of one etcd cluster (http:// or https://), tried in turn. */
  endpoints: string[];
  /** PEM text (not paths): the CA that signed the servers, and this client's certificate. */
  ca?: string;
  cert?: string;
  key?: string;
  /** etcd's own authentication: the token is fetched on first use and again when etcd drops it. */
  username?: string;
  password?: string;
  /** Deadline of one call, every endpoint tried within it. Default 5000. */
  timeoutMs?: number;
  /** A watch that hears nothing for this long asks its endpoint for its status, and moves to
   * another endpoint when that fails (a connection that died without a reset). Default 30000. */
  watchIdleMs?: number;
}

export interface KeyValue {
  key: string;
  value: Uint8Array;
  createRevision: number;
  modRevision: number;
  version: number;
  /** The lease the key is attached to; "0": none. */
  lease: string;
}

export interface RangeOptions {
  /** Every key that starts with `key`. */
  prefix?: boolean;
  /** Keys in [key, end) (instead of prefix). */
  end?: string | Uint8Array;
  /** Read as of this revision (0: the latest). */
  revision?: number;
  limit?: number;
  keysOnly?: boolean;
  countOnly?: boolean;
}

export interface RangeResult {
  kvs: KeyValue[];
  /** The store's revision the range was read at. */
  revision: number;
  /** More keys in the range than `limit` returned. */
  more: boolean;
  /** Keys in the range (all of them, whatever the limit). */
  count: number;
}

export type Compare =
  | {
      key: string;
      target: "version" | "createRevision" | "modRevision";
      op?: CompareOp;
      value: number;
      prefix?: boolean;
    }
  | { key: string; target: "value"; op?: CompareOp; value: string | Uint8Array; prefix?: boolean }
  | { key: string; target: "lease"; op?: CompareOp; value: string; prefix?: boolean };
export type CompareOp = "=" | "!=" | ">" | "<";

export type TxnOp =
  | { type: "put"; key: string; value: string | Uint8Array; lease?: string }
  | ({ type: "range"; key: string } & RangeOptions)
  | { type: "delete"; key: string; prefix?: boolean };

export type TxnResponse =
  | { type: "put"; revision: number }
  | ({ type: "range" } & RangeResult)
  | { type: "delete"; revision: number; deleted: number };

export interface TxnResult {
  succeeded: boolean;
  revision: number;
  responses: TxnResponse[];
}

export interface WatchOptions {
  prefix?: boolean;
  /** Deliver events from this revision on; default: from the revision current when the watch
   * is first established. */
  startRevision?: number;
  prevKv?: boolean;
  /** Ask etcd for progress notifications (an empty response that advances the revision). */
  progressNotify?: boolean;
}

export interface WatchEvent {
  type: "put" | "delete";
  /** A deleted key has only key and modRevision. */
  kv: KeyValue;
  prevKv?: KeyValue;
}

export interface WatchHandlers {
  /** Events in revision order, each revision once; `revision`: the last one among them. */
  onEvents(events: WatchEvent[], revision: number): void;
  /** The revisions to resume from were compacted away: the watch has ended; re-list at the
   * current revision and watch again from the one after it. */
  onCompacted(compactRevision: number): void;
  /** Every failure: transient ones (ETCD_UNAVAILABLE) while the watch retries, and the one
   * that ends it (etcd refused the watch). */
  onError?(e: StratumError): void;
}

export type WatchEnd = "closed" | "compacted" | "failed";

export interface Watch {
  /** Every event up to this revision has been delivered (0 before the watch is established
   * without a start revision). */
  readonly revision: number;
  /** Settles when etcd first confirms the watch (or the watch ends before it does). */
  readonly ready: Promise<void>;
  /** Settles when the watch ends, saying why. */
  readonly done: Promise<WatchEnd>;
  close(): void;
}

export interface KeepAliveHandlers {
  /** The lease is gone (expired or revoked): the keep-alive has stopped. */
  onLost(): void;
  onRenewed?(ttl: number): void;
  /** A renewal that failed; the keep-alive retries. */
  onError?(e: StratumError): void;
}

export interface KeepAlive {
  readonly renewals: number;
  readonly failures: number;
  /** The TTL etcd last granted; 0 once lost. */
  readonly ttl: number;
  stop(): void;
}

export interface EtcdStatus {
  endpoint: string;
  version: string;
  memberId: string;
  leader: string;
  revision: number;
  raftTerm: number;
  raftIndex: number;
  dbSize: number;
}

export interface LeaseTimeToLive {
  id: string;
  /** Seconds left; -1: no such lease (expired or revoked). */
  ttl: number;
  grantedTtl: number;
  keys: string[];
}

/** An etcd failure: its gRPC status code when etcd answered, whether a write may have been
 * applied although its answer was lost, and the compaction revision when it was asked for
 * a revision compacted away. */
export class EtcdError extends StratumError {
  readonly grpcCode?: number;
  readonly maybeApplied: boolean;
  readonly compacted: boolean;

  constructor(
    code: ErrorCode,
    message: string,
    o: { grpcCode?: number; maybeApplied?: boolean; compacted?: boolean; cause?: unknown } = {},
  ) {
    super(code, message, { cause: o.cause });
    this.grpcCode = o.grpcCode;
    this.maybeApplied = o.maybeApplied ?? false;
    this.compacted = o.compacted ?? false;
  }
}

// ---- encoding -------------------------------------------------------------------------------

const enc = new TextEncoder();
const dec = new TextDecoder();
const bytes = (v: string | Uint8Array): Uint8Array => (typeof v === "string" ? enc.encode(v) : v);
const b64 = (v: string | Uint8Array): string => Buffer.from(bytes(v)).toString("base64");
// Buffers (Uint8Arrays) as they come: a listing decodes 100,000 keys and values.
const unb64 = (s: string | undefined): Uint8Array => (s ? Buffer.from(s, "base64") : new Uint8Array());
const int = (s: string | number | undefined): number => (s === undefined ? 0 : Number(s));

/** The end of the range of every key starting with `prefix`: the prefix with its last byte
 * below 0xff incremented and what follows dropped; "\0" (every key) when there is none. */
export function prefixEnd(prefix: string | Uint8Array): Uint8Array {
  const b = Uint8Array.from(bytes(prefix));
  for (let i = b.length - 1; i >= 0; i--) {
    if ((b[i] as number) < 0xff) {
      b[i] = (b[i] as number) + 1;
      return b.slice(0, i + 1);
    }
  }
  return new Uint8Array([0]);
}

interface RawKv {
  key?: string;
  value?: string;
  create_revision?: string;
  mod_revision?: string;
  version?: string;
  lease?: string;
}
interface Header {
  revision?: string;
  member_id?: string;
  raft_term?: string;
}
interface RawRange {
  header?: Header;
  kvs?: RawKv[];
  more?: boolean;
  count?: string;
}

const kvOf = (r: RawKv): KeyValue => ({
  key: r.key ? Buffer.from(r.key, "base64").toString("utf8") : "",
  value: unb64(r.value),
  createRevision: int(r.create_revision),
  modRevision: int(r.mod_revision),
  version: int(r.version),
  lease: r.lease ?? "0",
});

const rangeOf = (r: RawRange): RangeResult => ({
  kvs: (r.kvs ?? []).map(kvOf),
  revision: int(r.header?.revision),
  more: r.more ?? false,
  count: int(r.count),
});

function rangeRequest(key: string, o: RangeOptions = {}): Record<string, unknown> {
  // Every key: from "\0" (etcd refuses an empty key) to the end "\0".
  const req: Record<string, unknown> = { key: b64(o.prefix && !key ? "\0" : key) };
  if (o.prefix) req.range_end = b64(prefixEnd(key));
  else if (o.end !== undefined) req.range_end = b64(o.end);
  if (o.revision) req.revision = String(o.revision);
  if (o.limit) req.limit = String(o.limit);
  if (o.keysOnly) req.keys_only = true;
  if (o.countOnly) req.count_only = true;
  return req;
}

const COMPARE_OP = { "=": "EQUAL", "!=": "NOT_EQUAL", ">": "GREATER", "<": "LESS" } as const;

function compareRequest(c: Compare): Record<string, unknown> {
  const req: Record<string, unknown> = { key: b64(c.key), result: COMPARE_OP[c.op ?? "="] };
  if (c.prefix) req.range_end = b64(prefixEnd(c.key));
  switch (c.target) {
    case "version":
      return { ...req, target: "VERSION", version: String(c.value) };
    case "createRevision":
      return { ...req, target: "CREATE", create_revision: String(c.value) };
    case "modRevision":
      return { ...req, target: "MOD", mod_revision: String(c.value) };
    case "value":
      return { ...req, target: "VALUE", value: b64(c.value) };
    case "lease":
      return { ...req, target: "LEASE", lease: c.value };
  }
}

function opRequest(op: TxnOp): Record<string, unknown> {
  switch (op.type) {
    case "put":
      return { request_put: { key: b64(op.key), value: b64(op.value), ...(op.lease ? { lease: op.lease } : {}) } };
    case "range":
      return { request_range: rangeRequest(op.key, op) };
    case "delete":
      return {
        request_delete_range: { key: b64(op.key), ...(op.prefix ? { range_end: b64(prefixEnd(op.key)) } : {}) },
      };
  }
}

// ---- failures -------------------------------------------------------------------------------

/** Connection failures that prove the request never reached etcd: safe to send elsewhere. */
const NEVER_SENT = new Set([
  "ECONNREFUSED",
  "ConnectionRefused",
  "FailedToOpenSocket",
  "ENOTFOUND",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EADDRNOTAVAIL",
]);

/** gRPC codes that say "this member cannot serve now": another member may. Canceled is what
 * the gateway answers while its member shuts down ("the client connection is closing"). */
const GRPC_UNAVAILABLE = new Set([1 /* canceled */, 4 /* deadline */, 8 /* too many requests */, 14 /* unavailable */]);

function grpcErrorCode(grpc: number): ErrorCode {
  if (GRPC_UNAVAILABLE.has(grpc)) return "ETCD_UNAVAILABLE";
  if (grpc === 3 || grpc === 9 || grpc === 11) return "INVALID";
  if (grpc === 5) return "NOT_FOUND";
  if (grpc === 6) return "CONFLICT";
  if (grpc === 7 || grpc === 16) return "PERMISSION";
  return "INTERNAL";
}

const AUTH_REFUSED = /user name is empty|authentication failed|invalid auth token|permission denied/;

/** etcd's answer to a refused call: {"error","message","code"} (unary) or
 * {"error":{"grpc_code","message"}} (inside a stream). */
function etcdError(what: string, status: number, body: unknown): EtcdError {
  const b = (body ?? {}) as {
    code?: number;
    message?: string;
    error?: string | { grpc_code?: number; message?: string };
  };
  const grpc = typeof b.error === "object" ? b.error.grpc_code : b.code;
  const message = (typeof b.error === "object" ? b.error.message : (b.message ?? b.error)) ?? `HTTP ${status}`;
  // etcd says "invalid argument" when a user or password is wrong or missing.
  const code: ErrorCode =
    grpc === 3 && AUTH_REFUSED.test(message)
      ? "PERMISSION"
      : grpc !== undefined
        ? grpcErrorCode(grpc)
        : status >= 500 || status === 0
          ? "ETCD_UNAVAILABLE"
          : "INTERNAL";
  return new EtcdError(code, `${what}: ${message}`, {
    grpcCode: grpc,
    compacted: message.includes("required revision has been compacted"),
  });
}

const isAuthTokenError = (e: EtcdError): boolean =>
  e.grpcCode === 16 || (e.grpcCode === 3 && /invalid auth token|user name is empty/.test(e.message));

/** Bun's name for a fetch failure ("ECONNREFUSED", "TimeoutError"); DOMExceptions have a numeric code. */
function errCode(e: unknown): string {
  const c = (e as { code?: unknown })?.code;
  return typeof c === "string" ? c : ((e as Error)?.name ?? String(e));
}

// ---- the client -----------------------------------------------------------------------------

interface CallOptions {
  /** A write: sent again elsewhere only when it provably never left. */
  write?: boolean;
  /** Ask this endpoint only. */
  endpoint?: string;
  /** Answered by a member without a leader too (its status says so). */
  leaderless?: boolean;
}

export class EtcdClient {
  readonly endpoints: readonly string[];
  readonly timeoutMs: number;
  readonly watchIdleMs: number;
  readonly #tls?: { ca?: string; cert?: string; key?: string };
  readonly #user?: { name: string; password: string };
  #token?: Promise<string>;
  /** The endpoint that answered last: tried first. */
  #current = 0;
  #closed = new AbortController();
  #closers = new Set<() => void>();

  constructor(o: EtcdOptions) {
    if (!o.endpoints.length) throw new StratumError("INVALID", "etcd: no endpoint given");
    this.endpoints = o.endpoints.map((e) => {
      let u: URL;
      try {
        u = new URL(e);
      } catch {
        throw new StratumError("INVALID", `etcd endpoint ${JSON.stringify(e)} is not a URL (http://HOST:PORT)`);
      }
      if (u.protocol !== "http:" && u.protocol !== "https:")
        throw new StratumError("INVALID", `etcd endpoint ${e}: only http:// and https:// are served`);
      return `${u.protocol}//${u.host}`;
    });
    if ((o.cert === undefined) !== (o.key === undefined))
      throw new StratumError("INVALID", "etcd: a client certificate needs its key, and a key its certificate");
    if ((o.username === undefined) !== (o.password === undefined))
      throw new StratumError("INVALID", "etcd: a user needs a password, and a password a user");
    if (o.ca !== undefined || o.cert !== undefined) this.#tls = { ca: o.ca, cert: o.cert, key: o.key };
    if (o.username !== undefined) this.#user = { name: o.username, password: o.password as string };
    this.timeoutMs = o.timeoutMs ?? 5000;
    this.watchIdleMs = o.watchIdleMs ?? 30_000;
  }

  // ---- transport ----

  #fetchInit(body: unknown, headers: Record<string, string>, signal: AbortSignal, leaderless = false): RequestInit {
    // The gateway passes Grpc-Metadata-* on as gRPC metadata: "hasleader" makes a member
    // without a leader refuse at once ("no leader", safe to send elsewhere) instead of
    // holding a write until etcd's own 7 s timeout, and cancel its watches when it loses
    // the leader (what etcd's Go client does with WithRequireLeader).
    const leader = leaderless ? {} : { "grpc-metadata-hasleader": "true" };
    return {
      method: "POST",
      headers: { "content-type": "application/json", ...leader, ...headers },
      body: JSON.stringify(body),
      signal,
      ...(this.#tls ? { tls: this.#tls } : {}),
    } as RequestInit;
  }

  async #headers(): Promise<Record<string, string>> {
    if (!this.#user) return {};
    this.#token ??= this.#authenticate();
    try {
      return { authorization: await this.#token };
    } catch (e) {
      this.#token = undefined;
      throw e;
    }
  }

  async #authenticate(): Promise<string> {
    const u = this.#user as { name: string; password: string };
    const r = await this.#call<{ token?: string }>(
      "/v3/auth/authenticate",
      { name: u.name, password: u.password },
      {},
      true,
    );
    if (!r.token) throw new EtcdError("PERMISSION", `etcd: authenticate as ${u.name}: no token in the answer`);
    return r.token;
  }

  /** Endpoints in the order to try them: the one that answered last first. */
  #order(only?: string): string[] {
    if (only) return [only];
    const n = this.endpoints.length;
    return Array.from({ length: n }, (_, i) => this.endpoints[(this.#current + i) % n] as string);
  }

  /** One unary call: POST `path`, every endpoint in turn within the deadline. */
  async #call<T>(path: string, body: unknown, o: CallOptions = {}, anonymous = false): Promise<T> {
    if (this.#closed.signal.aborted) throw new EtcdError("INVALID", `etcd ${path}: the client is closed`);
    const deadline = Date.now() + this.timeoutMs;
    const order = this.#order(o.endpoint);
    const tried: string[] = [];
    let reauthenticated = false;
    for (let i = 0; i < order.length; i++) {
      const ep = order[i] as string;
      const left = deadline - Date.now();
      if (left <= 0) break;
      // A read that hangs on one member leaves time for the others; a write that hangs
      // cannot be sent again anyway, so it gets all that is left.
      const budget = o.write ? left : Math.max(left / (order.length - i), Math.min(left, 1000));
      const signal = AbortSignal.any([this.#closed.signal, AbortSignal.timeout(budget)]);
      let res: Response;
      let text: string;
      try {
        const headers = anonymous ? {} : await this.#headers();
        res = await fetch(`${ep}${path}`, this.#fetchInit(body, headers, signal, o.leaderless));
        text = await res.text();
      } catch (e) {
        if (e instanceof EtcdError) throw e; // authentication refused
        if (this.#closed.signal.aborted) throw new EtcdError("INVALID", `etcd ${path}: the client is closed`);
        const code = errCode(e);
        const why = signal.aborted ? `no answer in ${Math.round(budget)} ms` : code;
        if (o.write && !NEVER_SENT.has(code))
          throw new EtcdError("ETCD_UNAVAILABLE", `etcd ${ep}${path}: ${why}; the write may have been applied`, {
            maybeApplied: true,
            cause: e,
          });
        tried.push(`${ep}: ${why}`);
        continue;
      }
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      // A streaming route reports its failure inside a 200: {"error":{"grpc_code",…}}.
      const streamError = typeof (json as { error?: unknown } | undefined)?.error === "object";
      if (res.ok && json !== undefined && !streamError) {
        this.#current = this.endpoints.indexOf(ep);
        if (this.#current < 0) this.#current = 0;
        return json as T;
      }
      const err = etcdError(`etcd ${ep}${path}`, res.status, json ?? { message: text.slice(0, 200) });
      if (this.#user && !anonymous && !reauthenticated && isAuthTokenError(err)) {
        // Simple tokens live in one member's memory: a restart or another member forgets them.
        reauthenticated = true;
        this.#token = undefined;
        i--;
        continue;
      }
      const safeElsewhere = !o.write || /no leader/.test(err.message);
      if (err.code === "ETCD_UNAVAILABLE" && safeElsewhere) {
        tried.push(`${ep}: ${err.message.slice(`etcd ${ep}${path}: `.length)}`);
        continue;
      }
      if (err.code === "ETCD_UNAVAILABLE")
        throw new EtcdError(err.code, `${err.message}; the write may have been applied`, {
          grpcCode: err.grpcCode,
          maybeApplied: true,
        });
      throw err;
    }
    // Every endpoint refused, or the deadline came before some were tried.
    const within = tried.length < order.length ? ` in ${this.timeoutMs} ms` : "";
    throw new EtcdError(
      "ETCD_UNAVAILABLE",
      `etcd ${path}: no endpoint answered${within}${tried.length ? ` (${tried.join("; ")})` : ""}`,
    );
  }

  // ---- key-value ----

  async get(key: string, o: { revision?: number } = {}): Promise<KeyValue | undefined> {
    return (await this.range(key, { revision: o.revision })).kvs[0];
  }

  async range(key: string, o: RangeOptions = {}): Promise<RangeResult> {
    return rangeOf(await this.#call<RawRange>("/v3/kv/range", rangeRequest(key, o)));
  }

  /** Every key under `prefix`, read page by page at one revision (the first page's, or
   * `revision` when given: several lists then read one state). */
  async list(
    prefix: string,
    o: {
      pageSize?: number;
      keysOnly?: boolean;
      revision?: number;
      /** Each page as it comes (the next one is asked for first): the pages are then not kept. */
      onPage?: (kvs: KeyValue[]) => void;
      /** Over etcd's gRPC (etcd-grpc.ts), each page the gateway's when gRPC fails. */
      grpc?: boolean;
    } = {},
  ): Promise<{ kvs: KeyValue[]; revision: number }> {
    const pageSize = o.pageSize ?? 1000;
    const end = prefixEnd(prefix);
    const kvs: KeyValue[] = [];
    const session = o.grpc && !this.grpc.unusable ? this.#grpcSession() : undefined;
    const ask = async (from: string, revision: number) => {
      if (session && !this.grpc.unusable) {
        try {
          const metadata: Record<string, string> = { hasleader: "true" };
          if (this.#user) metadata.token = (await this.#headers()).authorization as string;
          const r = await session.range(
            { key: bytes(from), end, limit: pageSize, revision, keysOnly: o.keysOnly },
            metadata,
          );
          this.grpc.pages++;
          return r;
        } catch (e) {
          if (!(e instanceof GrpcUnusable)) throw e;
          if (e.transport) this.grpc.unusable = e.message;
          this.grpc.fallbacks++;
          this.grpc.last = e.message;
        }
      }
      return this.range(from, { end, revision, limit: pageSize, keysOnly: o.keysOnly });
    };
    try {
      return await this.#list(prefix, o, ask, kvs);
    } finally {
      session?.close();
    }
  }

  /** How listings went over gRPC: pages answered, pages the gateway answered instead (and
   * the last reason), and why gRPC is no longer tried, when it is not. */
  readonly grpc: { pages: number; fallbacks: number; last?: string; unusable?: string } = { pages: 0, fallbacks: 0 };

  #grpcSession(): GrpcSession | undefined {
    try {
      return new GrpcSession(this.#order()[0] as string, this.#tls, this.timeoutMs);
    } catch (e) {
      this.grpc.unusable = `etcd gRPC: ${(e as Error).message}`;
      return undefined;
    }
  }

  async #list(
    prefix: string,
    o: { revision?: number; onPage?: (kvs: KeyValue[]) => void },
    ask: (from: string, revision: number) => Promise<{ kvs: KeyValue[]; revision: number; more: boolean }>,
    kvs: KeyValue[],
  ): Promise<{ kvs: KeyValue[]; revision: number }> {
    let page = await ask(prefix, o.revision ?? 0);
    const revision = o.revision || page.revision;
    for (;;) {
      const last = page.kvs.at(-1);
      // The next page is asked for before this one is handled: etcd works on it meanwhile.
      const next = page.more && last ? ask(`${last.key}\0`, revision) : undefined;
      try {
        if (o.onPage) o.onPage(page.kvs);
        else for (const kv of page.kvs) kvs.push(kv);
      } catch (e) {
        next?.catch(() => {});
        throw e;
      }
      if (!next) return { kvs, revision };
      page = await next;
    }
  }

  async put(key: string, value: string | Uint8Array, o: { lease?: string } = {}): Promise<{ revision: number }> {
    const r = await this.#call<{ header?: Header }>(
      "/v3/kv/put",
      { key: b64(key), value: b64(value), ...(o.lease ? { lease: o.lease } : {}) },
      { write: true },
    );
    return { revision: int(r.header?.revision) };
  }

  async delete(key: string, o: { prefix?: boolean } = {}): Promise<{ revision: number; deleted: number }> {
    const r = await this.#call<{ header?: Header; deleted?: string }>(
      "/v3/kv/deleterange",
      { key: b64(key), ...(o.prefix ? { range_end: b64(prefixEnd(key)) } : {}) },
      { write: true },
    );
    return { revision: int(r.header?.revision), deleted: int(r.deleted) };
  }

  /** If every compare holds, the success ops, else the failure ops: one revision, atomically. */
  async txn(t: { compare?: Compare[]; success?: TxnOp[]; failure?: TxnOp[] }): Promise<TxnResult> {
    const r = await this.#call<{
      header?: Header;
      succeeded?: boolean;
      responses?: Array<{
        response_put?: { header?: Header };
        response_range?: RawRange;
        response_delete_range?: { header?: Header; deleted?: string };
      }>;
    }>(
      "/v3/kv/txn",
      {
        compare: (t.compare ?? []).map(compareRequest),
        success: (t.success ?? []).map(opRequest),
        failure: (t.failure ?? []).map(opRequest),
      },
      { write: true },
    );
    const revision = int(r.header?.revision);
    return {
      succeeded: r.succeeded ?? false,
      revision,
      responses: (r.responses ?? []).map((x): TxnResponse => {
        if (x.response_range) return { type: "range", ...rangeOf(x.response_range) };
        if (x.response_delete_range) return { type: "delete", revision, deleted: int(x.response_delete_range.deleted) };
        return { type: "put", revision };
      }),
    };
  }

  /** Forgets history before `revision`; a watch or read that needs it is told "compacted". */
  async compact(revision: number, o: { physical?: boolean } = {}): Promise<void> {
    await this.#call(
      "/v3/kv/compaction",
      { revision: String(revision), physical: o.physical ?? false },
      { write: true },
    );
  }

  // ---- leases ----

  async leaseGrant(ttl: number): Promise<{ id: string; ttl: number }> {
    const r = await this.#call<{ ID?: string; TTL?: string; error?: string }>(
      "/v3/lease/grant",
      { TTL: String(ttl) },
      { write: true },
    );
    if (r.error || !r.ID) throw new EtcdError("INVALID", `etcd lease grant: ${r.error || "no lease id in the answer"}`);
    return { id: r.ID, ttl: int(r.TTL) };
  }

  async leaseRevoke(id: string): Promise<void> {
    await this.#call("/v3/lease/revoke", { ID: id }, { write: true });
  }

  /** One renewal: the lease's TTL again, or 0 when the lease is gone. */
  async leaseKeepAliveOnce(id: string): Promise<number> {
    // A stream route: one {"result"} line per request line; this sends one.
    const r = await this.#call<{ result?: { TTL?: string } }>("/v3/lease/keepalive", { ID: id });
    return int(r.result?.TTL);
  }

  async leaseTimeToLive(id: string, o: { keys?: boolean } = {}): Promise<LeaseTimeToLive> {
    const r = await this.#call<{ ID?: string; TTL?: string; grantedTTL?: string; keys?: string[] }>(
      "/v3/lease/timetolive",
      { ID: id, keys: o.keys ?? false },
    );
    return {
      id: r.ID ?? id,
      ttl: int(r.TTL),
      grantedTtl: int(r.grantedTTL),
      keys: (r.keys ?? []).map((k) => dec.decode(unb64(k))),
    };
  }

  /** Keeps a lease alive: a renewal every third of its TTL, one request each (the gateway's
   * keep-alive stream needs a full-duplex request that fetch does not make); retried every
   * second, across endpoints, while etcd does not answer; `onLost` once etcd says the lease
   * is gone. */
  keepAlive(id: string, h: KeepAliveHandlers): KeepAlive {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const state = { renewals: 0, failures: 0, ttl: -1 };
    const stop = () => {
      stopped = true;
      clearTimeout(timer);
      this.#closers.delete(stop);
    };
    this.#closers.add(stop);
    const tick = async () => {
      if (stopped) return;
      let next: number;
      try {
        const ttl = await this.leaseKeepAliveOnce(id);
        if (stopped) return;
        if (ttl <= 0) {
          state.ttl = 0;
          stop();
          h.onLost();
          return;
        }
        state.ttl = ttl;
        state.renewals++;
        h.onRenewed?.(ttl);
        next = (ttl * 1000) / 3;
      } catch (e) {
        if (stopped) return;
        state.failures++;
        const err = e instanceof StratumError ? e : new EtcdError("INTERNAL", `etcd keep-alive: ${String(e)}`);
        if (err.code === "NOT_FOUND") {
          state.ttl = 0;
          stop();
          h.onLost();
          return;
        }
        h.onError?.(err);
        next = Math.min(1000, state.ttl > 0 ? (state.ttl * 1000) / 6 : 1000);
      }
      timer = setTimeout(tick, next);
    };
    void tick();
    return {
      get renewals() {
        return state.renewals;
      },
      get failures() {
        return state.failures;
      },
      get ttl() {
        return Math.max(state.ttl, 0);
      },
      stop,
    };
  }

  // ---- watch ----

  /** Watches `key` (or every key under it): events in order, each revision once, across etcd
   * restarts, dropped connections and endpoint failover (re-opened from the last delivered
   * revision + 1); ends on compaction of the revisions it needs, on close, or when etcd
   * refuses the watch itself. */
  watch(key: string, o: WatchOptions, h: WatchHandlers): Watch {
    return new WatchStream(
      {
        timeoutMs: this.timeoutMs,
        idleMs: this.watchIdleMs,
        probe: async (ep) => {
          // A member that answers but has lost its leader serves no new events either.
          if (!Number((await this.status(ep)).leader)) throw new EtcdError("ETCD_UNAVAILABLE", `etcd ${ep}: no leader`);
        },
        order: () => this.#order(),
        headers: () => this.#headers(),
        dropToken: () => {
          this.#token = undefined;
        },
        init: (body, headers, signal) => this.#fetchInit(body, headers, signal),
        answered: (ep) => {
          const i = this.endpoints.indexOf(ep);
          if (i >= 0) this.#current = i;
        },
        failed: (ep) => {
          // The next attempt starts at the endpoint after this one.
          const i = this.endpoints.indexOf(ep);
          if (i >= 0 && i === this.#current) this.#current = (i + 1) % this.endpoints.length;
        },
        closed: this.#closed.signal,
        register: (close) => this.#closers.add(close),
        unregister: (close) => this.#closers.delete(close),
      },
      key,
      o,
      h,
    );
  }

  // ---- maintenance ----

  /** The status of the member at `endpoint` (default: whichever answers first). */
  async status(endpoint?: string): Promise<EtcdStatus> {
    const ep = endpoint === undefined ? undefined : new URL(endpoint).origin;
    const r = await this.#call<{
      header?: Header;
      version?: string;
      dbSize?: string;
      leader?: string;
      raftIndex?: string;
      raftTerm?: string;
    }>("/v3/maintenance/status", {}, { endpoint: ep, leaderless: true });
    return {
      endpoint: ep ?? (this.endpoints[this.#current] as string),
      version: r.version ?? "",
      memberId: r.header?.member_id ?? "",
      leader: r.leader ?? "",
      revision: int(r.header?.revision),
      raftTerm: int(r.raftTerm),
      raftIndex: int(r.raftIndex),
      dbSize: int(r.dbSize),
    };
  }

  /** Ends every watch and keep-alive and aborts the calls in flight. */
  close(): void {
    for (const c of [...this.#closers]) c();
    this.#closed.abort();
  }
}

/** What a watch stream needs of its client. */
interface WatchTransport {
  timeoutMs: number;
  idleMs: number;
  probe(endpoint: string): Promise<unknown>;
  order(): string[];
  headers(): Promise<Record<string, string>>;
  dropToken(): void;
  init(body: unknown, headers: Record<string, string>, signal: AbortSignal): RequestInit;
  answered(endpoint: string): void;
  failed(endpoint: string): void;
  closed: AbortSignal;
  register(close: () => void): void;
  unregister(close: () => void): void;
}

/** One watch: a POST /v3/watch whose answer is newline-delimited JSON, opened again after
 * every failure from the revision after the last delivered one. */
class WatchStream implements Watch {
  #revision: number;
  #closed = false;
  #abort?: AbortController;
  readonly ready: Promise<void>;
  readonly done: Promise<WatchEnd>;
  #setReady!: () => void;
  #t: WatchTransport;

  constructor(
    t: WatchTransport,
    readonly key: string,
    readonly o: WatchOptions,
    readonly h: WatchHandlers,
  ) {
    this.#t = t;
    this.#revision = o.startRevision ? o.startRevision - 1 : 0;
    this.ready = new Promise((r) => {
      this.#setReady = r;
    });
    t.register(this.close);
    this.done = this.#run().finally(() => {
      t.unregister(this.close);
      this.#setReady();
    });
  }

  get revision(): number {
    return this.#revision;
  }

  close = (): void => {
    this.#closed = true;
    this.#abort?.abort();
  };

  #request(): unknown {
    const c: Record<string, unknown> = { key: b64(this.key) };
    if (this.o.prefix) c.range_end = b64(prefixEnd(this.key));
    if (this.#revision > 0) c.start_revision = String(this.#revision + 1);
    if (this.o.prevKv) c.prev_kv = true;
    if (this.o.progressNotify) c.progress_notify = true;
    return { create_request: c };
  }

  async #run(): Promise<WatchEnd> {
    let backoff = 100;
    while (!this.#closed && !this.#t.closed.aborted) {
      const ep = this.#t.order()[0] as string;
      let end: WatchEnd | undefined;
      try {
        end = await this.#once(ep, () => {
          backoff = 100;
        });
      } catch (e) {
        if (this.#closed || this.#t.closed.aborted) break;
        const err =
          e instanceof EtcdError
            ? e
            : new EtcdError("ETCD_UNAVAILABLE", `etcd watch ${this.key} at ${ep}: ${errCode(e)}`, { cause: e });
        this.h.onError?.(err);
        if (err.code !== "ETCD_UNAVAILABLE") return "failed";
        this.#t.failed(ep);
      }
      if (end) return end;
      if (this.#closed) break;
      await Bun.sleep(backoff);
      backoff = Math.min(backoff * 2, 2000);
    }
    return "closed";
  }

  /** One stream: undefined when it ended and should be opened again; the watch's end otherwise. */
  async #once(ep: string, established: () => void): Promise<WatchEnd | undefined> {
    const abort = new AbortController();
    this.#abort = abort;
    if (this.#closed) return "closed";
    const signal = AbortSignal.any([abort.signal, this.#t.closed]);
    const headers = await this.#t.headers();
    // Opening waits no longer than a call; once open, the stream has no deadline.
    const opening = setTimeout(() => abort.abort(), this.#t.timeoutMs);
    let res: Response;
    try {
      res = await fetch(`${ep}/v3/watch`, this.#t.init(this.#request(), headers, signal));
    } finally {
      clearTimeout(opening);
    }
    if (!res.ok) {
      const text = await res.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = { message: text.slice(0, 200) };
      }
      throw etcdError(`etcd watch ${this.key} at ${ep}`, res.status, json);
    }
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    // A quiet stream may be a dead connection that never saw a reset: ask the member.
    let heard = Date.now();
    let probing = false;
    const idle = setInterval(
      async () => {
        if (probing || Date.now() - heard < this.#t.idleMs) return;
        probing = true;
        try {
          await this.#t.probe(ep);
          heard = Date.now();
        } catch {
          abort.abort();
        } finally {
          probing = false;
        }
      },
      Math.max(50, Math.min(this.#t.idleMs / 2, 5000)),
    );
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        heard = Date.now();
        buffered += decoder.decode(value, { stream: true });
        let nl = buffered.indexOf("\n");
        while (nl >= 0) {
          const line = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          nl = buffered.indexOf("\n");
          if (!line) continue;
          const end = this.#message(ep, JSON.parse(line), established);
          if (end) return end;
        }
      }
    } catch (e) {
      if (this.#closed) return "closed";
      if (e instanceof EtcdError) throw e;
      if (abort.signal.aborted)
        throw new EtcdError("ETCD_UNAVAILABLE", `etcd watch ${this.key} at ${ep}: no answer to a status probe`);
      throw e;
    } finally {
      clearInterval(idle);
      abort.abort();
    }
    if (this.#closed) return "closed";
    throw new EtcdError("ETCD_UNAVAILABLE", `etcd watch ${this.key} at ${ep}: the stream ended`);
  }

  /** One line of the stream; the watch's end when it ends it. */
  #message(ep: string, m: unknown, established: () => void): WatchEnd | undefined {
    const msg = m as {
      error?: { grpc_code?: number; message?: string };
      result?: {
        header?: Header;
        created?: boolean;
        canceled?: boolean;
        cancel_reason?: string;
        compact_revision?: string;
        events?: Array<{ type?: "PUT" | "DELETE"; kv?: RawKv; prev_kv?: RawKv }>;
      };
    };
    if (msg.error) throw etcdError(`etcd watch ${this.key} at ${ep}`, 0, msg);
    const r = msg.result;
    if (!r) return undefined;
    const compact = int(r.compact_revision);
    if (r.canceled || compact > 0) {
      if (compact > 0) {
        this.h.onCompacted(compact);
        return "compacted";
      }
      const reason = r.cancel_reason ?? "canceled by etcd";
      const grpc = /code = Unauthenticated/.test(reason) ? 16 : /code = PermissionDenied/.test(reason) ? 7 : undefined;
      const err = new EtcdError(
        grpc === 16 ? "ETCD_UNAVAILABLE" : grpc === 7 ? "PERMISSION" : "INVALID",
        `etcd watch ${this.key} at ${ep}: ${reason}`,
        { grpcCode: grpc },
      );
      if (grpc === 16 || /invalid auth token|user name is empty/.test(reason)) {
        // The member forgot the token (a restart): authenticate again and re-open.
        this.#t.dropToken();
        throw new EtcdError("ETCD_UNAVAILABLE", err.message, { grpcCode: 16 });
      }
      throw err;
    }
    if (r.created) {
      this.#t.answered(ep);
      established();
      if (this.#revision === 0) this.#revision = int(r.header?.revision);
      this.#setReady();
      return undefined;
    }
    const events: WatchEvent[] = [];
    let last = this.#revision;
    for (const e of r.events ?? []) {
      const kv = kvOf(e.kv ?? {});
      // Re-opened streams start after the last delivered revision; this is the guard anyway.
      if (kv.modRevision <= this.#revision) continue;
      events.push({
        type: e.type === "DELETE" ? "delete" : "put",
        kv,
        ...(e.prev_kv ? { prevKv: kvOf(e.prev_kv) } : {}),
      });
      last = Math.max(last, kv.modRevision);
    }
    if (events.length) {
      this.#revision = last;
      try {
        this.h.onEvents(events, last);
      } catch (e) {
        this.h.onError?.(
          new EtcdError("INTERNAL", `etcd watch ${this.key}: onEvents threw: ${(e as Error)?.message ?? e}`),
        );
      }
    } else if (!r.events?.length) {
      // A progress notification: every event up to its revision has been sent.
      const rev = int(r.header?.revision);
      if (rev > this.#revision) this.#revision = rev;
    }
    return undefined;
  }
}
