/** The BGP speaker's settings as the API and CLI change them: validated, stored (this node's
 * own, in its SQLite store), then the speaker follows (a gateway's; another agent keeps the
 * settings for when it runs with --gateway). */

import { readFileSync, statSync } from "node:fs";
import type { z } from "zod";
import type { BgpConfigBody, BgpConfigView, BgpPeerBody, BgpPeerView, BgpRoutesView } from "../../api/contract";
import { StratumError } from "../../errors";
import { validateBgpConfig, validateBgpPeer } from "../../model/bgp";
import type { SqliteStore } from "../../store/sqlite";
import { MD5_MAX_KEY } from "../../sys/tcp-md5";
import type { BgpSpeaker } from "./speaker";

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

export class BgpService {
  constructor(
    readonly store: SqliteStore,
    /** The speaker of a gateway (agent --gateway); absent on another agent. */
    readonly speaker?: BgpSpeaker,
  ) {}

  #mustConfig() {
    const c = this.store.bgpConfig();
    if (!c) throw new StratumError("NOT_FOUND", "BGP is not configured on this node: bgp config --asn N first");
    return c;
  }

  config(): BgpConfigView {
    const c = this.#mustConfig();
    return {
      asn: c.asn,
      routerId: c.routerId,
      routerIdInUse: this.speaker ? this.speaker.routerId(c) : null,
      restartTime: c.restartTime,
      importDefault: c.importDefault,
      gateway: this.speaker !== undefined,
      running: this.speaker?.running ?? false,
    };
  }

  /** Sets what `body` names; the rest stays as it was (the AS is needed the first time). */
  async setConfig(body: z.infer<typeof BgpConfigBody>): Promise<BgpConfigView> {
    const old = this.store.bgpConfig();
    if (body.asn === undefined && !old)
      throw new StratumError("INVALID", "BGP is not configured on this node: give its AS (bgp config --asn N)");
    const c = validateBgpConfig({
      asn: body.asn ?? old?.asn,
      routerId: body.routerId !== undefined ? body.routerId : old?.routerId,
      restartTime: body.restartTime ?? old?.restartTime,
      importDefault: body.importDefault ?? old?.importDefault,
    });
    this.store.setBgpConfig(c);
    await this.speaker?.reload();
    return this.config();
  }

  async deleteConfig(): Promise<void> {
    this.#mustConfig();
    this.store.setBgpConfig(null);
    await this.speaker?.reload();
  }

  peers(): BgpPeerView[] {
    if (this.speaker) return this.speaker.peers();
    return this.store.bgpPeers().map((p) => ({
      name: p.name,
      address: p.address,
      asn: p.asn,
      state: "idle" as const,
      establishedAt: null,
      holdTime: null,
      holdTimeConfigured: p.holdTime,
      md5: p.passwordFile !== null,
      defaults: [],
      prefixesSent: 0,
      updatesReceived: 0,
      lastError: "this agent is not a gateway (agent --gateway): no session",
      families: [],
      peerRouterId: null,
      counts: { established: 0, notificationsSent: 0, notificationsReceived: 0 },
      nextHop4: null,
      nextHop6: null,
    }));
  }

  async addPeer(body: z.infer<typeof BgpPeerBody>): Promise<BgpPeerView> {
    this.#mustConfig();
    const p = validateBgpPeer(body, this.store.bgpPeers());
    if (p.passwordFile) readMd5Key(p.passwordFile);
    this.store.addBgpPeer(p);
    await this.speaker?.reload();
    return this.peers().find((x) => x.name === p.name) as BgpPeerView;
  }

  async deletePeer(name: string): Promise<void> {
    if (!this.store.deleteBgpPeer(name)) throw new StratumError("NOT_FOUND", `no BGP peer named ${name}`);
    await this.speaker?.reload();
  }

  routes(): BgpRoutesView {
    this.#mustConfig();
    return this.speaker?.routes() ?? { wanted: [], withheld: null, peers: [] };
  }
}
