#include "model/resident_experts.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "runtime/error.hpp"
#include "runtime/rank_stats.hpp"

namespace moe {
namespace {

double frobenius(const float* w, size_t n) {
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += double(w[i]) * w[i];
  return std::sqrt(sum);
}

double squared_norm(const float* v, int d) {
  double sum = 0;
  for (int j = 0; j < d; ++j) sum += double(v[j]) * v[j];
  return sum;
}

}  // namespace

size_t expert_bytes(const ModelConfig& config) {
  return 2 * size_t(config.d_ff) * config.d_model * sizeof(float);
}

std::vector<std::vector<ExpertWeights>> expert_table(const ModelWeights& weights,
                                                     const ModelConfig& config) {
  std::vector<std::vector<ExpertWeights>> table(size_t(weights.num_moe_layers),
                                                std::vector<ExpertWeights>(config.num_experts));
  for (const auto* stack : {&weights.encoder, &weights.decoder})
    for (const BlockWeights& block : *stack)
      if (block.sparse)
        for (int e = 0; e < int(block.moe.experts.size()); ++e)
          if (block.moe.resident(e)) table[block.moe.moe_layer][e] = block.moe.expert(e);
  return table;
}

std::string unmapped_expert_tensor(const Checkpoint& checkpoint, const ModelWeights& weights) {
  const ModelConfig& c = checkpoint.config();
  const auto table = expert_table(weights, c);
  for (int l = 0; l < int(table.size()); ++l)
    for (int e = 0; e < int(table[l].size()); ++e) {
      if (table[l][e].wi == nullptr) continue;
      for (const char* part : {".wi.weight", ".wo.weight"}) {
        const std::string name = expert_prefix(c, l, e) + part;
        if (!checkpoint.maps(name)) return name;
      }
    }
  return "";
}

double time_expert_loads_ms(const std::vector<ExpertWeights>& experts, const ModelConfig& config,
                            bool map_back) {
  std::vector<double> ms;
  for (const ExpertWeights& e : experts) {
    if (ms.size() == 5) break;
    map_in_expert_pages(e, config.d_model, config.d_ff);
    give_back_expert_pages(e, config.d_model, config.d_ff);
    const double start_us = now_us();
    map_in_expert_pages(e, config.d_model, config.d_ff);
    give_back_expert_pages(e, config.d_model, config.d_ff);
    ms.push_back((now_us() - start_us) / 1000);
    if (map_back) map_in_expert_pages(e, config.d_model, config.d_ff);
  }
  if (ms.empty()) return 0;
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

std::vector<ExpertWeights> loaded_experts(const ModelWeights& weights, const ModelConfig& config) {
  std::vector<ExpertWeights> experts;
  for (const auto& layer : expert_table(weights, config))
    for (const ExpertWeights& e : layer)
      if (e.wi != nullptr) experts.push_back(e);
  return experts;
}

std::vector<std::vector<double>> budgeted_expert_norms(const Checkpoint& checkpoint,
                                                       const ModelWeights& weights,
                                                       const Device& device) {
  const ModelConfig& config = checkpoint.config();
  const bool pages = device.name().rfind("cpu", 0) == 0;
  if (pages) {
    const std::string name = unmapped_expert_tensor(checkpoint, weights);
    MOE_CHECK(name.empty(), checkpoint.dir(), ": tensor '", name,
              "' is not stored as float32: --expert-memory gives back pages of the mapped "
              "checkpoint, and a converted copy has none");
  }
  const size_t n = size_t(config.d_ff) * config.d_model;
  std::vector<std::vector<double>> norms;
  for (const auto& layer : expert_table(weights, config)) {
    norms.emplace_back();
    for (const ExpertWeights& e : layer) {
      if (e.wi == nullptr) {
        norms.back().push_back(0.0);
        continue;
      }
      norms.back().push_back(frobenius(e.wi, n) * frobenius(e.wo, n));
      if (pages) give_back_expert_pages(e, config.d_model, config.d_ff);
    }
  }
  return norms;
}

ResidentExperts::ResidentExperts(const ModelConfig& config, const ModelWeights& weights,
                                 ExpertResidency& residency, Device& device)
    : config_(config),
      device_(device),
      table_(expert_table(weights, config)),
      residency_(residency),
      tier_(
          make_expert_tier(device, config.d_model, config.d_ff, loaded_experts(weights, config))) {
  MOE_CHECK(int(table_.size()) == residency.layers(), "memory budget: ", residency.layers(),
            " committees for ", table_.size(), " sparse layers");
  for (int l = 0; l < residency.layers(); ++l)
    for (int e = 0; e < residency.experts(); ++e) {
      if (table_[l][e].wi == nullptr) continue;
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

ResidentExperts::~ResidentExperts() = default;

std::string ResidentExperts::summary() const {
  const ResidencyCounters n = residency_.counters();
  int held = 0, seats = 0;
  for (int l = 0; l < residency_.layers(); ++l) {
    seats += residency_.committee(l);
    for (int e = 0; e < residency_.experts(); ++e) held += table_[l][e].wi != nullptr;
  }
  char line[768];
  std::snprintf(
      line, sizeof line,
      "expert memory: %d of %d experts resident (%.1f MiB; %s committee, on a miss: %s); %lld of "
      "%lld routed tokens missed: %lld substituted, %lld skipped, %lld loads in a step (%.1f ms); "
      "%lld swaps started, %lld done in the background (%.1f ms loading); peak %s after a load "
      "or swap %.1f MiB (%s)",
      seats, held, double(seats) * double(expert_bytes(config_)) / 1048576.0,
      committee_kind_name(residency_.kind()), miss_policy_name(residency_.policy()),
      static_cast<long long>(n.missed), static_cast<long long>(n.routed),
      static_cast<long long>(n.substituted), static_cast<long long>(n.skipped),
      static_cast<long long>(n.loads), n.load_ms, static_cast<long long>(n.swaps),
      static_cast<long long>(n.swaps_done), n.swap_ms, tier_->measure().c_str(),
      double(peak_resident_bytes_.load()) / 1048576.0, tier_->name().c_str());
  return line;
}

void ResidentExperts::sample_resident_memory() {
  const uint64_t now = tier_->resident_bytes();
  uint64_t seen = peak_resident_bytes_.load();
  while (now > seen && !peak_resident_bytes_.compare_exchange_weak(seen, now)) {
  }
}

void ResidentExperts::run(int L, const std::vector<int>& experts, std::vector<ExpertGroup> groups,
                          const float* x, float* y, const std::vector<float>* demand) {
  const int d = config_.d_model;
  std::vector<ExpertGroup> resident;
  std::vector<size_t> missed;
  for (size_t g = 0; g < groups.size(); ++g) {
    if (groups[g].rows == 0) continue;
    if (residency_.resident(L, experts[g]))
      resident.push_back(groups[g]);
    else
      missed.push_back(g);
  }
  if (!resident.empty()) device_.expert_ffn(resident, x, y, d, config_.d_ff);
  // One missed expert at a time, so that a step holds at most one beyond the committee.
  for (size_t g : missed) {
    const int e = experts[g];
    const double start_us = now_us();
    map_in(L, e);
    const double load_ms = (now_us() - start_us) / 1000;
    sample_resident_memory();
    device_.expert_ffn({groups[g]}, x, y, d, config_.d_ff);
    if (residency_.policy() == MissPolicy::kOnDemand) {
      residency_.loaded_for_call(load_ms);
      give_back(L, e);
      continue;
    }
    const int leaver = residency_.admit(L, e, load_ms);
    if (leaver >= 0) give_back(L, leaver);
  }
  for (size_t g = 0; g < groups.size(); ++g) {
    const ExpertGroup& group = groups[g];
    if (group.rows == 0) continue;
    double gains = 0;
    for (int r = group.first_row; r < group.first_row + group.rows; ++r) {
      const double xx = squared_norm(x + size_t(r) * d, d);
      if (xx > 0) gains += std::sqrt(squared_norm(y + size_t(r) * d, d) / xx);
    }
    residency_.observe_gain(L, experts[g], gains / group.rows, group.rows);
  }
  if (demand != nullptr) {
    for (int e = 0; e < int(demand->size()) && e < residency_.experts(); ++e)
      if ((*demand)[e] > 0) residency_.record_demand(L, e, (*demand)[e]);
    int64_t rows = 0, missed_rows = 0;
    for (const ExpertGroup& group : groups) rows += group.rows;
    for (size_t g : missed) missed_rows += groups[g].rows;
    residency_.count_served(rows, missed_rows);
  }
  for (const PageJob& job : residency_.plan_swaps(L)) swapper_->submit(job);
}

}  // namespace moe
