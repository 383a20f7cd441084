/** When a reconcile may skip checking every port one by one (a quick pass), and why not.
 *
 * A whole run that finds nothing to change and nothing failing seals what it saw: the
 * number of kernel changes this process had made, the number of store changes, and the
 * bytes of the maps a port's restore writes (stm_ports, stm_local, stm_shape_cfg,
 * stm_shape_src, stm_profiles). The seal holds while all of these are still what they were
 * and no rtnetlink notice came that a whole run might act on (drift, or what a notice cannot
 * show whole: a port's clsact programs, its bridge, the extension bridges; DriftWatch.touched),
 * none having been lost.
 * Then every per-port object a whole run would check is as that run found it: the netlink
 * ones would have sent a notice if anyone changed them, the map entries would read
 * differently. A quick pass runs everything else of a whole run (bridges, gateways,
 * networks, firewall, uplink, overlay): what it skips is only the check of thousands of
 * ports, each against the kernel. Pure bookkeeping: the caller reads the maps. */

/** The maps whose entries come from endpoints (a port's restore and the profiles). */
export const SEALED_MAPS = ["stm_ports", "stm_local", "stm_shape_cfg", "stm_shape_src", "stm_profiles"] as const;
export type SealedMap = (typeof SEALED_MAPS)[number];

export interface SealInputs {
  /** Kernel changes this process has made (sys/mutations.ts). */
  mutations(): number;
  /** Changes of networks and endpoints in the store. */
  storeChanges(): number;
  /** The first notice about Stratum's objects since the seal, or undefined. */
  touched(): string | undefined;
  /** Notices count from now. */
  untouch(): void;
  /** A map's bytes as one reading takes them. */
  fingerprint(map: SealedMap): Buffer;
}

interface Sealed {
  mutations: number;
  storeChanges: number;
  prints: Map<SealedMap, Buffer>;
}

export class Seal {
  #at: Sealed | undefined;

  constructor(readonly inputs: SealInputs) {}

  /** Why a quick pass cannot vouch for the ports now; undefined when it can. */
  broken(): string | undefined {
    const at = this.#at;
    const i = this.inputs;
    if (!at) return "no whole run has found the kernel right since the agent started or last changed it";
    if (i.mutations() !== at.mutations) return "the kernel was changed since the last whole run";
    if (i.storeChanges() !== at.storeChanges) return "networks or endpoints changed since the last whole run";
    const touched = i.touched();
    if (touched) return `a notice since the last whole run: ${touched}`;
    for (const [name, print] of at.prints)
      if (!i.fingerprint(name).equals(print)) return `map ${name} was written since the last whole run`;
    return undefined;
  }

  /** A whole run has just found nothing to change and nothing failing: seal what it saw. */
  take(): void {
    const i = this.inputs;
    const prints = new Map<SealedMap, Buffer>();
    for (const name of SEALED_MAPS) prints.set(name, i.fingerprint(name));
    this.#at = { mutations: i.mutations(), storeChanges: i.storeChanges(), prints };
    i.untouch();
  }

  /** A run changed or failed something: the next one checks every port. */
  drop(): void {
    this.#at = undefined;
  }

  get sealed(): boolean {
    return this.#at !== undefined;
  }
}
