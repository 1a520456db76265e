// Measured costs the placement, the latency predictor and the simulator use: per rank, the expert
// FFN latency as a function of its token count (a piecewise-linear curve through medians), and per
// coordinator→rank link, latency and bandwidth. Written by `moe profile` as profile.json.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <utility>
#include <vector>

namespace moe {

// y(x) through measured points, linear between them, extrapolated linearly past the ends.
struct LatencyCurve {
  std::vector<double> tokens;     // increasing, e.g. 1, 2, 4, ... 1024
  std::vector<double> median_us;  // one expert FFN over that many tokens
  double at(double n) const;      // 0 for n <= 0
};

struct RankProfile {
  int rank = 0;
  std::string host;
  std::string device;   // "cpu:2", "cpu:1@0.5" (quota), "cuda:0"
  LatencyCurve expert;  // one expert FFN
  // The same calls' process CPU time (empty where not measured). Under a CPU quota the wall time
  // depends on how much of the quota recent work left; this is the work itself.
  LatencyCurve expert_cpu;
  double link_latency_us = 0;      // coordinator → this rank, one message
  double link_bytes_per_us = 1e9;  // bandwidth
  size_t memory_bytes = 0;         // what this rank may hold for experts (0: unknown)
  // Process CPU per sparse-layer call outside the expert FFN (polling, MPI, copies; 0: not
  // measured): under a CPU quota it is spent from the same budget as the compute.
  double call_cpu_us = 0;
  // From a work header's arrival to the rank's block of rows in hand (median over the same
  // 8-row calls; 0: not measured): the coordinator posts every rank's header before the blocks,
  // and the receive costs more than moving a small block over shared memory. The simulator's
  // floor under a block's transfer; the latency predictor's in-flight feature sees it in every
  // reply.
  double receive_us = 0;
  // One expert's load from the checkpoint on disk and its give-back after use (a miss under a
  // memory budget, model/resident_experts.hpp; 0: not measured, as on a GPU rank).
  double expert_load_us = 0;
  // Time to send `bytes` there and back (the block goes out and its result returns).
  double round_trip_us(double bytes) const {
    return 2 * (link_latency_us + bytes / link_bytes_per_us);
  }
};

// The attention rank's side of serving (`moe profile --serving-rows`), for the serving model
// (router/sim/serving_model.hpp): per batch of sequences on one attention rank with one lane, the
// time the attention rank computes (its wall time less its waits for the expert ranks) and the
// expert ranks' compute summed over them, for one decode step (x: sequences) and for one encoder
// pass (x: sequences × input tokens), and the exchanges each makes. Measured with the run options
// that `moe generate` uses by default (dense FFN placement, the lm_head's share on the expert
// ranks), which it records so that a run can tell whether the curves describe it.
struct ServingCurves {
  LatencyCurve decode_attention, decode_experts;
  LatencyCurve encode_attention, encode_experts;
  double decode_exchanges = 0, encode_exchanges = 0;
  // Of the experts' work and exchanges, the dense FFNs': each goes whole to one expert rank,
  // where a sparse layer's rows spread over them all.
  LatencyCurve decode_dense, encode_dense;
  double decode_dense_exchanges = 0, encode_dense_exchanges = 0;
  // And the lm_head's, at the end of a decode step: its columns split evenly over the ranks.
  LatencyCurve decode_lm_head;
  double decode_lm_head_exchanges = 0;
  int input_tokens = 0;           // per sequence in the timed encoder passes
  int threads = 0;                // per rank
  std::string dense_ffn;          // --dense-ffn of the measuring run
  double lm_head_on_experts = 0;  // the share of the lm_head the expert ranks computed
  bool empty() const { return decode_attention.tokens.empty(); }
};

// How much ranks computing at once on different weights slow each other ("contention" of
// `moe profile --contention`).
struct Contention {
  Contention(double value = -1, LatencyCurve by_tokens = {}, std::string json = {})
      : value(value), by_tokens(std::move(by_tokens)), json(std::move(json)) {}
  double value;            // the median over the token counts (< 0: not measured)
  LatencyCurve by_tokens;  // by the token count a rank computes (empty: not measured)
  std::string json;        // the object as read, written back whole (empty: none read)
  // At `tokens` (at least one): linear between the measured counts, held at the ends; the value
  // where none were measured by count; 0 where none was measured.
  double at(double tokens) const;
};

struct Profile {
  int d_model = 0, d_ff = 0, num_experts = 0, num_moe_layers = 0;
  std::vector<RankProfile> ranks;  // expert ranks (rank 0 is the coordinator and has no entry)
  ServingCurves serving;           // empty unless measured
  Contention contention;           // not measured unless `moe profile --contention` ran
  const RankProfile& of(int rank) const;
  bool has(int rank) const;
};

Profile parse_profile(const nlohmann::json& j, const std::string& source);
Profile load_profile(const std::string& path);
nlohmann::json profile_to_json(const Profile& p);
// Ranks of `b` replace or extend those of `a` (same model shape required).
Profile merge_profiles(const Profile& a, const Profile& b);

}  // namespace moe
