/** rtnetlink notifications: a netlink socket that joins the multicast groups of links,
 * IPv4 and IPv6 addresses, neighbours (bridge FDB entries among them) and traffic control
 * (qdiscs and filters: a port's cls_bpf programs) and hands back,
 * without ever blocking, what the kernel announced since the last read, decoded. When the
 * kernel had to drop notifications (the socket's buffer overflowed: ENOBUFS) the read says
 * so: what was lost can only be found by looking at the whole state again. */
import { StratumError } from "../errors";
import { NetlinkSocket, setSocketBuffer } from "../sys/os";
import { type Address, decodeAddress } from "./addr";
import { decodeTc, NetlinkDecodeError, parseMessages } from "./codec";
import { NL } from "./constants";
import { decodeLink, type Link } from "./link";
import { decodeNeighbour, type Neighbour } from "./neigh";

export type RtnlEvent =
  | { kind: "link"; op: "new" | "del"; link: Link }
  | { kind: "addr"; op: "new" | "del"; addr: Address }
  | { kind: "neigh"; op: "new" | "del"; neigh: Neighbour }
  /** A qdisc or filter added, replaced or removed on a device (a cls_bpf program swapped among them). */
  | { kind: "tc"; op: "new" | "del"; tc: { object: "qdisc" | "filter"; ifindex: number; parent: number } };

export interface RtnlDrain {
  events: RtnlEvent[];
  /** The kernel dropped notifications since the last read (or one could not be decoded). */
  overflow: boolean;
}

export const DRIFT_GROUPS = [
  NL.RTNLGRP_LINK,
  NL.RTNLGRP_IPV4_IFADDR,
  NL.RTNLGRP_IPV6_IFADDR,
  NL.RTNLGRP_NEIGH,
  NL.RTNLGRP_TC,
];

/** Room for a burst of some thousands of notices (an uplink learning a busy LAN's MACs). */
const RECEIVE_BUFFER = 4 << 20;
const ENOBUFS = 105;
/** At most this many datagrams per drain: a flood cannot hold the event loop (the rest waits
 * for the next drain). */
const MAX_DATAGRAMS = 4096;

/** Decodes one notification; undefined for message types that are not link, address,
 * neighbour, qdisc or filter ones. */
export function decodeEvent(type: number, payload: Buffer): RtnlEvent | undefined {
  switch (type) {
    case NL.RTM_NEWLINK:
    case NL.RTM_DELLINK:
      return { kind: "link", op: type === NL.RTM_NEWLINK ? "new" : "del", link: decodeLink(payload) };
    case NL.RTM_NEWADDR:
    case NL.RTM_DELADDR:
      return { kind: "addr", op: type === NL.RTM_NEWADDR ? "new" : "del", addr: decodeAddress(payload) };
    case NL.RTM_NEWNEIGH:
    case NL.RTM_DELNEIGH:
      return { kind: "neigh", op: type === NL.RTM_NEWNEIGH ? "new" : "del", neigh: decodeNeighbour(payload) };
    case NL.RTM_NEWQDISC:
    case NL.RTM_DELQDISC:
    case NL.RTM_NEWTFILTER:
    case NL.RTM_DELTFILTER: {
      const { hdr } = decodeTc(payload);
      return {
        kind: "tc",
        op: type === NL.RTM_NEWQDISC || type === NL.RTM_NEWTFILTER ? "new" : "del",
        tc: {
          object: type === NL.RTM_NEWQDISC || type === NL.RTM_DELQDISC ? "qdisc" : "filter",
          ifindex: hdr.ifindex,
          parent: hdr.parent >>> 0,
        },
      };
    }
    default:
      return undefined;
  }
}

export class RtnlMonitor implements Disposable {
  readonly #sock: NetlinkSocket;

  /** Listens to `groups` (RTNLGRP_* numbers) of this thread's network namespace. */
  constructor(groups: readonly number[] = DRIFT_GROUPS) {
    this.#sock = new NetlinkSocket(NL.NETLINK_ROUTE);
    try {
      for (const g of groups) this.#sock.setNetlinkOption(NL.NETLINK_ADD_MEMBERSHIP, g);
      setSocketBuffer(this.#sock.fd, "receive", RECEIVE_BUFFER);
    } catch (e) {
      this.#sock.close();
      throw e instanceof StratumError ? e.wrap("listen to rtnetlink notifications") : e;
    }
  }

  /** Everything queued now, decoded, without waiting. */
  drain(): RtnlDrain {
    const events: RtnlEvent[] = [];
    let overflow = false;
    for (let i = 0; i < MAX_DATAGRAMS; i++) {
      let dgram: Buffer | null;
      try {
        dgram = this.#sock.recv(false);
      } catch (e) {
        // The kernel dropped what did not fit; the socket goes on with what comes next.
        if (e instanceof StratumError && e.errno === ENOBUFS) {
          overflow = true;
          continue;
        }
        throw e;
      }
      if (!dgram) return { events, overflow };
      try {
        for (const m of parseMessages(dgram)) {
          const ev = decodeEvent(m.type, m.payload);
          if (ev) events.push(ev);
        }
      } catch (e) {
        if (!(e instanceof NetlinkDecodeError)) throw e;
        overflow = true; // a notice we cannot read is one we missed
      }
    }
    return { events, overflow };
  }

  close(): void {
    this.#sock.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }
}
