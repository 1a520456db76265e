// The order in which `moe bench-routing` runs its settings (placement, policy), shared with the
// simulator's interleaved mode so that a prediction replays the measured sequence. The settings
// take turns call by call, each running the trace from its own offset: in slot i of a pass,
// setting s runs trace call (i + offset_s) mod T. The offsets spread the settings evenly over the
// trace and are dealt afresh each pass; the order within a slot is shuffled (one std::mt19937
// for the whole run, warm-up pass included).
// Why turns: a rank's state carries from one call into the next (a CPU quota's budget, a send
// still waiting to be noticed as done), and a fixed or rotating order would give a setting the
// same predecessor almost every time. Why offsets: running one trace call under every setting
// back to back leaves that call's expert weights in the cache for all but the first, a reuse
// that no serving run has and the profile, timed cold, does not see (docs/ROUTING.md).
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

namespace moe::sim {

struct BenchSlot {
  size_t setting = 0, call = 0;
};

class BenchSchedule {
 public:
  BenchSchedule(size_t settings, size_t calls, uint32_t seed = 7)
      : calls_(calls), order_(settings), offset_(settings, 0), rng_(seed) {
    std::iota(order_.begin(), order_.end(), size_t(0));
  }
  // Deals the offsets of a new pass: the k-th setting of a fresh shuffle starts k·T/S calls in.
  void start_pass() {
    std::shuffle(order_.begin(), order_.end(), rng_);
    for (size_t k = 0; k < order_.size(); ++k) offset_[order_[k]] = k * calls_ / order_.size();
  }
  // Slot i of the pass: every setting once, with the trace call it runs, in run order.
  std::vector<BenchSlot> slot(size_t i) {
    std::shuffle(order_.begin(), order_.end(), rng_);
    std::vector<BenchSlot> slots;
    for (size_t s : order_) slots.push_back({s, (i + offset_[s]) % calls_});
    return slots;
  }

 private:
  size_t calls_;
  std::vector<size_t> order_, offset_;
  std::mt19937 rng_;
};

}  // namespace moe::sim
