/** rtnetlink for Stratum: links, addresses, routes, neighbours, FDB entries and cls_bpf filters. */
export * from "./addr";
export * from "./codec";
export * from "./constants";
export * from "./events";
export * from "./link";
export * from "./neigh";
export * from "./route";
export * from "./rtnl";
export * from "./tc";
