/** Inside a fresh namespace: a veth's cls_bpf filters in each state a port goes through (no
 * clsact qdisc, the qdisc without filters, one direction, both, one detached again), asked
 * through Stratum's rtnetlink socket and through libbpf, with the ids the programs have. */
import { attachTc, clsProgId, detachCls } from "../../../src/datapath/attach";
import { loadObject } from "../../../src/datapath/objects";
import * as nl from "../../../src/netlink";
import { progInfo } from "../../../src/sys/bpf";

export default function () {
  nl.createVeth("q0", "q1", { up: true });
  const ifindex = nl.mustGetLink("q0").index;
  const sock = new nl.Rtnl();
  const obj = loadObject("baseline");
  try {
    const ask = () =>
      Object.fromEntries(
        (["ingress", "egress"] as const).map((dir) => [
          dir,
          { netlink: clsProgId(ifindex, dir, sock), libbpf: clsProgId(ifindex, dir) },
        ]),
      );
    const states: Record<string, unknown> = { none: ask() };
    const empty = obj.program("stm_empty_tc");
    const drop = obj.program("stm_drop_tc");
    attachTc(empty.fd, ifindex, "ingress", { mode: "cls_bpf" });
    states.ingress = ask();
    attachTc(drop.fd, ifindex, "egress", { mode: "cls_bpf" });
    states.both = ask();
    detachCls(ifindex, "ingress");
    states.egressOnly = ask();
    return { states, ids: { empty: progInfo(empty.fd).id, drop: progInfo(drop.fd).id } };
  } finally {
    obj.close();
    sock.close();
  }
}
