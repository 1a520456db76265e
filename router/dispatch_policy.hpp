// Dispatch policies: for every token kept by the gate, which of its expert's replica ranks serves
// it. Routing chooses replicas only; it never changes which expert a token goes to.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "router/expert_dispatch.hpp"
#include "router/expert_map.hpp"

namespace moe {

class DispatchPolicy {
 public:
  virtual ~DispatchPolicy() = default;
  virtual std::string name() const = 0;
  // rank_of_row[dispatch.rows()]: the serving rank of each permuted row (rows grouped by expert).
  virtual void assign(int layer, const ExpertDispatch& dispatch, const ExpertMap& map,
                      std::vector<int>& rank_of_row) = 0;
};

// Always the first replica.
class StaticPolicy final : public DispatchPolicy {
 public:
  std::string name() const override { return "static"; }
  void assign(int layer, const ExpertDispatch& d, const ExpertMap& map,
              std::vector<int>& rank_of_row) override;
};

// Each expert's tokens cycle through its replicas; the cycle continues across calls.
class RoundRobinPolicy final : public DispatchPolicy {
 public:
  std::string name() const override { return "round-robin"; }
  void assign(int layer, const ExpertDispatch& d, const ExpertMap& map,
              std::vector<int>& rank_of_row) override;

 private:
  std::vector<std::vector<uint64_t>> next_;  // [layer][expert]
};

// A uniformly random replica per token, from a seeded generator (reproducible).
class RandomPolicy final : public DispatchPolicy {
 public:
  explicit RandomPolicy(uint64_t seed) : rng_(seed) {}
  std::string name() const override { return "random"; }
  void assign(int layer, const ExpertDispatch& d, const ExpertMap& map,
              std::vector<int>& rank_of_row) override;

 private:
  std::mt19937_64 rng_;
};

// Each expert's tokens split evenly across its replicas: shares differ by at most one token.
class UniformPolicy final : public DispatchPolicy {
 public:
  std::string name() const override { return "uniform"; }
  void assign(int layer, const ExpertDispatch& d, const ExpertMap& map,
              std::vector<int>& rank_of_row) override;
};

// "static", "round-robin", "random" or "uniform".
std::unique_ptr<DispatchPolicy> make_basic_dispatch_policy(const std::string& name, uint64_t seed);

}  // namespace moe
