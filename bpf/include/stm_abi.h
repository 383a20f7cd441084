/* Structures shared between the datapath and the agent. Their layout is an
 * ABI: every struct carries a size assertion here and a matching codec with a
 * size test in src/datapath/. Never reorder fields; append only. */
#ifndef STM_ABI_H
#define STM_ABI_H

/* Hook a counter was taken at. Values are ABI. */
enum stm_hook {
	STM_HOOK_TC_INGRESS = 1,
	STM_HOOK_TC_EGRESS = 2,
	STM_HOOK_XDP = 3,
};

struct stm_count_key {
	__u32 ifindex;
	__u32 hook; /* enum stm_hook */
};
_Static_assert(sizeof(struct stm_count_key) == 8, "stm_count_key is ABI");

struct stm_count_val {
	__u64 packets;
	__u64 bytes;
};
_Static_assert(sizeof(struct stm_count_val) == 16, "stm_count_val is ABI");

#define STM_EVENT_SNAP 64

/* One packet sample pushed to the event ring buffer. */
struct stm_pkt_event {
	__u64 ts_ns;
	__u32 ifindex;
	__u32 hook;     /* enum stm_hook */
	__u32 len;      /* wire length of the packet */
	__u32 snap_len; /* bytes valid in data[] */
	__u8 data[STM_EVENT_SNAP];
};
_Static_assert(sizeof(struct stm_pkt_event) == 88, "stm_pkt_event is ABI");

/* Configuration of one workload port (the host side of a veth or a tap), keyed by
 * ifindex: everything port ingress and egress check, in one lookup. Addresses and
 * masks are in network byte order. */
struct stm_port {
	__u32 net_id;   /* network the port belongs to */
	__u32 ip4;      /* profile IPv4 address */
	__u8 mac[6];    /* profile MAC */
	__u16 flags;    /* STM_PORT_F_* */
	__u32 gw4;      /* the network's IPv4 gateway (DHCP server) */
	__u32 net4;     /* the network's IPv4 subnet ... */
	__u32 mask4;    /* ... and its mask */
	__u32 slot;     /* the port's row in stm_port_stats (0: shared, uncounted row) */
	__u8 ip6[16];   /* profile IPv6 address (STM_PORT_F_IP6) */
	__u8 ll6[16];   /* link-local address derived from the profile MAC (EUI-64) */
	__u8 net6[16];  /* the network's IPv6 subnet ... */
	__u8 mask6[16]; /* ... and its mask (all zero: no IPv6 subnet) */
	__u8 gw6[16];   /* the network's IPv6 gateway (DNS server; zero: none) */
	__u16 group;    /* the endpoint's microsegmentation group (STM_MSEG_UNTAGGED: none) */
	__u16 _pad;
};
_Static_assert(sizeof(struct stm_port) == 116, "stm_port is ABI");

/* Packets and bytes a port's programs saw, per CPU, in the port's stm_port_stats row. */
struct stm_port_stats {
	struct stm_count_val from_ep; /* port ingress: sent by the endpoint */
	struct stm_count_val to_ep;   /* port egress: to the endpoint */
};
_Static_assert(sizeof(struct stm_port_stats) == 32, "stm_port_stats is ABI");

/* The port has an IPv6 profile address (its network has an IPv6 subnet). */
#define STM_PORT_F_IP6 1
/* The port's network is extended onto the uplink's LAN: frames bridged between them pass. */
#define STM_PORT_F_LAN 4
/* The port is a macvtap (a VM's /dev/tapN): its programs sit the other way round, stm_port_in
 * on tc egress (what the guest writes leaves through the device's transmit path) and
 * stm_port_out on tc ingress; an answer to the guest goes into the device, not out of it. */
#define STM_PORT_F_MACVTAP 8
/* A macvtap in private mode: nothing passes between it and another VM's macvtap on this node. */
#define STM_PORT_F_VM_PRIVATE 16

/* One endpoint profile: every usable address of a network, claimed or not. */
struct stm_profile_key {
	__u32 net_id;
	__u32 ip4; /* network byte order */
};
_Static_assert(sizeof(struct stm_profile_key) == 8, "stm_profile_key is ABI");

struct stm_profile {
	__u8 mac[6];
	__u16 flags; /* STM_PROFILE_F_* */
};
_Static_assert(sizeof(struct stm_profile) == 8, "stm_profile is ABI");

#define STM_PROFILE_F_CLAIMED 1
#define STM_PROFILE_F_GATEWAY 2

struct stm_drop_key {
	__u32 ifindex;
	__u32 reason; /* enum stm_drop_reason */
};
_Static_assert(sizeof(struct stm_drop_key) == 8, "stm_drop_key is ABI");

/* Addresses that belong to this node: attached endpoints' MACs and addresses and the
 * gateways. The uplink drops frames from outside that claim one. */
enum stm_local_kind {
	STM_LOCAL_MAC = 1,
	STM_LOCAL_IP4 = 4,
	STM_LOCAL_IP6 = 6,
};

struct stm_local_key {
	__u32 kind;     /* enum stm_local_kind */
	__u8 addr[16];  /* MAC: 6 bytes, IPv4: 4 bytes, rest zero */
};
_Static_assert(sizeof(struct stm_local_key) == 20, "stm_local_key is ABI");

struct stm_local {
	__u32 ifindex;  /* the endpoint's port, or the bridge for a gateway */
	__u32 net_id;
};
_Static_assert(sizeof(struct stm_local) == 8, "stm_local is ABI");

/* Blocklist prefixes (LPM trie keys). */
struct stm_lpm4_key {
	__u32 prefixlen;
	__u8 addr[4];
};
_Static_assert(sizeof(struct stm_lpm4_key) == 8, "stm_lpm4_key is ABI");

struct stm_lpm6_key {
	__u32 prefixlen;
	__u8 addr[16];
};
_Static_assert(sizeof(struct stm_lpm6_key) == 20, "stm_lpm6_key is ABI");

/* A device on the user bridge that is not a workload port, by ifindex. */
struct stm_iface {
	__u32 kind;  /* STM_IFACE_* */
	__u32 flags; /* none yet */
};
_Static_assert(sizeof(struct stm_iface) == 8, "stm_iface is ABI");

/* The uplink: a frame bridged from it comes straight from the LAN. */
#define STM_IFACE_UPLINK 1
/* The overlay's VXLAN device (cnv-vxlan0): a frame bridged from it comes from an endpoint of
 * another node, checked by stm_overlay_in against the cluster state. */
#define STM_IFACE_OVERLAY 2
/* One end of a link between two user bridges (cnv-user-br0 and an extension bridge
 * cnv-user-brN, docs/networks.md#capacity): a frame that crossed it carries the device it
 * entered the host on in skb->priority (stm_link.h). */
#define STM_IFACE_LINK 3
/* A VM's macvtap (its port entry has STM_PORT_F_MACVTAP): what the guest sends carries the
 * macvtap's ifindex from stm_port_in on, in skb->priority for a hook it is redirected to
 * (stm_from) and in the mark across the macvtap lower link (stm_mvl_out checks it is one). */
#define STM_IFACE_MACVTAP 4
/* stm_link_in's mark on the origin it puts into skb->priority (ifindexes are below 2^31). */
#define STM_LINK_SEEN 0x80000000u
/* stm_from() of a frame that crossed a link without stm_link_in: its callers drop it. */
#define STM_FROM_UNMARKED 0xffffffffu
/* skb->tc_index across a link for a firewall's reject answer (no group is 0xffff). */
#define STM_LINK_FW_REPLY 0xffffu

/* ---- overlay (VXLAN between the nodes of a cluster) ------------------------------------ */

/* A node's underlay address (IPv4 as ::ffff:a.b.c.d): the VXLAN packets the node accepts come
 * from these. The all-zero key is the switch: present while this node is in a cluster with
 * an overlay, so a single node's VXLAN on port 4789 (someone else's) is never judged. */
struct stm_vtep_key {
	__u8 addr[16];
};
_Static_assert(sizeof(struct stm_vtep_key) == 16, "stm_vtep_key is ABI");

struct stm_vtep {
	__u32 flags; /* STM_VTEP_F_* */
	__u32 mtu;   /* the switch's entry: the largest IP packet an endpoint may send to another node */
};
_Static_assert(sizeof(struct stm_vtep) == 8, "stm_vtep is ABI");

/* This node's own address: a packet claiming it as its source came from elsewhere. */
#define STM_VTEP_F_SELF 1
/* A gateway node: it may send this node's endpoints the replies of their north-south flows,
 * from the network's gateway MAC. */
#define STM_VTEP_F_GATEWAY 2

/* North-south over the overlay (one entry): on a node that is not a gateway, what a workload
 * sends through its gateway to outside every network goes to a gateway node, chosen per flow
 * among `count`; on a gateway node (STM_GW_F_SELF), the replies go back to the endpoints'
 * nodes. */
struct stm_gw_cfg {
	__u32 count;           /* gateway nodes in addr[] (0: north-south leaves where it is) */
	__u32 flags;           /* STM_GW_F_* */
	__u32 overlay_ifindex; /* cnv-vxlan0 */
	__u32 _pad;
	__u8 addr[4][16];      /* their underlay addresses (IPv4 as ::ffff:a.b.c.d), by name */
};
_Static_assert(sizeof(struct stm_gw_cfg) == 80, "stm_gw_cfg is ABI");

#define STM_GW_F_SELF 1
#define STM_GW_MAX 4

/* A MAC as a map key. */
struct stm_mac_key {
	__u8 mac[6];
	__u16 pad;
};
_Static_assert(sizeof(struct stm_mac_key) == 8, "stm_mac_key is ABI");

/* An endpoint of another node, by its MAC: where to send frames for it (the node's address
 * and the network's VNI), and what it may send (its network, its addresses, its node). */
struct stm_remote {
	__u32 net_id;
	__u32 vni;
	__u32 ip4;     /* profile IPv4 address, network order */
	__u32 flags;   /* STM_REMOTE_F_* */
	__u8 ip6[16];  /* profile IPv6 address (STM_REMOTE_F_IP6) */
	__u8 vtep[16]; /* the node it runs on: its underlay address (IPv4 as ::ffff:a.b.c.d) */
};
_Static_assert(sizeof(struct stm_remote) == 48, "stm_remote is ABI");

#define STM_REMOTE_F_IP6 1   /* ip6 is set */
#define STM_REMOTE_F_VTEP6 2 /* the node's address is IPv6 */

/* VNIs are network ids plus this (src/cluster/keys.ts vniOf). */
#define STM_VNI_BASE 0x10000
/* The overlay's UDP port (IANA VXLAN). */
#define STM_VXLAN_PORT 4789

/* A network's subnet (IPv4 as ::ffff:a.b.c.d/96+len), for the uplink's anti-spoofing. */
struct stm_subnet {
	__u32 net_id;
	__u32 flags; /* STM_SUBNET_F_* */
};
_Static_assert(sizeof(struct stm_subnet) == 8, "stm_subnet is ABI");

/* The network is extended onto the uplink's LAN: its addresses may come from there. */
#define STM_SUBNET_F_LAN 1

/* ---- firewall ----------------------------------------------------------------------------
 * A scope (a network by its id, or 0: the node's global scope at the uplink) has one active
 * generation of compiled rules. Every entry of a generation carries its number, so a new rule
 * set is written beside the old one and switched with the one update of the scope entry. One
 * rule added, deleted or moved is instead written into the active generation, entry by entry
 * in an order where every packet meets the old set or the new (src/datapath/firewall-tables.ts).
 *
 * Rules sit at slots in priority order, with free slots between them for later inserts. */

/* Rule bitmap width: bit i is the rule at slot i of a generation. */
#define STM_FW_WORDS 160
#define STM_FW_MAX_RULES (STM_FW_WORDS * 64)
/* Summary words: bit j of the summary is set when word j is not zero. */
#define STM_FW_SUMS 3

/* What one field value (an address prefix, a port interval) matches: the rules whose
 * condition on that field it satisfies. */
struct stm_fw_bits {
	__u64 sum[4]; /* STM_FW_SUMS used; 4 keeps the words 32-byte aligned */
	__u64 w[STM_FW_WORDS];
};
_Static_assert(sizeof(struct stm_fw_bits) == 1312, "stm_fw_bits is ABI");

enum stm_fw_action {
	STM_FW_ALLOW = 1,
	STM_FW_DENY = 2,
	STM_FW_REJECT = 3,
};

/* Direction, seen from the endpoint (or, in the global scope, from the node). */
enum stm_fw_dir {
	STM_FW_INGRESS = 0, /* to the endpoint: port egress hook, uplink XDP */
	STM_FW_EGRESS = 1,  /* from the endpoint: port ingress hook, uplink tc egress */
};

/* Protocol classes of the port tries. */
enum stm_fw_pcls {
	STM_PCLS_OTHER = 0,
	STM_PCLS_TCP = 1,
	STM_PCLS_UDP = 2,
	STM_PCLS_ICMP = 3,
	STM_PCLS_ICMP6 = 4,
};

struct stm_fw_scope {
	__u32 gen;   /* active generation; 0: no rules */
	__u8 def;    /* enum stm_fw_action: allow or deny */
	__u8 flags;  /* STM_FW_SCOPE_F_* */
	__u16 nsum;  /* summary words in use (rule slots / 4096, rounded up) */
	/* Prefix lengths the generation's address tables hold, per side (0 source, 1
	 * destination): bit (32 - len) for IPv4, bit (128 - len) for IPv6, so the lowest set
	 * bit is the longest prefix. */
	__u64 len4[2];
	__u64 len6[2][3];
	/* Tracked flows remember the epoch that allowed them and are classified again when it
	 * changes: every change of the rules or the default gives the scope a new epoch, whether
	 * it came as a new generation or as edits of the active one. */
	__u32 epoch;
	__u32 _pad;
};
_Static_assert(sizeof(struct stm_fw_scope) == 80, "stm_fw_scope is ABI");

/* The scope enforces (it has rules or denies by default): traffic is tracked. */
#define STM_FW_SCOPE_F_ON 1
/* The node's global scope (north-south, at the uplink); networks use their id. */
#define STM_FW_GLOBAL 0

/* Address tables, one hash per family and side: (prefix length, generation, masked
 * address). A lookup tries the lengths present, longest first (tuple space search on the
 * prefix length): its cost follows the number of distinct lengths, not of prefixes. */
/* Length 0 holds an empty entry (the search's last resort); the rules for any address of
 * either family are in the IPv6 table at length 0 with the family (4, 6) in addr[0]. */
struct stm_fw_addr4_key {
	__u32 len;
	__u32 gen;
	__u8 addr[4];
};
_Static_assert(sizeof(struct stm_fw_addr4_key) == 12, "stm_fw_addr4_key is ABI");

struct stm_fw_addr6_key {
	__u32 len;
	__u32 gen;
	__u8 addr[16];
};
_Static_assert(sizeof(struct stm_fw_addr6_key) == 24, "stm_fw_addr6_key is ABI");

/* Port trie: gen, source or destination port, direction, protocol class, then the port
 * (ICMP: type as the source port, code as the destination port). */
struct stm_fw_port_key {
	__u32 prefixlen;
	__u32 gen;
	__u8 sel;     /* 0 source port, 1 destination port */
	__u8 dir;     /* enum stm_fw_dir */
	__u8 pcls;    /* enum stm_fw_pcls */
	__u8 port[2]; /* big endian */
	__u8 _pad[3];
};
_Static_assert(sizeof(struct stm_fw_port_key) == 16, "stm_fw_port_key is ABI");

/* A rule of a generation, by its position. */
struct stm_fw_rule_key {
	__u32 gen;
	__u32 idx;
};
_Static_assert(sizeof(struct stm_fw_rule_key) == 8, "stm_fw_rule_key is ABI");

struct stm_fw_rule {
	__u32 id;    /* the rule's id: counters outlive generations */
	__u8 action; /* enum stm_fw_action */
	__u8 flags;  /* STM_FW_RULE_F_* */
	__u16 _pad;
};
_Static_assert(sizeof(struct stm_fw_rule) == 8, "stm_fw_rule is ABI");

#define STM_FW_RULE_F_LOG 1
/* Hit counters of a scope's default action: key STM_FW_DEFAULT_ID | scope. */
#define STM_FW_DEFAULT_ID 0x80000000u

/* Connection tracking, per port (or uplink): the two sides in a canonical order. */
struct stm_ct_key {
	__u32 ifindex;
	__u8 family;
	__u8 proto;
	__u16 _pad;
	__u8 a[16];
	__u8 b[16];
	__u16 pa; /* ports (ICMP echo: the identifier on both), host order */
	__u16 pb;
};
_Static_assert(sizeof(struct stm_ct_key) == 44, "stm_ct_key is ABI");

struct stm_ct {
	__u64 expires;   /* bpf_ktime_get_ns() deadline */
	__u32 gen;       /* scope epoch that last allowed the flow */
	__u32 rule_id;   /* rule that allowed it (STM_FW_DEFAULT_ID | scope: the default) */
	__u8 state;      /* enum stm_ct_state */
	__u8 flags;      /* STM_CT_F_* */
	__u8 dir;        /* enum stm_fw_dir of the first packet */
	__u8 _pad;
	__u16 cls_sport; /* the first packet's classification ports (ICMP: type, code) */
	__u16 cls_dport;
};
_Static_assert(sizeof(struct stm_ct) == 24, "stm_ct is ABI");

enum stm_ct_state {
	STM_CT_SYN_SENT = 1,
	STM_CT_ESTABLISHED = 2,
	STM_CT_CLOSING = 3,
	STM_CT_CLOSED = 4,
	STM_CT_OPEN = 5, /* UDP, ICMP echo, other protocols: by timeout */
};

#define STM_CT_F_ORIG_A 1  /* side a sent the first packet */
#define STM_CT_F_REPLIED 2
#define STM_CT_F_FIN_ORIG 4
#define STM_CT_F_FIN_REPLY 8

/* Verdict of a fragmented datagram, from its first fragment. */
struct stm_frag_key {
	__u32 ifindex;
	__u8 family;
	__u8 proto;
	__u16 _pad;
	__u32 id;
	__u8 src[16];
	__u8 dst[16];
};
_Static_assert(sizeof(struct stm_frag_key) == 44, "stm_frag_key is ABI");

/* Firewall statistics, per CPU (an array indexed by these). */
enum stm_fw_stat {
	STM_FW_STAT_CT_NEW = 0,
	STM_FW_STAT_CT_PICKUP = 1,     /* mid-flow TCP without state, allowed by the rules */
	STM_FW_STAT_CT_FULL = 2,       /* a new entry could not be stored */
	STM_FW_STAT_CT_REVALIDATED = 3,
	STM_FW_STAT_CT_CUT = 4,        /* an established flow a new generation denies */
	STM_FW_STAT_FRAG_MISS = 5,
	STM_FW_STAT_REJECT_SENT = 6,
	STM_FW_STAT_LOG_LOST = 7,
	STM_FW_STAT_MAX = 8,
};

/* ---- monitoring ---------------------------------------------------------------------------
 * Events go to one ring buffer only while a monitor holds the lease in stm_mon_cfg, and are
 * paced per CPU, so nothing is spent on them when nobody listens and a flood of drops cannot
 * flood the node with events. */
enum stm_mon_kind {
	STM_MON_DROP = 1, /* a dropped packet, with its reason and its first bytes */
	STM_MON_LOG = 2,  /* a packet classified by a rule marked `log` */
	STM_MON_FLOW = 3, /* a new tracked flow */
};

struct stm_mon_cfg {
	__u64 until_ns;    /* events are on until this bpf_ktime_get_ns() (the monitor renews it) */
	__u64 interval_ns; /* pacing, per CPU: one event per interval on average ... */
	__u64 burst_ns;    /* ... and up to burst_ns / interval_ns more at once */
	__u32 kinds;       /* bit (1 << enum stm_mon_kind) per kind wanted */
	__u32 ifindex;     /* only events of this device (0: every device) */
	__u32 net_id;      /* only events of ports of this network (0: every device) */
	__u32 owner;       /* pid of the monitor holding the lease (one reader at a time) */
};
_Static_assert(sizeof(struct stm_mon_cfg) == 40, "stm_mon_cfg is ABI");

#define STM_MON_SNAP 128

struct stm_mon_event {
	__u64 ts_ns;
	__u32 ifindex;
	__u8 kind;     /* enum stm_mon_kind */
	__u8 hook;     /* enum stm_hook (drops) */
	__u8 dir;      /* enum stm_fw_dir (log, flow) */
	__u8 action;   /* enum stm_fw_action (log) */
	__u32 reason;  /* enum stm_drop_reason (drops) */
	__u32 rule_id; /* log, flow: the rule that decided */
	__u32 len;     /* bytes of the packet */
	__u32 snap_len; /* bytes of it in data[] (drops) */
	/* Log and flow events: the parsed packet (addresses in network order, IPv4 first 4 bytes). */
	__u8 family;
	__u8 proto;
	__u16 sport;
	__u16 dport;
	__u16 _pad;
	__u8 src[16];
	__u8 dst[16];
	__u8 data[STM_MON_SNAP];
};
_Static_assert(sizeof(struct stm_mon_event) == 200, "stm_mon_event is ABI");

enum stm_mon_stat {
	STM_MON_STAT_EMITTED = 0,
	STM_MON_STAT_PACED = 1,     /* not emitted: over the pace */
	STM_MON_STAT_RING_FULL = 2, /* not emitted: the ring buffer was full (the reader is behind) */
	STM_MON_STAT_MAX = 3,
};

/* skb->mark of a reply the firewall built (reset, unreachable) and sent back through a port:
 * the port programs pass it once. A workload cannot set it: marks are scrubbed when a frame
 * crosses into the host's namespace. */
#define STM_MARK_FW_REPLY 0x53544d52u

/* ---- egress caps (token buckets) ----------------------------------------------------- */

/* What a bucket caps: an endpoint's sending (at its port's tc ingress: every path) or a
 * network's traffic leaving the node (at the uplink's tc egress). */
enum stm_shape_kind {
	STM_SHAPE_ENDPOINT = 1, /* id: the port's ifindex */
	STM_SHAPE_NETWORK = 2,  /* id: the network's net_id */
};

struct stm_shape_key {
	__u32 kind; /* enum stm_shape_kind */
	__u32 id;
};
_Static_assert(sizeof(struct stm_shape_key) == 8, "stm_shape_key is ABI");

/* The cap as the agent sets it. The rate is kept as the time one byte takes, in ns << 20
 * (fixed point: no division in the datapath; 8 kbit/s to 400 Gbit/s keep 5+ digits), the
 * depth as the time the burst takes at that rate. Replacing an entry changes the cap at once;
 * the bucket's fill (stm_shape_state) carries over. */
struct stm_shape_cfg {
	__u64 ns_per_byte; /* (1e9 << STM_SHAPE_SHIFT) / rate in bytes per second */
	__u64 burst_ns;    /* burst bytes × ns_per_byte >> STM_SHAPE_SHIFT */
};
_Static_assert(sizeof(struct stm_shape_cfg) == 16, "stm_shape_cfg is ABI");
#define STM_SHAPE_SHIFT 20

/* A bucket's fill and what it let through and dropped. One entry per capped endpoint or
 * network, shared by every CPU under its lock (see stm_shape.h for why not per CPU); the
 * datapath creates it on the first packet. */
struct stm_shape_state {
	struct bpf_spin_lock lock;
	__u32 _pad;
	__u64 credit_ns; /* tokens, as sending time: 0..burst_ns */
	__u64 last_ns;   /* bpf_ktime_get_ns() of the last refill */
	__u64 passed_pkts;
	__u64 passed_bytes;
	__u64 dropped_pkts;
	__u64 dropped_bytes;
};
_Static_assert(sizeof(struct stm_shape_state) == 56, "stm_shape_state is ABI");

/* The port has an egress cap (an stm_shape_cfg entry of kind STM_SHAPE_ENDPOINT). */
#define STM_PORT_F_SHAPED 2

/* A parsed packet, as the firewall sees it (datapath only: per-CPU scratch, no agent codec).
 * Addresses are in network order, IPv4 in the first four bytes. */
struct stm_tuple {
	__u8 src[16];
	__u8 dst[16];
	__u8 inner_src[16]; /* ICMP errors: the packet the error is about */
	__u8 inner_dst[16];
	__u8 family;        /* 4 or 6 */
	__u8 proto;
	__u8 pcls;          /* enum stm_fw_pcls */
	__u8 frag;          /* 0 whole, 1 first fragment, 2 later fragment */
	__u16 sport;        /* classification: ports, or ICMP type and code */
	__u16 dport;
	__u16 ct_sport;     /* tracking: ports, or the ICMP echo identifier on both */
	__u16 ct_dport;
	__u32 frag_id;
	__u8 tcp_flags;
	__u8 icmp;          /* FW_ICMP_* */
	__u8 inner_proto;
	__u8 dir;           /* enum stm_fw_dir the packet crosses in */
	__u16 inner_sport;
	__u16 inner_dport;
	__u32 seq;          /* TCP: for a reset */
	__u32 ack_seq;
	__u32 seg_len;      /* TCP payload length, SYN and FIN included */
	__u32 l4off;
	__u32 l4len;
	__u32 len;          /* bytes of the frame (hit counters) */
	__u8 hop_limit;     /* IPv4 TTL or IPv6 hop limit: ND only on the link (255), MLD 1 */
	__u8 pad[3];
};


/* ---- masquerading (SNAT) at the uplink -----------------------------------------------------
 * A flow from a masqueraded network leaving through the uplink gets the network's NAT address
 * and a port of the NAT range (ICMP echo: an identifier); its replies get the workload's back.
 * Two entries per flow in stm_nat: the original direction (key: the workload's tuple) and the
 * reply one (key: the tuple the reply arrives with, at the NAT address). */
struct stm_nat_key {
	__u8 family;   /* 4 or 6 */
	__u8 proto;
	__u8 dir;      /* STM_NAT_OUT: the workload's tuple; STM_NAT_IN: the reply's */
	__u8 _pad;
	__u8 src[16];  /* IPv4 in the first four bytes, the rest zero */
	__u8 dst[16];
	__u16 sport;   /* host order; ICMP echo: the identifier on both */
	__u16 dport;
};
_Static_assert(sizeof(struct stm_nat_key) == 40, "stm_nat_key is ABI");

#define STM_NAT_OUT 0
#define STM_NAT_IN 1

struct stm_nat_entry {
	__u8 addr[16]; /* OUT: the NAT address; IN: the workload's */
	__u16 port;    /* OUT: the NAT port; IN: the workload's port (host order) */
	__u8 flags;    /* STM_NAT_F_*: what this direction has seen */
	__u8 _pad;
	__u32 net_id;  /* the workload's network */
	__u64 seen;    /* bpf_ktime_get_ns() of this direction's last packet (to a second) */
};
_Static_assert(sizeof(struct stm_nat_entry) == 32, "stm_nat_entry is ABI");

#define STM_NAT_F_FIN 1 /* a TCP FIN went this way */
#define STM_NAT_F_RST 2 /* a TCP reset went this way */
#define STM_NAT_F_REPLIED 4 /* (reply direction) a reply came back */

/* A masqueraded network (by net_id): its NAT address per family. */
struct stm_nat_net {
	__u8 addr6[16];
	__u8 addr4[4];
	__u32 flags;   /* STM_NAT_NET_F_* */
};
_Static_assert(sizeof(struct stm_nat_net) == 24, "stm_nat_net is ABI");

#define STM_NAT_NET_F_V4 1 /* IPv4 is masqueraded to addr4 */
#define STM_NAT_NET_F_V6 2 /* IPv6 to addr6 */

/* The node's NAT settings (one entry): the ports a translation takes, outside the kernel's
 * own ephemeral range so that the node's connections never meet a translated one. */
struct stm_nat_cfg {
	__u16 port_lo;
	__u16 port_hi;
	__u32 flags;   /* STM_NAT_CFG_F_ON: some network is masqueraded */
};
_Static_assert(sizeof(struct stm_nat_cfg) == 8, "stm_nat_cfg is ABI");

#define STM_NAT_CFG_F_ON 1

/* A gateway group's VIP on this node: the CLOCK_MONOTONIC instant (ns) after which the node no
 * longer answers for it (0: it does not hold the VIP). */
struct stm_vip {
	__u64 deadline;
};
_Static_assert(sizeof(struct stm_vip) == 8, "stm_vip is ABI");

/* A cluster node's user bridge carries the anycast gateway MAC, the same on every node; on the
 * uplink's LAN the node speaks with `own` (the uplink NIC's MAC) instead (stm_uplink_mac.h). */
struct stm_uplink_mac {
	__u8 anycast[6];
	__u8 own[6];
	__u32 on;
};
_Static_assert(sizeof(struct stm_uplink_mac) == 16, "stm_uplink_mac is ABI");

/* Per-CPU room for masquerading's keys (datapath only: the call chain's stack is short). */
struct stm_nat_work {
	struct stm_nat_key k;  /* the packet's flow */
	struct stm_nat_key r;  /* the reply direction being tried */
	struct stm_nat_key ok; /* the original direction of the flow holding it */
	struct stm_nat_entry e;
};

/* Masquerading statistics, per CPU (an array indexed by these). */
enum stm_nat_stat {
	STM_NAT_STAT_NEW = 0,        /* flows translated */
	STM_NAT_STAT_EXHAUSTED = 1,  /* a new flow found no free port (also a drop: nat-exhausted) */
	STM_NAT_STAT_RECLAIMED = 2,  /* an expired flow's port taken by a new one */
	STM_NAT_STAT_SOCKET_SKIP = 3,/* a port skipped: a socket of the node has it */
	STM_NAT_STAT_ICMP_ERR = 4,   /* ICMP errors translated back */
	STM_NAT_STAT_FRAG = 5,       /* later fragments translated */
	STM_NAT_STAT_MAX = 6,
};

/* ---- microsegmentation (stm_mseg.h) --------------------------------------------------------
 * A port stamps its endpoint's group into skb->mark (STM_MSEG_MARK_TAG << 16 | group) on what
 * the endpoint sends; the overlay carries it in VXLAN-GBP; the destination's port judges the
 * (source group, destination group) pair against the compiled policy. */
enum {
#define STM_MSEG_CONST(id, value, what) STM_MSEG_##id = value,
#include "stm_mseg.def"
#undef STM_MSEG_CONST
};

/* Whether the fabric segments at all (a group exists), and the policy's active generation. */
struct stm_mseg_cfg {
	__u32 flags; /* STM_MSEG_F_* */
	__u32 gen;   /* the generation of stm_mseg_pol keys in force */
};
_Static_assert(sizeof(struct stm_mseg_cfg) == 8, "stm_mseg_cfg is ABI");

#define STM_MSEG_F_ON 1

/* A group's line up the tree: itself, its parent, ... its root (len of them). */
struct stm_mseg_group {
	__u16 chain[STM_MSEG_DEPTH_MAX];
	__u32 len;
};
_Static_assert(sizeof(struct stm_mseg_group) == 20, "stm_mseg_group is ABI");

/* A compiled policy key: for destination group `dst` (an endpoint's own group), the entries whose
 * source is `src` (a group, or STM_MSEG_UNTAGGED) and whose destination is `dst` or a group above
 * it, nearest first. proto 0: entries for any protocol; dport 0: for any port of `proto`. */
struct stm_mseg_key {
	__u16 dst;
	__u16 src;
	__u16 dport;
	__u8 proto;
	__u8 gen;
};
_Static_assert(sizeof(struct stm_mseg_key) == 8, "stm_mseg_key is ABI");

struct stm_mseg_val {
	__u8 dist;   /* how far up from `dst` the deciding entry's destination is (0: dst itself) */
	__u8 action; /* STM_MSEG_A_*; NONE: only more specific keys (proto, port) of the pair exist */
	__u8 flags;  /* STM_MSEG_V_* */
	__u8 _pad;
	__u32 id;    /* the deciding entry (its hit counter) */
};
_Static_assert(sizeof(struct stm_mseg_val) == 8, "stm_mseg_val is ABI");

#define STM_MSEG_A_NONE 0
#define STM_MSEG_A_ALLOW 1
#define STM_MSEG_A_DENY 2
#define STM_MSEG_V_LOG 1  /* the entry is marked log */
#define STM_MSEG_V_MORE 2 /* keys with a protocol (and port) exist for this pair */

/* ---- load balancer (stm_lb.h) ---------------------------------------------------------------
 * A VIP (address, port, protocol) spreads new flows over its backends through a Maglev table of
 * backend ids; a flow keeps its backend through the connection table. Addresses as in a tuple:
 * IPv4 in the first 4 bytes, the rest 0. Ports in host order. */
#ifndef STM_LB_VIPS_MAX
#define STM_LB_VIPS_MAX 1024
#endif
#ifndef STM_LB_BACKENDS_MAX
#define STM_LB_BACKENDS_MAX 65536
#endif
#ifndef STM_LB_CT_MAX
#define STM_LB_CT_MAX 262144
#endif

struct stm_lb_vip_key {
	__u8 addr[16];
	__u16 port;   /* 0 with proto 0: the address entry (some VIP uses the address) */
	__u8 proto;
	__u8 family;  /* 4 or 6 */
};
_Static_assert(sizeof(struct stm_lb_vip_key) == 20, "stm_lb_vip_key is ABI");

struct stm_lb_vip {
	__u32 id;    /* its Maglev table in stm_lb_rings; 0 for the address entry */
	__u32 size;  /* slots of that table (a prime) */
	__u32 flags; /* STM_LB_F_* */
	__u32 sig;   /* the agent's hash of the backend set the table was built from */
};
_Static_assert(sizeof(struct stm_lb_vip) == 16, "stm_lb_vip is ABI");

#define STM_LB_F_ADDR 1 /* the address entry */
#define STM_LB_F_DSR 2  /* direct server return: the frame goes to the backend's MAC, the VIP kept */

/* A DSR VIP's backend, by its endpoint's MAC (stm_lb_dsr): the port that may answer from the
 * VIP's address and port, and receive the VIP's frames from outside its network. */
struct stm_lb_dsr_key {
	__u8 mac[6];
	__u16 _pad;
	__u32 vip; /* the VIP's id */
};
_Static_assert(sizeof(struct stm_lb_dsr_key) == 12, "stm_lb_dsr_key is ABI");

/* A backend by id (the values of the Maglev tables). */
struct stm_lb_backend {
	__u8 addr[16];
	__u16 port;
	__u8 family;
	__u8 flags; /* STM_LB_B_* */
	__u32 vip;  /* the VIP's id */
	__u8 mac[6];   /* its endpoint's: a client of its network sends to it directly */
	__u16 _pad;
	__u32 net_id;  /* its endpoint's network */
};
_Static_assert(sizeof(struct stm_lb_backend) == 36, "stm_lb_backend is ABI");

#define STM_LB_B_UP 1 /* healthy: its flows stay with it */

/* A translated flow, both ways: dir 0 keyed by the client's packet to the VIP (value: the
 * backend), dir 1 by the backend's reply to the client (value: the VIP). */
struct stm_lb_ct_key {
	__u8 src[16];
	__u8 dst[16];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 dir;
	__u8 family;
	__u8 _pad;
};
_Static_assert(sizeof(struct stm_lb_ct_key) == 40, "stm_lb_ct_key is ABI");

struct stm_lb_ct {
	__u8 addr[16]; /* dir 0: the backend's; dir 1: the VIP's */
	__u16 port;
	__u16 _pad;
	__u32 backend;
	__u32 vip;
	__u32 _pad2;
	__u64 seen;    /* coarse clock (s), last packet */
};
_Static_assert(sizeof(struct stm_lb_ct) == 40, "stm_lb_ct is ABI");

/* Per backend, per CPU: packets and bytes sent to it, and the flows it was picked for. */
struct stm_lb_hit {
	__u64 packets;
	__u64 bytes;
	__u64 flows;
};
_Static_assert(sizeof(struct stm_lb_hit) == 24, "stm_lb_hit is ABI");

/* Whether any VIP exists (the reply side looks for flows only then). */
struct stm_lb_cfg {
	__u32 vips;
	__u32 flags;
};
_Static_assert(sizeof(struct stm_lb_cfg) == 8, "stm_lb_cfg is ABI");

/* Every LB figure that is not a backend's, per CPU (stm_lb_stats). */
enum {
	STM_LB_STAT_NEW = 0,    /* flows given a backend by the table */
	STM_LB_STAT_REPICK = 1, /* flows whose backend went down or away, given another */
	STM_LB_STAT_REV = 2,    /* replies given the VIP back */
	STM_LB_STAT_MAX = 4,
};

#endif
