#include "runtime/rank_stats.hpp"

#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>
#include <sstream>

#include "runtime/atomic_file.hpp"
#include "runtime/error.hpp"

namespace moe {

double now_us() {
  return std::chrono::duration<double, std::micro>(Clock::now().time_since_epoch()).count();
}

double process_cpu_us() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) * 1e6 + double(t.tv_nsec) / 1e3;
}

uint64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * uint64_t(sysconf(_SC_PAGESIZE));
}

uint64_t available_memory_bytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key, unit;
  uint64_t kib = 0;
  while (meminfo >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  return 0;
}

RankRecorder::RankRecorder(int rank, std::string host, std::string device, int num_moe_layers,
                           bool trace)
    : trace_(trace) {
  report_.rank = rank;
  report_.host = std::move(host);
  report_.device = std::move(device);
  report_.tokens_per_layer.assign(num_moe_layers, 0);
  report_.compute_us_per_layer.assign(num_moe_layers, 0.0);
}

double RankRecorder::event(const std::string& name, double start_us, int lane) {
  const double duration = now_us() - start_us;
  if (trace_) report_.events.push_back({name, start_us, duration, lane});
  return duration;
}

void RankRecorder::served(int moe_layer, int64_t tokens, double compute_us) {
  report_.tokens_per_layer.at(moe_layer) += tokens;
  report_.compute_us_per_layer.at(moe_layer) += compute_us;
}

std::string format_rank_table(const std::vector<RankReport>& reports, double wall_seconds,
                              int64_t generated_tokens) {
  std::ostringstream out;
  char line[512];
  std::snprintf(line, sizeof(line), "%-5s %-12s %-10s %9s %9s %12s %10s %10s %10s %10s  %s\n",
                "rank", "host", "device", "rss_MiB", "wgt_MiB", "tokens", "compute_s", "wait_s",
                "sent_MiB", "recv_MiB", "tokens per sparse layer");
  out << line;
  for (const auto& r : reports) {
    const int64_t tokens =
        std::accumulate(r.tokens_per_layer.begin(), r.tokens_per_layer.end(), int64_t(0));
    const double compute = r.other_compute_us + std::accumulate(r.compute_us_per_layer.begin(),
                                                                r.compute_us_per_layer.end(), 0.0);
    std::string per_layer;
    for (size_t l = 0; l < r.tokens_per_layer.size(); ++l)
      per_layer += (l ? " " : "") + std::to_string(r.tokens_per_layer[l]);
    std::snprintf(line, sizeof(line),
                  "%-5d %-12.12s %-10s %9.1f %9.1f %12lld %10.3f %10.3f %10.2f %10.2f  %s\n",
                  r.rank, r.host.c_str(), r.device.c_str(), r.resident_bytes / 1048576.0,
                  r.weight_bytes / 1048576.0, static_cast<long long>(tokens), compute / 1e6,
                  r.wait_us / 1e6, r.bytes_sent / 1048576.0, r.bytes_received / 1048576.0,
                  per_layer.c_str());
    out << line;
  }
  std::snprintf(line, sizeof(line),
                "total: %lld generated tokens in %.3f s = %.1f tokens/s over %zu rank(s)\n",
                static_cast<long long>(generated_tokens), wall_seconds,
                generated_tokens / std::max(wall_seconds, 1e-9), reports.size());
  out << line;
  return out.str();
}

void write_chrome_trace(const std::string& path, const std::vector<RankReport>& reports) {
  nlohmann::json events = nlohmann::json::array();
  double origin = 1e300;
  for (const auto& r : reports)
    for (const auto& e : r.events) origin = std::min(origin, e.start_us);
  for (const auto& r : reports) {
    events.push_back(
        {{"name", "process_name"},
         {"ph", "M"},
         {"pid", r.rank},
         {"args",
          {{"name", "rank " + std::to_string(r.rank) + " (" + r.host + ", " + r.device + ")"}}}});
    std::set<int> lanes;
    for (const auto& e : r.events) lanes.insert(e.lane);
    for (int lane : lanes.size() > 1 ? lanes : std::set<int>{})
      events.push_back({{"name", "thread_name"},
                        {"ph", "M"},
                        {"pid", r.rank},
                        {"tid", lane},
                        {"args", {{"name", "micro-batch " + std::to_string(lane)}}}});
    for (const auto& e : r.events)
      events.push_back({{"name", e.name},
                        {"ph", "X"},
                        {"pid", r.rank},
                        {"tid", e.lane},
                        {"ts", e.start_us - origin},
                        {"dur", e.duration_us}});
  }
  write_file_atomically(path, [&](std::ostream& out) {
    out << nlohmann::json{{"traceEvents", events}, {"displayTimeUnit", "ms"}}.dump() << "\n";
  });
}

}  // namespace moe
