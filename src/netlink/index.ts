/** rtnetlink for Stratum: links, addresses, routes, neighbours and FDB entries. */
export * from "./addr";
export * from "./codec";
export * from "./constants";
export * from "./events";
export * from "./link";
export * from "./neigh";
export * from "./route";
export * from "./rtnl";
