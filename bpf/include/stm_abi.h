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
	__u32 _pad;
	__u8 ip6[16];   /* profile IPv6 address (STM_PORT_F_IP6) */
	__u8 ll6[16];   /* link-local address derived from the profile MAC (EUI-64) */
	__u8 net6[16];  /* the network's IPv6 subnet ... */
	__u8 mask6[16]; /* ... and its mask (all zero: no IPv6 subnet) */
};
_Static_assert(sizeof(struct stm_port) == 96, "stm_port is ABI");

/* The port has an IPv6 profile address (its network has an IPv6 subnet). */
#define STM_PORT_F_IP6 1

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

#endif
