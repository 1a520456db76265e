// Per-rank statistics and timeline events, the end-of-run table, and the Chrome/Perfetto trace.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/deadline.hpp"
#include "runtime/messages.hpp"

namespace moe {

// Microseconds on the steady clock: the same clock for every process of one host.
double now_us();

// CPU time this process has used, in microseconds (every thread; stops while a quota throttles it).
double process_cpu_us();

// Resident memory of this process, from /proc/self/statm.
uint64_t resident_bytes();

// The machine's available memory (MemAvailable of /proc/meminfo), or 0 when unknown.
uint64_t available_memory_bytes();

class RankRecorder {
 public:
  RankRecorder(int rank, std::string host, std::string device, int num_moe_layers, bool trace);
  RankReport& report() { return report_; }
  // Records an event (of an attention rank's micro-batch `lane`) when tracing; returns its
  // duration in µs either way.
  double event(const std::string& name, double start_us, int lane = 0);
  void served(int moe_layer, int64_t tokens, double compute_us);

 private:
  RankReport report_;
  bool trace_;
};

// The table printed by rank 0 at the end of a run.
std::string format_rank_table(const std::vector<RankReport>& reports, double wall_seconds,
                              int64_t generated_tokens);

// {"traceEvents": [...]} with one process per rank; written complete or not at all.
void write_chrome_trace(const std::string& path, const std::vector<RankReport>& reports);

}  // namespace moe
