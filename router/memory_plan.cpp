#include "router/memory_plan.hpp"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>
#include <sstream>

#include "runtime/error.hpp"

namespace moe {

MemoryPlan plan_memory(const std::vector<RoutingRecord>& trace, const MemoryPlanInputs& in,
                       size_t memory_bytes, double latency_ms) {
  MOE_CHECK(in.layers > 0 && in.experts > 0 && in.expert_bytes > 0,
            "plan-memory: the model has no sparse layer");
  std::vector<std::vector<double>> mass(in.layers, std::vector<double>(in.experts, 0.0));
  double total = 0, generated = 0;
  int first_decoder_layer = in.layers;
  for (const RoutingRecord& r : trace)
    if (r.step >= 1) first_decoder_layer = std::min(first_decoder_layer, r.layer);
  for (const RoutingRecord& r : trace) {
    MOE_CHECK(r.layer >= 0 && r.layer < in.layers, "routing trace: layer ", r.layer,
              " is not one of the model's ", in.layers, " sparse layers");
    for (size_t t = 0; t < r.expert.size(); ++t) {
      if (!r.kept[t]) continue;
      MOE_CHECK(r.expert[t] >= 0 && r.expert[t] < in.experts, "routing trace: expert ", r.expert[t],
                " of layer ", r.layer, " is not one of the model's ", in.experts);
      mass[r.layer][r.expert[t]] += r.probability[t];
      total += r.probability[t];
    }
    if (r.step >= 1 && r.layer == first_decoder_layer) generated += r.sequences;
  }
  MOE_CHECK(total > 0 && generated > 0,
            "routing trace: no routed tokens of generation (record one with moe generate "
            "--record-routing)");
  // Each layer's experts by mass; the seats go to the (layer, rank) pairs of most mass overall,
  // which is what adding one seat at a time where it keeps the most mass gives (each layer's
  // gains only fall).
  std::vector<std::vector<int>> order(in.layers);
  struct Seat {
    double mass;
    int layer;
  };
  std::vector<Seat> seats;
  for (int l = 0; l < in.layers; ++l) {
    order[l].resize(in.experts);
    std::iota(order[l].begin(), order[l].end(), 0);
    std::stable_sort(order[l].begin(), order[l].end(),
                     [&](int a, int b) { return mass[l][a] > mass[l][b]; });
    for (int e : order[l]) seats.push_back({mass[l][e], l});
  }
  std::stable_sort(seats.begin(), seats.end(),
                   [](const Seat& a, const Seat& b) { return a.mass > b.mass; });
  MemoryPlan plan;
  plan.committees.assign(in.layers, 0);
  // One expert's bytes stay free for a swap or a load in flight.
  const size_t affordable = memory_bytes / in.expert_bytes;
  const size_t n = std::min(affordable > 0 ? affordable - 1 : 0, seats.size());
  double kept = 0;
  for (size_t i = 0; i < n; ++i) {
    ++plan.committees[seats[i].layer];
    kept += seats[i].mass;
  }
  for (int l = 0; l < in.layers; ++l)
    plan.members.emplace_back(order[l].begin(), order[l].begin() + plan.committees[l]);
  plan.memory_bytes = (n + 1) * in.expert_bytes;
  plan.resident_mass = kept / total;
  double loads = 0;
  if (in.policy == MissPolicy::kWait || in.policy == MissPolicy::kOnDemand)
    for (const RoutingRecord& r : trace) {
      const std::vector<int>& by_mass = order[r.layer];
      const std::set<int> committee(by_mass.begin(), by_mass.begin() + plan.committees[r.layer]);
      std::set<int> missed;
      for (size_t t = 0; t < r.expert.size(); ++t)
        if (r.kept[t] && !committee.count(r.expert[t])) missed.insert(r.expert[t]);
      loads += double(missed.size());
    }
  plan.ms_per_token = in.base_ms_per_token + loads / generated * in.load_ms;
  plan.feasible = true;
  std::ostringstream why;
  if (plan.memory_bytes > memory_bytes) {
    why << "memory: not even one expert fits in " << memory_bytes << " bytes (one is "
        << in.expert_bytes << ")";
    plan.feasible = false;
  } else if (latency_ms > 0 && plan.ms_per_token > latency_ms) {
    why << "latency: " << plan.ms_per_token << " ms per token predicted against " << latency_ms
        << " (the misses' loads; a larger memory budget, or --on-missing-expert substitute, "
           "loads none)";
    plan.feasible = false;
  }
  plan.why = why.str();
  return plan;
}

std::string memory_plan_to_json(const MemoryPlan& plan, MissPolicy policy) {
  nlohmann::json j{{"committees", plan.committees},     {"members", plan.members},
                   {"memory_bytes", plan.memory_bytes}, {"resident_mass", plan.resident_mass},
                   {"ms_per_token", plan.ms_per_token}, {"policy", miss_policy_name(policy)}};
  return j.dump(1);
}

MemoryPlan load_memory_plan(const std::string& path, int layers, int experts) {
  std::ifstream in(path);
  MOE_CHECK(in.good(), path, ": cannot open memory plan");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw Error(path + ": not JSON: " + e.what());
  }
  MemoryPlan plan;
  try {
    plan.committees = j.at("committees").get<std::vector<int>>();
    plan.members = j.at("members").get<std::vector<std::vector<int>>>();
    plan.memory_bytes = j.at("memory_bytes").get<size_t>();
    plan.resident_mass = j.at("resident_mass").get<double>();
    plan.ms_per_token = j.at("ms_per_token").get<double>();
  } catch (const std::exception& e) {
    throw Error(path + ": " + e.what());
  }
  MOE_CHECK(int(plan.committees.size()) == layers, path, ": \"committees\" has ",
            plan.committees.size(), " layers, the model ", layers);
  MOE_CHECK(plan.members.size() == plan.committees.size(), path,
            ": \"members\" and \"committees\" list different layers");
  for (size_t l = 0; l < plan.committees.size(); ++l) {
    const int k = plan.committees[l];
    MOE_CHECK(k >= 0 && k <= experts, path, ": a committee of ", k, " experts out of ", experts);
    std::vector<int> m = plan.members[l];
    std::sort(m.begin(), m.end());
    MOE_CHECK(int(m.size()) == k && std::unique(m.begin(), m.end()) == m.end() &&
                  (m.empty() || (m.front() >= 0 && m.back() < experts)),
              path, ": \"members\" of layer ", l, " are not ", k, " distinct experts of ", experts);
  }
  plan.feasible = true;
  return plan;
}

}  // namespace moe
