/* Every map of the Stratum datapath, declared once. Objects include this
 * header and only the maps a program references end up in its object. Names
 * carry the stm_ prefix so the loader recognises its own pins. */
#ifndef STM_MAPS_H
#define STM_MAPS_H

/* Each map is defined in the object's first unit and declared extern in the others (a unit
 * that defines STM_MAPS_EXTERN before including this): the linker makes them one. */
#ifdef STM_MAPS_EXTERN
#define STM_MAP extern
#else
#define STM_MAP
#endif

#include "stm_abi.h"

/* Packet and byte counters per (ifindex, hook), per CPU; summed by the agent. */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct stm_count_key);
	__type(value, struct stm_count_val);
} stm_counters SEC(".maps");

/* Packet samples for the agent (monitor, tests); consumed through libbpf's ring_buffer. */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} stm_events SEC(".maps");

/* Workload ports by ifindex. A port without an entry drops everything. */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct stm_port);
} stm_ports SEC(".maps");

/* Table sizes a build may set otherwise (-D): an agent finding pinned maps of another size
 * (another build's) stages its own, fills them and swaps the programs over (see
 * src/agent/datapath.ts open()); the upgrade test builds such a binary. */
#ifndef STM_PROFILES_MAX
#define STM_PROFILES_MAX (1 << 20)
#endif
#ifndef STM_CT_MAX
#define STM_CT_MAX 262144
#endif
#ifndef STM_MSEG_CT_MAX
#define STM_MSEG_CT_MAX 262144
#endif

/* Every endpoint profile (IPv4 ↔ MAC) of every network: a /16 is 65,534 entries. */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STM_PROFILES_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct stm_profile_key);
	__type(value, struct stm_profile);
} stm_profiles SEC(".maps");

/* Drops per (port, reason), per CPU. */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct stm_drop_key);
	__type(value, __u64);
} stm_drops SEC(".maps");

/* This node's addresses (endpoints and gateways), for the uplink's anti-spoofing. */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 18);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct stm_local_key);
	__type(value, struct stm_local);
} stm_local SEC(".maps");

/* Devices on the user bridge that are not workload ports (the uplink), by ifindex. */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct stm_iface);
} stm_ifaces SEC(".maps");

/* Every network's subnets: a source inside one arriving from the uplink is a spoof. */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 131072);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct stm_lpm6_key);
	__type(value, struct stm_subnet);
} stm_subnets SEC(".maps");

/* Source-IP blocklist: IPv4 and IPv6 prefixes, checked first at the uplink. */
#define STM_BLOCKLIST_MAX 1000000
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, STM_BLOCKLIST_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct stm_lpm4_key);
	__type(value, __u32);
} stm_block4 SEC(".maps");

STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, STM_BLOCKLIST_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct stm_lpm6_key);
	__type(value, __u32);
} stm_block6 SEC(".maps");

/* Per-CPU room for the firewall's parsed packet: slots 0-1 ports (by direction), 2-3 uplink. */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct stm_tuple);
} stm_fw_scratch SEC(".maps");

/* Firewall: the active generation and default action of each scope (network id; 0 global). */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct stm_fw_scope);
} stm_fw_scopes SEC(".maps");

/* Firewall field tables: (generation, prefix) → the rules that value matches. Sized for two
 * generations of the largest scope and the rules of every other. Addresses: hashes per
 * prefix length (see stm_fw_addr4_key); ports: a longest-prefix trie. */
#define STM_FW_ADDR_MAX 65536
#define STM_FW_PORT_MAX 131072
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STM_FW_ADDR_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct stm_fw_addr4_key);
	__type(value, struct stm_fw_bits);
} stm_fw_src4 SEC(".maps");

STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STM_FW_ADDR_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct stm_fw_addr4_key);
	__type(value, struct stm_fw_bits);
} stm_fw_dst4 SEC(".maps");

STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STM_FW_ADDR_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct stm_fw_addr6_key);
	__type(value, struct stm_fw_bits);
} stm_fw_src6 SEC(".maps");

STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STM_FW_ADDR_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct stm_fw_addr6_key);
	__type(value, struct stm_fw_bits);
} stm_fw_dst6 SEC(".maps");

STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, STM_FW_PORT_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct stm_fw_port_key);
	__type(value, struct stm_fw_bits);
} stm_fw_ports SEC(".maps");

/* Firewall rules by (generation, position): id, action, flags. */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct stm_fw_rule_key);
	__type(value, struct stm_fw_rule);
} stm_fw_rules SEC(".maps");

/* Hits per rule id (and per scope default), per CPU. */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 131072);
	__type(key, __u32);
	__type(value, struct stm_count_val);
} stm_fw_hits SEC(".maps");

/* Connection tracking: the least recently used flow goes when it is full. */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, STM_CT_MAX);
	__type(key, struct stm_ct_key);
	__type(value, struct stm_ct);
} stm_ct SEC(".maps");

/* Verdicts of fragmented datagrams, from the first fragment. */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct stm_frag_key);
	__type(value, __u32);
} stm_frags SEC(".maps");

STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STM_FW_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stm_fw_stats SEC(".maps");

/* Packets and bytes per port, per CPU, by the row in the port's configuration (its slot):
 * an array lookup costs next to nothing on the per-packet path. */
#define STM_PORT_SLOTS 16384
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STM_PORT_SLOTS);
	__type(key, __u32);
	__type(value, struct stm_port_stats);
} stm_port_stats SEC(".maps");

/* The monitor lease and its filter (one entry). */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stm_mon_cfg);
} stm_mon_cfg SEC(".maps");

/* Per CPU: the earliest time the next event fits the pace (generic cell rate algorithm). */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} stm_mon_pace SEC(".maps");

STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STM_MON_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stm_mon_stats SEC(".maps");

/* Drops, log hits and new flows for `monitor`. */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1024 * 1024);
} stm_mon_ring SEC(".maps");

/* Endpoints plus networks that may carry a cap. */
#define STM_SHAPE_MAX 65536

/* Egress caps as the agent sets them, per endpoint (ifindex) and network (net_id). */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STM_SHAPE_MAX);
	__type(key, struct stm_shape_key);
	__type(value, struct stm_shape_cfg);
} stm_shape_cfg SEC(".maps");

/* The buckets of those caps: fill and counts, shared by all CPUs (spin lock). */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STM_SHAPE_MAX);
	__type(key, struct stm_shape_key);
	__type(value, struct stm_shape_state);
} stm_shape_state SEC(".maps");

/* Source prefixes of the networks with a cap → net_id, for the uplink's egress. IPv4 as
 * ::ffff:a.b.c.d (prefix 96 + length), so one trie serves both families. */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, STM_SHAPE_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct stm_lpm6_key);
	__type(value, __u32);
} stm_shape_src SEC(".maps");

/* The cluster's nodes by underlay address (the all-zero key: the overlay is on), for the VTEP
 * checks on the underlay (XDP) and the overlay device's ingress. */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct stm_vtep_key);
	__type(value, struct stm_vtep);
} stm_vteps SEC(".maps");

/* North-south over the overlay: the gateway nodes (one entry, stm_abi.h). */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stm_gw_cfg);
} stm_gw SEC(".maps");

/* Endpoints of the other nodes by MAC: the overlay's forwarding and its source checks. Sized
 * for the cluster's endpoints (not every address: those are the profiles'). */
#define STM_REMOTE_MAX (1 << 18)
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STM_REMOTE_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct stm_mac_key);
	__type(value, struct stm_remote);
} stm_remote SEC(".maps");


/* Masquerading: each translated flow's two directions (stm_abi.h), the least recently used
 * going when full; the masqueraded networks; the node's settings; the NAT addresses (for the
 * uplink filter, which leaves a reply to one to the translation); statistics; and the
 * workload's address for the later fragments of a datagram whose first one came back. */
#ifndef STM_NAT_MAX
#define STM_NAT_MAX 524288
#endif
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, STM_NAT_MAX);
	__type(key, struct stm_nat_key);
	__type(value, struct stm_nat_entry);
} stm_nat SEC(".maps");

STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct stm_nat_net);
} stm_nat_nets SEC(".maps");

STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stm_nat_cfg);
} stm_nat_cfg SEC(".maps");

STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct stm_vtep_key);
	__type(value, __u32);
} stm_nat_addrs SEC(".maps");

STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STM_NAT_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stm_nat_stats SEC(".maps");

STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct stm_frag_key);
	__type(value, struct stm_vtep_key);
} stm_nat_frags SEC(".maps");

STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stm_nat_work);
} stm_nat_scratch SEC(".maps");

/* Gateway groups' VIPs on this node (stm_vip.h): until when the node may answer for each
 * (CLOCK_MONOTONIC ns, written by the agent while it holds the group's lease; 0: not held). */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct stm_vtep_key);
	__type(value, struct stm_vip);
} stm_vip SEC(".maps");

/* The MAC a cluster node uses on the uplink's LAN in place of the anycast gateway MAC
 * (stm_uplink_mac.h); one entry, off on a single node. */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stm_uplink_mac);
} stm_uplink_mac SEC(".maps");

/* Microsegmentation (stm_mseg.h): on/off and the active generation; one entry. */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stm_mseg_cfg);
} stm_mseg_cfg SEC(".maps");

/* Every group's line up the tree, indexed by group id (len 0: no such group). Ids are never
 * reused, and a group never changes parent: an entry stays as long as its group. */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, STM_MSEG_GROUP_MAX + 1);
	__type(key, __u32);
	__type(value, struct stm_mseg_group);
} stm_mseg_groups SEC(".maps");

/* The compiled policy, two generations' room (the agent writes the next, flips stm_mseg_cfg's
 * gen, then deletes the old). */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * STM_MSEG_POLICY_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct stm_mseg_key);
	__type(value, struct stm_mseg_val);
} stm_mseg_pol SEC(".maps");

/* Hits per policy entry id (STM_MSEG_DEFAULT_ID: no entry, denied), per CPU. */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, STM_MSEG_RULES_MAX + 1);
	__type(key, __u32);
	__type(value, struct stm_count_val);
} stm_mseg_hits SEC(".maps");

/* Flows at a grouped endpoint's port: those it opened (their replies pass) and those the policy
 * let in (judged again when the generation changes). The least recently used goes when full. */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, STM_MSEG_CT_MAX);
	__type(key, struct stm_ct_key);
	__type(value, struct stm_ct);
} stm_mseg_ct SEC(".maps");

/* The load balancer's switch: the number of VIPs; one entry. */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stm_lb_cfg);
} stm_lb_cfg SEC(".maps");

/* The load balancer's VIPs, and one address entry per VIP address (stm_lb.h). */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * STM_LB_VIPS_MAX);
	__type(key, struct stm_lb_vip_key);
	__type(value, struct stm_lb_vip);
} stm_lb_vips SEC(".maps");

/* A VIP's Maglev table: slot -> backend id (~0: none). Its own size per VIP (BPF_F_INNER_MAP);
 * a rebuilt table is a new map swapped in by one update of the VIP's slot. */
struct stm_lb_ring {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_INNER_MAP);
	__type(key, __u32);
	__type(value, __u32);
};

STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, STM_LB_VIPS_MAX + 1);
	__type(key, __u32);
	__array(values, struct stm_lb_ring);
} stm_lb_rings SEC(".maps");

/* Every backend's (address, port, protocol) as a stm_lb_vip_key: what a reply of a translated
 * flow comes from. Only a packet from one of them is looked up in the flow table. */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STM_LB_BACKENDS_MAX);
	__type(key, struct stm_lb_vip_key);
	__type(value, __u32);
} stm_lb_bsrc SEC(".maps");

/* The endpoints serving a DSR VIP (stm_lb_dsr_key -> 1). */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STM_LB_BACKENDS_MAX);
	__type(key, struct stm_lb_dsr_key);
	__type(value, __u32);
} stm_lb_dsr SEC(".maps");

/* Backends by id. */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STM_LB_BACKENDS_MAX);
	__type(key, __u32);
	__type(value, struct stm_lb_backend);
} stm_lb_backends SEC(".maps");

/* Translated flows, both directions; the least recently used goes when full. */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, STM_LB_CT_MAX);
	__type(key, struct stm_lb_ct_key);
	__type(value, struct stm_lb_ct);
} stm_lb_ct SEC(".maps");

/* Per backend id, per CPU. */
STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, STM_LB_BACKENDS_MAX);
	__type(key, __u32);
	__type(value, struct stm_lb_hit);
} stm_lb_hits SEC(".maps");

STM_MAP struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STM_LB_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stm_lb_stats SEC(".maps");

#endif
