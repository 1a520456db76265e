#include "router/policy_factory.hpp"

#include "router/latency_policy.hpp"
#include "runtime/error.hpp"

namespace moe {

void check_dispatch_policy_name(const std::string& name) {
  for (const char* known : {"static", "round-robin", "random", "uniform", "latency-aware"})
    if (name == known) return;
  MOE_FAIL("unknown dispatch policy '", name,
           "' (static, round-robin, random, uniform, latency-aware)");
}

std::unique_ptr<DispatchPolicy> make_dispatch_policy(const std::string& name,
                                                     const PolicyContext& c) {
  if (name == "latency-aware") {
    MOE_CHECK(c.profile != nullptr, "policy latency-aware needs a profile (--profile)");
    MOE_CHECK(c.latency_model != nullptr,
              "policy latency-aware needs a latency model (--latency-model)");
    return std::make_unique<LatencyAwarePolicy>(c.latency_model, *c.profile, c.d_model);
  }
  check_dispatch_policy_name(name);
  return make_basic_dispatch_policy(name, c.seed);
}

}  // namespace moe
