// Routing traces: for every sparse-layer call of a run, the chosen expert, its router probability
// and the kept flag of every token. Written by `moe generate --record-routing FILE` (JSON lines),
// read by placement, bench-routing and the simulator.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moe {

struct RoutingRecord {
  int64_t batch = 0;  // which batch of the run
  int64_t step = 0;   // 0 = encoder, k = k-th decoder call
  int layer = 0;      // sparse layer (encoder's first, then decoder's)
  int sequences = 0, seq_len = 0;
  std::vector<int> expert;         // [sequences*seq_len]
  std::vector<float> probability;  // [sequences*seq_len]
  std::vector<uint8_t> kept;       // [sequences*seq_len]
  std::vector<float> entropy;      // [sequences*seq_len] router entropy (nats)
};

// Appends one record as a JSON line.
std::string routing_record_to_json_line(const RoutingRecord& r);
std::vector<RoutingRecord> load_routing_trace(const std::string& path);

// Tokens routed (and kept) to each expert of each layer, averaged per layer call:
// load[layer][expert].
std::vector<std::vector<double>> mean_expert_load(const std::vector<RoutingRecord>& trace,
                                                  int num_layers, int num_experts);

}  // namespace moe
