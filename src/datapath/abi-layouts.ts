/** Layouts of the datapath's own structs (bpf/include/stm_abi.h), in the one layout form of
 * sys/layout.ts: test/unit/abi.test.ts compiles stm_abi.h and checks each size and offset. */
import type { Field, Layout } from "../sys/layout";

/** Every stm_abi.h layout a codec declares, by its C name. */
export const STM_LAYOUTS: Record<string, Layout> = {};

/** The layout of `struct <name>` of stm_abi.h, registered for the ABI test. */
export function stmLayout<F extends Record<string, Field>>(
  name: string,
  size: number,
  fields: F,
): Layout & { fields: F } {
  const l = { ctype: `struct ${name}`, header: "stm_abi.h", size, fields };
  STM_LAYOUTS[name] = l;
  return l;
}
