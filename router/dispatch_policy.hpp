// Dispatch policies: for every token kept by the gate, which of its expert's replica ranks serves
// it. Routing chooses replicas only; it never changes which expert a token goes to.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "router/expert_dispatch.hpp"
#include "router/expert_map.hpp"
#include "router/gate.hpp"

namespace moe {

// What one expert rank reported for one sparse-layer call: the feedback latency-aware routing
// learns from.
struct RankFeedback {
  int rank = 0;
  int layer = 0;
  int tokens = 0;
  double latency_us = 0;    // coordinator: from sending the block to the reply's arrival
  double compute_us = 0;    // expert rank: expert FFN time
  double queue_us = 0;      // expert rank: waiting before compute
  double other_cpu_us = 0;  // expert rank: CPU outside the FFN since its previous reply (WorkReply)
};

// Under memory budgets (--expert-memory): whether `rank` holds expert `expert` of `layer` resident.
using ResidentFn = std::function<bool(int rank, int layer, int expert)>;

class DispatchPolicy {
 public:
  virtual ~DispatchPolicy() = default;
  virtual std::string name() const = 0;
  // rank_of_row[dispatch.rows()]: the serving rank of each permuted row (rows grouped by expert).
  // `gate` holds every token's router probability and entropy (index by dispatch.token_of_row).
  virtual void assign(int layer, const ExpertDispatch& dispatch, const GateResult& gate,
                      const ExpertMap& map, std::vector<int>& rank_of_row) = 0;
  // Replies of the call just assigned; policies that learn use them.
  virtual void observe(const std::vector<RankFeedback>&) {}
  // Under memory budgets, a policy that prices a load (weighs_residency) is given every replica
  // and this view of which are resident; the others only each expert's resident replicas, where
  // it has one.
  virtual bool weighs_residency() const { return false; }
  virtual void set_residency(ResidentFn) {}
};

// Always the first replica.
class StaticPolicy final : public DispatchPolicy {
 public:
  std::string name() const override { return "static"; }
  void assign(int layer, const ExpertDispatch& d, const GateResult& gate, const ExpertMap& map,
              std::vector<int>& rank_of_row) override;
};

// Each expert's tokens cycle through its replicas; the cycle continues across calls.
class RoundRobinPolicy final : public DispatchPolicy {
 public:
  std::string name() const override { return "round-robin"; }
  void assign(int layer, const ExpertDispatch& d, const GateResult& gate, const ExpertMap& map,
              std::vector<int>& rank_of_row) override;

 private:
  std::vector<std::vector<uint64_t>> next_;  // [layer][expert]
};

// A uniformly random replica per token, from a seeded generator (reproducible).
class RandomPolicy final : public DispatchPolicy {
 public:
  explicit RandomPolicy(uint64_t seed) : rng_(seed) {}
  std::string name() const override { return "random"; }
  void assign(int layer, const ExpertDispatch& d, const GateResult& gate, const ExpertMap& map,
              std::vector<int>& rank_of_row) override;

 private:
  std::mt19937_64 rng_;
};

// Each expert's tokens split evenly across its replicas: shares differ by at most one token.
class UniformPolicy final : public DispatchPolicy {
 public:
  std::string name() const override { return "uniform"; }
  void assign(int layer, const ExpertDispatch& d, const GateResult& gate, const ExpertMap& map,
              std::vector<int>& rank_of_row) override;
};

// "static", "round-robin", "random" or "uniform".
std::unique_ptr<DispatchPolicy> make_basic_dispatch_policy(const std::string& name, uint64_t seed);

}  // namespace moe
