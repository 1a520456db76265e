// The tables of routing experiments, written once for the measured runs (`moe bench-routing`)
// and the modelled ones (`moe simulate`) so that their rows and files join: one comparison row
// per (expert map, policy), and one per-call CSV row per sparse-layer call.
#pragma once

#include <cstdint>
#include <cstdio>
#include <ostream>
#include <string>
#include <vector>

namespace moe {

struct ComparisonRow {
  std::string expert_map, policy;
  int calls = 0;
  double mean_us = 0, p99_us = 0, tokens_per_s = 0;
  double imbalance = 0;        // mean over calls of max/mean rows per expert rank
  double busy_imbalance = -1;  // max/mean compute time per expert rank over the run (< 0: unknown)
  double policy_us = 0;        // mean decision time of the dispatch policy
  // Per-call latencies in an order shared by every row of the same expert map, when known: the
  // latency-aware comparison is then paired call for call, with its standard error.
  std::vector<double> paired_latency_us;
};

// The table, with the change of latency-aware against every other policy on the same map.
void print_comparison(std::FILE* out, const std::vector<ComparisonRow>& rows);
// The same as CSV; `source` names where the rows come from ("measured", or a cluster config).
void write_comparison_csv(const std::string& path, const std::string& source,
                          const std::vector<ComparisonRow>& rows);

// What one expert rank did in one call.
struct RankCall {
  int rows = 0;
  double latency_us = 0;  // its reply's arrival, from the call's start
  double compute_us = 0;  // its expert FFN
  double queue_us = 0;    // from its work header's arrival to its block of rows in hand
  double other_cpu_us =
      -1;  // its CPU outside the expert FFN since its previous reply (< 0: unknown)
};

struct CallRecord {
  std::string expert_map, policy;
  int coordinator = 0, pass = 0;
  int64_t call = -1;  // index in the routing trace (< 0: unknown)
  int64_t batch = 0, step = 0;
  int layer = 0, rows = 0;
  double start_us = -1;  // on the run's clock (< 0: unknown)
  double latency_us = 0, policy_us = 0;
  std::vector<RankCall> ranks;  // the expert ranks, in rank order
};

// Writes the header for expert ranks first_rank..end_rank-1, then one line per add().
class PerCallCsv {
 public:
  PerCallCsv(std::ostream& out, int first_rank, int end_rank);
  void add(const CallRecord& call);

 private:
  std::ostream& out_;
  int first_rank_, end_rank_;
};

}  // namespace moe
