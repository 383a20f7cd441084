/** DHCP and DHCPv6 leases, as the networks' servers recorded them: who holds which address, in
 * what state, until when. Read-only: the servers write them. */
import type { LeaseView } from "../api/contract";
import type { Lease } from "../store/store";
import type { NetworkService } from "./network-service";
import type { ServiceContext } from "./service-context";

export class LeaseService {
  constructor(
    readonly ctx: ServiceContext,
    readonly networks: NetworkService,
  ) {}

  get store() {
    return this.ctx.store;
  }

  list(network?: string, now = Date.now()): LeaseView[] {
    if (network) this.networks.must(network);
    return this.store
      .loadLeases()
      .filter((r) => network === undefined || r.network === network)
      .map((r) => ({
        network: String(r.network),
        mac: String(r.mac),
        family: Number(r.family) as 4 | 6,
        ip: String(r.ip),
        endpoint: r.endpoint ? String(r.endpoint) : null,
        hostname: r.hostname ? String(r.hostname) : null,
        state: String(r.state) as Lease["state"],
        // Stored as ms since the epoch; the API speaks RFC 3339.
        expiresAt: new Date(Number(r.expires_at)).toISOString(),
        updatedAt: new Date(Number(r.updated_at)).toISOString(),
        active: String(r.state) === "bound" && Number(r.expires_at) > now,
      }))
      .sort(
        (a, b) =>
          a.network.localeCompare(b.network) ||
          a.family - b.family ||
          a.ip.localeCompare(b.ip, "en", { numeric: true }),
      );
  }
}
