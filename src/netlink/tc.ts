/** cls_bpf filters through rtnetlink: the id of the program a filter runs, asked on a socket
 * the caller keeps (libbpf's bpf_tc_query opens and closes a netlink socket for every
 * question, most of the cost when a reconcile asks about thousands of ports). */
import { ERRNO, StratumError } from "../errors";
import { decodeTc, encodeTc, MessageBuilder, type NlMessage } from "./codec";
import { NL } from "./constants";
import type { Rtnl } from "./rtnl";

/** clsact's parents (TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS / TC_H_MIN_EGRESS)). */
const CLSACT_INGRESS = 0xfffffff2;
const CLSACT_EGRESS = 0xfffffff3;
/** htons(ETH_P_ALL), the protocol libbpf gives its filters. */
const ETH_P_ALL_BE = 0x0300;

function filterQuery(
  ifindex: number,
  dir: "ingress" | "egress",
  o: { handle: number; priority: number },
): MessageBuilder {
  const b = new MessageBuilder(
    NL.RTM_GETTFILTER,
    0,
    encodeTc({
      family: NL.AF_UNSPEC,
      ifindex,
      handle: o.handle,
      parent: dir === "ingress" ? CLSACT_INGRESS : CLSACT_EGRESS,
      info: (o.priority << 16) | ETH_P_ALL_BE,
    }),
  );
  b.str(NL.TCA_KIND, "bpf");
  return b;
}

/** The program id in a filter's message, 0 for none. */
function progIdOf(m: NlMessage | null): number {
  if (!m || m.type !== NL.RTM_NEWTFILTER) return 0;
  const { attrs } = decodeTc(m.payload);
  if (attrs.str(NL.TCA_KIND) !== "bpf") return 0;
  return attrs.nested(NL.TCA_OPTIONS)?.u32(NL.TCA_BPF_ID) ?? 0;
}

/** No clsact qdisc on the device: the kernel answers EINVAL. */
const noQdisc = (e: unknown): boolean => e instanceof StratumError && e.errno === ERRNO.EINVAL;

/** The program id of the cls_bpf filter (handle, priority) at `dir` of `ifindex`, or 0 when
 * there is none (no such filter, or no clsact qdisc); what libbpf's bpf_tc_query answers. */
export function clsBpfProgId(
  nl: Rtnl,
  ifindex: number,
  dir: "ingress" | "egress",
  o: { handle: number; priority: number },
): number {
  try {
    return progIdOf(nl.get(filterQuery(ifindex, dir, o), `query cls_bpf filter (${dir}) on ifindex ${ifindex}`));
  } catch (e) {
    if (noQdisc(e)) return 0;
    throw e;
  }
}

/** clsBpfProgId for many devices, asked together (Rtnl.getMany): each device's id in its
 * place, or the error its question met. */
export function clsBpfProgIds(
  nl: Rtnl,
  ifindexes: number[],
  dir: "ingress" | "egress",
  o: { handle: number; priority: number },
): Array<number | StratumError> {
  const answers = nl.getMany(
    ifindexes.map((i) => filterQuery(i, dir, o)),
    (i) => `query cls_bpf filter (${dir}) on ifindex ${ifindexes[i]}`,
  );
  return answers.map((a) => (a instanceof StratumError ? (noQdisc(a) ? 0 : a) : progIdOf(a)));
}
