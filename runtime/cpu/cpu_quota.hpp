// An OS-enforced CPU quota for this process: "cpu:T@Q" devices run under a cgroup whose CFS quota
// is Q cores (e.g. 0.5). Honest heterogeneity on a CPU-only machine: the kernel, not a sleep,
// makes the rank slower. cgroup v1 (cpu.cfs_quota_us) or v2 (cpu.max).
#pragma once

#include <string>

namespace moe {

// The CFS period of every quota (µs): a short one spreads the throttling evenly instead of long
// stalls every 100 ms. The simulator models quota'd ranks with it.
constexpr long kCpuQuotaPeriodUs = 5000;

// The device spec without its quota ("cpu:1@0.5" → "cpu:1") and the quota in cores (0: none).
std::string strip_cpu_quota(const std::string& spec, double* cores);

// Moves this process into a fresh cgroup limited to `cores`; the cgroup is removed at exit.
void apply_cpu_quota(double cores, int rank);

}  // namespace moe

namespace moe {
// Applies the quota of `spec` ("cpu:1@0.5") to this process, if it has one.
inline void apply_quota_of(const std::string& spec, int rank) {
  double cores = 0;
  strip_cpu_quota(spec, &cores);
  if (cores > 0) apply_cpu_quota(cores, rank);
}
}  // namespace moe
