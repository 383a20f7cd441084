/** The state store: desired state of this node (networks, endpoints). One interface, two
 * implementations planned: SQLite for a single node (sqlite.ts) and etcd for a cluster.
 * Every method is one transaction; conflicts surface as StratumError INVALID. */
import type { Network } from "../model/network";

export interface StoredNetwork extends Network {
  /** Stable, never reused: part of every profile MAC of the network. */
  id: number;
  createdAt: string;
}

export type EndpointKind = "veth" | "tap";

export interface Endpoint {
  name: string;
  network: string;
  ip: string;
  mac: string;
  hostIndex: number;
  kind: EndpointKind;
  /** Host-side interface on cnv-user-br0. */
  hostIf: string;
  /** veth: namespace and interface name inside it. */
  netns?: string;
  ifname?: string;
  createdAt: string;
}

export interface Store {
  listNetworks(): StoredNetwork[];
  getNetwork(name: string): StoredNetwork | null;
  /** Inserts a validated network and assigns its id. */
  createNetwork(net: Network): StoredNetwork;
  updateNetwork(name: string, patch: Partial<Omit<Network, "name" | "cidr" | "gateway">>): StoredNetwork;
  deleteNetwork(name: string): void;

  listEndpoints(network?: string): Endpoint[];
  getEndpoint(name: string): Endpoint | null;
  /** Claims the endpoint's profile; refused when the name or the address is taken. */
  claimEndpoint(ep: Omit<Endpoint, "createdAt">): Endpoint;
  releaseEndpoint(name: string): void;
  /** Host indexes claimed in a network (to find the next free address). */
  claimedIndexes(network: string): Set<number>;

  close(): void;
}
