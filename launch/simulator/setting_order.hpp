// The order in which `moe bench-routing` runs its settings (placement, policy), shared with the
// simulator's interleaved mode so that a prediction replays the measured sequence: for every trace
// call, a fresh shuffle of the settings (std::shuffle with one std::mt19937 for the whole run,
// warm-up pass included). A rank's state carries from one call into the next (a CPU quota's budget,
// a send still waiting to be noticed as done), so a fixed or rotating order would give a setting
// the same predecessor almost every time.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

namespace moe::sim {

class SettingOrder {
 public:
  SettingOrder(size_t settings, uint32_t seed = 7) : order_(settings), rng_(seed) {
    std::iota(order_.begin(), order_.end(), size_t(0));
  }
  // The settings' order for the next trace call.
  const std::vector<size_t>& next() {
    std::shuffle(order_.begin(), order_.end(), rng_);
    return order_;
  }

 private:
  std::vector<size_t> order_;
  std::mt19937 rng_;
};

}  // namespace moe::sim
