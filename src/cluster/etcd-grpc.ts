/** etcd's Range over gRPC: HTTP/2 (node:http2) and the few protobuf messages it takes,
 * encoded by hand. The JSON gateway re-encodes every key and value of an answer as JSON,
 * which costs etcd about ten times the CPU of its own gRPC answer for a listing of 100,000
 * keys (docs/scale.md): a node joining, or listing again after a compaction, lists over
 * gRPC; everything else (writes, watches, leases) stays on the gateway. Only successes are
 * taken from here: an error of any kind makes the caller ask the gateway, whose errors,
 * failover and re-authentication are the client's. */
import http2 from "node:http2";
import type { KeyValue } from "./etcd-client";

export interface GrpcRange {
  key: Uint8Array;
  end: Uint8Array;
  limit: number;
  revision: number;
  keysOnly?: boolean;
}

export interface GrpcRangeResult {
  revision: number;
  kvs: KeyValue[];
  more: boolean;
}

// ---- protobuf, the little of it a Range needs ----

function varint(out: number[], n: number): void {
  let v = n;
  while (v > 127) {
    out.push((v % 128) | 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
}

function bytesField(out: number[], no: number, b: Uint8Array): void {
  varint(out, (no << 3) | 2);
  varint(out, b.length);
  for (const x of b) out.push(x);
}

function intField(out: number[], no: number, n: number): void {
  if (!n) return;
  varint(out, no << 3);
  varint(out, n);
}

/** etcdserverpb.RangeRequest: key 1, range_end 2, limit 3, revision 4, keys_only 8. */
export function encodeRangeRequest(r: GrpcRange): Uint8Array {
  const out: number[] = [];
  bytesField(out, 1, r.key);
  if (r.end.length) bytesField(out, 2, r.end);
  intField(out, 3, r.limit);
  intField(out, 4, r.revision);
  intField(out, 8, r.keysOnly ? 1 : 0);
  return Uint8Array.from(out);
}

class Reader {
  pos = 0;
  constructor(
    readonly buf: Buffer,
    readonly end = buf.length,
  ) {}
  more(): boolean {
    return this.pos < this.end;
  }
  /** A varint as a number (exact up to 2^53: revisions, versions, lengths). */
  varint(): number {
    let n = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new Error("protobuf: a varint runs past the end");
      const b = this.buf[this.pos++] as number;
      n += (b & 127) * mul;
      if (b < 128) return n;
      mul *= 128;
    }
    throw new Error("protobuf: a varint of more than 10 bytes");
  }
  /** A varint exactly, as text (lease ids pass 2^53). */
  bigVarint(): string {
    let n = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new Error("protobuf: a varint runs past the end");
      const b = this.buf[this.pos++] as number;
      n |= BigInt(b & 127) << shift;
      if (b < 128) return BigInt.asIntN(64, n).toString();
      shift += 7n;
    }
    throw new Error("protobuf: a varint of more than 10 bytes");
  }
  bytes(): Buffer {
    const len = this.varint();
    if (this.pos + len > this.end) throw new Error("protobuf: a field runs past the end");
    const b = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return b;
  }
  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 2) this.bytes();
    else if (wire === 1) this.pos += 8;
    else if (wire === 5) this.pos += 4;
    else throw new Error(`protobuf: wire type ${wire}`);
  }
}

/** mvccpb.KeyValue: key 1, create_revision 2, mod_revision 3, version 4, value 5, lease 6. */
function decodeKv(b: Buffer): KeyValue {
  const r = new Reader(b);
  const kv: KeyValue = { key: "", value: new Uint8Array(), createRevision: 0, modRevision: 0, version: 0, lease: "0" };
  while (r.more()) {
    const tag = r.varint();
    const no = Math.floor(tag / 8);
    const wire = tag & 7;
    if (no === 1 && wire === 2) kv.key = r.bytes().toString("utf8");
    else if (no === 5 && wire === 2)
      kv.value = Buffer.from(r.bytes()); // its own memory, not the answer's
    else if (no === 2 && wire === 0) kv.createRevision = r.varint();
    else if (no === 3 && wire === 0) kv.modRevision = r.varint();
    else if (no === 4 && wire === 0) kv.version = r.varint();
    else if (no === 6 && wire === 0) kv.lease = r.bigVarint();
    else r.skip(wire);
  }
  return kv;
}

/** etcdserverpb.RangeResponse: header 1 (its revision: 3), kvs 2, more 3, count 4. */
export function decodeRangeResponse(b: Buffer): GrpcRangeResult {
  const r = new Reader(b);
  const out: GrpcRangeResult = { revision: 0, kvs: [], more: false };
  while (r.more()) {
    const tag = r.varint();
    const no = Math.floor(tag / 8);
    const wire = tag & 7;
    if (no === 1 && wire === 2) {
      const hr = new Reader(r.bytes());
      while (hr.more()) {
        const t = hr.varint();
        if (Math.floor(t / 8) === 3 && (t & 7) === 0) out.revision = hr.varint();
        else hr.skip(t & 7);
      }
    } else if (no === 2 && wire === 2) out.kvs.push(decodeKv(r.bytes()));
    else if (no === 3 && wire === 0) out.more = r.varint() !== 0;
    else r.skip(wire);
  }
  return out;
}

// ---- gRPC over HTTP/2 ----

/** A failure of the gRPC path (transport, or an error status): the caller asks the gateway. */
export class GrpcUnusable extends Error {
  constructor(
    message: string,
    /** True when the transport itself failed (not an answer of etcd's): gRPC is not tried again. */
    readonly transport: boolean,
  ) {
    super(message);
  }
}

/** One HTTP/2 connection to one etcd endpoint, for the pages of a listing. */
export class GrpcSession {
  readonly #s: http2.ClientHttp2Session;
  #failed?: Error;

  constructor(
    endpoint: string,
    tls: { ca?: string; cert?: string; key?: string } | undefined,
    readonly timeoutMs: number,
  ) {
    this.#s = http2.connect(endpoint, tls ? { ...tls, ALPNProtocols: ["h2"] } : {});
    this.#s.on("error", (e) => {
      this.#failed = e;
    });
  }

  /** One Range; `metadata`: the auth token and the leader requirement. */
  range(req: GrpcRange, metadata: Record<string, string>): Promise<GrpcRangeResult> {
    if (this.#failed) return Promise.reject(new GrpcUnusable(`etcd gRPC: ${this.#failed.message}`, true));
    const msg = encodeRangeRequest(req);
    const frame = Buffer.alloc(5 + msg.length);
    frame.writeUInt32BE(msg.length, 1);
    frame.set(msg, 5);
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (m: string, transport: boolean) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        stream.close();
        reject(new GrpcUnusable(`etcd gRPC Range: ${m}`, transport));
      };
      const stream = this.#s.request({
        ":method": "POST",
        ":path": "/etcdserverpb.KV/Range",
        "content-type": "application/grpc",
        te: "trailers",
        ...metadata,
      });
      const timer = setTimeout(() => fail(`no answer in ${this.timeoutMs} ms`, true), this.timeoutMs);
      const chunks: Buffer[] = [];
      let status: string | undefined;
      let message = "";
      stream.on("response", (h) => {
        if (h[":status"] !== 200) fail(`HTTP status ${h[":status"]}`, true);
        else if (!String(h["content-type"] ?? "").startsWith("application/grpc"))
          fail(`content type ${h["content-type"]}`, true);
        // A trailers-only answer (an error) has its status here.
        if (h["grpc-status"] !== undefined) {
          status = String(h["grpc-status"]);
          message = String(h["grpc-message"] ?? "");
        }
      });
      stream.on("trailers", (t) => {
        status = String(t["grpc-status"] ?? status);
        message = String(t["grpc-message"] ?? message);
      });
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("error", (e) => fail(e.message, true));
      stream.on("end", () => {
        if (settled) return;
        if (status !== "0")
          return fail(`status ${status ?? "missing"}${message ? `: ${decodeURIComponent(message)}` : ""}`, false);
        const body = Buffer.concat(chunks);
        if (body.length < 5) return fail("an empty answer", true);
        if (body[0] !== 0) return fail("a compressed answer", true);
        const len = body.readUInt32BE(1);
        if (body.length < 5 + len) return fail("a short answer", true);
        let out: GrpcRangeResult;
        try {
          out = decodeRangeResponse(body.subarray(5, 5 + len));
        } catch (e) {
          return fail((e as Error).message, true);
        }
        settled = true;
        clearTimeout(timer);
        resolve(out);
      });
      stream.end(frame);
    });
  }

  close(): void {
    this.#s.close();
  }
}
