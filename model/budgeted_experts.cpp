#include "model/budgeted_experts.hpp"

#include <chrono>
#include <cmath>

#include "runtime/error.hpp"
#include "runtime/mapped_pages.hpp"
#include "runtime/rank_stats.hpp"

namespace moe {
namespace {

double frobenius(const float* w, size_t n) {
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += double(w[i]) * w[i];
  return std::sqrt(sum);
}

// [moe_layer][expert] of every sparse layer, encoder's first.
std::vector<std::vector<ExpertWeights>> expert_table(const ModelWeights& weights) {
  std::vector<std::vector<ExpertWeights>> table(size_t(weights.num_moe_layers));
  for (const auto* stack : {&weights.encoder, &weights.decoder})
    for (const BlockWeights& block : *stack) {
      if (!block.sparse) continue;
      for (size_t e = 0; e < block.moe.experts.size(); ++e) {
        MOE_CHECK(block.moe.resident(int(e)), "sparse layer ", block.moe.moe_layer, ": expert ", e,
                  " is not loaded; a memory budget needs every expert in the checkpoint");
        table[block.moe.moe_layer].push_back(block.moe.expert(int(e)));
      }
    }
  return table;
}

// The mean over rows [first, first + rows) of ‖y‖ / ‖x‖ (rows of d values).
double mean_gain(const float* x, const float* y, int first, int rows, int d) {
  double sum = 0;
  for (int r = first; r < first + rows; ++r) {
    double xx = 0, yy = 0;
    for (int j = 0; j < d; ++j) {
      xx += double(x[size_t(r) * d + j]) * x[size_t(r) * d + j];
      yy += double(y[size_t(r) * d + j]) * y[size_t(r) * d + j];
    }
    if (xx > 0) sum += std::sqrt(yy / xx);
  }
  return rows > 0 ? sum / rows : 0.0;
}

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

}  // namespace

size_t expert_bytes(const ModelConfig& config) {
  return 2 * size_t(config.d_ff) * config.d_model * sizeof(float);
}

std::vector<std::vector<double>> expert_weight_norms(const ModelWeights& weights,
                                                     const ModelConfig& config) {
  const size_t n = size_t(config.d_ff) * config.d_model;
  std::vector<std::vector<double>> norms;
  for (const auto& layer : expert_table(weights)) {
    norms.emplace_back();
    for (const ExpertWeights& e : layer) {
      norms.back().push_back(frobenius(e.wi, n) * frobenius(e.wo, n));
      give_back_pages(e.wi, n * sizeof(float));
      give_back_pages(e.wo, n * sizeof(float));
    }
  }
  return norms;
}

BudgetedExpertExecutor::BudgetedExpertExecutor(Device& device, const ModelConfig& config,
                                               const ModelWeights& weights,
                                               ExpertResidency& residency)
    : device_(device), config_(config), experts_(expert_table(weights)), residency_(residency) {
  MOE_CHECK(int(experts_.size()) == residency.layers(), "memory budget: ", residency.layers(),
            " committees for ", experts_.size(), " sparse layers");
  for (int l = 0; l < residency.layers(); ++l)
    for (int e = 0; e < residency.experts(); ++e) {
      if (residency.resident(l, e))
        map_in(l, e);
      else
        give_back(l, e);
    }
  sample_resident_memory();
  swapper_ = std::make_unique<ExpertSwapper>(
      residency_, [this](int l, int e) { map_in(l, e); }, [this](int l, int e) { give_back(l, e); },
      [this] { sample_resident_memory(); });
}

BudgetedExpertExecutor::~BudgetedExpertExecutor() = default;

void BudgetedExpertExecutor::map_in(int moe_layer, int expert) const {
  const ExpertWeights& w = experts_[moe_layer][expert];
  const size_t bytes = expert_bytes(config_) / 2;
  map_in_pages(w.wi, bytes);
  map_in_pages(w.wo, bytes);
}

void BudgetedExpertExecutor::give_back(int moe_layer, int expert) const {
  const ExpertWeights& w = experts_[moe_layer][expert];
  const size_t bytes = expert_bytes(config_) / 2;
  give_back_pages(w.wi, bytes);
  give_back_pages(w.wo, bytes);
}

void BudgetedExpertExecutor::sample_resident_memory() {
  const uint64_t now = resident_bytes();
  uint64_t seen = peak_resident_bytes_.load();
  while (now > seen && !peak_resident_bytes_.compare_exchange_weak(seen, now)) {
  }
}

void BudgetedExpertExecutor::adjust_routing(int moe_layer, const float* logits, const float* x,
                                            int d, GateResult& gate) {
  residency_.route(moe_layer, logits, x, d, gate);
}

void BudgetedExpertExecutor::run(const SparseFfnWeights& layer, int64_t, const GateResult&,
                                 const ExpertDispatch& dispatch, const float* rows_in,
                                 float* rows_out) {
  const int L = layer.moe_layer;
  groups_.clear();
  std::vector<int> missed;
  for (int e = 0; e < residency_.experts(); ++e) {
    if (dispatch.count(e) == 0) continue;
    if (residency_.resident(L, e))
      groups_.push_back({experts_[L][e], dispatch.offsets[e], dispatch.count(e)});
    else
      missed.push_back(e);  // only kWait and kOnDemand route tokens to a non-resident expert
  }
  if (!groups_.empty())
    device_.expert_ffn(groups_, rows_in, rows_out, config_.d_model, config_.d_ff);
  // One missed expert at a time, so that a step holds at most one beyond the committee.
  for (int e : missed) {
    const auto start = std::chrono::steady_clock::now();
    map_in(L, e);
    const double load_ms = ms_since(start);
    sample_resident_memory();
    device_.expert_ffn({{experts_[L][e], dispatch.offsets[e], dispatch.count(e)}}, rows_in,
                       rows_out, config_.d_model, config_.d_ff);
    if (residency_.policy() == MissPolicy::kOnDemand) {
      residency_.loaded_for_call(load_ms);
      give_back(L, e);
      continue;
    }
    const int leaver = residency_.admit(L, e, load_ms);
    if (leaver >= 0) give_back(L, leaver);
  }
  for (int e = 0; e < residency_.experts(); ++e)
    if (dispatch.count(e) > 0)
      residency_.observe_gain(
          L, e,
          mean_gain(rows_in, rows_out, dispatch.offsets[e], dispatch.count(e), config_.d_model),
          dispatch.count(e));
  for (const PageJob& job : residency_.plan_swaps(L)) swapper_->submit(job);
}

}  // namespace moe
