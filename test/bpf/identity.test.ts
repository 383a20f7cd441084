/** What makes a loaded program "this build's" for the agent (progFingerprint): its tag, its
 * read-only data and the pinned maps it uses. Two loads of the port object that share their
 * maps are the same; a load with maps of its own is not; the read-only data is read from the
 * program's frozen .rodata map, not assumed. */
import { afterAll, expect, test } from "bun:test";
import { progFingerprint, progIdentity } from "../../src/datapath/attach";
import { loadObject } from "../../src/datapath/objects";
import { type BpfObject, progInfo } from "../../src/sys/bpf";

const objs: BpfObject[] = [];
afterAll(() => {
  for (const o of objs) o.close();
});

const load = (shareWith?: BpfObject) => {
  const o = loadObject("port", {
    prepare: (x) => {
      if (shareWith) for (const m of ["stm_ports", "stm_ct", "stm_profiles"]) x.reuseMap(m, shareWith.map(m).fd);
    },
  });
  objs.push(o);
  return o;
};
const idOf = (o: BpfObject) => progInfo(o.program("stm_port_in").fd).id;

test("two loads sharing the pinned maps are one program; a load with maps of its own is another", () => {
  const a = load();
  const b = load(a);
  const c = load();
  const pinned = new Set(["stm_ports", "stm_ct", "stm_profiles"].map((m) => a.map(m).info.id));
  const ia = progIdentity(idOf(a));
  const ib = progIdentity(idOf(b));
  expect(ia?.tag).toBe(ib?.tag as string);
  expect(ia?.rodata.length).toBeGreaterThan(0); // the constants the instructions load (a lookup table)
  expect(ia?.rodata).toBe(ib?.rodata as string);
  expect(progFingerprint(idOf(a), pinned)).toBe(progFingerprint(idOf(b), pinned));
  expect(progFingerprint(idOf(c), pinned)).not.toBe(progFingerprint(idOf(a), pinned));
  expect(progFingerprint(0x7fffffff, pinned)).toBe(""); // gone
});
