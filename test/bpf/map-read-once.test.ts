/** A map read once for a whole reconcile (BpfMap.readOnce): ensure() and delete() inside it
 * judge by the reading, which the map's own writes keep current, and make the same changes
 * as they would asking the kernel key by key, without asking it. */
import { expect, test } from "bun:test";
import { BPF_MAP_TYPE, BpfMap } from "../../src/sys/bpf";
import { recordMutations } from "../../src/sys/mutations";

const key = (n: number) => Buffer.from(Uint32Array.of(n).buffer);
const val = (n: number) => Buffer.from(BigUint64Array.of(BigInt(n)).buffer);

test("inside readOnce: a right entry is not written, a wrong or missing one is, an absent key's delete is no change", () => {
  using m = BpfMap.create(BPF_MAP_TYPE.HASH, "stm_t_once", 4, 8, 64);
  for (let i = 0; i < 10; i++) m.update(key(i), val(i));
  const { result, changes } = recordMutations(() =>
    m.readOnce(() => {
      const same = m.ensure(key(3), val(3)); // right: no write
      const fixed = m.ensure(key(4), val(40)); // wrong: written
      const added = m.ensure(key(20), val(20)); // missing: written
      const again = m.ensure(key(20), val(20)); // the reading follows the write
      const gone = m.delete(key(5)); // there: deleted
      const none = m.delete(key(5)); // the reading follows the delete
      const never = m.delete(key(33)); // never there
      return { same, fixed, added, again, gone, none, never };
    }),
  );
  expect(result).toEqual({
    same: false,
    fixed: true,
    added: true,
    again: false,
    gone: true,
    none: false,
    never: false,
  });
  expect(changes).toEqual(["update map stm_t_once", "update map stm_t_once", "delete from map stm_t_once"]);
  // The kernel holds what was written.
  expect(m.lookup(key(4))?.equals(val(40))).toBe(true);
  expect(m.lookup(key(20))?.equals(val(20))).toBe(true);
  expect(m.lookup(key(5))).toBeNull();
  // Outside it, ensure asks the kernel again: a change behind the map's back is seen.
  m.update(key(3), val(99));
  expect(m.ensure(key(3), val(3))).toBe(true);
});

test("a batch write inside readOnce drops the reading: later calls ask the kernel", () => {
  using m = BpfMap.create(BPF_MAP_TYPE.HASH, "stm_t_once2", 4, 8, 64);
  m.update(key(1), val(1));
  m.readOnce(() => {
    m.updateBatch(Buffer.concat([key(1), key(2)]), Buffer.concat([val(10), val(2)]));
    expect(m.ensure(key(1), val(10))).toBe(false); // the kernel's value, not the reading's 1
    expect(m.delete(key(2))).toBe(true);
  });
});
