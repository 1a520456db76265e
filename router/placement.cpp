#include "router/placement.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <numeric>
#include <random>

#include "runtime/error.hpp"

namespace moe {

size_t expert_capacity(const PlacementProblem& p, int rank) {
  // Under a budget a rank holds its other experts as pages of the checkpoint on disk: its memory
  // bounds the committee, not what it holds.
  if (p.resident_per_rank > 0 && p.memory_per_rank == 0) return SIZE_MAX;
  const size_t memory = p.memory_per_rank ? p.memory_per_rank : p.profile->of(rank).memory_bytes;
  if (memory == 0 || p.bytes_per_expert == 0) return SIZE_MAX;
  return memory / p.bytes_per_expert;
}

int committee_seats(const PlacementProblem& p, int layer) {
  if (p.resident_per_rank <= 0) return INT_MAX;
  const int64_t layers = std::max<int64_t>(int64_t(p.load.size()), 1);
  return int(p.resident_per_rank / layers + (layer < p.resident_per_rank % layers ? 1 : 0));
}

namespace {

// A rank's predicted time: its experts' curves plus one round trip for all its tokens.
double rank_time_us(const RankProfile& r, double compute_us, double tokens, int d_model) {
  return compute_us + (tokens > 0 ? r.round_trip_us(tokens * d_model * sizeof(float)) : 0.0);
}

// What `n` expected tokens of an expert cost a rank: its curve, and a load where not resident.
double expert_cost_us(const RankProfile& r, double n, bool resident) {
  if (n <= 0) return 0;
  return r.expert.at(n) + (resident ? 0.0 : (1 - std::exp(-n)) * r.expert_load_us);
}

int max_rank(const PlacementProblem& p) {
  return *std::max_element(p.ranks.begin(), p.ranks.end());
}

}  // namespace

std::vector<std::vector<uint8_t>> resident_experts(const PlacementProblem& p, const ExpertMap& map,
                                                   int layer) {
  const int E = map.num_experts(), seats = committee_seats(p, layer);
  std::vector<std::vector<int>> held(max_rank(p) + 1);
  for (int e = 0; e < E; ++e)
    for (int r : map.ranks_of(layer, e)) held[r].push_back(e);
  std::vector<std::vector<uint8_t>> resident(held.size(), std::vector<uint8_t>(E, 0));
  for (size_t r = 0; r < held.size(); ++r) {
    auto share = [&](int e) { return p.load[layer][e] / double(map.ranks_of(layer, e).size()); };
    std::stable_sort(held[r].begin(), held[r].end(),
                     [&](int a, int b) { return share(a) > share(b); });
    for (size_t i = 0; i < held[r].size() && int(i) < seats; ++i) resident[r][held[r][i]] = 1;
  }
  return resident;
}

double predicted_resident_share(const PlacementProblem& p, const ExpertMap& map) {
  double all = 0, resident = 0;
  for (int l = 0; l < map.num_layers(); ++l) {
    const auto in = resident_experts(p, map, l);
    for (int e = 0; e < map.num_experts(); ++e) {
      all += p.load[l][e];
      for (int r : map.ranks_of(l, e))
        if (in[r][e]) {
          resident += p.load[l][e];
          break;
        }
    }
  }
  return all > 0 ? resident / all : 1.0;
}

std::vector<double> predicted_rank_times_us(const PlacementProblem& p, const ExpertMap& map,
                                            int layer) {
  const auto resident = resident_experts(p, map, layer);
  std::vector<double> tokens(max_rank(p) + 1, 0.0), compute(tokens.size(), 0.0);
  for (int e = 0; e < map.num_experts(); ++e) {
    const auto& ranks = map.ranks_of(layer, e);
    const double share = p.load[layer][e] / double(ranks.size());
    for (int r : ranks) {
      tokens[r] += share;
      compute[r] += expert_cost_us(p.profile->of(r), share, resident[r][e]);
    }
  }
  std::vector<double> time(tokens.size(), 0.0);
  for (int r : p.ranks)
    time[r] = rank_time_us(p.profile->of(r), compute[r], tokens[r], p.profile->d_model);
  return time;
}

double predicted_layer_time_us(const PlacementProblem& p, const ExpertMap& map) {
  double sum = 0;
  for (int l = 0; l < map.num_layers(); ++l) {
    const auto t = predicted_rank_times_us(p, map, l);
    sum += *std::max_element(t.begin(), t.end());
  }
  return sum / std::max(map.num_layers(), 1);
}

ExpertMap place_experts(const PlacementProblem& p) {
  MOE_CHECK(p.profile != nullptr && !p.ranks.empty(),
            "placement: needs a profile and expert ranks");
  MOE_CHECK(p.resident_per_rank >= 0, "placement: resident experts per rank must be >= 0");
  for (int r : p.ranks) p.profile->of(r);  // every rank must be profiled
  const int layers = int(p.load.size()), experts = layers ? int(p.load[0].size()) : 0;
  const int d = p.profile->d_model;
  ExpertMap map;
  map.replicas.assign(layers, std::vector<std::vector<int>>(experts));
  std::vector<size_t> held(max_rank(p) + 1, 0);
  size_t total_capacity = 0;
  for (int r : p.ranks)
    total_capacity = std::min<size_t>(SIZE_MAX / 2, total_capacity + expert_capacity(p, r));
  MOE_CHECK(total_capacity >= size_t(layers) * experts, "placement: the ranks' memory holds ",
            total_capacity, " experts but the model has ", layers * experts);
  for (int l = 0; l < layers; ++l) {
    std::vector<int> order(experts);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return p.load[l][a] > p.load[l][b]; });
    const int seats = committee_seats(p, l);
    std::vector<int> seated(held.size(), 0);
    std::vector<double> compute(held.size(), 0.0), tokens(held.size(), 0.0);
    // Longest processing time first, onto the rank that finishes earliest. Under a budget the
    // experts that fit the layer's seats go first, each onto a rank with a seat left, so that all
    // of them stay resident; the others may go anywhere, at a miss's cost.
    int seats_left = 0;
    for (int r : p.ranks)
      seats_left += int(std::min<size_t>({size_t(seats), expert_capacity(p, r), size_t(experts)}));
    for (int e : order) {
      const double n = p.load[l][e];
      auto earliest = [&](bool to_a_seat) {
        int best = -1;
        double best_finish = 0;
        for (int r : p.ranks) {
          if (held[r] >= expert_capacity(p, r) || (to_a_seat && seated[r] >= seats)) continue;
          const RankProfile& rp = p.profile->of(r);
          const double cost = expert_cost_us(rp, n, seated[r] < seats);
          const double finish = rank_time_us(rp, compute[r] + cost, tokens[r] + n, d);
          if (best < 0 || finish < best_finish) {
            best = r;
            best_finish = finish;
          }
        }
        return best;
      };
      int best = seats_left > 0 ? earliest(true) : -1;
      if (best < 0) best = earliest(false);
      MOE_CHECK(best >= 0, "placement: no rank has memory left for layer ", l, " expert ", e);
      map.replicas[l][e] = {best};
      compute[best] += expert_cost_us(p.profile->of(best), n, seated[best] < seats);
      tokens[best] += n;
      ++held[best];
      if (seated[best] < seats) {
        ++seated[best];
        --seats_left;
      }
    }
    // Replicas: split the bottleneck rank's hottest expert onto the rank that gains most (under a
    // budget, onto one with a seat left, so that the replica is resident).
    for (int k = 0; k < p.extra_replicas; ++k) {
      const auto t = predicted_rank_times_us(p, map, l);
      int slowest = p.ranks[0];
      for (int r : p.ranks)
        if (t[r] > t[slowest]) slowest = r;
      int hottest = -1;
      for (int e = 0; e < experts; ++e)
        if (map.holds(slowest, l, e) &&
            (hottest < 0 || p.load[l][e] / map.ranks_of(l, e).size() >
                                p.load[l][hottest] / map.ranks_of(l, hottest).size()))
          hottest = e;
      if (hottest < 0) break;
      double best_max = *std::max_element(t.begin(), t.end());
      int best = -1;
      for (int r : p.ranks) {
        if (map.holds(r, l, hottest) || held[r] >= expert_capacity(p, r) || seated[r] >= seats)
          continue;
        map.replicas[l][hottest].push_back(r);
        const auto trial = predicted_rank_times_us(p, map, l);
        const double m = *std::max_element(trial.begin(), trial.end());
        map.replicas[l][hottest].pop_back();
        if (m < best_max - 1e-9) {
          best_max = m;
          best = r;
        }
      }
      if (best < 0) break;  // no replica helps
      map.replicas[l][hottest].push_back(best);
      ++held[best];
      ++seated[best];
    }
  }
  return map;
}

ExpertMap random_expert_map(int num_layers, int num_experts, const std::vector<int>& ranks,
                            uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, ranks.size() - 1);
  ExpertMap map;
  map.replicas.assign(num_layers, std::vector<std::vector<int>>(num_experts));
  for (auto& layer : map.replicas)
    for (auto& e : layer) e = {ranks[pick(rng)]};
  return map;
}

ExpertMap fastest_class_expert_map(const PlacementProblem& p, int num_layers, int num_experts) {
  double fastest = 1e300;
  for (int r : p.ranks) fastest = std::min(fastest, p.profile->of(r).expert.at(64));
  std::vector<int> chosen;
  for (int r : p.ranks)
    if (p.profile->of(r).expert.at(64) <= fastest * 1.1) chosen.push_back(r);
  ExpertMap map;
  map.replicas.assign(num_layers, std::vector<std::vector<int>>(num_experts));
  int next = 0;
  for (auto& layer : map.replicas)
    for (auto& e : layer) e = {chosen[next++ % chosen.size()]};
  return map;
}

}  // namespace moe
