/* Every map of the Stratum datapath, declared once. Objects include this
 * header and only the maps a program references end up in its object. Names
 * carry the stm_ prefix so the loader recognises its own pins. */
#ifndef STM_MAPS_H
#define STM_MAPS_H

#include "stm_abi.h"

/* Packet and byte counters per (ifindex, hook), per CPU; summed by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct stm_count_key);
	__type(value, struct stm_count_val);
} stm_counters SEC(".maps");

/* Packet samples for the agent (monitor, tests); consumed through libbpf's ring_buffer. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} stm_events SEC(".maps");

/* Workload ports by ifindex. A port without an entry drops everything. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct stm_port);
} stm_ports SEC(".maps");

/* Every endpoint profile (IPv4 ↔ MAC) of every network: a /16 is 65,534 entries. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 20);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct stm_profile_key);
	__type(value, struct stm_profile);
} stm_profiles SEC(".maps");

/* Drops per (port, reason), per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct stm_drop_key);
	__type(value, __u64);
} stm_drops SEC(".maps");

/* This node's addresses (endpoints and gateways), for the uplink's anti-spoofing. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 18);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct stm_local_key);
	__type(value, struct stm_local);
} stm_local SEC(".maps");

/* Source-IP blocklist: IPv4 and IPv6 prefixes, checked first at the uplink. */
#define STM_BLOCKLIST_MAX 1000000
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, STM_BLOCKLIST_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct stm_lpm4_key);
	__type(value, __u32);
} stm_block4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, STM_BLOCKLIST_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct stm_lpm6_key);
	__type(value, __u32);
} stm_block6 SEC(".maps");

#endif
