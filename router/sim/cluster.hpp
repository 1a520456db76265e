// A modelled cluster for the simulator (configs/clusters/*.json): M coordinator ranks and N
// expert ranks on nodes, each expert rank of a device class whose expert-FFN latency curve comes
// from a profiled rank (optionally scaled by a speed factor) or is given inline, and links
// (latency, bandwidth) inside a node and between nodes. Ranks are numbered as under mpirun:
// coordinators 0..M-1, then expert ranks M..M+N-1, node by node.
//
// {"format": "moe-cluster/1", "description": "...",
//  "classes": {"h100": {"profile_rank": 1, "speed": 8.0, "memory_gib": 80, "device": "H100"},
//              "slow": {"profile_rank": 2, "model_quota": false},  // a quota'd rank's wall curve
//              as is "cpu":  {"profile_rank": 2, "profile": "profiles/other.json"}, "l4":
//              {"expert_tokens": [1, 64], "expert_median_us": [40, 90]}},
//  "links": {"intra_node": {"latency_us": 5, "gbytes_per_s": 150} | {"from_profile": true},
//            "inter_node": {"latency_us": 12, "gbytes_per_s": 25}},
//  "message_overhead_us": 1.5,      // sender time to post one message (serialises its sends)
//  "coordinator_gap_us": 0,         // coordinator work between two layer calls (attention, ...)
//  "combine": "pull" | "push",      // how results return (see ClusterConfig::combine_push)
//  "coordinator_copy_gbytes_per_s": 6,  // permute before sending, un-permute after (0: free)
//  "cfs_tick_us": 4000,             // the host's scheduler tick, where a CPU quota throttles
//  "poll": {"yield_us": 20, "first_nap_us": 10, "max_nap_us": 500, "nap_slack_us": 60},
//                                    // receivers poll as runtime/deadline.hpp does (optional)
//  "nodes": [{"name": "a", "count": 2, "cores": 0, "coordinators": 1, "contention": 0.3 | {...},
//             "intra_node": {"latency_us": 10, "gbytes_per_s": 20},   // optional, per node
//             "experts": [{"class": "h100", "count": 7}]}]}
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "router/profile.hpp"
#include "runtime/cpu/cpu_quota.hpp"

namespace moe::sim {

// One direction of a link: a message of B bytes occupies the sender's port for
// overhead + B / bytes_per_us and arrives latency_us after it has left.
struct LinkSpec {
  double latency_us = 0;
  double bytes_per_us = 1e12;
};

// How a waiting rank notices a message (runtime/deadline.hpp poll_until): it polls without pause
// for yield_us, then sleeps naps of first_nap_us doubling up to max_nap_us, each overshooting by
// the kernel's timer slack.
struct PollModel {
  double yield_us = 0, first_nap_us = 10, max_nap_us = 500, nap_slack_us = 0;
  // When a receiver that began waiting at `since` sees a message available from `at`. In the
  // steady regime of maximal naps the phase is unknown: the expected half period is added.
  double notice(double since, double at) const;
};

// A CPU rank under a CFS quota ("cpu:T@Q" whose profile has the CPU-time curve): per period the
// kernel lets it use cores × period_us of CPU, notices that it has used it up only at a scheduler
// tick (ClusterConfig::cfs_tick_us, one per cluster), and stalls it until a period's refill
// leaves some (an overrun is paid back from the next periods); a process under a quota runs in
// bursts that end on ticks and resume on period edges (docs/SIMULATOR.md). So the wall time of a
// block depends on how much quota the rank's recent work left — short blocks after a pause run
// at full speed — which one curve of medians cannot say.
struct CpuQuota {
  double cores = 0;    // 0: no quota modelled (the class's curve is its wall time)
  double threads = 1;  // CPU µs used per µs of full-speed compute
  double period_us = double(kCpuQuotaPeriodUs);  // the runtime's (runtime/cpu/cpu_quota.hpp)
  // CPU the rank spends per call outside the compute (the profile's call_cpu_us: polling, MPI),
  // taken from the same budget when a block comes in.
  double call_cpu_us = 0;
  bool on() const { return cores > 0; }
  double per_period_us() const { return cores * period_us; }
};

struct DeviceClass {
  std::string name;
  std::string device;   // what it stands for, for tables ("H100 SXM fp32", "cpu:1")
  LatencyCurve expert;  // one expert FFN vs tokens, already divided by the speed factor
  CpuQuota quota;
  LatencyCurve full_speed;  // with a quota: the FFN's CPU time / threads (the work, unthrottled)
  // What a block of this class costs the event model: the work where a quota is modelled (the
  // stalls are simulated), else the measured wall time. Policies and placement read `expert`.
  const LatencyCurve& work_curve() const { return quota.on() ? full_speed : expert; }
  double speed = 1;         // relative to the profiled rank it came from
  size_t memory_bytes = 0;  // expert memory (0: unlimited)
  // Fraction of its compute time a rank of this class occupies its node's memory system: below
  // 1 for a CPU rank under a quota (cpu:1@0.4 runs 0.4 of the time), else 1. Class field
  // "memory_share", or read from the device.
  double memory_share = 1;  // 1 where the quota is modelled (its stalls are simulated)
  bool has_profiled_link = false;
  LinkSpec profiled_link;  // the link measured to its profile rank (for "from_profile" links)
  // Least time from taking a work header to its block of rows in hand, where it has rows (the
  // profile rank's receive_us, or class field "receive_us"; 0: the transfer alone).
  double receive_us = 0;
};

// How much one rank's expert group of n rows is slowed by one other rank of its node computing at
// the same time: `different` when that rank computes other experts, `same` when it computes the
// same (layer, expert) — ranks that map one checkpoint file then read the same physical pages, and
// one warms the shared cache for the other, so `same` can be negative (a speedup, above -1).
// Linear between the measured token counts, constant past the ends. A node's "contention" is a
// number (every n, either case) or {"tokens": [...], "different_experts": [...],
// "same_experts": [...]}.
struct ContentionCurve {
  std::vector<double> tokens{1}, different{0}, same{0};
  double at(double n, bool same_experts) const;
  bool none() const;
};

struct Node {
  std::string name;
  int cores = 0;  // > 0: the node's expert ranks share this many cores (processor sharing)
  // Ranks computing at the same time share the node's memory bandwidth and last-level cache:
  // each expert group is slowed by contention.at(rows, same) per other rank computing (weighted
  // by its memory_share). `moe profile --contention K` measures it (paired timings of each rank
  // alone and K at once, per token count, on the same and on different experts).
  ContentionCurve contention;
  bool has_intra_link = false;  // its own "intra_node" link (NVLink vs PCIe nodes)
  LinkSpec intra_link;
};

struct SimRank {
  int rank = 0;
  int node = 0;
  bool coordinator = false;
  int device_class = -1;  // index into classes; -1 for coordinators
};

struct ClusterConfig {
  std::string source, description;
  std::vector<DeviceClass> classes;
  std::vector<Node> nodes;
  std::vector<SimRank> ranks;  // index = rank
  int coordinators = 0, experts = 0;
  bool links_from_profile[2] = {false, false};  // [intra, inter]
  LinkSpec intra_node, inter_node;
  double message_overhead_us = 0;
  double coordinator_gap_us = 0;
  // How results return. "pull" (the runtime today): a rank replies, its blocking send of the
  // rows waits until the coordinator has every reply and takes the blocks, in rank order.
  // "push": the rows travel with the reply and the rank is free at once.
  bool combine_push = false;
  double copy_bytes_per_us = 0;  // coordinator's permute/un-permute copies (0: free)
  double cfs_tick_us = 4000;  // the hosts' scheduler tick, where a CPU quota throttles (CpuQuota)
  bool has_poll = false;      // without: every message is noticed the moment it arrives
  PollModel poll;

  int first_expert_rank() const { return coordinators; }
  int world_size() const { return coordinators + experts; }
  bool same_node(int a, int b) const { return ranks[a].node == ranks[b].node; }
  // The link between two ranks (one is a coordinator, the other an expert rank).
  LinkSpec link(int a, int b) const;
  const DeviceClass& class_of(int rank) const { return classes.at(ranks.at(rank).device_class); }
  std::vector<int> expert_ranks() const;
};

// `profile` supplies the curves of classes that name a profile_rank without a profile file;
// relative profile paths are resolved against the config file's directory.
ClusterConfig parse_cluster(const nlohmann::json& j, const std::string& source,
                            const Profile& profile);
ClusterConfig load_cluster(const std::string& path, const Profile& profile);

// The cluster seen as a profile (one entry per expert rank: its class's curve, memory and the
// link from coordinator 0): what placement and the latency-aware policy read, exactly as they
// read a measured profile.json in the live runtime.
Profile cluster_profile(const ClusterConfig& cluster, const Profile& measured);

}  // namespace moe::sim
