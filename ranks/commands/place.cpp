// moe place: choose ranks for every (sparse layer, expert) from a profile and a routing trace,
// replicating hot experts; prints the predicted per-layer time of the chosen map beside the
// round-robin, random and fastest-device-class baselines, and writes the map and the baselines.
// With --cluster the map is then refined by simulation (router/sim/refine_placement.hpp):
// the event model of that cluster, not the table of medians, decides. With --expert-memory the
// placement keeps each layer's hottest experts on the ranks' committee seats and prints the share
// of routed tokens resident under each map.
#include <boost/program_options.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "ranks/commands/command_line.hpp"
#include "ranks/commands/commands.hpp"
#include "router/latency_model.hpp"
#include "router/placement.hpp"
#include "router/residency.hpp"
#include "router/routing_trace.hpp"
#include "router/sim/refine_placement.hpp"
#include "runtime/atomic_file.hpp"
#include "runtime/error.hpp"

namespace moe {
namespace po = boost::program_options;

namespace {

void write_map(const std::string& path, const ExpertMap& map) {
  write_file_atomically(path,
                        [&](std::ostream& out) { out << expert_map_to_json(map).dump() << "\n"; });
}

// The map refined by simulating `cluster_path` (the event model, not the table of medians,
// decides), starting from the best of `maps`.
ExpertMap refine(const std::string& cluster_path, const std::string& model_path, uint64_t seed,
                 const Profile& profile, const PlacementProblem& problem,
                 const std::vector<std::pair<std::string, ExpertMap>>& maps,
                 const std::string& trace_path, sim::RefineOptions refine) {
  const int world_size = problem.ranks.back() + 1;
  MOE_CHECK(refine.max_evaluations >= 1, "--refine-evaluations must be >= 1");
  const std::vector<RoutingRecord> trace = load_routing_trace(trace_path);
  const sim::ClusterConfig cluster = sim::load_cluster(cluster_path, profile);
  MOE_CHECK(cluster.expert_ranks() == problem.ranks, cluster_path,
            ": its expert ranks are not the profile's ", "(ranks 1..", world_size - 1,
            " with one coordinator)");
  const Profile cluster_view = sim::cluster_profile(cluster, profile);
  refine.context.profile = &cluster_view;
  refine.context.seed = seed;
  refine.context.d_model = profile.d_model;
  if (!model_path.empty())
    refine.context.latency_model = std::make_shared<LatencyModel>(LatencyModel::load(model_path));
  make_dispatch_policy(refine.policy,
                       refine.context);  // rejects an unknown name or a missing model
  refine.sim.d_model = profile.d_model;
  refine.sim.warmup_passes = refine.policy == "latency-aware" ? 1 : 0;
  refine.sim.passes = 1;
  const sim::RefineResult r = sim::refine_by_simulation(cluster, problem, maps, trace, refine);
  std::printf("simulated mean (%s, %s):", cluster_path.c_str(), refine.policy.c_str());
  for (const auto& [name, us] : r.candidates_us) std::printf(" %s %.1f", name.c_str(), us);
  std::printf("\nrefined by simulation from %s: %.1f us simulated mean, %d moves, %d simulations\n",
              r.started_from.c_str(), r.mean_us, r.moves, r.evaluations);
  std::printf("%-12s %16.1f   (refined; the table model's prediction)\n", "refined",
              predicted_layer_time_us(problem, r.map));
  return r.map;
}

}  // namespace

int run_place(const World& world, const std::vector<std::string>& args) {
  std::string profile_path, trace_path, out_path, baselines_prefix, cluster_path, model_path,
      expert_memory;
  sim::RefineOptions refine_options;
  int replicas = 0;
  size_t memory_per_rank = 0;
  uint64_t seed = 1;
  po::options_description opts("moe place options");
  // clang-format off
  opts.add_options()("help,h", "show this help")
      ("profile", po::value(&profile_path)->required(), "profile.json from `moe profile`")
      ("trace", po::value(&trace_path)->required(), "routing trace from `moe generate --record-routing`")
      ("out", po::value(&out_path)->required(), "expert_map.json to write")
      ("replicas", po::value(&replicas)->default_value(0), "extra replicas per layer for the hottest experts")
      ("memory-per-rank", po::value(&memory_per_rank)->default_value(0), "bytes of experts a rank may hold (0: from the profile)")
      ("expert-memory", po::value(&expert_memory), "the budget each expert rank will run with (generate --expert-memory): bytes (K, M, G) or a share of an even split of the experts (50%)")
      ("baselines", po::value(&baselines_prefix), "also write PREFIX-round-robin.json, PREFIX-random.json, PREFIX-fastest.json (and with --expert-memory PREFIX-unbudgeted.json)")
      ("seed", po::value(&seed)->default_value(1), "seed of the random baseline")
      ("cluster", po::value(&cluster_path), "refine the map by simulating this cluster config (configs/clusters/*.json; its expert ranks are the profile's)")
      ("refine-policy", po::value(&refine_options.policy)->default_value("uniform"), "with --cluster: the dispatch policy the simulation runs")
      ("latency-model", po::value(&model_path), "with --cluster and --refine-policy latency-aware: the model")
      ("refine-evaluations", po::value(&refine_options.max_evaluations)->default_value(400), "with --cluster: simulations at most (each of the four maps is simulated once)");
  // clang-format on
  if (!parse_command_line(world, opts, args)) return 0;
  MOE_CHECK(!world.distributed(), "moe place runs in one process (no mpirun)");
  MOE_CHECK(replicas >= 0, "--replicas must be >= 0");

  const Profile profile = load_profile(profile_path);
  PlacementProblem problem;
  problem.profile = &profile;
  problem.load =
      mean_expert_load(load_routing_trace(trace_path), profile.num_moe_layers, profile.num_experts);
  for (const auto& r : profile.ranks) problem.ranks.push_back(r.rank);
  std::sort(problem.ranks.begin(), problem.ranks.end());
  problem.bytes_per_expert = size_t(2) * profile.d_model * profile.d_ff * sizeof(float);
  problem.memory_per_rank = memory_per_rank;
  problem.extra_replicas = replicas;
  const int first = problem.ranks.front(), world_size = problem.ranks.back() + 1;
  MOE_CHECK(first == 1 && int(problem.ranks.size()) == world_size - 1, profile_path,
            ": expected a profile of expert ranks 1..N-1");
  if (!expert_memory.empty()) {
    MOE_CHECK(cluster_path.empty(),
              "--cluster: the simulator does not model memory budgets; leave out --expert-memory");
    // A share is of an even split; bytes are what every rank may keep, whatever it holds. The
    // run takes the bytes: its share would be of what each rank holds, which the placement makes
    // uneven.
    const int64_t all = int64_t(profile.num_moe_layers) * profile.num_experts;
    const int64_t even = (all + int64_t(problem.ranks.size()) - 1) / int64_t(problem.ranks.size());
    const bool share = expert_memory.back() == '%';
    problem.resident_per_rank =
        experts_within(expert_memory, share ? even : all, problem.bytes_per_expert);
    MOE_CHECK(problem.resident_per_rank > 0, "--expert-memory ", expert_memory,
              ": no expert fits (one is ", problem.bytes_per_expert,
              " bytes); every token would miss, and there is nothing to place for");
    std::printf(
        "budget: %lld experts resident per rank (%lld experts under an even split): run "
        "with --expert-memory %zu\n",
        static_cast<long long>(problem.resident_per_rank), static_cast<long long>(even),
        size_t(problem.resident_per_rank) * problem.bytes_per_expert);
    for (const auto& r : profile.ranks)
      if (r.expert_load_us == 0)
        std::printf("note: rank %d has no expert_load_us in %s; its misses are priced at 0\n",
                    r.rank, profile_path.c_str());
  }

  ExpertMap placed = place_experts(problem);
  std::vector<std::pair<std::string, ExpertMap>> maps = {
      {"placed", placed},
      {"round-robin",
       round_robin_expert_map(profile.num_moe_layers, profile.num_experts, 1, world_size)},
      {"random",
       random_expert_map(profile.num_moe_layers, profile.num_experts, problem.ranks, seed)},
      {"fastest", fastest_class_expert_map(problem, profile.num_moe_layers, profile.num_experts)}};
  if (problem.resident_per_rank > 0) {  // what placing as if all were resident would keep
    PlacementProblem all_resident = problem;
    all_resident.resident_per_rank = 0;
    try {
      maps.push_back({"unbudgeted", place_experts(all_resident)});
    } catch (const Error& e) {  // the ranks' memory cannot hold every expert: no such baseline
      std::printf("note: no unbudgeted baseline: %s\n", e.what());
    }
  }
  std::printf("%-12s %16s %9s   %s\n", "map", "predicted_us", "resident",
              "predicted per-rank time of layer 0 (us)");
  for (const auto& [name, map] : maps) {
    const auto t = predicted_rank_times_us(problem, map, 0);
    std::string per_rank;
    for (int r : problem.ranks)
      per_rank += " r" + std::to_string(r) + "=" + std::to_string(int(t[r]));
    std::printf("%-12s %16.1f %8.1f%%  %s\n", name.c_str(), predicted_layer_time_us(problem, map),
                100 * predicted_resident_share(problem, map), per_rank.c_str());
  }
  if (!cluster_path.empty())
    placed =
        refine(cluster_path, model_path, seed, profile, problem, maps, trace_path, refine_options);
  write_map(out_path, placed);
  if (!baselines_prefix.empty())
    for (size_t i = 1; i < maps.size(); ++i)
      write_map(baselines_prefix + "-" + maps[i].first + ".json", maps[i].second);
  std::printf("expert map written to %s\n", out_path.c_str());
  return 0;
}

}  // namespace moe
