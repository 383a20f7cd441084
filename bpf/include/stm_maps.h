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

#endif
