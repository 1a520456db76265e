// Where a process's experts live under a memory budget (--expert-memory): a fast tier that holds
// the committee, backed by a slower one that holds every expert. On a CPU: RAM, backed by the
// mapped float32 checkpoint on disk (pages mapped in, or given back). On a GPU: device memory,
// backed by the experts' host copies, pinned for DMA. The residency (router/residency.hpp) decides
// which experts are in; the tier moves them and measures what the fast tier holds (the process's
// RSS; the GPU's memory in use), never by counting.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/device.hpp"

namespace moe {

class ExpertTier {
 public:
  virtual ~ExpertTier() = default;
  // "RAM backed by the checkpoint on disk", "cuda:0 memory backed by pinned host memory".
  virtual std::string name() const = 0;
  // The measure resident_bytes() gives: "resident memory" (RSS) or "device memory in use".
  virtual std::string measure() const = 0;
  // Moves one expert into the fast tier, or back out of it. Safe from the swapper's thread while
  // the step's thread computes: on a GPU the copy runs on a stream of its own, and the compute
  // stream waits for it only where it uses that expert.
  virtual void bring_in(const ExpertWeights& expert) = 0;
  virtual void send_back(const ExpertWeights& expert) = 0;
  // What the fast tier holds now, measured.
  virtual uint64_t resident_bytes() const = 0;
};

// One expert's pages (wi and wo, float32 [d_ff, d_model] each) of a mapped checkpoint: mapped in,
// or given back (runtime/mapped_pages.hpp). The CPU tier's moves, and what a miss there costs.
void map_in_expert_pages(const ExpertWeights& expert, int d_model, int d_ff);
void give_back_expert_pages(const ExpertWeights& expert, int d_model, int d_ff);

// The tier of `device`: the GPU's for a CUDA device, the CPU's otherwise. `experts` are every
// expert the process holds (a GPU tier pins their host copies; the CPU tier needs nothing).
std::unique_ptr<ExpertTier> make_expert_tier(Device& device, int d_model, int d_ff,
                                             const std::vector<ExpertWeights>& experts);

}  // namespace moe
