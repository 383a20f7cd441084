/** The node's services, one per resource, over one context: networks, endpoints, the firewall,
 * DNS records and leases. What the API, the reconcile and the agent hold. */
import { FirewallTables } from "../datapath/firewall-tables";
import type { PortDatapath } from "../datapath/port-datapath";
import { type Rtnl, rtnl } from "../netlink";
import type { Store } from "../store/store";
import { DnsRecordService } from "./dns-record-service";
import { EndpointService } from "./endpoint-service";
import { FirewallService, type FwKernel } from "./firewall-service";
import { LeaseService } from "./lease-service";
import { MicrosegService } from "./microseg-service";
import { NetworkService } from "./network-service";
import { type ChangeListener, ServiceContext } from "./service-context";

export class Services {
  readonly ctx: ServiceContext;
  readonly firewall: FirewallService;
  readonly networks: NetworkService;
  readonly endpoints: EndpointService;
  readonly dnsRecords: DnsRecordService;
  readonly leases: LeaseService;
  readonly microseg: MicrosegService;

  /** `fwKernel`: the firewall's tables (default: on `dp`, which must be open). */
  constructor(
    store: Store,
    dp: PortDatapath,
    nl: Rtnl = rtnl(),
    log: (msg: string) => void = () => {},
    fwKernel: FwKernel = new FirewallTables(dp),
  ) {
    this.ctx = new ServiceContext(store, dp, nl, log);
    this.firewall = new FirewallService(store, fwKernel, log);
    this.networks = this.makeNetworks(this.ctx, this.firewall);
    this.endpoints = this.makeEndpoints(this.ctx, this.networks);
    this.networks.useEndpoints(this.endpoints);
    this.dnsRecords = new DnsRecordService(this.ctx, this.networks);
    this.leases = new LeaseService(this.ctx, this.networks);
    this.microseg = this.makeMicroseg(this.ctx);
  }

  protected makeMicroseg(ctx: ServiceContext): MicrosegService {
    return new MicrosegService(ctx);
  }

  /** The network and endpoint services (a stand-in without a kernel overrides these). */
  protected makeNetworks(ctx: ServiceContext, fw: FirewallService): NetworkService {
    return new NetworkService(ctx, fw);
  }

  protected makeEndpoints(ctx: ServiceContext, networks: NetworkService): EndpointService {
    return new EndpointService(ctx, networks);
  }

  get store(): Store {
    return this.ctx.store;
  }

  get dp(): PortDatapath {
    return this.ctx.dp;
  }

  get nl(): Rtnl {
    return this.ctx.nl;
  }

  /** Runs `fn` after every change the address and name servers serve. */
  onChange(fn: ChangeListener): void {
    this.ctx.onChange(fn);
  }
}
