/** The gateway's BGP speaker: one session per configured peer (session.ts), the node's own AS
 * and router id from the store, the prefixes to announce from the agent (every routed
 * network's subnets). A change of configuration restarts only the sessions it touches; a
 * change of networks is a sync of every session (announce what is new, withdraw what went).
 * Next hop self: this node's address on the peer's subnet (and an address of the other family
 * on the same interface), found again at each sync. */

import { readFileSync, statSync } from "node:fs";
import { StratumError } from "../../errors";
import type { BgpConfig, BgpPeer } from "../../model/bgp";
import { parseSubnet } from "../../model/ip";
import type { Address } from "../../netlink/addr";
import { MD5_MAX_KEY } from "../../sys/tcp-md5";
import { type Prefix, parsePrefix, prefixToString } from "./codec";
import { BgpSession, type SessionStatus } from "./session";

export interface SpeakerOptions {
  config: () => BgpConfig | null;
  peers: () => BgpPeer[];
  /** The prefixes every peer should have, as text ("10.20.0.0/24", "fd20::/64"). */
  prefixes: () => string[];
  /** The node's interface addresses (global scope), for next hop self. */
  addresses: () => Address[];
  /** Whether the gateway can forward out: its uplink exists, is up and has carrier (no uplink:
   * always). While it cannot, nothing is announced: the routers send the traffic elsewhere. */
  uplinkUp?: () => { up: boolean; why: string };
  /** Whether this agent started after one that ran the speaker (graceful restart: its peers
   * keep its routes until End-of-RIB). */
  restarting: boolean;
  log: (level: "info" | "warn", msg: string) => void;
  /** Installs (gateway) or removes (null) the default route of a family learned from a peer. */
  installDefault?: (family: 4 | 6, gateway: string | null) => void;
  /** How many times to repeat the AS beyond the first (a standby gateway's worse path); 0 when absent. */
  prepend?: () => number;
}

export interface PeerStatusView extends SessionStatus {
  holdTimeConfigured: number;
  md5: boolean;
  defaults: string[];
  nextHop4: string | null;
  nextHop6: string | null;
}

const inSubnet = (ip: string, a: Address): boolean => {
  try {
    const s = parseSubnet(a.cidr, false);
    const net = parseSubnet(`${ip}/${a.prefixLen}`, false);
    return s.family === net.family && s.network === net.network;
  } catch {
    return false;
  }
};

/** The TCP MD5 key in `file`: only its owner may read or write it (a key others can read is
 * no secret), 1 to 80 bytes once a trailing newline is taken off. */
export function readMd5Key(file: string): Buffer {
  let mode: number;
  let data: Buffer;
  try {
    mode = statSync(file).mode;
    data = readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new StratumError(
      code === "EACCES" || code === "EPERM" ? "PERMISSION" : "INVALID",
      `cannot read the TCP MD5 key file ${file}: ${code ?? (e as Error).message}`,
    );
  }
  if (mode & 0o066)
    throw new StratumError(
      "PERMISSION",
      `the TCP MD5 key file ${file} is readable or writable by group or others (mode ${(mode & 0o777).toString(8).padStart(4, "0")}): chmod 600 ${file}`,
    );
  const key = data.subarray(0, data.length - (data.at(-1) === 0x0a ? 1 : 0));
  if (key.length < 1 || key.length > MD5_MAX_KEY)
    throw new StratumError("INVALID", `the TCP MD5 key in ${file} is ${key.length} bytes: 1 to ${MD5_MAX_KEY}`);
  return Buffer.from(key);
}

/** A peer with no session (none started, or this agent runs no speaker): `lastError` says why. */
export function idleView(p: BgpPeer, lastError: string | null): PeerStatusView {
  return {
    name: p.name,
    address: p.address,
    asn: p.asn,
    state: "idle",
    establishedAt: null,
    holdTime: null,
    prefixesSent: 0,
    updatesReceived: 0,
    lastError,
    families: [],
    peerRouterId: null,
    counts: { established: 0, notificationsSent: 0, notificationsReceived: 0 },
    holdTimeConfigured: p.holdTime,
    md5: p.passwordFile !== null,
    defaults: [],
    nextHop4: null,
    nextHop6: null,
  };
}

/** How often the uplink's state is read (one netlink request). */
const UPLINK_POLL_MS = 500;

export class BgpSpeaker {
  #sessions = new Map<string, { peer: BgpPeer; key: string; session: BgpSession }>();
  #configKey = "";
  #derivedId: string | null = null;
  #withheld: string | null = null;
  #uplinkTimer: ReturnType<typeof setInterval> | undefined;
  /** Peers whose TCP MD5 key file could not be read: no session, this error. */
  #keyErrors = new Map<string, string>();
  #running = false;

  constructor(readonly o: SpeakerOptions) {}

  get running(): boolean {
    return this.#running;
  }

  /** Next hop self toward `peer`: the node's address on the peer's subnet, and one of the other
   * family on the same interface (`all`: the node's addresses, when already read). */
  nextHops(peer: BgpPeer, all: Address[] = this.o.addresses()): { v4?: string; v6?: string } {
    const addrs = all.filter((a) => a.scope === 0);
    const onLink = addrs.find((a) => inSubnet(peer.address, a));
    if (!onLink) return {};
    const same = addrs.filter((a) => a.index === onLink.index);
    const v4 = same.find((a) => a.family === 2)?.ip;
    const v6 = same.find((a) => a.family === 10 && !a.ip.toLowerCase().startsWith("fe80"))?.ip;
    return { v4, v6 };
  }

  /** The router id: the configured one, else the node's IPv4 address toward its first peer,
   * found once and kept while the speaker runs (peers coming and going do not change it, and
   * the networks' gateway addresses, the same on every node, are never taken). */
  routerId(c: BgpConfig): string | null {
    if (c.routerId) return c.routerId;
    if (this.#derivedId) return this.#derivedId;
    for (const p of this.o.peers()) {
      const v4 = this.nextHops(p).v4;
      if (v4) {
        this.#derivedId = v4;
        return v4;
      }
    }
    return null;
  }

  /** Why nothing is announced now (the uplink is down), or null. */
  get withheld(): string | null {
    return this.#withheld;
  }

  /** Looks at the uplink: on a change (down, or back up) every session withdraws or announces. */
  checkUplink(): void {
    const u = this.o.uplinkUp?.() ?? { up: true, why: "" };
    const now = u.up ? null : u.why;
    if (now === this.#withheld) return;
    this.#withheld = now;
    this.o.log(
      now ? "warn" : "info",
      now
        ? `bgp: ${now}: every route withdrawn until it is back`
        : "bgp: the uplink is back: the routes are announced again",
    );
    this.sync();
  }

  /** The prefixes every peer is to have: none while the uplink is down. */
  wanted(): Prefix[] {
    if (this.#withheld) return [];
    const out: Prefix[] = [];
    for (const t of this.o.prefixes())
      try {
        out.push(parsePrefix(t));
      } catch {}
    return out;
  }

  /** Brings the sessions in line with the configuration: new peers started, removed ones
   * stopped (their routes withdrawn first), changed ones restarted; a changed AS or router id
   * restarts them all. */
  async reload(): Promise<void> {
    const c = this.o.config();
    const id = c ? this.routerId(c) : null;
    const ck = c && id ? `${c.asn}/${id}/${c.restartTime}/${c.importDefault}` : "";
    if (ck !== this.#configKey) {
      for (const [name, s] of this.#sessions) {
        await s.session.stop({ withdraw: true });
        this.#sessions.delete(name);
      }
      this.#configKey = ck;
    }
    if (!c) {
      this.#running = false;
      this.#derivedId = null;
      this.#installDefaults(); // no speaker: no imported default route
      return;
    }
    this.#running = true;
    // A default route an earlier agent installed stays while the peers may announce it again
    // (the restart time); then whatever no peer announces goes.
    if (!this.#leftoverTimer)
      this.#leftoverTimer = setTimeout(() => this.#installDefaults(), c.importDefault ? c.restartTime * 1000 : 0);
    if (this.o.uplinkUp && !this.#uplinkTimer) {
      const u = this.o.uplinkUp();
      this.#withheld = u.up ? null : u.why;
      this.#uplinkTimer = setInterval(() => this.checkUplink(), UPLINK_POLL_MS);
    }
    if (!id) {
      // No session can open without an identifier: peers reached over IPv6 only need one set.
      if (this.o.peers().length)
        this.o.log("warn", "bgp: no router id (no IPv4 address toward a peer): set one with bgp config --router-id");
      return;
    }
    const peers = new Map(this.o.peers().map((p) => [p.name, p]));
    for (const [name, s] of this.#sessions) {
      const p = peers.get(name);
      if (!p || JSON.stringify(p) !== s.key) {
        await s.session.stop({ withdraw: true });
        this.#sessions.delete(name);
      }
    }
    for (const p of peers.values()) {
      if (this.#sessions.has(p.name)) continue;
      let md5Key: Buffer | undefined;
      this.#keyErrors.delete(p.name);
      if (p.passwordFile)
        try {
          md5Key = readMd5Key(p.passwordFile);
        } catch (e) {
          this.#keyErrors.set(p.name, (e as Error).message);
          this.o.log("warn", `bgp ${p.name}: ${(e as Error).message}: no session`);
          continue;
        }
      const session = new BgpSession(
        {
          asn: c.asn,
          routerId: id,
          restartTime: c.restartTime,
          restarting: this.o.restarting,
          importDefault: c.importDefault,
        },
        { name: p.name, address: p.address, asn: p.asn, holdTime: p.holdTime, md5Key },
        () => {
          const nh = this.nextHops(p);
          return { prefixes: this.wanted(), nextHop4: nh.v4, nextHop6: nh.v6, prepend: this.o.prepend?.() ?? 0 };
        },
        (line) => this.o.log("info", line),
        () => this.#installDefaults(),
      );
      this.#sessions.set(p.name, { peer: p, key: JSON.stringify(p), session });
      session.start();
    }
  }

  /** What this speaker installed; "?" at start: a route an earlier agent left may be there. */
  #installed: { 4: string | null; 6: string | null } = { 4: "?", 6: "?" };
  /** While stopping for a restart: the kernel's default routes stay as they are. */
  #keepKernel = false;
  #leftoverTimer: ReturnType<typeof setTimeout> | undefined;

  /** The default route of each family: the one the first peer (by name) announces, installed;
   * none left: removed. */
  #installDefaults(): void {
    if (!this.o.installDefault || this.#keepKernel) return;
    const sessions = [...this.#sessions.values()].sort((a, b) => a.peer.name.localeCompare(b.peer.name));
    for (const fam of [4, 6] as const) {
      const gw =
        sessions.map((s) => (fam === 4 ? s.session.defaults.v4 : s.session.defaults.v6)).find((x) => x) ?? null;
      if (gw === this.#installed[fam]) continue;
      try {
        this.o.installDefault(fam, gw);
        this.#installed[fam] = gw;
        this.o.log(
          "info",
          gw ? `bgp: default route (IPv${fam}) via ${gw} installed` : `bgp: default route (IPv${fam}) removed`,
        );
      } catch (e) {
        this.o.log("warn", `bgp: default route (IPv${fam}) via ${gw ?? "-"}: ${(e as Error).message}`);
      }
    }
  }

  /** Announces and withdraws on every established session what the prefixes changed. */
  sync(): void {
    for (const s of this.#sessions.values()) s.session.sync();
  }

  peers(): PeerStatusView[] {
    const addrs = this.o.addresses();
    return this.o.peers().map((p) => {
      const s = this.#sessions.get(p.name)?.session;
      const nh = this.nextHops(p, addrs);
      if (!s)
        return {
          ...idleView(p, this.#keyErrors.get(p.name) ?? (this.#running ? null : "the speaker is not running")),
          nextHop4: nh.v4 ?? null,
          nextHop6: nh.v6 ?? null,
        };
      const d = s.defaults;
      return {
        ...s.status(),
        holdTimeConfigured: p.holdTime,
        md5: p.passwordFile !== null,
        defaults: [...(d.v4 ? [`0.0.0.0/0 via ${d.v4}`] : []), ...(d.v6 ? [`::/0 via ${d.v6}`] : [])],
        nextHop4: nh.v4 ?? null,
        nextHop6: nh.v6 ?? null,
      };
    });
  }

  /** What each peer has from this node, and what it is to have. */
  routes(): { wanted: string[]; withheld: string | null; peers: Array<{ name: string; announced: string[] }> } {
    return {
      wanted: this.wanted().map(prefixToString),
      withheld: this.#withheld,
      peers: [...this.#sessions.values()].map((s) => ({
        name: s.peer.name,
        announced: s.session
          .announced()
          .sort((a, b) => a.afi - b.afi)
          .map(prefixToString),
      })),
    };
  }

  /** Ends every session: with `withdraw`, the routes go first; without, graceful restart keeps
   * them at the peers for the restart time. */
  async stop(o: { withdraw: boolean }): Promise<void> {
    if (this.#uplinkTimer) clearInterval(this.#uplinkTimer);
    this.#uplinkTimer = undefined;
    if (this.#leftoverTimer) clearTimeout(this.#leftoverTimer);
    // Stopping for a restart keeps an imported default route, as the peers keep ours.
    this.#keepKernel = !o.withdraw;
    for (const s of this.#sessions.values()) await s.session.stop({ withdraw: o.withdraw });
    this.#sessions.clear();
    this.#installDefaults();
    this.#running = false;
    // The withdraws and NOTIFICATIONs leave before the process does.
    await Bun.sleep(50);
  }
}
