/** The BGP speaker's settings as the API and CLI change them: validated, stored (this node's
 * own, in its SQLite store), then the speaker follows (a gateway's; another agent keeps the
 * settings for when it runs with --gateway). */

import type { z } from "zod";
import type { BgpConfigBody, BgpConfigView, BgpPeerBody, BgpPeerView, BgpRoutesView } from "../../api/contract";
import { StratumError } from "../../errors";
import { validateBgpConfig, validateBgpPeer } from "../../model/bgp";
import type { SqliteStore } from "../../store/sqlite";
import { type BgpSpeaker, idleView, readMd5Key } from "./speaker";

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
    return this.store.bgpPeers().map((p) => idleView(p, "this agent is not a gateway (agent --gateway): no session"));
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
