/** The agent API's contract: one table of every route (method, path, operationId, path and
 * query parameters, request body, success status and response), all as zod schemas, and the
 * views the API answers with. The router (app.ts) validates with these schemas, the client
 * (client.ts) derives its calls from them, the services build the view types declared here,
 * and /openapi.json is generated from them (openapi.ts): a route, its client and its
 * document cannot drift. Every object is strict: an unknown key is refused, and every key
 * of a view is present in every response (null when unset). Times are RFC 3339 strings. */
import { z } from "zod";
import type { ErrorCode } from "../errors";
import { DNS_RECORD_TYPES } from "../model/dns-record";
import { EgressCapSchema } from "../model/egress-cap";
import { ACTIONS, DIRECTIONS, MAX_PRIORITY, PROTOS, RuleSpecSchema } from "../model/firewall-rule";
import { NetworkSpecSchema } from "../model/network";
import { MACVTAP_MODES, MAX_TAP_QUEUES } from "../model/topology";
import { LB_MODES } from "../model/vip";
import { TRACE_PROTOS, type TraceProto } from "../ops/trace-protos";
import { TRIGGERS } from "../reconcile/loop";

// ---- errors ---------------------------------------------------------------------------------

/** HTTP status of each error code (the router's answer; the client maps codes back). */
export const ERROR_STATUS: Record<ErrorCode, 400 | 401 | 403 | 404 | 409 | 500 | 501 | 503> = {
  INVALID: 400,
  CONFLICT: 409,
  PERMISSION: 403,
  UNAUTHORIZED: 401,
  CAPACITY: 409,
  NOT_FOUND: 404,
  UNSUPPORTED: 501,
  UNAVAILABLE: 503,
  ETCD_UNAVAILABLE: 503,
  SYS: 500,
  NETLINK: 500,
  BPF_LOAD: 500,
  BPF_ATTACH: 500,
  INTERNAL: 500,
};

export const ErrorView = z
  .object({
    code: z.enum(Object.keys(ERROR_STATUS) as [ErrorCode, ...ErrorCode[]]),
    message: z.string().describe("One line: what failed and why"),
  })
  .strict();

/** Request bodies up to this size (Content-Length checked first, chunked bodies capped while read). */
export const BODY_LIMIT = 10 * 1024 * 1024;
/** The bulk routes (a scope's whole rule set, a blocklist feed of a million prefixes). */
export const BULK_BODY_LIMIT = 64 * 1024 * 1024;

// ---- building blocks ------------------------------------------------------------------------

const Int = z.number().int();
const Count = z.number().int().min(0);
const Time = z.iso.datetime().describe("RFC 3339, UTC");
const Family = z.union([z.literal(4), z.literal(6)]);
const PacketsBytes = z.object({ packets: Count, bytes: Count }).strict();
const Action2 = z.enum(["allow", "deny"]);

/** A numeric id in a path; `what` names it in the message. */
const IdParam = (what: string) =>
  z
    .string()
    .regex(/^\d{1,15}$/, { error: (i) => `${what} "${String(i.input)}" is not a number` })
    .transform(Number);
/** A query flag: true or false. */
const BoolQuery = z.enum(["true", "false"]).transform((v) => v === "true");
/** A positive integer in a query string, at most `max`. */
const IntQuery = (what: string, max: number) =>
  z
    .string()
    .regex(/^\d{1,9}$/, { error: (i) => `${what} "${String(i.input)}" is not a number` })
    .transform(Number)
    .pipe(z.number().int().min(1).max(max));

const NameParam = z.object({ name: z.string() }).strict();
const ScopeParam = z
  .object({ scope: z.string().describe("A network's name, or `global` for the node-wide scope") })
  .strict();

// ---- request bodies -------------------------------------------------------------------------

/** A network declaration: the model's own schema (what validation checks), strict. */
export const NetworkCreate = NetworkSpecSchema.strict();

export const NetworkPatch = z
  .object({
    mtu: Int.optional(),
    defaultAction: Action2.optional(),
    dnsForwarders: z.array(z.string()).optional(),
    dhcpRange: z.string().optional(),
    dnsZone: z.string().optional(),
    dhcpLeaseTime: Int.optional(),
    dhcpRoutes: z.array(z.string()).optional(),
    dhcpOptions: z.array(z.string()).optional(),
    egress: EgressCapSchema.nullable().optional(),
    extendToLan: z.boolean().optional(),
    nat: z
      .object({ addresses: z.array(z.string()).default([]) })
      .strict()
      .nullable()
      .optional()
      .describe("Masquerade at the uplink (addresses: at most one per family; none: the uplink's); null: routed"),
  })
  .strict()
  .describe("The mutable fields of a network; a list replaces the whole list");

export const EndpointPatch = z
  .object({
    egress: EgressCapSchema.nullable().optional().describe("bit/s and bytes; null removes the cap"),
    group: z.string().nullable().optional().describe("Its microsegmentation group; null: in none (untagged)"),
  })
  .strict()
  .refine((p) => p.egress !== undefined || p.group !== undefined, { error: "give egress or group (or both)" });

export const HandoffBody = z
  .object({
    socket: z.string().min(1).describe("The VMM's listening unix stream socket (a path, or '@' and an abstract name)"),
    queues: z
      .number()
      .int()
      .optional()
      .describe("Queues to open and send (default: every queue of a tap; 1 of a macvtap)"),
    vnetHdr: z.boolean().optional().describe("Open them with the virtio-net header (IFF_VNET_HDR; default true)"),
  })
  .strict();

export const HandoffView = z
  .object({
    endpoint: z.string(),
    kind: z.enum(["tap", "macvtap", "xsk"]),
    interface: z.string(),
    socket: z.string(),
    queues: Count,
    vnetHdr: z.boolean(),
  })
  .strict()
  .meta({ id: "HandoffView" });

export const NetworkdExportView = z
  .object({
    files: z
      .array(z.object({ name: z.string(), text: z.string() }).strict())
      .describe("The .netdev and .network files, by name (50-stratum-<device>.<kind>)"),
  })
  .strict()
  .meta({ id: "NetworkdExportView" });

export const AttachBody = z
  .object({
    name: z.string(),
    netns: z.string().optional().describe("Container: its network namespace"),
    ifname: z.string().optional().describe("Interface name inside the namespace (default eth0)"),
    tap: z.string().optional().describe("VM: the tap to create"),
    queues: z
      .number()
      .int()
      .optional()
      .describe(
        `VM: the queues its VMM may open on the tap, 1 to ${MAX_TAP_QUEUES} (more than 1: a multi-queue tap; default 1)`,
      ),
    macvtap: z
      .enum(MACVTAP_MODES)
      .optional()
      .describe("VM: a macvtap in this mode (bridge, vepa, private, passthru); its VMM opens /dev/tapN"),
    xsk: z.boolean().optional().describe("VM: on AF_XDP (a veth pair: the port, and the VM end its sockets bind to)"),
    adopt: z
      .boolean()
      .optional()
      .describe(
        "VM: take the tap that is there (made by systemd-networkd, say), down and on no bridge, instead of making one",
      ),
    ip: z.string().optional().describe("Address to claim (default: the next free one)"),
    configure: z.boolean().optional().describe("Set address, route and MTU inside the namespace"),
    group: z.string().optional().describe("Its microsegmentation group (default: none, untagged)"),
  })
  .strict();

/** A firewall rule: the model's schema (the fields are the CLI's flags). */
export const RuleCreate = RuleSpecSchema;

export const RuleMove = z.object({ priority: Int.min(1).max(MAX_PRIORITY) }).strict();

export const DefaultActionBody = z.object({ action: Action2 }).strict();

/** The import document. Each rule is validated by the service, which names the bad one by
 * index: the router checks only the top level (documented with the rule schema, see openapi.ts). */
export const ImportRulesItems = z.array(z.record(z.string(), z.unknown()));
export const RuleSetImport = z
  .object({
    default: Action2.optional().describe("Absent: the scope's default action stays"),
    rules: ImportRulesItems.default([]),
  })
  .strict();

export const BlocklistAdd = z
  .union([
    z.object({ prefixes: z.array(z.string()).min(1).describe("Prefixes (a bare address is a host prefix)") }).strict(),
    z
      .object({
        text: z
          .string()
          .describe(
            "A blocklist file's text: one prefix a line, '#' comments, blank lines ignored; bad lines are reported by number",
          ),
        file: z.string().optional().describe("The file's name, for messages"),
      })
      .strict(),
  ])
  .describe("Prefixes, or a blocklist file's text (the cheaper form for a big feed); all or none");

/** A DNS record of a network's zone; the service checks name, type and value (src/model/dns.ts). */
export const DnsRecordCreate = z
  .object({
    name: z.string().describe("Owner, relative to the zone (@: the zone)"),
    type: z.string().describe(DNS_RECORD_TYPES.join(", ")),
    value: z.string(),
    ttl: Int.optional(),
  })
  .strict();

export { TRACE_PROTOS, type TraceProto };

const Port = Int.min(0).max(65535);

export const TraceRequestBody = z
  .object({
    from: z.string().describe("Endpoint that sends the packet"),
    to: z.string().optional().describe("Destination address, or …"),
    toEndpoint: z.string().optional().describe("… an endpoint (its IPv4 address, or IPv6 with ipv6)"),
    proto: z.enum(TRACE_PROTOS).optional(),
    sport: Port.optional(),
    dport: Port.optional(),
    flags: z.array(z.string()).optional().describe("TCP flags by name (syn, ack, fin, rst, psh, urg); default syn"),
    ipv6: z.boolean().optional(),
    src: z.string().optional().describe("What-if: the source address the packet claims"),
    srcMac: z.string().optional().describe("What-if: the source MAC the frame claims"),
  })
  .strict();
export type TraceRequest = z.infer<typeof TraceRequestBody>;

// ---- views ----------------------------------------------------------------------------------

const EgressCapView = z.object({ rate: Int.describe("bit/s"), burst: Int.describe("bytes") }).strict();
const BucketCountsView = z.object({ passed: PacketsBytes, dropped: PacketsBytes }).strict();
const DropCountsView = z.record(z.string(), Count).describe("Packets dropped by reason");

export const NetworkView = z
  .object({
    id: Int,
    name: z.string(),
    cidr: z.string(),
    gateway: z.string(),
    cidr6: z.string().nullable(),
    gateway6: z.string().nullable(),
    dhcpRange: z.object({ first: z.string(), last: z.string() }).strict(),
    dnsZone: z.string(),
    dnsForwarders: z.array(z.string()),
    mtu: Int,
    vni: Int.nullable().describe("The network's VXLAN id between the nodes of a cluster (null: a single node)"),
    defaultAction: Action2,
    dhcpLeaseTime: Int.describe("seconds"),
    dhcpRoutes: z.array(z.string()),
    dhcpOptions: z.array(z.string()),
    egress: EgressCapView.nullable(),
    extendToLan: z
      .boolean()
      .describe("Extended onto the uplink's LAN: frames cross the uplink at L2 (off: through the gateway only)"),
    nat: z
      .object({
        addresses: z.array(z.string()).describe("The NAT addresses given (empty: the uplink's own)"),
        v4: z.string().nullable().describe("What this node translates IPv4 to (null: nothing to: dropped)"),
        v6: z.string().nullable().describe("What this node translates IPv6 to (null: no IPv6 subnet, or nothing to)"),
      })
      .strict()
      .nullable()
      .describe("Masqueraded at the uplink (null: routed, announced over BGP by a gateway)"),
    createdAt: Time,
    profiles: z.object({ total: Count, claimed: Count }).strict(),
    endpoints: z.array(z.string()),
    egressCounts: BucketCountsView.nullable().describe("What the egress cap passed and dropped (show only)"),
  })
  .strict()
  .meta({ id: "NetworkView" });
export type NetworkView = z.infer<typeof NetworkView>;

export const EndpointView = z
  .object({
    name: z.string(),
    network: z.string(),
    ip: z.string(),
    ip6: z.string().nullable().describe("Profile IPv6 address, when the network has an IPv6 subnet"),
    mac: z.string(),
    hostIndex: Count,
    kind: z.enum(["veth", "tap", "macvtap", "xsk"]),
    interface: z.string().describe("Host-side interface (veth host end, the tap, or the macvtap)"),
    queues: Count.nullable().describe("A tap's queues (1: a tap of one queue; null: a veth or a macvtap)"),
    macvtap: z
      .object({
        mode: z.enum(MACVTAP_MODES),
        device: z.string().nullable().describe("The character device its VMM opens (null: not on this node)"),
        lower: z.string().describe("Its lower device (the macvtap lower link's outer end)"),
      })
      .strict()
      .nullable()
      .describe("A macvtap's mode and device (null: not a macvtap)"),
    xsk: z
      .object({
        device: z.string().describe("The VM end its AF_XDP sockets bind to (QEMU's af-xdp ifname)"),
        base: Count.nullable().describe(
          "Its first slot in the sockets' map (QEMU's map-start-index; null: not on this node)",
        ),
        map: z.string().describe("The sockets' map, pinned (QEMU's map-path)"),
      })
      .strict()
      .nullable()
      .describe("A VM on AF_XDP (null: not one)"),
    netns: z.string().nullable(),
    ifname: z.string().nullable().describe("Interface name inside the namespace (veth)"),
    egress: EgressCapView.nullable(),
    node: z.string().nullable().describe("The cluster node it runs on (null on a single node)"),
    group: z.string().nullable().describe("Its microsegmentation group (null: none, untagged)"),
    moving: z
      .object({ to: z.string(), from: z.string(), state: z.enum(["requested", "handed-off"]), at: Time })
      .strict()
      .nullable()
      .describe("A move under way (null: none)"),
    nodeState: z
      .enum(["ready", "unreachable", "left"])
      .nullable()
      .describe(
        "Its node's state in the cluster: an endpoint of a node that is down is kept, marked (null on a single node)",
      ),
    createdAt: Time,
    drops: DropCountsView.nullable().describe("Drops on the endpoint's port by reason (show only)"),
    egressCounts: BucketCountsView.nullable().describe("What the egress cap passed and dropped (show only)"),
  })
  .strict()
  .meta({ id: "EndpointView" });
export type EndpointView = z.infer<typeof EndpointView>;

export const LeaseView = z
  .object({
    network: z.string(),
    mac: z.string(),
    family: Family,
    ip: z.string(),
    endpoint: z.string().nullable(),
    hostname: z.string().nullable().describe("The host name the client sent"),
    state: z.enum(["bound", "released", "declined"]),
    expiresAt: Time,
    updatedAt: Time,
    active: z.boolean().describe("Bound and not expired"),
  })
  .strict()
  .meta({ id: "LeaseView" });
export type LeaseView = z.infer<typeof LeaseView>;

export const DnsRecordView = z
  .object({
    id: Int,
    network: z.string(),
    name: z.string(),
    type: z.enum(DNS_RECORD_TYPES),
    value: z.string(),
    ttl: Int,
    createdAt: Time,
  })
  .strict()
  .meta({ id: "DnsRecordView" });
export type DnsRecordView = z.infer<typeof DnsRecordView>;

/** Which DNS records a delete removes: by id, or by owner name (and type, and value). */
export interface DnsRecordSelector {
  id?: number;
  name?: string;
  type?: string;
  value?: string;
}

const PortOrRange = z.union([Int, z.string()]).describe("A port (a number) or a range A-B");

/** A rule's fields in the user's words (the flags of `rule add`); null: matches anything. */
export const RuleFields = z
  .object({
    priority: Int,
    direction: z.enum(DIRECTIONS),
    src: z.string().nullable(),
    dst: z.string().nullable(),
    proto: z.enum(PROTOS),
    sport: PortOrRange.nullable(),
    dport: PortOrRange.nullable(),
    "icmp-type": z.union([Int, z.string()]).nullable().describe("TYPE or TYPE/CODE"),
    action: z.enum(ACTIONS),
    log: z.boolean(),
  })
  .strict()
  .meta({ id: "RuleFields" });
export type RuleFields = z.infer<typeof RuleFields>;

export const RuleView = RuleFields.extend({ id: Int, hits: PacketsBytes }).strict().meta({ id: "RuleView" });
export type RuleView = z.infer<typeof RuleView>;

export const RuleListView = z
  .object({ scope: z.string(), default: Action2, defaultHits: PacketsBytes, rules: z.array(RuleView) })
  .strict()
  .meta({ id: "RuleListView" });
export type RuleListView = z.infer<typeof RuleListView>;

export const DefaultView = z.object({ scope: z.string(), default: Action2 }).strict().meta({ id: "DefaultView" });
export type DefaultView = z.infer<typeof DefaultView>;

/** A rule in an export document: fields left out match anything (the YAML of `firewall
 * export`, which `import` reads back; a document, not a view, so absent keys stay absent). */
export const RuleDoc = z
  .object({
    priority: Int,
    direction: z.enum(DIRECTIONS),
    src: z.string().optional(),
    dst: z.string().optional(),
    proto: z.enum(PROTOS),
    sport: PortOrRange.optional(),
    dport: PortOrRange.optional(),
    "icmp-type": z.union([Int, z.string()]).optional(),
    action: z.enum(ACTIONS),
    log: z.boolean(),
  })
  .strict()
  .meta({ id: "RuleDoc" });

export const RuleSetDocument = z
  .object({ default: Action2, rules: z.array(RuleDoc) })
  .strict()
  .meta({ id: "RuleSetDocument" });
export type RuleSetDocument = z.infer<typeof RuleSetDocument>;

export const ImportResult = z
  .object({
    scope: z.string(),
    default: Action2,
    rules: Count,
    kept: Count.describe("Rules identical (fields and priority) to one already there: they keep their id and hits"),
  })
  .strict()
  .meta({ id: "ImportResult" });
export type ImportResult = z.infer<typeof ImportResult>;

const BlockCounts = z.object({ ipv4: Count, ipv6: Count }).strict();

export const BlockEntryView = z
  .object({ prefix: z.string(), family: Family, addedAt: Time })
  .strict()
  .meta({ id: "BlockEntry" });
export type BlockEntryView = z.infer<typeof BlockEntryView>;

export const BlocklistView = z
  .object({
    counts: BlockCounts.describe("The whole blocklist, by family"),
    prefixes: z.array(BlockEntryView).describe("This page: by family, then address, then length"),
    next: z.string().nullable().describe("Cursor for the next page (?after=), null on the last"),
  })
  .strict()
  .meta({ id: "BlocklistView" });
export type BlocklistView = z.infer<typeof BlocklistView>;

export const BlockAddResult = z
  .object({
    given: Count.describe("Prefixes given (after dropping repeats)"),
    added: Count.describe("Newly listed"),
    listed: Count.describe("Given but listed already"),
    counts: BlockCounts,
    lines: Count.optional().describe("Lines read, when a file's text was given"),
  })
  .strict()
  .meta({ id: "BlockAddResult" });
export type BlockAddResult = z.infer<typeof BlockAddResult>;

export const BlockClearResult = z
  .object({ removed: Count, counts: BlockCounts })
  .strict()
  .meta({ id: "BlockClearResult" });
export type BlockClearResult = z.infer<typeof BlockClearResult>;

export const BlockTestResult = z
  .object({
    address: z.string().describe("The address (or prefix) tested, canonical"),
    blocked: z.boolean(),
    match: z.string().nullable().describe("The longest listed prefix that covers it (the one the datapath matches)"),
    matches: z.array(z.string()).describe("Every listed prefix that covers it, longest first"),
  })
  .strict()
  .meta({ id: "BlockTestResult" });
export type BlockTestResult = z.infer<typeof BlockTestResult>;

// -- trace

export const TraceStageView = z
  .object({
    step: Int,
    stage: z.enum(["port-ingress", "bridge", "host", "port-egress", "uplink-egress", "overlay"]),
    device: z
      .object({
        name: z.string(),
        ifindex: Int,
        endpoint: z.string().nullable(),
        network: z.string().nullable(),
      })
      .strict()
      .nullable(),
    program: z
      .object({
        name: z.enum(["stm_port_in", "stm_port_out", "stm_uplink_out", "stm_overlay_out"]),
        liveId: Int.nullable().describe("The program the live port runs at this hook"),
      })
      .strict()
      .nullable(),
    verdict: z.enum(["pass", "drop", "reject", "forward", "deliver"]),
    reason: z.object({ name: z.string(), description: z.string() }).strict().nullable(),
    firewall: z
      .object({
        scope: z.string(),
        decision: z
          .enum(["rule", "default", "tracked", "failsafe", "no-policy"])
          .describe(
            "Who decided: a rule, the default action, a tracked flow, always-allowed infrastructure traffic, or nobody",
          ),
        action: z.string().nullable(),
        rule: z.object({ id: Int, priority: Int, spec: RuleFields }).strict().nullable(),
      })
      .strict()
      .nullable(),
    conntrack: z
      .object({ before: z.string().nullable(), after: z.string().nullable(), event: z.string().nullable() })
      .strict()
      .nullable(),
    translation: z
      .object({
        kind: z.literal("masquerade"),
        from: z.string().describe('The source as it left the port ("10.20.0.2:40000"; ICMP: the echo id)'),
        to: z.string().describe("The source as it leaves the uplink"),
      })
      .strict()
      .nullable()
      .describe("What masquerading made of the packet (a new flow's port; a live flow keeps the one it has)"),
    microseg: z
      .object({
        source: z
          .object({ group: z.string().nullable(), id: Count })
          .strict()
          .describe("The group the packet carries (its sender's; null, id 0: untagged)"),
        destination: z
          .object({ group: z.string().nullable(), id: Count })
          .strict()
          .nullable()
          .describe("The destination endpoint's group (port egress only; null group: in none, not segmented)"),
        decision: z
          .enum(["stamped", "carried", "entry", "default", "tracked", "failsafe", "not-segmented", "off"])
          .describe(
            "stamped: the sending port put its group on it; carried: in the VXLAN-GBP header to another node; entry: a policy entry decided; default: no entry (denied); tracked: a flow already let in or opened by the endpoint; failsafe: always-allowed infrastructure traffic; not-segmented: the endpoint is in no group; off: no groups at all",
          ),
        action: Action2.nullable(),
        entry: z
          .object({
            id: Count,
            from: z.string(),
            to: z.string(),
            action: Action2,
            proto: z.string().nullable(),
            dport: Count.nullable(),
          })
          .strict()
          .nullable()
          .describe("The entry that decided"),
      })
      .strict()
      .nullable()
      .describe("Microsegmentation at this stage (ports and the overlay)"),
    note: z.string().nullable(),
  })
  .strict()
  .meta({ id: "TraceStage" });
export type TraceStage = z.infer<typeof TraceStageView>;

export const TraceResultView = z
  .object({
    packet: z
      .object({
        family: Family,
        proto: z.enum(TRACE_PROTOS),
        srcMac: z.string(),
        dstMac: z.string(),
        src: z.string(),
        dst: z.string(),
        sport: Port.nullable(),
        dport: Port.nullable(),
        flags: z.string().nullable(),
        bytes: Count,
      })
      .strict(),
    stages: z.array(TraceStageView),
    verdict: z.enum(["delivered", "dropped", "rejected"]),
    to: z
      .string()
      .nullable()
      .describe("Where the packet ends: an endpoint, the node (a gateway), the uplink, or another node (node NAME)"),
    summary: z.string(),
    programs: z.object({ tag: z.string(), liveTag: z.string().nullable(), same: z.boolean() }).strict(),
  })
  .strict()
  .meta({ id: "TraceResult" });
export type TraceResult = z.infer<typeof TraceResultView>;

// -- status and reconcile

/** What made a reconcile run: the agent's start, an API request, rtnetlink notices of drift, or the periodic pass. */
export const ReconcileTriggerView = z.enum(TRIGGERS);
const PerTrigger = z.object(Object.fromEntries(TRIGGERS.map((t) => [t, Count]))).strict();

export const ReconcileRunView = z
  .object({
    at: Time,
    trigger: ReconcileTriggerView,
    durationMs: z.number().min(0),
    networks: Count,
    endpoints: Count,
    firewall: z.object({ scopes: Count, adopted: Count, blocklistAdded: Count }).strict(),
    collected: z.array(z.string()),
    errors: z.array(z.string()),
    changes: z.array(z.string()).describe("Every kernel change the run made, in order: none when it was right"),
    only: z
      .array(z.string())
      .optional()
      .describe(
        "A run limited to these networks (a change from another node of the cluster: restored, nothing collected); absent for a whole run",
      ),
    pass: z
      .enum(["whole", "quick", "limited"])
      .describe(
        "whole: every port checked against the kernel; quick: the ports taken as the last whole run found them, while nothing has touched them since (docs/operations.md#quick-reconcile); limited: some networks only",
      ),
    wholeBecause: z
      .string()
      .optional()
      .describe("A quick pass was asked for and could not vouch for the ports: why the run was whole"),
  })
  .strict()
  .meta({ id: "ReconcileRun" });
export type ReconcileRun = z.infer<typeof ReconcileRunView>;

/** The last run that found the kernel differing from the store and changed it. */
export const ReconcileRepairView = z
  .object({
    at: Time,
    trigger: ReconcileTriggerView,
    durationMs: z.number().min(0),
    changes: z.array(z.string()),
  })
  .strict()
  .meta({ id: "ReconcileRepair" });
export type ReconcileRepair = z.infer<typeof ReconcileRepairView>;

const Health = z.enum(["ok", "degraded"]);

export const PortStatusView = z
  .object({
    endpoint: z.string(),
    network: z.string(),
    kind: z.enum(["veth", "tap", "macvtap", "xsk"]),
    interface: z.string(),
    ifindex: Int.nullable().describe("null when the interface is missing"),
    attach: z.literal("cls_bpf"),
    ingressProgId: Count,
    egressProgId: Count,
    config: z.boolean(),
    bridged: z.boolean(),
    bridge: z
      .string()
      .nullable()
      .describe("The user bridge it is a port of: cnv-user-br0, or an extension bridge (null: none)"),
    up: z.boolean(),
    state: Health,
    problems: z.array(z.string()),
  })
  .strict();
export type PortStatus = z.infer<typeof PortStatusView>;

export const UplinkStatusView = z
  .object({
    name: z.string(),
    ifindex: Int,
    xdpMode: z.enum(["native", "generic"]).nullable(),
    progId: Count,
    tcxEgressProgId: Count,
    tcxIngressProgId: Count.describe("Masquerading's translation back (0: not attached)"),
    state: Health,
    problems: z.array(z.string()),
    drops: DropCountsView,
  })
  .strict();
export type UplinkStatus = z.infer<typeof UplinkStatusView>;

export const OverlayStatusView = z
  .object({
    device: z.string().describe("The overlay's VXLAN device (external mode), a port of the user bridge"),
    ifindex: Int.nullable(),
    address: z.string().describe("This node's underlay address: the overlay's local VTEP"),
    ingressProgId: Count,
    egressProgId: Count,
    underlay: z
      .object({
        name: z.string().nullable(),
        ifindex: Int,
        progId: Count,
        drops: DropCountsView,
      })
      .strict()
      .nullable()
      .describe(
        "The tc ingress check before decapsulation on the device that carries the address (null: the uplink's XDP filter makes it, or none)",
      ),
    nodes: Count.describe("Node addresses the overlay accepts VXLAN from (this node's own excepted)"),
    remoteEndpoints: Count.describe("Endpoints of other nodes this node forwards to"),
    state: Health,
    problems: z.array(z.string()),
    drops: DropCountsView,
  })
  .strict();
export type OverlayStatus = z.infer<typeof OverlayStatusView>;

export const BgpStatusView = z
  .object({
    asn: Count,
    routerId: z.string().nullable().describe("The router id in use (null: none yet)"),
    peers: Count,
    established: Count.describe("Peers whose session is established"),
    announced: Count.describe("Prefixes the speaker announces (every routed network's subnets)"),
    withheld: z.string().nullable().describe("Why nothing is announced (the uplink is down), or null"),
  })
  .strict();
export type BgpStatus = z.infer<typeof BgpStatusView>;

export const NatStatusView = z
  .object({
    portRange: z.object({ lo: Port, hi: Port }).strict().describe("The ports translated flows take"),
    networks: z.array(
      z
        .object({
          name: z.string(),
          v4: z.string().nullable().describe("What IPv4 is translated to (null: nothing to, dropped)"),
          v6: z.string().nullable().describe("What IPv6 is translated to (null: no IPv6 subnet, or nothing to)"),
        })
        .strict(),
    ),
    flows: Count.nullable().describe("Translated flows the datapath holds (null: not counted)"),
    counters: z
      .record(z.string(), Count)
      .describe(
        "translated (flows), exhausted (new flows refused: no free port), reclaimed (ports of ended flows taken), socket-skip (ports a socket of the node holds, skipped), icmp-error, fragment",
      ),
    warnings: z.array(z.string()),
  })
  .strict();
export type NatStatus = z.infer<typeof NatStatusView>;

export const MsegStatusView = z
  .object({
    groups: Count,
    entries: Count,
    grouped: Count.describe("This node's endpoints in a group"),
    generation: Count.describe("The policy generation the datapath enforces (0: none written)"),
    enforcing: z.boolean().describe("The datapath segments (it has the policy's groups)"),
  })
  .strict();
export type MsegStatus = z.infer<typeof MsegStatusView>;

export const LbStatusView = z
  .object({
    vips: Count,
    backends: Count,
    inTable: Count.describe("Backends taking new flows on this node"),
    announced: Count.describe("VIPs announced over BGP (a backend healthy)"),
    down: z.array(z.string()).describe("VIPs with no backend taking flows here"),
  })
  .strict();
export type LbStatus = z.infer<typeof LbStatusView>;

export const StoreStatusView = z
  .object({
    path: z.string(),
    state: z.string().describe('"ok", or why the store did not answer'),
    schemaVersion: Int.nullable(),
    binarySchemaVersion: Int,
    journalMode: z.string().nullable(),
    sizeBytes: Count,
    walBytes: Count,
    networks: Count.nullable(),
    endpoints: Count.nullable(),
    rules: Count.nullable(),
    blocklist: Count.nullable(),
    leases: Count.nullable(),
    leasesQuarantined: Count.nullable(),
    quarantined: Count.nullable(),
    dnsRecords: Count.nullable(),
  })
  .strict();
export type StoreStatus = z.infer<typeof StoreStatusView>;

export const ServiceStatusView = z
  .object({
    name: z.enum(["dhcp", "ipv6", "dns"]),
    state: z.enum(["serving", "down"]),
    problem: z.string().nullable(),
    summary: z.string(),
  })
  .strict();
export type ServiceStatus = z.infer<typeof ServiceStatusView>;

export const LoggedProblemView = z
  .object({ at: Time, level: z.enum(["warn", "error"]), tag: z.string().nullable(), message: z.string() })
  .strict();
export type LoggedProblem = z.infer<typeof LoggedProblemView>;

export const MapFillView = z
  .object({
    name: z.string(),
    type: z.string(),
    keySize: Count,
    valueSize: Count,
    capacity: Count.describe("max_entries: entries, or bytes for ring buffers"),
    entries: Count.nullable().describe("null for arrays and ring buffers"),
  })
  .strict();

// -- cluster

export const NODE_STATES = ["ready", "unreachable", "left"] as const;

export const NodeView = z
  .object({
    name: z.string(),
    state: z
      .enum(NODE_STATES)
      .describe(
        "ready: its lease is kept alive; unreachable: its lease expired (its endpoints stay, marked with its name); left: its agent stopped cleanly",
      ),
    address: z.string().describe("Underlay (VTEP) address"),
    mgmtAddress: z.string().nullable().describe("Address on cnv-mgmt-br0, when it has one"),
    version: z.string().nullable().describe("Its agent's version (null unless ready)"),
    roles: z.array(z.string()),
    joinedAt: Time.describe("When it first joined"),
    startedAt: Time.nullable().describe("When its running agent registered (null unless ready)"),
    left: Time.nullable().describe("When its agent stopped cleanly (state left)"),
    endpoints: Count.describe("Endpoints that run on it"),
    self: z.boolean().describe("The node whose agent answered"),
  })
  .strict()
  .meta({ id: "NodeView" });
export type NodeView = z.infer<typeof NodeView>;

export const MoveView = z
  .object({
    endpoint: z.string(),
    id: z.string().describe("Names this move"),
    from: z.string(),
    to: z.string(),
    at: Time,
    state: z
      .enum(["requested", "handed-off"])
      .describe("requested: the node it runs on hands it over; handed-off: the new node takes it"),
    forced: z.boolean().describe("Taken without its old node (not alive): no connection tracking came along"),
  })
  .strict()
  .meta({ id: "Move" });
export type MoveView = z.infer<typeof MoveView>;

export const MoveRequestBody = z
  .object({ to: z.string().min(1).max(64).describe("The node the endpoint moves to") })
  .strict();

export const NodeRemovalView = z
  .object({
    node: z.string(),
    endpoints: z
      .array(z.object({ name: z.string(), network: z.string(), ip: z.string(), ip6: z.string().nullable() }).strict())
      .describe("Its endpoints, forgotten: their addresses are free again"),
  })
  .strict()
  .meta({ id: "NodeRemoval" });
export type NodeRemovalView = z.infer<typeof NodeRemovalView>;

export const ClusterStatusView = z
  .object({
    clusterId: z.string(),
    node: z.string().describe("This node's name"),
    etcd: z
      .object({
        endpoints: z.array(z.string()).describe("The client URLs the agent was given (--cluster)"),
        up: z.boolean().describe("At least one member answered"),
        members: z.array(
          z
            .object({
              endpoint: z.string(),
              healthy: z.boolean(),
              version: z.string().nullable(),
              leader: z.boolean(),
              error: z.string().nullable().describe("Why it did not answer"),
            })
            .strict(),
        ),
        leader: z.string().nullable().describe("The leader's client URL, when one answered"),
        revision: Count.nullable().describe("etcd's revision (null: no member answered)"),
      })
      .strict(),
    mirror: z
      .object({
        revision: Count.describe("The revision this node's copy of the cluster state is at"),
        lag: Count.nullable().describe("Revisions behind etcd (null: etcd did not answer)"),
        keys: Count,
        invalidKeys: Count.describe("Keys set aside because their value failed validation"),
        lastResync: Time.nullable().describe("The last full listing"),
      })
      .strict(),
    watch: z
      .object({
        events: Count.describe("Changes received since the agent started"),
        resyncs: Count.describe("Full listings since the agent started"),
        connected: z.boolean(),
      })
      .strict(),
    lease: z
      .object({
        id: z.string().nullable(),
        ttl: Count.describe("seconds"),
        renewals: Count,
        missed: Count.describe("Keep-alives that failed"),
        reRegistered: Count.describe("Times the lease was lost and the node registered again"),
      })
      .strict(),
  })
  .strict()
  .meta({ id: "ClusterStatus" });
export type ClusterStatusView = z.infer<typeof ClusterStatusView>;

/** The cluster part of /v1/status: read from the agent's own records (no request to etcd). */
export const ClusterSummaryView = z
  .object({
    clusterId: z.string(),
    node: z.string(),
    etcdUp: z.boolean().describe("The watch is connected"),
    mirrorRevision: Count,
    lag: Count.describe("Revisions the watch has seen and the mirror has not applied"),
    lastResync: Time.nullable(),
    renewalsMissed: Count.describe("Lease keep-alives that failed"),
    writesRefused: Count.describe("Writes refused because etcd did not answer"),
  })
  .strict();
export type ClusterSummary = z.infer<typeof ClusterSummaryView>;

// -- microsegmentation (docs/microseg.md)

export const MsegGroupBody = z
  .object({
    name: z
      .string()
      .describe(
        "Lower-case letters, digits and '-' (a part of at most 32, starting with a letter), parts joined by '/': prod/web is under prod",
      ),
    parent: z.string().optional().describe("The group it is under (default: the name's part before its last '/')"),
    description: z.string().max(200).optional(),
  })
  .strict();

export const MsegGroupView = z
  .object({
    name: z.string(),
    id: Count.describe("What its endpoints' packets carry (skb->mark, VXLAN-GBP): stable, never reused"),
    parent: z.string().nullable(),
    line: z.array(z.string()).describe("The group, its parent, … its root"),
    children: z.array(z.string()),
    description: z.string().nullable(),
    members: z.array(z.string()).describe("Its endpoints, on every node"),
    createdAt: Time,
  })
  .strict()
  .meta({ id: "MsegGroupView" });
export type MsegGroupView = z.infer<typeof MsegGroupView>;

const MsegProto = z.enum(["tcp", "udp", "icmp", "icmpv6", "sctp"]);
export const MsegRuleBody = z
  .object({
    from: z.string().describe(`A group, or "untagged": endpoints in no group and everything from outside the fabric`),
    to: z.string().describe("A group: the entry applies to its endpoints and those of every group under it"),
    action: Action2,
    proto: MsegProto.optional(),
    dport: z.union([z.string(), z.number()]).optional().describe("A TCP or UDP destination port (with proto)"),
    log: z.boolean().optional().describe("Every packet it decides is a monitor log event"),
    description: z.string().max(200).optional(),
  })
  .strict();

export const MsegRuleView = z
  .object({
    id: Count,
    from: z.string(),
    to: z.string(),
    action: Action2,
    proto: MsegProto.nullable(),
    dport: Count.nullable(),
    log: z.boolean(),
    description: z.string().nullable(),
    hits: PacketsBytes.describe("Packets it decided on this node (flows it let in count their first packet)"),
  })
  .strict()
  .meta({ id: "MsegRuleView" });
export type MsegRuleView = z.infer<typeof MsegRuleView>;

export const MsegRuleListView = z
  .object({
    rules: z.array(MsegRuleView),
    defaultHits: PacketsBytes.describe("Packets no entry decided on this node: denied (microseg-deny)"),
  })
  .strict();

export const MsegDocument = z
  .object({
    groups: z.array(MsegGroupBody),
    rules: z.array(MsegRuleBody),
  })
  .strict()
  .describe("The whole policy: groups (a parent before its children) and entries");
export type MsegDocument = z.infer<typeof MsegDocument>;

export const MsegImportResult = z
  .object({
    groups: z.object({ added: Count, removed: Count, kept: Count }).strict(),
    rules: Count.describe("Entries in force now (their ids are new)"),
  })
  .strict();

// -- load balancer (docs/load-balancer.md)

const LbCheckSpec = z
  .object({
    kind: z
      .enum(["tcp", "http", "none"])
      .describe("tcp: a connection opens; http: GET path answers `expect`; none: always up"),
    path: z.string().optional().describe("http: the path (default /)"),
    expect: z.number().int().optional().describe("http: the status that means healthy (default 200)"),
    intervalMs: z.number().int().optional().describe("Between checks (default 2000)"),
    timeoutMs: z.number().int().optional().describe("A check's time (default 1000)"),
    rise: z.number().int().optional().describe("Passes in a row that make a backend healthy (default 2)"),
    fall: z.number().int().optional().describe("Failures in a row that make it unhealthy (default 3)"),
  })
  .strict();

export const VipBody = z
  .object({
    name: z.string().describe("1-32 characters: lower-case letters, digits and '-', starting with a letter"),
    address: z.string().describe("IPv4 or IPv6, outside every network's subnet: routed to the node"),
    port: z.number().int(),
    proto: z.enum(["tcp", "udp"]),
    mode: z
      .enum(LB_MODES)
      .optional()
      .describe(
        "nat (default): the destination becomes the backend's; dsr: the frame goes to the backend's MAC with the VIP kept, the backend answers from the VIP (docs/load-balancer.md#direct-server-return)",
      ),
    tableSize: z.number().int().optional().describe("Maglev table slots: a prime (default 65537)"),
    check: LbCheckSpec.partial().optional(),
    description: z.string().max(200).optional(),
  })
  .strict();

export const BackendBody = z
  .object({
    endpoint: z.string().describe("An endpoint of a network, on any node"),
    port: z.number().int().optional().describe("Its port (default: the VIP's)"),
    weight: z.number().int().optional().describe("Its share of new flows, 0-1000 (default 1; 0: no new flows)"),
  })
  .strict();

export const BackendView = z
  .object({
    id: Count,
    endpoint: z.string(),
    address: z.string().nullable().describe("The endpoint's address of the VIP's family (null: no such endpoint now)"),
    port: Count,
    weight: Count,
    health: z.enum(["healthy", "unhealthy", "unchecked", "missing"]).describe("As this node's checks see it"),
    detail: z.string().nullable().describe("The last check's result"),
    since: Time.nullable().describe("When the health last changed"),
    inTable: z.boolean().describe("It takes new flows on this node"),
    hits: z.object({ packets: Count, bytes: Count, flows: Count }).strict().describe("Sent to it by this node"),
  })
  .strict()
  .meta({ id: "BackendView" });
export type BackendView = z.infer<typeof BackendView>;

export const VipView = z
  .object({
    name: z.string(),
    id: Count,
    address: z.string(),
    port: Count,
    proto: z.enum(["tcp", "udp"]),
    mode: z.enum(LB_MODES),
    tableSize: Count,
    check: LbCheckSpec,
    description: z.string().nullable(),
    healthy: Count.describe("Backends that take new flows on this node"),
    announced: z.boolean().describe("Announced over BGP by a gateway (at least one backend is healthy)"),
    backends: z.array(BackendView),
    createdAt: Time,
  })
  .strict()
  .meta({ id: "VipView" });
export type VipView = z.infer<typeof VipView>;

// -- gateway groups (docs/gateway.md#high-availability-gateway-groups)

export const GatewayGroupBody = z
  .object({
    name: z.string().describe("1-32 characters: lower-case letters, digits and '-', starting with a letter"),
    vips: z
      .array(z.string())
      .min(1)
      .max(2)
      .describe("The north-side addresses the active node holds: one IPv4, one IPv6, or one of each (no /len)"),
    nodes: z
      .array(z.string())
      .describe("2 to 8 nodes of the cluster that back each other up; on equal priority the first listed wins"),
    priority: z
      .record(z.string(), Int)
      .optional()
      .describe("By node, 1-254, higher preferred; a node left out has 100"),
    preempt: z
      .boolean()
      .optional()
      .describe("A node of higher priority takes the role back from a lower one that holds it (default true)"),
    advertIntervalMs: Int.optional().describe("The heartbeat's interval, 20-10000 ms (default 100)"),
  })
  .strict();
export type GatewayGroupBody = z.infer<typeof GatewayGroupBody>;

const GatewayVips = z
  .object({ ipv4: z.string().nullable(), ipv6: z.string().nullable() })
  .strict()
  .describe("At most one address of each family");
const GatewayRole = z.enum(["active", "standby", "init"]);

export const GatewayGroupView = z
  .object({
    name: z.string(),
    vips: GatewayVips,
    nodes: z
      .array(z.object({ name: z.string(), priority: Int }).strict())
      .describe("The group's nodes as given, each with its priority (1-254, higher preferred)"),
    preempt: z.boolean().describe("A node of higher priority takes the role back from a lower one that holds it"),
    advertIntervalMs: Int.describe("The heartbeat's interval, ms"),
    masterDownMs: z
      .number()
      .min(0)
      .describe(
        "The longest takeover wait, ms (0.1 ms): the master-down interval of the node of lowest priority, 3 × advert + (256 − priority) × advert / 256",
      ),
    createdAt: Time,
    active: z
      .object({
        node: z.string().describe("The node that holds the role, and with it the VIPs"),
        epoch: Count.describe("The etcd revision its holder record was written at: grows with every change of holder"),
        since: Time,
        why: z.string().describe("Why it took the role"),
      })
      .strict()
      .nullable()
      .describe("Who holds the role (null: nobody yet)"),
  })
  .strict()
  .meta({ id: "GatewayGroupView" });
export type GatewayGroupView = z.infer<typeof GatewayGroupView>;

export const GatewayStatusView = z
  .object({
    node: z.string().describe("This node's name"),
    groups: z.array(
      z
        .object({
          name: z.string(),
          vips: GatewayVips,
          member: z.boolean().describe("This node is one of the group's nodes"),
          role: z.enum(["active", "standby", "init", "none"]).describe("This node's role (none: not a member)"),
          active: z.string().nullable().describe("The node that holds the role (null: nobody)"),
          epoch: Count.nullable().describe("The holder record's etcd revision (null: nobody holds it)"),
          since: Time.nullable(),
          why: z.string().nullable().describe("Why the holder took the role"),
          holdMs: z
            .number()
            .nullable()
            .describe("When this node is active: ms left before it lets go unless its lease is renewed"),
          nodes: z.array(
            z
              .object({
                name: z.string(),
                priority: Int,
                role: GatewayRole.nullable().describe("Its role as its last advert said (null: never heard)"),
                lastHeardMs: z
                  .number()
                  .min(0)
                  .nullable()
                  .describe("ms since this node last heard its advert (null: itself, or never heard)"),
                etcd: z.boolean().nullable().describe("Its last advert said it reaches etcd (null: never heard)"),
                self: z.boolean().describe("The node whose agent answered"),
              })
              .strict(),
          ),
          counters: z
            .object({
              transitions: Count.describe("Changes of this node's role"),
              advertsSent: Count,
              advertsReceived: Count,
              advertsRejected: Count.describe("Adverts received and refused (they did not verify)"),
              advertsMissed: Count.describe("Adverts expected and not heard"),
              renewals: Count.describe("Lease renewals as the holder"),
              renewFailures: Count,
            })
            .strict()
            .describe("Since the agent started"),
        })
        .strict(),
    ),
  })
  .strict()
  .meta({ id: "GatewayStatus" });
export type GatewayStatusView = z.infer<typeof GatewayStatusView>;

export const AgentStatusView = z
  .object({
    health: z.object({ status: Health, reasons: z.array(z.string()), warnings: z.array(z.string()) }).strict(),
    version: z.string(),
    pid: Int,
    startedAt: Time,
    uptimeSeconds: Count,
    kernel: z.string(),
    libbpf: z.string(),
    libbpfPath: z.string(),
    features: z.record(z.string(), z.boolean()),
    pinRoot: z.string(),
    stateDir: z.string(),
    rssBytes: Count,
    networks: Count,
    endpoints: Count,
    ports: z.array(PortStatusView),
    uplink: UplinkStatusView.nullable(),
    overlay: OverlayStatusView.nullable().describe("A cluster node's overlay (null: a single node)"),
    bgp: BgpStatusView.nullable().describe("A gateway's BGP speaker (null: not a gateway, or BGP not configured)"),
    nat: NatStatusView.nullable().describe("Masquerading at the uplink (null: no network is masqueraded)"),
    microseg: MsegStatusView.nullable().describe("Microsegmentation (null: no groups and no entries)"),
    lb: LbStatusView.nullable().describe("The load balancer (null: no VIP)"),
    maps: z.array(MapFillView),
    mapCountMs: z.number().min(0),
    store: StoreStatusView,
    reconcile: z
      .object({
        runs: Count,
        errors: Count,
        last: ReconcileRunView.nullable().describe("The last run; its trigger is the last trigger"),
        byTrigger: PerTrigger.describe("Runs by what made them"),
        repairs: PerTrigger.describe("Runs that changed the kernel (repaired drift), by what made them"),
        lastRepair: ReconcileRepairView.nullable(),
        loop: z
          .object({
            events: z.boolean().describe("Runs on rtnetlink notices of drift"),
            intervalSeconds: z.number().min(0).describe("A full pass every so many seconds (0: none)"),
            drift: z.array(z.string()).describe("Drift noticed and not answered yet"),
          })
          .strict()
          .nullable()
          .describe("The reconcile loop (null in tools that run without it)"),
      })
      .strict(),
    recentErrors: z.array(LoggedProblemView),
    logTotals: z.object({ warn: Count, error: Count }).strict(),
    services: z.array(ServiceStatusView).nullable().describe("DHCP, router advertisements and DHCPv6, DNS"),
    cluster: ClusterSummaryView.nullable().describe("This node's part in its cluster (null on a single node)"),
  })
  .strict()
  .meta({ id: "AgentStatus" });
export type AgentStatus = z.infer<typeof AgentStatusView>;

// ---- routes ---------------------------------------------------------------------------------

export type Method = "get" | "post" | "put" | "patch" | "delete";

export interface RouteDef {
  method: Method;
  /** OpenAPI form: /v1/networks/{name}. */
  path: string;
  summary: string;
  /** Path parameters (every {x} of the path). */
  params?: z.ZodObject;
  query?: z.ZodObject;
  /** How to use the query, appended to its errors. */
  usage?: string;
  body?: z.ZodType;
  bodyLimit?: number;
  status: 200 | 201 | 204;
  /** JSON response (absent: 204 No Content, or `text`). */
  response?: z.ZodType;
  /** A text/plain response (the Prometheus exposition). */
  text?: true;
  /** Served only when the agent provides it (trace, reconcile, metrics). */
  optional?: true;
}

// ---- the gateway's BGP speaker ----------------------------------------------------------------

export const BgpConfigBody = z
  .object({
    asn: z
      .union([Int, z.string()])
      .optional()
      .describe("This node's AS number (1 to 4294967294, not 23456); needed the first time"),
    routerId: z
      .string()
      .nullable()
      .optional()
      .describe("IPv4 dotted quad; null: this node's address toward its first peer. Absent: unchanged"),
    restartTime: Int.optional().describe(
      "Graceful restart (RFC 4724): seconds peers keep the routes while the agent restarts; 0 off; default 120",
    ),
    importDefault: z
      .boolean()
      .optional()
      .describe("Install a default route a peer announces (main table, proto bgp, metric 200); default false"),
  })
  .strict();

export const BgpConfigView = z
  .object({
    asn: Count,
    routerId: z.string().nullable().describe("As configured (null: derived)"),
    routerIdInUse: z.string().nullable().describe("The router id the sessions use"),
    restartTime: Count,
    importDefault: z.boolean(),
    gateway: z.boolean().describe("Whether this agent is a gateway (agent --gateway): only a gateway runs sessions"),
    running: z.boolean(),
  })
  .strict();

export const BgpPeerBody = z
  .object({
    name: z.string(),
    address: z.string().describe("The router's address (IPv4 or IPv6), on a subnet of this node"),
    asn: z.union([Int, z.string()]),
    holdTime: Int.optional().describe("Proposed hold time, s: 0 (no keepalives) or 3 to 65535; default 90"),
    passwordFile: z
      .string()
      .optional()
      .describe("TCP MD5 (RFC 2385): absolute path of a file holding the key (1-80 bytes), readable by its owner only"),
  })
  .strict();

export const BgpPeerView = z
  .object({
    name: z.string(),
    address: z.string(),
    asn: Count,
    state: z.enum(["idle", "connect", "opensent", "openconfirm", "established"]),
    establishedAt: z.number().nullable().describe("Unix ms the session came up (null: not up)"),
    holdTime: Count.nullable().describe("The negotiated hold time (established sessions)"),
    holdTimeConfigured: Count,
    md5: z.boolean().describe("The session is signed with TCP MD5 (a password file is set)"),
    defaults: z
      .array(z.string())
      .describe('Default routes the peer announces ("0.0.0.0/0 via 192.0.2.1"), kept with bgp config --import-default'),
    prefixesSent: Count,
    updatesReceived: Count,
    lastError: z.string().nullable(),
    families: z.array(z.string()),
    peerRouterId: z.string().nullable(),
    counts: z
      .object({ established: Count, notificationsSent: Count, notificationsReceived: Count })
      .strict()
      .describe("Since the agent started: times the session came up, NOTIFICATIONs sent and received"),
    nextHop4: z.string().nullable().describe("Next hop self for IPv4 routes: this node's address on the peer's subnet"),
    nextHop6: z.string().nullable(),
  })
  .strict();

export type BgpConfigView = z.infer<typeof BgpConfigView>;
export type BgpPeerView = z.infer<typeof BgpPeerView>;

export const BgpRoutesView = z
  .object({
    wanted: z
      .array(z.string())
      .describe("What every peer is to have: the routed networks' prefixes (none while withheld)"),
    withheld: z.string().nullable().describe("Why nothing is announced now (the uplink is down), or null"),
    peers: z.array(z.object({ name: z.string(), announced: z.array(z.string()) }).strict()),
  })
  .strict();
export type BgpRoutesView = z.infer<typeof BgpRoutesView>;

const DNS_DELETE_USAGE = "DELETE /v1/networks/NAME/dns/records/ID or ?name=OWNER[&type=TYPE][&value=VALUE]";

/** Every route of the API. The key is the operationId. */
export const ROUTES = {
  listNetworks: {
    method: "get",
    path: "/v1/networks",
    summary: "List networks",
    status: 200,
    response: z.array(NetworkView),
  },
  createNetwork: {
    method: "post",
    path: "/v1/networks",
    summary: "Create a network",
    body: NetworkCreate,
    status: 201,
    response: NetworkView,
  },
  showNetwork: {
    method: "get",
    path: "/v1/networks/{name}",
    summary: "Show a network, with its egress cap's counters",
    params: NameParam,
    status: 200,
    response: NetworkView,
  },
  setNetwork: {
    method: "patch",
    path: "/v1/networks/{name}",
    summary: "Change a network's mutable fields",
    params: NameParam,
    body: NetworkPatch,
    status: 200,
    response: NetworkView,
  },
  deleteNetwork: {
    method: "delete",
    path: "/v1/networks/{name}",
    summary: "Delete a network (force=true detaches its endpoints first)",
    params: NameParam,
    query: z.object({ force: BoolQuery.optional() }).strict(),
    status: 204,
  },
  attachEndpoint: {
    method: "post",
    path: "/v1/networks/{name}/endpoints",
    summary: "Attach an endpoint (claim a profile)",
    params: NameParam,
    body: AttachBody,
    status: 201,
    response: EndpointView,
  },
  detachEndpoint: {
    method: "delete",
    path: "/v1/networks/{name}/endpoints/{endpoint}",
    summary: "Detach an endpoint",
    params: z.object({ name: z.string(), endpoint: z.string() }).strict(),
    status: 204,
  },
  listNetworkDnsRecords: {
    method: "get",
    path: "/v1/networks/{name}/dns/records",
    summary: "List a network's DNS records",
    params: NameParam,
    status: 200,
    response: z.array(DnsRecordView),
  },
  addDnsRecord: {
    method: "post",
    path: "/v1/networks/{name}/dns/records",
    summary: "Add a DNS record (name relative to the zone, @ for the apex)",
    params: NameParam,
    body: DnsRecordCreate,
    status: 201,
    response: DnsRecordView,
  },
  deleteDnsRecords: {
    method: "delete",
    path: "/v1/networks/{name}/dns/records",
    summary: "Delete the records an owner name (narrowed by type and value) names; answers them",
    params: NameParam,
    query: z
      .object({ name: z.string().min(1), type: z.string().min(1).optional(), value: z.string().min(1).optional() })
      .strict(),
    usage: DNS_DELETE_USAGE,
    status: 200,
    response: z.array(DnsRecordView),
  },
  deleteDnsRecord: {
    method: "delete",
    path: "/v1/networks/{name}/dns/records/{id}",
    summary: "Delete a DNS record by id; answers it",
    params: z.object({ name: z.string(), id: IdParam("record id") }).strict(),
    status: 200,
    response: z.array(DnsRecordView),
  },
  listDnsRecords: {
    method: "get",
    path: "/v1/dns/records",
    summary: "List the DNS records of every network",
    status: 200,
    response: z.array(DnsRecordView),
  },
  listLeases: {
    method: "get",
    path: "/v1/dhcp/leases",
    summary: "List DHCP leases, with whether each is still active",
    query: z.object({ network: z.string().optional() }).strict(),
    status: 200,
    response: z.array(LeaseView),
  },
  listEndpoints: {
    method: "get",
    path: "/v1/endpoints",
    summary: "List endpoints",
    query: z.object({ network: z.string().optional() }).strict(),
    status: 200,
    response: z.array(EndpointView),
  },
  showEndpoint: {
    method: "get",
    path: "/v1/endpoints/{name}",
    summary: "Show an endpoint, with its port's drops by reason",
    params: NameParam,
    status: 200,
    response: EndpointView,
  },
  exportNetworkd: {
    method: "get",
    path: "/v1/export/networkd",
    summary:
      "The systemd-networkd files that recreate this node's Stratum interfaces (bridges, links, VMs' taps and macvtaps)",
    status: 200,
    response: NetworkdExportView,
  },
  handoffEndpoint: {
    method: "post",
    path: "/v1/endpoints/{name}/handoff",
    summary:
      "Hand a VM's queues to its VMM: the agent opens them (AF_XDP: makes sockets in the map) and sends the descriptors over the VMM's unix socket (SCM_RIGHTS)",
    params: NameParam,
    body: HandoffBody,
    status: 200,
    response: HandoffView,
  },
  setEndpoint: {
    method: "patch",
    path: "/v1/endpoints/{name}",
    summary: "Set (or with egress: null remove) an endpoint's egress cap",
    params: NameParam,
    body: EndpointPatch,
    status: 200,
    response: EndpointView,
  },
  listRules: {
    method: "get",
    path: "/v1/firewall/{scope}/rules",
    summary: "List a scope's rules with hit counters",
    params: ScopeParam,
    status: 200,
    response: RuleListView,
  },
  addRule: {
    method: "post",
    path: "/v1/firewall/{scope}/rules",
    summary: "Add a rule",
    params: ScopeParam,
    body: RuleCreate,
    status: 201,
    response: RuleView,
  },
  deleteRule: {
    method: "delete",
    path: "/v1/firewall/{scope}/rules/{id}",
    summary: "Delete a rule",
    params: ScopeParam.extend({ id: IdParam("rule id") }).strict(),
    status: 204,
  },
  moveRule: {
    method: "post",
    path: "/v1/firewall/{scope}/rules/{id}/move",
    summary: "Give a rule another priority (its id and counters stay)",
    params: ScopeParam.extend({ id: IdParam("rule id") }).strict(),
    body: RuleMove,
    status: 200,
    response: RuleView,
  },
  setDefault: {
    method: "put",
    path: "/v1/firewall/{scope}/default",
    summary: "Set a scope's default action",
    params: ScopeParam,
    body: DefaultActionBody,
    status: 200,
    response: DefaultView,
  },
  exportRules: {
    method: "get",
    path: "/v1/firewall/{scope}/export",
    summary: "A scope's rule set as a document ({default, rules})",
    params: ScopeParam,
    status: 200,
    response: RuleSetDocument,
  },
  importRules: {
    method: "put",
    path: "/v1/firewall/{scope}/import",
    summary: "Replace a scope's whole rule set at once",
    params: ScopeParam,
    body: RuleSetImport,
    bodyLimit: BULK_BODY_LIMIT,
    status: 200,
    response: ImportResult,
  },
  listBlocklist: {
    method: "get",
    path: "/v1/firewall/blocklist",
    summary:
      "List the blocklist a page at a time (by family, then numerically), optionally only the prefixes covering an address",
    query: z
      .object({
        contains: z.string().optional().describe("Only the prefixes that cover this address or prefix"),
        limit: IntQuery("limit", 100_000).optional().describe("Page size (default 1000, at most 100000)"),
        after: z.string().optional().describe("The previous page's `next`"),
      })
      .strict(),
    status: 200,
    response: BlocklistView,
  },
  addBlocklist: {
    method: "post",
    path: "/v1/firewall/blocklist",
    summary: "Add prefixes to the blocklist (all or none)",
    body: BlocklistAdd,
    bodyLimit: BULK_BODY_LIMIT,
    status: 200,
    response: BlockAddResult,
  },
  deleteBlocklistPrefix: {
    method: "delete",
    path: "/v1/firewall/blocklist",
    summary: "Remove one prefix from the blocklist",
    query: z
      .object({
        prefix: z.string({ error: "give the prefix to delete: DELETE /v1/firewall/blocklist?prefix=CIDR" }),
      })
      .strict(),
    status: 204,
  },
  clearBlocklist: {
    method: "post",
    path: "/v1/firewall/blocklist/clear",
    summary: "Remove every prefix from the blocklist; answers how many went",
    status: 200,
    response: BlockClearResult,
  },
  testBlocklist: {
    method: "get",
    path: "/v1/firewall/blocklist/test",
    summary: "Which listed prefix (if any) covers an address",
    query: z
      .object({
        address: z.string({ error: "give the address to test: GET /v1/firewall/blocklist/test?address=ADDR" }),
      })
      .strict(),
    status: 200,
    response: BlockTestResult,
  },
  listNodes: {
    method: "get",
    path: "/v1/nodes",
    summary: "List the cluster's nodes: ready, unreachable or left (a single node answers 400 INVALID)",
    status: 200,
    response: z.array(NodeView),
  },
  showNode: {
    method: "get",
    path: "/v1/nodes/{name}",
    summary: "Show one node of the cluster",
    params: NameParam,
    status: 200,
    response: NodeView,
  },
  moveEndpoint: {
    method: "post",
    path: "/v1/endpoints/{name}/move",
    summary:
      "Move an endpoint to another node: same IP and MAC, its connection tracking carried along (a cluster node; the endpoint's view shows the move until the new node has it)",
    params: NameParam,
    body: MoveRequestBody,
    status: 200,
    response: MoveView,
  },
  removeNode: {
    method: "delete",
    path: "/v1/nodes/{name}",
    summary:
      "Forget a node that is gone, and its endpoints (their addresses are free again); refused while it is alive",
    params: NameParam,
    status: 200,
    response: NodeRemovalView,
  },
  getBgpConfig: {
    method: "get",
    path: "/v1/bgp/config",
    summary: "The BGP speaker's settings: this node's AS, router id, graceful restart time",
    status: 200,
    response: BgpConfigView,
  },
  setBgpConfig: {
    method: "put",
    path: "/v1/bgp/config",
    summary:
      "Set this node's AS, router id, graceful restart time, default-route import; what is left out stays as it was (the sessions restart when any changes)",
    body: BgpConfigBody,
    status: 200,
    response: BgpConfigView,
  },
  deleteBgpConfig: {
    method: "delete",
    path: "/v1/bgp/config",
    summary: "Turn the speaker off: every session ends, its routes withdrawn; the peers are forgotten",
    status: 204,
  },
  listBgpPeers: {
    method: "get",
    path: "/v1/bgp/peers",
    summary: "The BGP peers and their sessions: state, uptime, prefixes sent, last error",
    status: 200,
    response: z.array(BgpPeerView),
  },
  addBgpPeer: {
    method: "post",
    path: "/v1/bgp/peers",
    summary: "Add a BGP peer (a router): the session starts at once on a gateway",
    body: BgpPeerBody,
    status: 201,
    response: BgpPeerView,
  },
  deleteBgpPeer: {
    method: "delete",
    path: "/v1/bgp/peers/{name}",
    summary: "Remove a BGP peer: its routes are withdrawn, the session ends with a Cease",
    params: NameParam,
    status: 204,
  },
  listBgpRoutes: {
    method: "get",
    path: "/v1/bgp/routes",
    summary: "What the speaker announces: the routed networks' prefixes, and what each peer has",
    status: 200,
    response: BgpRoutesView,
  },
  listMsegGroups: {
    method: "get",
    path: "/v1/microseg/groups",
    summary: "List the microsegmentation groups: ids, parents, members",
    status: 200,
    response: z.array(MsegGroupView),
  },
  createMsegGroup: {
    method: "post",
    path: "/v1/microseg/groups",
    summary: "Create a group (under a parent: prod/web is under prod)",
    body: MsegGroupBody,
    status: 201,
    response: MsegGroupView,
  },
  showMsegGroup: {
    method: "get",
    path: "/v1/microseg/groups/{name}",
    summary: "Show a group: its line up the tree, children, members",
    params: NameParam,
    status: 200,
    response: MsegGroupView,
  },
  deleteMsegGroup: {
    method: "delete",
    path: "/v1/microseg/groups/{name}",
    summary: "Delete a group: refused while a group is under it, an entry names it or an endpoint is in it",
    params: NameParam,
    status: 204,
  },
  listMsegRules: {
    method: "get",
    path: "/v1/microseg/rules",
    summary: "List the policy entries with this node's hit counters",
    status: 200,
    response: MsegRuleListView,
  },
  addMsegRule: {
    method: "post",
    path: "/v1/microseg/rules",
    summary: "Add a policy entry: the most specific entry decides (nearest destination, then source, then port)",
    body: MsegRuleBody,
    status: 201,
    response: MsegRuleView,
  },
  deleteMsegRule: {
    method: "delete",
    path: "/v1/microseg/rules/{id}",
    summary: "Delete a policy entry",
    params: z.object({ id: IdParam("entry id") }).strict(),
    status: 204,
  },
  exportMicroseg: {
    method: "get",
    path: "/v1/microseg/export",
    summary: "The whole policy as a document ({groups, rules})",
    status: 200,
    response: MsegDocument,
  },
  importMicroseg: {
    method: "put",
    path: "/v1/microseg/import",
    summary: "Replace the whole policy at once: groups kept by name (and id), the rest added or removed",
    body: MsegDocument,
    bodyLimit: BULK_BODY_LIMIT,
    status: 200,
    response: MsegImportResult,
  },
  listVips: {
    method: "get",
    path: "/v1/lb/vips",
    summary: "List the load balancer's VIPs with their backends' health and hit counts",
    status: 200,
    response: z.array(VipView),
  },
  createVip: {
    method: "post",
    path: "/v1/lb/vips",
    summary: "Publish a VIP (address, port, protocol) for backends added to it",
    body: VipBody,
    status: 201,
    response: VipView,
  },
  showVip: {
    method: "get",
    path: "/v1/lb/vips/{name}",
    summary: "Show a VIP: its backends, their health and hits on this node",
    params: NameParam,
    status: 200,
    response: VipView,
  },
  deleteVip: {
    method: "delete",
    path: "/v1/lb/vips/{name}",
    summary: "Delete a VIP: new packets to it are dropped (lb-unpublished), its flows end",
    params: NameParam,
    status: 204,
  },
  addBackend: {
    method: "post",
    path: "/v1/lb/vips/{name}/backends",
    summary: "Add an endpoint as a backend of a VIP",
    params: NameParam,
    body: BackendBody,
    status: 201,
    response: VipView,
  },
  deleteBackend: {
    method: "delete",
    path: "/v1/lb/vips/{name}/backends/{endpoint}",
    summary: "Remove an endpoint from a VIP's backends (all its ports, or `port`): its flows move at their next packet",
    params: z.object({ name: z.string(), endpoint: z.string() }).strict(),
    query: z
      .object({
        port: z
          .string()
          .regex(/^\d{1,5}$/)
          .optional(),
      })
      .strict(),
    status: 204,
  },
  listGatewayGroups: {
    method: "get",
    path: "/v1/gateway/groups",
    summary: "List the gateway groups: VIPs, nodes and priorities, timers, the node that holds each (a cluster node)",
    status: 200,
    response: z.array(GatewayGroupView),
  },
  createGatewayGroup: {
    method: "post",
    path: "/v1/gateway/groups",
    summary: "Declare a gateway group: gateway nodes that back each other up for VIPs, one active at a time",
    body: GatewayGroupBody,
    status: 201,
    response: GatewayGroupView,
  },
  showGatewayGroup: {
    method: "get",
    path: "/v1/gateway/groups/{name}",
    summary: "Show one gateway group",
    params: NameParam,
    status: 200,
    response: GatewayGroupView,
  },
  deleteGatewayGroup: {
    method: "delete",
    path: "/v1/gateway/groups/{name}",
    summary: "Delete a gateway group: its VIPs are let go",
    params: NameParam,
    status: 204,
  },
  getGatewayStatus: {
    method: "get",
    path: "/v1/gateway/status",
    summary: "This node's part in each gateway group: its role, the holder and epoch, what it hears of the others",
    status: 200,
    response: GatewayStatusView,
  },
  getCluster: {
    method: "get",
    path: "/v1/cluster",
    summary: "Cluster status: etcd's members and health, leader, revision; this node's mirror, watch and lease",
    status: 200,
    response: ClusterStatusView,
  },
  trace: {
    method: "post",
    path: "/v1/trace",
    summary: "Trace a packet an endpoint would send through the live programs, stage by stage",
    body: TraceRequestBody,
    status: 200,
    response: TraceResultView,
    optional: true,
  },
  getStatus: {
    method: "get",
    path: "/v1/status",
    summary: "Agent status: health, ports, uplink, maps, store, last reconcile, recent errors",
    status: 200,
    response: AgentStatusView,
  },
  reconcile: {
    method: "post",
    path: "/v1/reconcile",
    summary:
      "Reconcile the kernel to the store now; the report lists every kernel change it made (quick when nothing touched the ports since the last whole run; full=true checks every port)",
    query: z.object({ full: BoolQuery.optional() }).strict(),
    status: 200,
    response: ReconcileRunView,
    optional: true,
  },
  getMetrics: {
    method: "get",
    path: "/metrics",
    summary: "Prometheus metrics (text exposition format)",
    status: 200,
    text: true,
    optional: true,
  },
  getOpenApi: {
    method: "get",
    path: "/openapi.json",
    summary: "This API's OpenAPI 3.1 document",
    status: 200,
    response: z.record(z.string(), z.unknown()),
  },
} as const satisfies Record<string, RouteDef>;

export type Routes = typeof ROUTES;
export type OperationId = keyof Routes;

/** The operations as a list, in the table's order. */
export const OPERATIONS = Object.keys(ROUTES) as OperationId[];

type Get<K extends OperationId, F extends string> = Routes[K] extends { [P in F]: infer S extends z.ZodType }
  ? S
  : undefined;

/** What a caller sends (inputs, before defaults and transforms) and what a handler gets (after). */
export type ParamsIn<K extends OperationId> = Get<K, "params"> extends z.ZodType ? z.input<Get<K, "params">> : never;
export type QueryIn<K extends OperationId> = Get<K, "query"> extends z.ZodType ? z.input<Get<K, "query">> : never;
export type BodyIn<K extends OperationId> = Get<K, "body"> extends z.ZodType ? z.input<Get<K, "body">> : never;
export type ParamsOut<K extends OperationId> =
  Get<K, "params"> extends z.ZodType ? z.output<Get<K, "params">> : Record<string, never>;
export type QueryOut<K extends OperationId> =
  Get<K, "query"> extends z.ZodType ? z.output<Get<K, "query">> : Record<string, never>;
export type BodyOut<K extends OperationId> = Get<K, "body"> extends z.ZodType ? z.output<Get<K, "body">> : undefined;

/** A successful call's result: the response view, the text of a text route, or nothing (204). */
export type Result<K extends OperationId> =
  Get<K, "response"> extends z.ZodType
    ? z.output<Get<K, "response">>
    : Routes[K] extends { text: true }
      ? string
      : undefined;

type Field<Name extends string, T> = [T] extends [never]
  ? { [P in Name]?: never }
  : // A part whose keys are all optional may be left out.
    Record<string, never> extends T
    ? { [P in Name]?: T }
    : { [P in Name]: T };

/** The arguments of a call: path parameters, query and body, each required when the route
 * has one with required keys. */
export type CallArgs<K extends OperationId> = Field<"params", ParamsIn<K>> &
  Field<"query", QueryIn<K>> &
  Field<"body", BodyIn<K>>;

export { routeUrl } from "./route-paths";
