/** A VM for tests, without a VMM: what a guest's network stack does, done by hand on a queue of
 * the endpoint's tap (TapQueue: /dev/net/tun attached by name, as QEMU holds it). It asks for
 * a DHCP lease, answers ARP requests for its address and echo requests to it, resolves and
 * pings others, and sends any frame a test crafts (a spoofed one). Every frame it does not
 * answer itself is kept for `expectFrame`. */

import { join } from "node:path";
import { ETH_P, IPPROTO } from "../../src/datapath/packet";
import { DHCP4, type Dhcp4Message, encodeDhcp4, OPT, parseDhcp4 } from "../../src/dhcp/v4";
import { bytesToIp, bytesToMac } from "../../src/netlink/codec";
import { acceptFds, closeFd, inNetns, listenUnix, TapQueue } from "../../src/sys/os";
import type { TestAgent } from "./agent";
import { clientMessage } from "./dhcp4";
import { arp, eth4, ethArp, icmp, ipv4, udp } from "./frames";
import { BINARY } from "./netns";

const BROADCAST = "ff:ff:ff:ff:ff:ff";

/** A queue a VM sends and receives frames on: a tap's (TapQueue), an AF_XDP socket's (XskQueue). */
export interface FrameQueue {
  send(frame: Uint8Array): void;
  /** Whatever a queue holds back for a batch (AF_XDP's TX kick), sent now. */
  flush?(): void;
  recv(): Buffer | null;
  close(): void;
}

export class TestVm implements Disposable {
  /** The queues this VM holds (a tap's one, each of a multi-queue tap's, AF_XDP sockets). */
  readonly queues: FrameQueue[];
  /** The queue frames are sent on. */
  sendQueue = 0;
  ip: string | undefined;
  /** Frames seen and not answered by the VM itself, oldest first. */
  readonly seen: Buffer[] = [];
  #seq = 0;

  /** Opens `queues` queues of `tap` (more than one: a multi-queue tap, IFF_MULTI_QUEUE) inside
   * the network namespace at `nsPath` (the agent's). */
  constructor(
    tap: string,
    nsPath: string,
    readonly mac: string,
    o: { queues?: number; device?: string; frameQueues?: FrameQueue[] } = {},
  ) {
    const n = o.queues ?? 1;
    if (o.frameQueues) {
      this.queues = o.frameQueues;
      return;
    }
    this.queues = inNetns(nsPath, () => {
      const qs: TapQueue[] = [];
      try {
        for (let i = 0; i < n; i++) qs.push(new TapQueue(tap, { multiQueue: n > 1, device: o.device }));
      } catch (e) {
        for (const q of qs) q.close();
        throw e;
      }
      return qs;
    });
  }

  send(frame: Uint8Array): void {
    (this.queues[this.sendQueue] as FrameQueue).send(frame);
  }

  /** Frames read so far, by the queue they came on. */
  readonly received: number[] = [];

  #next(): Buffer | null {
    for (const [i, q] of this.queues.entries()) {
      const f = q.recv();
      if (f) {
        this.received[i] = (this.received[i] ?? 0) + 1;
        return f;
      }
    }
    return null;
  }

  /** Reads what waits; answers ARP and echo requests for the VM's address, keeps the rest. */
  #pump(): void {
    for (let f = this.#next(); f; f = this.#next()) {
      const type = f.readUInt16BE(12);
      if (type === ETH_P.ARP && this.ip && f.readUInt16BE(20) === 1 && bytesToIp(f.subarray(38, 42)) === this.ip) {
        const asker = bytesToMac(f.subarray(22, 28));
        this.send(
          ethArp(
            this.mac,
            asker,
            arp({
              op: "reply",
              senderMac: this.mac,
              senderIp: this.ip,
              targetMac: asker,
              targetIp: bytesToIp(f.subarray(28, 32)),
            }),
          ),
        );
        continue;
      }
      if (type === ETH_P.IP && this.ip && f[23] === IPPROTO.ICMP && f[34] === 8) {
        const l3 = f.subarray(14);
        const dst = bytesToIp(l3.subarray(16, 20));
        if (dst === this.ip) {
          const src = bytesToIp(l3.subarray(12, 16));
          const ihl = ((l3[0] as number) & 0x0f) * 4;
          const req = l3.subarray(ihl);
          const reply = icmp(
            { src: this.ip, dst: src, type: 0, id: req.readUInt16BE(4), seq: req.readUInt16BE(6) },
            req.subarray(8),
          );
          this.send(
            eth4(this.mac, bytesToMac(f.subarray(6, 12)), ipv4({ src: this.ip, dst: src, proto: IPPROTO.ICMP }, reply)),
          );
          continue;
        }
      }
      this.seen.push(f);
    }
  }

  /** Waits up to `ms` for a frame `match` takes (taking it out of `seen`); the VM answers
   * what it answers meanwhile. */
  async expectFrame(match: (f: Buffer) => boolean, ms = 2000): Promise<Buffer | undefined> {
    const end = performance.now() + ms;
    for (;;) {
      this.#pump();
      const i = this.seen.findIndex(match);
      if (i >= 0) return this.seen.splice(i, 1)[0];
      if (performance.now() > end) return undefined;
      await Bun.sleep(2);
    }
  }

  /** Keeps answering for `ms` (a container pinging the VM). */
  async serve(ms: number): Promise<void> {
    const end = performance.now() + ms;
    while (performance.now() < end) {
      this.#pump();
      await Bun.sleep(2);
    }
  }

  #dhcpFrame(m: Dhcp4Message): Buffer {
    return eth4(
      this.mac,
      BROADCAST,
      ipv4(
        { src: "0.0.0.0", dst: "255.255.255.255", proto: IPPROTO.UDP },
        udp({ src: "0.0.0.0", dst: "255.255.255.255", sport: 68, dport: 67 }, encodeDhcp4(m)),
      ),
    );
  }

  async #dhcpReply(type: number, xid: number): Promise<Dhcp4Message | undefined> {
    const f = await this.expectFrame((f) => {
      if (f.readUInt16BE(12) !== ETH_P.IP || f[23] !== IPPROTO.UDP || f.readUInt16BE(36) !== 68) return false;
      try {
        const m = parseDhcp4(f.subarray(42));
        return m.xid === xid && m.options.get(OPT.MSG_TYPE)?.[0] === type;
      } catch {
        return false;
      }
    });
    return f ? parseDhcp4(f.subarray(42)) : undefined;
  }

  /** DISCOVER, OFFER, REQUEST, ACK with the VM's MAC: the address leased (the VM's from then
   * on), or undefined when no OFFER or ACK came. Like a real client it sends the DISCOVER
   * again when no OFFER comes (three tries): a lost datagram is not a refusal. */
  async dhcp(): Promise<string | undefined> {
    const xid = 0x5000 + (this.#seq++ & 0xfff);
    let offer: Dhcp4Message | undefined;
    for (let i = 0; i < 3 && !offer; i++) {
      this.send(this.#dhcpFrame(clientMessage(this.mac, { xid })));
      offer = await this.#dhcpReply(DHCP4.OFFER, xid);
    }
    if (!offer) return undefined;
    const server = offer.options.get(OPT.SERVER_ID) as Uint8Array;
    let ack: Dhcp4Message | undefined;
    for (let i = 0; i < 3 && !ack; i++) {
      this.send(
        this.#dhcpFrame(
          clientMessage(this.mac, {
            xid,
            options: new Map([
              [OPT.MSG_TYPE, Uint8Array.of(DHCP4.REQUEST)],
              [OPT.REQUESTED_IP, Uint8Array.from(offer.yiaddr.split(".").map(Number))],
              [OPT.SERVER_ID, server],
            ]),
          }),
        ),
      );
      ack = await this.#dhcpReply(DHCP4.ACK, xid);
    }
    if (!ack) return undefined;
    this.ip = ack.yiaddr;
    return this.ip;
  }

  /** The MAC that answers an ARP request for `ip` (from the VM's address), or undefined. */
  async resolve(ip: string, from = { mac: this.mac, ip: this.ip as string }): Promise<string | undefined> {
    this.send(
      ethArp(from.mac, BROADCAST, arp({ op: "request", senderMac: from.mac, senderIp: from.ip, targetIp: ip })),
    );
    const f = await this.expectFrame(
      (f) => f.readUInt16BE(12) === ETH_P.ARP && f.readUInt16BE(20) === 2 && bytesToIp(f.subarray(28, 32)) === ip,
      1000,
    );
    return f ? bytesToMac(f.subarray(22, 28)) : undefined;
  }

  /** One echo request to `ip` (at `dstMac`), from the VM's address and MAC unless `from` says
   * otherwise (a spoofed one); whether the reply came within `ms`. */
  async ping(ip: string, dstMac: string, from: { mac?: string; ip?: string } = {}, ms = 1000): Promise<boolean> {
    const src = from.ip ?? (this.ip as string);
    const id = 0x4242;
    const seq = this.#seq++ & 0xffff;
    const req = icmp({ src, dst: ip, type: 8, id, seq }, Buffer.from("stratum test vm"));
    this.send(eth4(from.mac ?? this.mac, dstMac, ipv4({ src, dst: ip, proto: IPPROTO.ICMP }, req)));
    const f = await this.expectFrame(
      (f) =>
        f.readUInt16BE(12) === ETH_P.IP &&
        f[23] === IPPROTO.ICMP &&
        f[34] === 0 &&
        bytesToIp(f.subarray(26, 30)) === ip &&
        f.readUInt16BE(38) === id &&
        f.readUInt16BE(40) === seq,
      ms,
    );
    return f !== undefined;
  }

  close(): void {
    for (const q of this.queues) q.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

/** `endpoint handoff NAME` (the CLI in its own process) to a socket listened on here, in `dir`;
 * what arrived: the line of JSON and the descriptors (the caller's to close). */
export async function handoffHere(
  A: TestAgent,
  name: string,
  dir: string,
  extra: string[] = [],
): Promise<{ about: any; fds: number[] }> {
  const path = join(dir, `${name}-${process.pid}.sock`);
  const l = listenUnix(path);
  try {
    const cli = Bun.spawn([BINARY, "endpoint", "handoff", name, "--socket", path, ...extra, "--api-socket", A.sock], {
      stdout: "ignore",
      stderr: "pipe",
    });
    const got = acceptFds(l, 10_000);
    const code = await cli.exited;
    if (code !== 0) throw new Error(`endpoint handoff ${name}: exit ${code}: ${await new Response(cli.stderr).text()}`);
    return { about: JSON.parse(got.data.toString().trim()), fds: got.fds };
  } finally {
    closeFd(l);
  }
}
