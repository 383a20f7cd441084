/** Inside a fresh namespace: a veth's cls_bpf filters in each state a port goes through (no
 * clsact qdisc, the qdisc without filters, one direction, both, one detached again), asked
 * through Stratum's rtnetlink socket and through libbpf, with the ids the programs have. */
import { attachTc, clsProgId, clsProgIds, detachCls } from "../../../src/datapath/attach";
import { loadObject } from "../../../src/datapath/objects";
import * as nl from "../../../src/netlink";
import { progInfo } from "../../../src/sys/bpf";

export default function () {
  nl.createVeth("q0", "q1", { up: true });
  const ifindex = nl.mustGetLink("q0").index;
  const bare = nl.mustGetLink("q1").index; // never gets a qdisc
  const sock = new nl.Rtnl();
  // A receive buffer too small for a batch's answers: some are dropped, asked again one by one.
  const tight = new nl.Rtnl({ receiveBuffer: 2048 });
  const obj = loadObject("baseline");
  try {
    // Many at once as well (more than one datagram of questions): the port, a device without
    // a qdisc and one that does not exist, over and over.
    const many = [...Array(150).keys()].map((i) => [ifindex, bare, 999_999][i % 3] as number);
    const ask = () =>
      Object.fromEntries(
        (["ingress", "egress"] as const).map((dir) => {
          const one = clsProgId(ifindex, dir, sock);
          const agree = [sock, tight].every((s) =>
            clsProgIds(many, dir, s).every((id, i) => id === (i % 3 === 0 ? one : 0)),
          );
          return [dir, { netlink: one, libbpf: clsProgId(ifindex, dir), many: agree }];
        }),
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
    tight.close();
  }
}
