/** The protocols a trace can build a packet of (the API's and the CLI's --proto). */
export const TRACE_PROTOS = ["tcp", "udp", "icmp", "icmpv6"] as const;
export type TraceProto = (typeof TRACE_PROTOS)[number];
