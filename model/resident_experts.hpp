// A process's experts under a memory budget: the residency's committee in the fast tier
// (runtime/expert_tier.hpp: RAM on a CPU, device memory on a GPU), every other held expert sent
// back; loads in a step for experts that are not resident (exact), the background swapper for a
// dynamic committee, each expert's gain measured from what it computed, and the tier's memory
// (RSS, or the GPU's memory in use) sampled after each load or swap. Shared by one process's
// executor and an expert rank.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "model/checkpoint.hpp"
#include "model/expert_swapper.hpp"
#include "model/weights.hpp"
#include "router/residency.hpp"
#include "runtime/device.hpp"
#include "runtime/expert_tier.hpp"

namespace moe {

// The bytes of one expert's weights (float32 wi and wo).
size_t expert_bytes(const ModelConfig& config);

// [moe_layer][expert] of every sparse layer, encoder's first; null weights where not loaded here.
std::vector<std::vector<ExpertWeights>> expert_table(const ModelWeights& weights,
                                                     const ModelConfig& config);

// The first tensor of a loaded expert of `weights` that is not a view into `checkpoint`'s mapped
// file (stored other than as aligned float32: a converted copy has no pages to give back); "" when
// every one is (budgeted_expert_norms refuses a CPU budget naming it).
std::string unmapped_expert_tensor(const Checkpoint& checkpoint, const ModelWeights& weights);

// What one miss costs beyond its compute, in ms: an expert's pages mapped in from the checkpoint
// on disk and given back after use (as on-demand does). The median over up to five of `experts`,
// each mapped in and given back once first, so that the timed map-in reads the disk (pages this
// process never mapped stay in the page cache, and would time a copy from it). With `map_back` each
// timed expert is mapped in again afterwards. 0 when none was timed.
double time_expert_loads_ms(const std::vector<ExpertWeights>& experts, const ModelConfig& config,
                            bool map_back);

// ‖wi‖·‖wo‖ (Frobenius) of every loaded expert, [moe_layer][expert] (0 where not loaded), for a
// residency of `weights`' experts on `device`: read once at load. On a CPU device the budget moves
// pages of the mapped checkpoint, so every loaded expert must be one (else this throws naming the
// tensor), and each expert's pages are given back after it is read, so that computing the norms
// never holds more than one.
std::vector<std::vector<double>> budgeted_expert_norms(const Checkpoint& checkpoint,
                                                       const ModelWeights& weights,
                                                       const Device& device);

// Every loaded expert of `weights` (a tier's, or time_expert_loads_ms's).
std::vector<ExpertWeights> loaded_experts(const ModelWeights& weights, const ModelConfig& config);

class ResidentExperts {
 public:
  // Brings the residency's initial committee into `device`'s tier (runtime/expert_tier.hpp) and
  // sends every other loaded expert back.
  ResidentExperts(const ModelConfig& config, const ModelWeights& weights,
                  ExpertResidency& residency, Device& device);
  ~ResidentExperts();

  ExpertResidency& residency() { return residency_; }
  const ExpertWeights& weights(int moe_layer, int expert) const {
    return table_[moe_layer][expert];
  }

  // Runs groups[] (experts of sparse layer `moe_layer`, rows grouped as Device::expert_ffn takes
  // them) on the device: resident ones in one grouped call, the others one at a time, each loaded
  // first; after the call a loaded one joins the committee (kWait, and on an expert rank every
  // policy but kOnDemand: the attention rank routed to it believing it resident) or leaves again
  // (kOnDemand). Then each expert's gain is measured; on an expert rank, `demand` (the attention
  // ranks' WorkHeader::demand, summed) goes into importance and the rows into the counts; and the
  // layer's swaps are planned.
  void run(int moe_layer, const std::vector<int>& experts, std::vector<ExpertGroup> groups,
           const float* x, float* y, const std::vector<float>* demand = nullptr);

  void drain() { swapper_->drain(); }
  // One line: the committee, the misses and what became of them, loads, swaps, peak memory.
  std::string summary() const;
  uint64_t peak_resident_bytes() const { return peak_resident_bytes_.load(); }

 private:
  void map_in(int moe_layer, int expert) const { tier_->bring_in(table_[moe_layer][expert]); }
  void give_back(int moe_layer, int expert) const { tier_->send_back(table_[moe_layer][expert]); }
  void sample_resident_memory();

  const ModelConfig& config_;
  Device& device_;
  std::vector<std::vector<ExpertWeights>> table_;
  ExpertResidency& residency_;
  std::unique_ptr<ExpertTier> tier_;
  std::atomic<uint64_t> peak_resident_bytes_{0};
  std::unique_ptr<ExpertSwapper> swapper_;
};

}  // namespace moe
