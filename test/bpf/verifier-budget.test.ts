/** Verifier budget: every program of every embedded object is loaded, and the number of
 * instructions the verifier processed to accept it (bpf_prog_info.verified_insns, all
 * subprograms included) must stay under the budget written here. A change that makes a
 * program much harder to verify fails this test, so the growth is seen and decided on
 * instead of found when the kernel's limit (1,000,000) is hit.
 *
 * Raising a budget is a deliberate edit in this file, with the new count in the commit
 * body. The counts are printed on every run. */
import { afterAll, describe, expect, test } from "bun:test";
import { loadObject, OBJECTS, type ObjectName } from "../../src/datapath/objects";
import { type BpfObject, progInfo } from "../../src/sys/bpf";

/** The kernel refuses a program past this many processed instructions. */
const KERNEL_LIMIT = 1_000_000;

/** Budget per program: the count when the budget was set, plus about 12 % headroom.
 * Counts when set (kernel 6.18, clang 14): port_in 214,203, port_out 209,794,
 * uplink_in 207,910, uplink_out 205,759; with masquerading: uplink_in 242,180, uplink_out
 * 256,696, uplink_nat_in 207,026; with north-south over the overlay: overlay_out 1,602; with
 * microsegmentation: port_in 219,243, port_out 220,466, overlay_out 2,568; the SRv6 carrier:
 * srv6_out 180, srv6_in 190; the links between user bridges: link_out 341, link_in 32, extbr_in 2, and
 * port_out 230,768, uplink_out 270,784, overlay_out 2,654 reading where a frame came from; the
 * macvtap lower link: mvl_out 298 (a drop's accounting); AF_XDP: xsk_rx 26. */
const BUDGET: Record<ObjectName, Record<string, number>> = {
  port: {
    stm_port_in: 240_000,
    stm_port_out: 235_000,
    stm_uplink_in: 271_000,
    stm_uplink_out: 287_000,
    stm_uplink_nat_in: 232_000,
    stm_overlay_in: 5_000,
    stm_overlay_out: 3_500,
    stm_underlay_in: 2_000,
    stm_srv6_out: 500,
    stm_srv6_in: 500,
    stm_link_out: 500,
    stm_link_in: 200,
    stm_extbr_in: 50,
    stm_mvl_out: 350,
    stm_xdp_lb: 6_200,
  },
  xsk: {
    stm_xsk_rx: 100,
  },
  counter: {
    stm_count_tc_in: 100,
    stm_count_tc_out: 100,
    stm_sample_tc_in: 150,
    stm_count_xdp: 100,
  },
  baseline: {
    stm_empty_tc: 10,
    stm_drop_tc: 10,
    stm_empty_xdp: 10,
  },
};

const loaded: BpfObject[] = [];
afterAll(() => {
  for (const o of loaded) o.close();
});

describe("verified instruction count of each program stays under its budget", () => {
  for (const name of Object.keys(OBJECTS) as ObjectName[]) {
    test(`${name}: every program has a budget and stays under it`, () => {
      const obj = loadObject(name);
      loaded.push(obj);
      const counts: Record<string, number> = {};
      for (const p of obj.programs()) counts[p.name] = progInfo(p.fd).verifiedInsns;
      console.log(
        `verified instructions, ${name}: ${Object.entries(counts)
          .map(([p, n]) => `${p} ${n} / ${BUDGET[name][p] ?? "no budget"}`)
          .join(", ")}`,
      );
      // A new program needs a budget; a removed one takes its budget with it.
      expect(Object.keys(counts).sort()).toEqual(Object.keys(BUDGET[name]).sort());
      for (const [prog, n] of Object.entries(counts)) {
        // 0 would mean the kernel did not report the count: the test would then prove nothing.
        expect({ prog, counted: n > 0 }).toEqual({ prog, counted: true });
        expect({ prog, n, overBudget: n > (BUDGET[name][prog] as number) }).toEqual({ prog, n, overBudget: false });
        expect(BUDGET[name][prog] as number).toBeLessThan(KERNEL_LIMIT);
      }
    });
  }
});
