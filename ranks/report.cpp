#include "ranks/report.hpp"

#include <algorithm>
#include <fstream>

#include "router/statistics.hpp"
#include "runtime/error.hpp"

namespace moe {
namespace {

// Latency-aware on the same map against `row`: mean change, its standard error (< 0 when not
// paired) and p99 change; false when there is nothing to compare.
struct Change {
  double mean = 0, se = -1, p99 = 0;
};
bool latency_aware_change(const std::vector<ComparisonRow>& rows, const ComparisonRow& row,
                          Change& change) {
  if (row.policy == "latency-aware") return false;
  for (const auto& la : rows) {
    if (la.expert_map != row.expert_map || la.policy != "latency-aware") continue;
    if (!la.paired_latency_us.empty() && !row.paired_latency_us.empty()) {
      const auto [mean, se] = paired_change(la.paired_latency_us, row.paired_latency_us);
      change.mean = mean;
      change.se = se;
    } else {
      change.mean = (la.mean_us - row.mean_us) / row.mean_us;
    }
    change.p99 = la.p99_us / row.p99_us - 1;
    return true;
  }
  return false;
}

std::string optional(double value) { return value < 0 ? "" : std::to_string(value); }

}  // namespace

void print_comparison(std::FILE* out, const std::vector<ComparisonRow>& rows) {
  std::fprintf(out, "%-28s %-14s %7s %11s %11s %12s %9s %9s %10s %8s  %s\n", "expert map", "policy",
               "calls", "mean_us", "p99_us", "tokens/s", "imbalance", "busy_imb", "policy_us",
               "policy%", "latency-aware vs this (mean [± s.e.], p99)");
  for (const auto& r : rows) {
    std::string vs;
    Change c;
    if (latency_aware_change(rows, r, c)) {
      char buf[96];
      if (c.se >= 0)
        std::snprintf(buf, sizeof(buf), "%+.1f%% ± %.1f, %+.1f%%", 100 * c.mean, 100 * c.se,
                      100 * c.p99);
      else
        std::snprintf(buf, sizeof(buf), "%+.1f%%, %+.1f%%", 100 * c.mean, 100 * c.p99);
      vs = buf;
    }
    const std::string map = r.expert_map.size() > 28
                                ? "..." + r.expert_map.substr(r.expert_map.size() - 25)
                                : r.expert_map;
    char busy[16] = "-";
    if (r.busy_imbalance >= 0) std::snprintf(busy, sizeof(busy), "%.2f", r.busy_imbalance);
    std::fprintf(out, "%-28s %-14s %7d %11.1f %11.1f %12.1f %9.2f %9s %10.2f %7.2f%%  %s\n",
                 map.c_str(), r.policy.c_str(), r.calls, r.mean_us, r.p99_us, r.tokens_per_s,
                 r.imbalance, busy, r.policy_us, 100 * r.policy_us / std::max(r.mean_us, 1e-9),
                 vs.c_str());
  }
}

void write_comparison_csv(const std::string& path, const std::string& source,
                          const std::vector<ComparisonRow>& rows) {
  std::ofstream out(path);
  MOE_CHECK(out.good(), path, ": cannot open for writing");
  out << "source,expert_map,policy,calls,mean_us,p99_us,tokens_per_s,imbalance,busy_imbalance,"
         "policy_us,latency_aware_mean_change,latency_aware_mean_change_se,"
         "latency_aware_p99_change\n";
  for (const auto& r : rows) {
    Change c;
    const bool vs = latency_aware_change(rows, r, c);
    out << source << "," << r.expert_map << "," << r.policy << "," << r.calls << "," << r.mean_us
        << "," << r.p99_us << "," << r.tokens_per_s << "," << r.imbalance << ","
        << optional(r.busy_imbalance) << "," << r.policy_us << ","
        << (vs ? std::to_string(c.mean) : "") << "," << (vs ? optional(c.se) : "") << ","
        << (vs ? std::to_string(c.p99) : "") << "\n";
  }
  out.close();
  MOE_CHECK(out.good(), path, ": write failed");
}

PerCallCsv::PerCallCsv(std::ostream& out, int first_rank, int end_rank)
    : out_(out), first_rank_(first_rank), end_rank_(end_rank) {
  out_ << "expert_map,policy,coordinator,pass,call,batch,step,layer,rows,start_us,latency_us,"
          "policy_us";
  for (int r = first_rank; r < end_rank; ++r)
    out_ << ",rows_rank" << r << ",latency_us_rank" << r << ",compute_us_rank" << r
         << ",queue_us_rank" << r << ",other_cpu_us_rank" << r;
  out_ << "\n";
}

void PerCallCsv::add(const CallRecord& c) {
  MOE_CHECK(int(c.ranks.size()) == end_rank_ - first_rank_, "per-call CSV: ", c.ranks.size(),
            " ranks in a call, ", end_rank_ - first_rank_, " in the header");
  out_ << c.expert_map << "," << c.policy << "," << c.coordinator << "," << c.pass << ","
       << (c.call < 0 ? "" : std::to_string(c.call)) << "," << c.batch << "," << c.step << ","
       << c.layer << "," << c.rows << "," << optional(c.start_us) << "," << c.latency_us << ","
       << c.policy_us;
  for (const auto& r : c.ranks)
    out_ << "," << r.rows << "," << r.latency_us << "," << r.compute_us << "," << r.queue_us << ","
         << optional(r.other_cpu_us);
  out_ << "\n";
}

}  // namespace moe
