// moe simulate: runs a routing trace (recorded, or synthetic with balanced or skewed expert
// popularity) through the discrete-event model of a cluster (configs/clusters/*.json) under every
// requested placement and dispatch policy — the router/ objects of the live runtime — and prints
// the table `moe bench-routing` prints for measured runs (ranks/report.hpp). One process, no MPI.
// With --interleave the settings run interleaved call by call in bench-routing's order, to
// predict a measured bench-routing table.
#include <boost/program_options.hpp>
#include <cstdio>
#include <fstream>
#include <memory>

#include "ranks/commands/command_line.hpp"
#include "ranks/commands/commands.hpp"
#include "ranks/report.hpp"
#include "router/latency_policy.hpp"
#include "router/policy_factory.hpp"
#include "router/sim/cluster.hpp"
#include "router/sim/event_model.hpp"
#include "router/sim/metrics.hpp"
#include "router/sim/placements.hpp"
#include "router/sim/synthetic_trace.hpp"
#include "runtime/atomic_file.hpp"
#include "runtime/error.hpp"

namespace moe {
namespace po = boost::program_options;

namespace {

struct SimulateOptions {
  std::string cluster_path, profile_path, trace_path, synthetic, out_path, per_call_path;
  std::string model_path, samples_path, write_trace_path;
  std::string policies = "static,random,round-robin,uniform", placements = "round-robin";
  sim::SyntheticSpec spec;
  sim::SimOptions sim;
  int layers = 0, experts = 0;
  uint64_t seed = 1;
  bool interleave = false;

  void add_to(po::options_description& opts) {
    // clang-format off
    opts.add_options()
        ("help,h", "show this help")
        ("cluster", po::value(&cluster_path)->required(), "cluster config (configs/clusters/*.json)")
        ("profile", po::value(&profile_path)->required(), "profile.json from `moe profile`: curves, links, model widths")
        ("trace", po::value(&trace_path), "routing trace (moe generate --record-routing)")
        ("synthetic", po::value(&synthetic), "instead of --trace: balanced or skewed expert popularity")
        ("policy", po::value(&policies)->default_value(policies),
         "dispatch policies, comma-separated: static, random, round-robin, uniform, latency-aware")
        ("placement", po::value(&placements)->default_value(placements),
         "expert maps, comma-separated: round-robin, replicated:K, all, random, placed[:R] or an expert_map.json")
        ("out", po::value(&out_path), "write the table as CSV")
        ("per-call", po::value(&per_call_path), "write every simulated layer call as CSV")
        ("write-trace", po::value(&write_trace_path),
         "write the routing trace simulated (e.g. a synthetic one) as JSONL, for moe bench-routing")
        ("latency-model", po::value(&model_path), "latency model (moe train-latency-model), for latency-aware")
        ("record-latency-samples", po::value(&samples_path), "write latency samples of the simulated calls (CSV)")
        ("passes", po::value(&sim.passes)->default_value(1), "counted passes over the trace")
        ("warmup", po::value(&sim.warmup_passes)->default_value(1), "passes first, not counted (policies learn)")
        ("charge-policy-time", po::bool_switch(&sim.charge_policy_time),
         "delay each dispatch by the policy's measured decision time on this machine")
        ("interleave", po::bool_switch(&interleave),
         "run every (placement, policy) interleaved call by call in bench-routing's order, as a "
         "measured run does, instead of each alone (one coordinator)")
        ("seed", po::value(&seed)->default_value(1), "seed of random policies, placements and synthetic traces")
        ("layers", po::value(&layers)->default_value(0), "sparse layers (0: the profile's)")
        ("experts", po::value(&experts)->default_value(0), "experts per layer (0: the profile's)")
        ("batches", po::value(&spec.batches)->default_value(spec.batches), "synthetic: batches (each calls every layer once)")
        ("tokens-per-call", po::value(&spec.tokens_per_call)->default_value(spec.tokens_per_call),
         "synthetic: tokens per layer call")
        ("sequences", po::value(&spec.sequences)->default_value(spec.sequences),
         "synthetic: sequences per call (capacity is per sequence)")
        ("zipf", po::value(&spec.zipf)->default_value(spec.zipf), "synthetic skewed: popularity exponent")
        ("capacity-factor", po::value(&spec.capacity_factor)->default_value(0),
         "synthetic: expert capacity factor (0: no drops)");
    // clang-format on
  }
};

// Everything the simulation reads, checked before any of it runs.
struct SimulateInputs {
  Profile measured, profile;  // the profile file, and the cluster seen as a profile
  sim::ClusterConfig cluster;
  std::vector<RoutingRecord> trace;
  PolicyContext context;
  std::vector<std::pair<std::string, ExpertMap>> maps;
};

SimulateInputs load_inputs(SimulateOptions& o) {
  MOE_CHECK(o.trace_path.empty() != o.synthetic.empty(),
            "give exactly one of --trace FILE and --synthetic balanced|skewed");
  MOE_CHECK(o.sim.passes >= 1 && o.sim.warmup_passes >= 0,
            "--passes must be >= 1 and --warmup >= 0");
  SimulateInputs in;
  in.measured = load_profile(o.profile_path);
  in.cluster = sim::load_cluster(o.cluster_path, in.measured);
  in.profile = sim::cluster_profile(in.cluster, in.measured);
  const int L = o.layers > 0 ? o.layers : in.measured.num_moe_layers;
  const int E = o.experts > 0 ? o.experts : in.measured.num_experts;
  MOE_CHECK(L >= 1 && E >= 1, "--layers and --experts must be >= 1 (the profile has none)");
  o.sim.d_model = in.measured.d_model;
  if (o.trace_path.empty()) {
    o.spec.popularity = o.synthetic;
    o.spec.layers = L;
    o.spec.experts = E;
    o.spec.seed = o.seed;
    in.trace = sim::synthetic_trace(o.spec);
  } else {
    in.trace = load_routing_trace(o.trace_path);
  }
  in.context.seed = o.seed;
  in.context.profile = &in.profile;
  in.context.d_model = in.measured.d_model;
  if (!o.model_path.empty())
    in.context.latency_model = std::make_shared<LatencyModel>(LatencyModel::load(o.model_path));
  MOE_CHECK(!split_commas(o.policies).empty() && !split_commas(o.placements).empty(),
            "--policy and --placement need at least one name");
  for (const auto& p : split_commas(o.policies))
    make_dispatch_policy(p, in.context);  // rejects unknown names up front
  for (const auto& p : split_commas(o.placements))
    in.maps.push_back({p, sim::make_placement(p, in.cluster, in.profile, in.trace, L, E, o.seed)});
  return in;
}

void describe(const sim::ClusterConfig& c, const SimulateInputs& in) {
  std::printf("cluster %s: %d coordinator(s), %d expert ranks on %zu node(s)%s\n", c.source.c_str(),
              c.coordinators, c.experts, c.nodes.size(), c.combine_push ? ", results pushed" : "");
  std::vector<int> count(c.classes.size(), 0);
  for (int r = c.first_expert_rank(); r < c.world_size(); ++r) ++count[c.ranks[r].device_class];
  for (size_t i = 0; i < c.classes.size(); ++i) {
    const auto& k = c.classes[i];
    if (count[i] == 0) continue;
    std::printf(
        "  %4d x %-14s %-28s expert FFN: %9.1f us at 1 token, %9.1f us at 64, %9.1f us at 1024\n",
        count[i], k.name.c_str(), k.device.substr(0, 28).c_str(), k.expert.at(1), k.expert.at(64),
        k.expert.at(1024));
  }
  int64_t rows = 0;
  for (const auto& r : in.trace)
    for (auto k : r.kept) rows += k;
  std::printf(
      "trace: %zu layer calls, %lld kept tokens (%.1f per call); %d sparse layers, %d experts, "
      "d_model %d\n\n",
      in.trace.size(), static_cast<long long>(rows), double(rows) / in.trace.size(),
      in.maps.front().second.num_layers(), in.measured.num_experts, in.measured.d_model);
}

CallRecord call_record(const std::string& map, const std::string& policy, const sim::CallResult& c,
                       const sim::ClusterConfig& cluster) {
  CallRecord out{map,     policy, c.coordinator, c.pass,         -1,          c.batch, c.step,
                 c.layer, c.rows, c.start_us,    c.latency_us(), c.policy_us, {}};
  for (int r = cluster.first_expert_rank(); r < cluster.world_size(); ++r)
    out.ranks.push_back({c.rows_per_rank[r], c.latency_us_per_rank[r], c.compute_us_per_rank[r],
                         c.queue_us_per_rank[r], -1});
  return out;
}

int simulate(const World& world, const std::vector<std::string>& args) {
  SimulateOptions o;
  po::options_description opts("moe simulate options (one process)");
  o.add_to(opts);
  if (!parse_command_line(world, opts, args)) return 0;
  MOE_CHECK(!world.distributed(), "moe simulate runs in one process (no mpirun)");
  SimulateInputs in = load_inputs(o);
  if (!o.write_trace_path.empty())
    write_file_atomically(o.write_trace_path, [&](std::ostream& out) {
      for (const auto& r : in.trace) out << routing_record_to_json_line(r) << "\n";
    });
  std::unique_ptr<std::ofstream> samples_out, per_call_file;
  if (!o.samples_path.empty()) samples_out = std::make_unique<std::ofstream>(o.samples_path);
  describe(in.cluster, in);

  // Every (placement, policy) with its policies, one per coordinator.
  std::vector<ComparisonRow> table;
  std::vector<std::vector<std::unique_ptr<DispatchPolicy>>> owned;
  std::vector<sim::Setting> settings;
  for (const auto& [placement, map] : in.maps)
    for (const auto& name : split_commas(o.policies)) {
      owned.push_back(sim::coordinator_policies(name, in.context, in.cluster.coordinators));
      sim::Setting setting{&map, {}};
      for (auto& policy : owned.back()) {
        if (samples_out)
          policy = std::make_unique<LatencySampleRecorder>(std::move(policy), in.profile,
                                                           in.measured.d_model, *samples_out);
        setting.policies.push_back(policy.get());
      }
      settings.push_back(setting);
      ComparisonRow row;
      row.expert_map = placement;
      row.policy = name;
      table.push_back(row);
    }
  std::vector<sim::SimResult> results;
  if (o.interleave)
    results = sim::simulate_interleaved(in.cluster, settings, in.trace, o.sim);
  else
    for (const auto& s : settings)
      results.push_back(sim::simulate(in.cluster, *s.map, s.policies, in.trace, o.sim));

  std::unique_ptr<PerCallCsv> per_call;
  if (!o.per_call_path.empty()) {
    per_call_file = std::make_unique<std::ofstream>(o.per_call_path);
    per_call = std::make_unique<PerCallCsv>(*per_call_file, in.cluster.first_expert_rank(),
                                            in.cluster.world_size());
  }
  for (size_t i = 0; i < table.size(); ++i) {
    const sim::Summary s =
        sim::summarise(results[i], in.cluster.first_expert_rank(), in.cluster.world_size());
    ComparisonRow& row = table[i];
    row.calls = s.calls;
    row.mean_us = s.mean_us;
    row.p99_us = s.p99_us;
    row.tokens_per_s = s.tokens_per_s;
    row.imbalance = s.imbalance;
    row.busy_imbalance = s.busy_imbalance;
    row.policy_us = s.policy_us;
    if (per_call)
      for (const auto& c : results[i].calls)
        per_call->add(call_record(row.expert_map, row.policy, c, in.cluster));
  }
  print_comparison(stdout, table);
  if (!o.out_path.empty()) write_comparison_csv(o.out_path, in.cluster.source, table);
  return 0;
}

}  // namespace

int run_simulate(const World& world, const std::vector<std::string>& args) {
  return simulate(world, args);
}

}  // namespace moe
