/** The user's DNS records in each network's zone (the endpoints' own names are answered
 * without records): validated against the zone and its names, kept in the store; the DNS
 * servers follow the change feed. */
import type { DnsRecordSelector, DnsRecordView } from "../api/contract";
import { StratumError } from "../errors";
import { type DnsRecordSpec, relativeOwner, validateDnsRecord } from "../model/dns-record";
import type { NetworkService } from "./network-service";
import type { ServiceContext } from "./service-context";

export class DnsRecordService {
  constructor(
    readonly ctx: ServiceContext,
    readonly networks: NetworkService,
  ) {}

  get store() {
    return this.ctx.store;
  }

  list(network?: string): DnsRecordView[] {
    if (network) this.networks.must(network);
    return this.store.listDnsRecords(network);
  }

  add(network: string, spec: DnsRecordSpec): DnsRecordView {
    const n = this.networks.must(network);
    const rec = validateDnsRecord(
      n.dnsZone,
      spec,
      this.store.listDnsRecords(network),
      this.store.listEndpoints(network).map((e) => e.name),
    );
    const stored = this.store.addDnsRecord(network, rec);
    this.ctx.changed(new Set([network]));
    return stored;
  }

  /** Deletes the records `sel` names; NOT_FOUND when it names none. Returns what went. */
  delete(network: string, sel: DnsRecordSelector): DnsRecordView[] {
    const n = this.networks.must(network);
    if (sel.id === undefined && sel.name === undefined)
      throw new StratumError("INVALID", "name the record: its id, or its owner name (with type and value to narrow)");
    const owner = sel.name === undefined ? undefined : relativeOwner(n.dnsZone, sel.name);
    // A value is matched in its stored form ("10 5 8080 web" → "10 5 8080 web.<zone>").
    let value = sel.value;
    if (sel.value !== undefined && sel.type !== undefined && sel.name !== undefined)
      try {
        value = validateDnsRecord(n.dnsZone, { name: sel.name, type: sel.type, value: sel.value }, [], []).value;
      } catch {}
    const hit = this.store
      .listDnsRecords(network)
      .filter(
        (r) =>
          (sel.id === undefined || r.id === sel.id) &&
          (owner === undefined || r.name === owner) &&
          (sel.type === undefined || r.type === sel.type.toUpperCase()) &&
          (value === undefined || r.value === value || r.value === value.toLowerCase().replace(/\.$/, "")),
      );
    if (!hit.length) throw new StratumError("NOT_FOUND", `no DNS record in network ${network} matches`);
    this.store.deleteDnsRecords(
      network,
      hit.map((r) => r.id),
    );
    this.ctx.changed(new Set([network]));
    return hit;
  }
}
