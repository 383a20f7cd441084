/** The protobuf of etcd's Range, by hand: a request's bytes as etcd's own definitions give
 * them, and an answer decoded field by field (unknown fields skipped, 64-bit lease ids exact,
 * a truncated answer refused). */
import { expect, test } from "bun:test";
import { decodeRangeResponse, encodeRangeRequest } from "../../src/cluster/etcd-grpc";

const enc = new TextEncoder();
function varint(n: bigint): number[] {
  const out: number[] = [];
  let v = BigInt.asUintN(64, n);
  while (v > 127n) {
    out.push(Number(v & 127n) | 128);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}
const tag = (no: number, wire: number) => varint(BigInt((no << 3) | wire));
const bytesField = (no: number, b: Uint8Array | number[]) => [...tag(no, 2), ...varint(BigInt(b.length)), ...b];
const intField = (no: number, n: bigint) => [...tag(no, 0), ...varint(n)];

test("a RangeRequest: key 1, range_end 2, limit 3, revision 4, keys_only 8; zero fields left out", () => {
  const r = encodeRangeRequest({ key: enc.encode("a"), end: enc.encode("b"), limit: 5, revision: 300, keysOnly: true });
  expect([...r]).toEqual([0x0a, 1, 0x61, 0x12, 1, 0x62, 0x18, 5, 0x20, 0xac, 0x02, 0x40, 1]);
  const bare = encodeRangeRequest({ key: enc.encode("k"), end: new Uint8Array(), limit: 0, revision: 0 });
  expect([...bare]).toEqual([0x0a, 1, 0x6b]);
});

test("a RangeResponse: the header's revision, every key-value, more; unknown fields skipped", () => {
  const lease = (1n << 62n) + 1n;
  const kv = [
    ...bytesField(1, enc.encode("/stratum/v1/é")),
    ...intField(2, 11n),
    ...intField(3, 12n),
    ...intField(4, 2n),
    ...bytesField(5, [0, 1, 255]),
    ...intField(6, lease),
    ...intField(15, 99n), // a field this build does not know
  ];
  const header = [...intField(1, (1n << 63n) + 5n), ...intField(2, 7n), ...intField(3, 123456789n), ...intField(4, 3n)];
  const msg = Buffer.from([
    ...bytesField(1, header),
    ...bytesField(2, kv),
    ...bytesField(2, bytesField(1, enc.encode("b"))),
    ...intField(3, 1n),
    ...intField(4, 2n),
    ...[...tag(9, 5), 1, 2, 3, 4], // fixed32, unknown
  ]);
  const r = decodeRangeResponse(msg);
  expect(r.revision).toBe(123456789);
  expect(r.more).toBe(true);
  expect(r.kvs).toHaveLength(2);
  expect(r.kvs[0]).toEqual({
    key: "/stratum/v1/é",
    value: Buffer.from([0, 1, 255]),
    createRevision: 11,
    modRevision: 12,
    version: 2,
    lease: lease.toString(),
  });
  expect(r.kvs[1]).toMatchObject({ key: "b", value: new Uint8Array(), lease: "0" });
  // A value is a copy: the answer's buffer can go.
  msg.fill(0);
  expect([...(r.kvs[0]?.value ?? [])]).toEqual([0, 1, 255]);
  expect(() => decodeRangeResponse(Buffer.from([...tag(2, 2), 10, 1, 2]))).toThrow("runs past the end");
});
