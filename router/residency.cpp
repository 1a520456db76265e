#include "router/residency.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <random>

#include "runtime/error.hpp"

namespace moe {

MissPolicy parse_miss_policy(const std::string& name) {
  if (name == "wait") return MissPolicy::kWait;
  if (name == "on-demand") return MissPolicy::kOnDemand;
  if (name == "substitute") return MissPolicy::kSubstitute;
  if (name == "skip") return MissPolicy::kSkip;
  throw Error("--on-missing-expert: '" + name +
              "' is not one of wait, on-demand, substitute, skip");
}

CommitteeKind parse_committee_kind(const std::string& name) {
  if (name == "dynamic") return CommitteeKind::kDynamic;
  if (name == "random") return CommitteeKind::kRandom;
  if (name == "magnitude") return CommitteeKind::kMagnitude;
  throw Error("--committee: '" + name + "' is not one of dynamic, random, magnitude");
}

const char* miss_policy_name(MissPolicy policy) {
  switch (policy) {
    case MissPolicy::kWait:
      return "wait";
    case MissPolicy::kOnDemand:
      return "on-demand";
    case MissPolicy::kSubstitute:
      return "substitute";
    case MissPolicy::kSkip:
      return "skip";
  }
  return "?";
}

const char* committee_kind_name(CommitteeKind kind) {
  switch (kind) {
    case CommitteeKind::kDynamic:
      return "dynamic";
    case CommitteeKind::kRandom:
      return "random";
    case CommitteeKind::kMagnitude:
      return "magnitude";
  }
  return "?";
}

int64_t experts_within(const std::string& memory, int64_t total_experts, size_t bytes_per_expert) {
  const std::string bad = "--expert-memory '" + memory +
                          "': give bytes (e.g. 600000000, or 512M with K, M, G for powers of "
                          "1024) or a share of the experts (e.g. 50%)";
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(memory, &used);
  } catch (const std::exception&) {
    throw Error(bad);
  }
  const std::string unit = memory.substr(used);
  MOE_CHECK(value >= 0 && std::isfinite(value), bad);
  if (unit == "%") {
    MOE_CHECK(value <= 100, bad);
    return int64_t(std::floor(value / 100 * double(total_experts) + 1e-9));
  }
  double scale = 1;
  if (unit == "K")
    scale = 1024.0;
  else if (unit == "M")
    scale = 1024.0 * 1024;
  else if (unit == "G")
    scale = 1024.0 * 1024 * 1024;
  else
    MOE_CHECK(unit.empty(), bad);
  const double experts = std::floor(value * scale / double(bytes_per_expert));
  return int64_t(std::min(experts, double(total_experts)));
}

std::vector<int> spread_committees(int64_t slots, const std::vector<int>& held) {
  std::vector<int> sizes(held.size(), 0);
  for (bool seated = true; slots > 0 && seated;) {
    seated = false;
    for (size_t l = 0; l < held.size() && slots > 0; ++l)
      if (sizes[l] < held[l]) {
        ++sizes[l];
        --slots;
        seated = true;
      }
  }
  return sizes;
}

void apply_miss_policy(MissPolicy policy, const std::function<bool(int)>& resident,
                       const float* logits, int E, GateResult& gate, ResidencyCounters& counters) {
  for (size_t t = 0; t < gate.expert.size(); ++t) {
    if (!gate.kept[t]) continue;
    const int chosen = gate.expert[t];
    if (resident(chosen)) continue;
    ++counters.missed;
    if (policy == MissPolicy::kWait || policy == MissPolicy::kOnDemand) continue;
    int best = -1;
    const float* row = logits + t * size_t(E);
    if (policy == MissPolicy::kSubstitute)
      for (int e = 0; e < E; ++e)
        if (resident(e) && (best < 0 || row[e] > row[best])) best = e;
    if (best < 0) {
      gate.kept[t] = 0;
      ++counters.skipped;
      continue;
    }
    // softmax(row)[best] = softmax(row)[chosen] · exp(row[best] − row[chosen]).
    gate.probability[t] *= std::exp(row[best] - row[chosen]);
    gate.expert[t] = best;
    ++counters.substituted;
  }
}

void route_with_residency(MissPolicy policy, const std::function<bool(int)>& resident,
                          const float* logits, const float* x, int d, int experts, GateResult& gate,
                          ResidencyCounters& counters, std::vector<double>& demand) {
  demand.assign(experts, 0.0);
  for (size_t t = 0; t < gate.expert.size(); ++t) {
    if (!gate.kept[t]) continue;
    const int chosen = gate.expert[t];
    double norm2 = 0;
    for (int j = 0; j < d; ++j) norm2 += double(x[t * d + j]) * x[t * d + j];
    demand[chosen] += gate.probability[t] * std::sqrt(norm2);
    ++counters.routed;
    counters.routed_mass += gate.probability[t];
    if (resident(chosen)) counters.resident_mass += gate.probability[t];
  }
  apply_miss_policy(policy, resident, logits, experts, gate, counters);
}

ExpertResidency::ExpertResidency(std::vector<int> committee,
                                 std::vector<std::vector<double>> weight_norm, MissPolicy policy,
                                 CommitteeKind kind, uint64_t seed, double decay, double margin,
                                 std::vector<std::vector<uint8_t>> held)
    : committee_(std::move(committee)),
      weight_norm_(std::move(weight_norm)),
      policy_(policy),
      kind_(kind),
      decay_(decay),
      margin_(margin),
      held_(std::move(held)) {
  const int L = int(committee_.size());
  MOE_CHECK(int(weight_norm_.size()) == L, "residency: ", weight_norm_.size(),
            " layers of weight norms for ", L, " committees");
  experts_ = L == 0 ? 0 : int(weight_norm_[0].size());
  if (held_.empty()) held_.assign(L, std::vector<uint8_t>(experts_, 1));
  MOE_CHECK(int(held_.size()) == L, "residency: ", held_.size(), " layers held of ", L);
  std::mt19937_64 rng(seed);
  state_.assign(L, std::vector<State>(experts_, State::kOut));
  importance_.assign(L, std::vector<double>(experts_, 0.0));
  this_call_ = importance_;
  gain_ = importance_;
  pending_.assign(L, Pending{});
  for (int l = 0; l < L; ++l) {
    MOE_CHECK(int(weight_norm_[l].size()) == experts_, "residency: layer ", l, " has ",
              weight_norm_[l].size(), " weight norms, not ", experts_);
    std::vector<int> order;
    for (int e = 0; e < experts_; ++e)
      if (held_[l].at(e)) order.push_back(e);
    MOE_CHECK(committee_[l] >= 0 && committee_[l] <= int(order.size()), "residency: layer ", l,
              " committee of ", committee_[l], " experts out of ", order.size(), " held");
    if (kind_ == CommitteeKind::kRandom) {
      std::shuffle(order.begin(), order.end(), rng);
    } else {
      // Largest norm first, the lower index among equal ones.
      std::stable_sort(order.begin(), order.end(),
                       [&](int a, int b) { return weight_norm_[l][a] > weight_norm_[l][b]; });
    }
    for (int i = 0; i < committee_[l]; ++i) state_[l][order[i]] = State::kIn;
  }
}

void ExpertResidency::seat(int layer, const std::vector<int>& members) {
  std::lock_guard<std::mutex> lock(mutex_);
  MOE_CHECK(int(members.size()) == committee_[layer], "residency: ", members.size(),
            " members for a committee of ", committee_[layer], " in layer ", layer);
  std::vector<State>& state = state_[layer];
  std::fill(state.begin(), state.end(), State::kOut);
  for (int e : members) {
    MOE_CHECK(e >= 0 && e < experts_ && held_[layer][e] && state[e] == State::kOut,
              "residency: expert ", e, " cannot sit in layer ", layer, "'s committee");
    state[e] = State::kIn;
  }
}

bool ExpertResidency::resident(int layer, int expert) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return state_[layer][expert] == State::kIn;
}

std::vector<int> ExpertResidency::resident_experts(int layer) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<int> in;
  for (int e = 0; e < experts_; ++e)
    if (state_[layer][e] == State::kIn) in.push_back(e);
  return in;
}

double ExpertResidency::importance(int layer, int expert) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return importance_[layer][expert];
}

void ExpertResidency::route(int layer, const float* logits, const float* x, int d,
                            GateResult& gate) {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::vector<State>& state = state_[layer];
  std::vector<double> demand;
  route_with_residency(
      policy_, [&](int e) { return state[e] == State::kIn; }, logits, x, d, experts_, gate,
      counters_, demand);
  for (int e = 0; e < experts_; ++e)
    if (demand[e] > 0) this_call_[layer][e] += demand[e] * gain_locked(layer, e);
}

void ExpertResidency::record_demand(int layer, int expert, double demand) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (held_[layer][expert]) this_call_[layer][expert] += demand * gain_locked(layer, expert);
}

void ExpertResidency::count_served(int64_t rows, int64_t missed) {
  std::lock_guard<std::mutex> lock(mutex_);
  counters_.routed += rows;
  counters_.missed += missed;
}

void ExpertResidency::observe_gain(int layer, int expert, double gain, int rows) {
  if (rows <= 0 || !std::isfinite(gain)) return;
  std::lock_guard<std::mutex> lock(mutex_);
  double& g = gain_[layer][expert];
  g = g == 0 ? gain : decay_ * g + (1 - decay_) * gain;
}

double ExpertResidency::gain(int layer, int expert) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return gain_locked(layer, expert);
}

double ExpertResidency::gain_locked(int layer, int expert) const {
  if (gain_[layer][expert] > 0) return gain_[layer][expert];
  double ratio = 0;
  int measured = 0;
  for (int e = 0; e < experts_; ++e)
    if (gain_[layer][e] > 0 && weight_norm_[layer][e] > 0) {
      ratio += gain_[layer][e] / weight_norm_[layer][e];
      ++measured;
    }
  return weight_norm_[layer][expert] * (measured > 0 ? ratio / measured : 1.0);
}

void ExpertResidency::end_call_locked(int layer) {
  for (int e = 0; e < experts_; ++e) {
    importance_[layer][e] = decay_ * importance_[layer][e] + (1 - decay_) * this_call_[layer][e];
    this_call_[layer][e] = 0;
  }
}

std::vector<PageJob> ExpertResidency::plan_swaps(int layer) {
  std::lock_guard<std::mutex> lock(mutex_);
  end_call_locked(layer);
  std::vector<PageJob> jobs;
  std::vector<State>& state = state_[layer];
  Pending& pending = pending_[layer];
  if (pending.in >= 0 && pending.ready) {  // the newcomer is in: it takes the leaver's seat
    state[pending.in] = State::kIn;
    state[pending.out] = State::kOut;
    jobs.push_back({PageJob::kGiveBack, layer, pending.out});
    pending = {};
    --swaps_in_flight_;
    ++counters_.swaps_done;
  }
  if (kind_ != CommitteeKind::kDynamic || swaps_in_flight_ > 0) return jobs;
  const std::vector<double>& imp = importance_[layer];
  int in = -1, out = -1;
  for (int e = 0; e < experts_; ++e) {
    if (state[e] == State::kOut && held_[layer][e] && (in < 0 || imp[e] > imp[in])) in = e;
    if (state[e] == State::kIn && (out < 0 || imp[e] < imp[out])) out = e;
  }
  if (in < 0 || out < 0 || imp[in] <= 0 || imp[in] <= margin_ * imp[out]) return jobs;
  state[in] = State::kLoading;
  pending = {in, out, false};
  ++swaps_in_flight_;
  ++counters_.swaps;
  jobs.push_back({PageJob::kLoad, layer, in});
  return jobs;
}

bool ExpertResidency::loaded(int layer, int expert, double ms) {
  std::lock_guard<std::mutex> lock(mutex_);
  counters_.swap_ms += ms;
  if (pending_[layer].in != expert) return false;
  pending_[layer].ready = true;
  return true;
}

bool ExpertResidency::out_of_committee(int layer, int expert) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return state_[layer][expert] == State::kOut;
}

void ExpertResidency::cancel_pending_locked(int layer) {
  Pending& pending = pending_[layer];
  if (pending.in < 0) return;
  if (state_[layer][pending.in] == State::kLoading) state_[layer][pending.in] = State::kOut;
  pending = {};
  --swaps_in_flight_;
}

int ExpertResidency::admit(int layer, int expert, double load_ms) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++counters_.loads;
  counters_.load_ms += load_ms;
  std::vector<State>& state = state_[layer];
  if (state[expert] == State::kIn) return -1;
  if (committee_[layer] == 0) return expert;
  Pending& pending = pending_[layer];
  if (pending.in == expert) {  // it was being swapped in: it takes the leaver's seat now
    const int out = pending.out;
    state[expert] = State::kIn;
    state[out] = State::kOut;
    pending = {};
    --swaps_in_flight_;
    ++counters_.swaps_done;
    return out;
  }
  int seated = 0, out = -1;
  for (int e = 0; e < experts_; ++e) {
    if (state[e] != State::kIn) continue;
    ++seated;
    if (out < 0 || importance_[layer][e] < importance_[layer][out]) out = e;
  }
  state[expert] = State::kIn;
  if (seated < committee_[layer]) return -1;
  // The pending swap's leaver leaves now instead, and its newcomer has no seat: the swap ends.
  if (pending.in >= 0 && pending.out == out) cancel_pending_locked(layer);
  state[out] = State::kOut;
  return out;
}

void ExpertResidency::loaded_for_call(double load_ms) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++counters_.loads;
  counters_.load_ms += load_ms;
}

ResidencyCounters ExpertResidency::counters() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return counters_;
}

}  // namespace moe
