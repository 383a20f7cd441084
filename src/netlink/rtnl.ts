/** An rtnetlink connection: sends one request at a time, matches replies by sequence
 * number, turns NLMSG_ERROR into StratumError (errno, the kernel's extended-ACK text,
 * and the caller's context), and collects multi-part dumps. */
import { ERRNO, StratumError, sysError } from "../errors";
import { mutated } from "../sys/mutations";
import { inNetns, NetlinkSocket, setSocketBuffer } from "../sys/os";
import { decodeError, type MessageBuilder, type NlMessage, parseMessages } from "./codec";
import { NL } from "./constants";

/** The error an NLMSG_ERROR reports, with the caller's context and the kernel's own reason;
 * undefined for an ACK. */
function errorOf(m: NlMessage, context: string): StratumError | undefined {
  const { error, message } = decodeError(m);
  return error === 0 ? undefined : sysError(message ? `${context}: ${message}` : context, -error, "NETLINK");
}

/** What a GET answers about something that is not there. */
const isAbsent = (e: unknown): boolean =>
  e instanceof StratumError && (e.errno === ERRNO.ENODEV || e.errno === ERRNO.ENOENT);

/** Requests a getMany datagram carries: their answers fit a socket's receive buffer many times. */
const GET_BATCH = 64;

export class Rtnl implements Disposable {
  readonly #sock: NetlinkSocket;
  #seq = Math.floor(Math.random() * 0x7fffffff);

  /** A connection to this namespace's rtnetlink, or, with `netns` (name or path), to that
   * namespace's. `receiveBuffer`: the socket's receive buffer in bytes (tests of answers that
   * overrun it). */
  constructor(opts: { netns?: string; receiveBuffer?: number } = {}) {
    this.#sock = opts.netns
      ? inNetns(netnsPath(opts.netns), () => new NetlinkSocket(NL.NETLINK_ROUTE))
      : new NetlinkSocket(NL.NETLINK_ROUTE);
    if (opts.receiveBuffer) setSocketBuffer(this.#sock.fd, "receive", opts.receiveBuffer);
    // Extended ACKs give the kernel's own reason ("Unknown device type"), capped ACKs keep replies small.
    this.#sock.setNetlinkOption(NL.NETLINK_EXT_ACK, 1);
    this.#sock.setNetlinkOption(NL.NETLINK_CAP_ACK, 1);
  }

  /** Sends a request that expects an ACK; throws with `context` on a kernel error. Returns any replies (NLM_F_ECHO). */
  do(msg: MessageBuilder, context: string): NlMessage[] {
    const out = this.#exchange(msg, NL.NLM_F_REQUEST | NL.NLM_F_ACK, context);
    mutated(context);
    return out;
  }

  /** Sends a dump request and returns every message of the dump. */
  dump(msg: MessageBuilder, context: string): NlMessage[] {
    return this.#exchange(msg, NL.NLM_F_REQUEST | NL.NLM_F_DUMP, context);
  }

  /** A single GET (no dump) answered by one message, or null when the kernel says ENOENT/ENODEV. */
  get(msg: MessageBuilder, context: string): NlMessage | null {
    try {
      const out = this.#exchange(msg, NL.NLM_F_REQUEST, context);
      return out[0] ?? null;
    } catch (e) {
      if (isAbsent(e)) return null;
      throw e;
    }
  }

  /** Single GETs sent together (up to GET_BATCH a datagram; the kernel answers each in
   * turn), each answered in its place by one message, null (ENOENT/ENODEV), or the error it
   * met: one device's fault does not hide the others' answers. For questions about thousands
   * of devices, where a round trip each is most of the cost. */
  getMany(msgs: MessageBuilder[], context: (i: number) => string): Array<NlMessage | null | StratumError> {
    const out: Array<NlMessage | null | StratumError | undefined> = new Array(msgs.length).fill(undefined);
    for (let start = 0; start < msgs.length; start += GET_BATCH) {
      const end = Math.min(msgs.length, start + GET_BATCH);
      const bySeq = new Map<number, number>();
      const parts: Buffer[] = [];
      for (let i = start; i < end; i++) {
        const seq = ++this.#seq >>> 0;
        bySeq.set(seq, i);
        const bytes = (msgs[i] as MessageBuilder).finish(seq);
        bytes.writeUInt16LE(bytes.readUInt16LE(6) | NL.NLM_F_REQUEST, 6);
        parts.push(bytes);
      }
      this.#sock.send(Buffer.concat(parts));
      let left = end - start;
      while (left > 0) {
        let dgram: Buffer | null;
        try {
          dgram = this.#sock.recv(true);
        } catch (e) {
          // Answers overran the socket's buffer and some were dropped: the unanswered ones are
          // asked again one at a time (late answers to the batch are skipped by sequence).
          if (!(e instanceof StratumError && e.errno === ERRNO.ENOBUFS)) throw e;
          // The queue drained first: while it is full the kernel drops every answer, silently.
          this.#drain();
          for (let i = start; i < end; i++)
            if (out[i] === undefined)
              try {
                out[i] = this.get(msgs[i] as MessageBuilder, context(i));
              } catch (err) {
                if (!(err instanceof StratumError)) throw err;
                out[i] = err;
              }
          break;
        }
        if (!dgram) continue;
        for (const m of parseMessages(dgram)) {
          const i = bySeq.get(m.seq);
          if (i === undefined || out[i] !== undefined || m.type === NL.NLMSG_NOOP) continue;
          if (m.type === NL.NLMSG_ERROR) {
            const err = errorOf(m, context(i));
            out[i] = err && !isAbsent(err) ? err : null;
          } else out[i] = m;
          left--;
        }
      }
    }
    return out as Array<NlMessage | null | StratumError>;
  }

  /** Reads and drops whatever the socket holds (answers no one waits for any more). */
  #drain(): void {
    for (;;)
      try {
        if (!this.#sock.recv(false)) return;
      } catch (e) {
        if (!(e instanceof StratumError && e.errno === ERRNO.ENOBUFS)) throw e;
      }
  }

  #exchange(msg: MessageBuilder, extraFlags: number, context: string): NlMessage[] {
    const seq = ++this.#seq >>> 0;
    const bytes = msg.finish(seq);
    bytes.writeUInt16LE(bytes.readUInt16LE(6) | extraFlags, 6);
    this.#sock.send(bytes);
    const isDump = (extraFlags & NL.NLM_F_DUMP) === NL.NLM_F_DUMP;
    const wantsAck = (extraFlags & NL.NLM_F_ACK) !== 0;
    const out: NlMessage[] = [];
    for (;;) {
      const dgram = this.#sock.recv(true);
      if (!dgram) continue;
      for (const m of parseMessages(dgram)) {
        if (m.seq !== seq) continue; // a stale reply of an earlier, abandoned request
        if (m.type === NL.NLMSG_ERROR) {
          const err = errorOf(m, context);
          if (err) throw err;
          return out;
        }
        if (m.type === NL.NLMSG_DONE) {
          if (m.flags & NL.NLM_F_DUMP_INTR)
            throw sysError(`${context}: dump interrupted by a concurrent change`, 4, "NETLINK");
          return out;
        }
        if (m.type === NL.NLMSG_NOOP) continue;
        out.push(m);
        if (!isDump && !wantsAck && !(m.flags & NL.NLM_F_MULTI)) return out;
      }
    }
  }

  close(): void {
    this.#sock.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

let shared: Rtnl | undefined;
/** A process-wide connection for callers that do not manage their own. */
export function rtnl(): Rtnl {
  if (!shared) shared = new Rtnl();
  return shared;
}

/** `/run/netns/NAME` for a bare name, else the path as given. */
export function netnsPath(ns: string): string {
  return ns.startsWith("/") ? ns : `/run/netns/${ns}`;
}
