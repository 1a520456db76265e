// Builds a dispatch policy by name, with what the latency-aware one needs.
#pragma once

#include <memory>
#include <string>

#include "router/dispatch_policy.hpp"
#include "router/latency_model.hpp"
#include "router/profile.hpp"

namespace moe {

struct PolicyContext {
  uint64_t seed = 1;
  const Profile* profile = nullptr;                   // required by latency-aware
  std::shared_ptr<const LatencyModel> latency_model;  // required by latency-aware
  int d_model = 0;
};

// Throws naming the known policies when `name` is not one of them.
void check_dispatch_policy_name(const std::string& name);

// "static", "round-robin", "random", "uniform" or "latency-aware".
std::unique_ptr<DispatchPolicy> make_dispatch_policy(const std::string& name,
                                                     const PolicyContext& context);

}  // namespace moe
