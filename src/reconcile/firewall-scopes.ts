/** The firewall: every scope's active generation and tables, and the blocklist. Restored
 * before the ports (a port restored into a network finds its scope in place); the firewall
 * service collects the generations and scopes nothing asks for in the same step. */
import type { Reconciler } from "./reconciler";

export const firewallScopes: Reconciler = {
  name: "firewall scopes",
  scoped: "firewall",
  restore(run) {
    const fw = run.svc.firewall.restore();
    run.report.firewall = { scopes: fw.scopes, adopted: fw.adopted, blocklistAdded: fw.blocklist.added };
    run.report.errors.push(...fw.errors);
    run.report.collected.push(...fw.collected);
  },
};
