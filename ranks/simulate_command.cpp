// moe simulate: runs a routing trace (recorded, or synthetic with balanced or skewed expert
// popularity) through the discrete-event model of a cluster (configs/clusters/*.json) under every
// requested placement and dispatch policy — the router/ objects of the live runtime — and prints
// mean and p99 sparse-layer latency, tokens/s and load imbalance, as `moe bench-routing` does for
// measured runs. One process, no MPI. With --interleave the settings run interleaved call by call
// in bench-routing's order (BenchSchedule), to predict a measured bench-routing table.
#include "ranks/simulate_command.hpp"

#include "ranks/command_line.hpp"
#include "runtime/atomic_file.hpp"

#include <boost/program_options.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "launch/simulator/cluster.hpp"
#include "launch/simulator/event_model.hpp"
#include "launch/simulator/metrics.hpp"
#include "launch/simulator/placements.hpp"
#include "launch/simulator/synthetic_trace.hpp"
#include "router/latency_policy.hpp"
#include "router/policy_factory.hpp"
#include "runtime/error.hpp"

namespace moe {
namespace po = boost::program_options;

namespace {

void describe(const sim::ClusterConfig& c) {
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
}

}  // namespace

int run_simulate(World& world, const std::vector<std::string>& args) {
  std::string cluster_path, profile_path, trace_path, synthetic,
      policies_text = "static,random,round-robin,uniform";
  std::string placements_text = "round-robin", out_path, per_call_path, model_path, samples_path,
      write_trace_path;
  sim::SyntheticSpec spec;
  sim::SimOptions options;
  int layers = 0, experts = 0;
  uint64_t seed = 1;
  bool interleave = false;
  po::options_description opts("moe simulate options (one process)");
  opts.add_options()("help,h", "show this help")("cluster", po::value(&cluster_path)->required(),
                                                 "cluster config (configs/clusters/*.json)")(
      "profile", po::value(&profile_path)->required(),
      "profile.json from `moe profile`: curves, links, model widths")(
      "trace", po::value(&trace_path), "routing trace (moe generate --record-routing)")(
      "synthetic", po::value(&synthetic),
      "instead of --trace: balanced or skewed expert popularity")(
      "policy", po::value(&policies_text)->default_value(policies_text),
      "dispatch policies, comma-separated: static, random, round-robin, uniform, latency-aware")(
      "placement", po::value(&placements_text)->default_value(placements_text),
      "expert maps, comma-separated: round-robin, replicated:K, all, random, placed[:R] or an "
      "expert_map.json")("out", po::value(&out_path), "write the table as CSV")(
      "per-call", po::value(&per_call_path), "write every simulated layer call as CSV")(
      "write-trace", po::value(&write_trace_path),
      "write the routing trace simulated (e.g. a synthetic one) as JSONL, for moe bench-routing")(
      "latency-model", po::value(&model_path),
      "latency model (moe train-latency-model), for latency-aware")(
      "record-latency-samples", po::value(&samples_path),
      "write latency samples of the simulated calls (CSV)")(
      "passes", po::value(&options.passes)->default_value(1), "counted passes over the trace")(
      "warmup", po::value(&options.warmup_passes)->default_value(1),
      "passes first, not counted (policies learn)")(
      "charge-policy-time", po::bool_switch(&options.charge_policy_time),
      "delay each dispatch by the policy's measured decision time on this machine")(
      "interleave", po::bool_switch(&interleave),
      "run every (placement, policy) interleaved call by call in bench-routing's order, "
      "as a measured run does, instead of each alone (one coordinator)")(
      "seed", po::value(&seed)->default_value(1),
      "seed of random policies, placements and synthetic traces")(
      "layers", po::value(&layers)->default_value(0), "sparse layers (0: the profile's)")(
      "experts", po::value(&experts)->default_value(0), "experts per layer (0: the profile's)")(
      "batches", po::value(&spec.batches)->default_value(spec.batches),
      "synthetic: batches (each calls every layer once)")(
      "tokens-per-call", po::value(&spec.tokens_per_call)->default_value(spec.tokens_per_call),
      "synthetic: tokens per layer call")(
      "sequences", po::value(&spec.sequences)->default_value(spec.sequences),
      "synthetic: sequences per call (capacity is per sequence)")(
      "zipf", po::value(&spec.zipf)->default_value(spec.zipf),
      "synthetic skewed: popularity exponent")("capacity-factor",
                                               po::value(&spec.capacity_factor)->default_value(0),
                                               "synthetic: expert capacity factor (0: no drops)");
  if (!parse_command_line(world, opts, args)) return 0;
  MOE_CHECK(!world.distributed(), "moe simulate runs in one process (no mpirun)");
  MOE_CHECK(trace_path.empty() != synthetic.empty(),
            "give exactly one of --trace FILE and --synthetic balanced|skewed");
  MOE_CHECK(options.passes >= 1 && options.warmup_passes >= 0,
            "--passes must be >= 1 and --warmup >= 0");

  // Everything is read and checked before any simulation starts.
  const Profile measured = load_profile(profile_path);
  const sim::ClusterConfig cluster = sim::load_cluster(cluster_path, measured);
  const Profile profile = sim::cluster_profile(cluster, measured);
  const int L = layers > 0 ? layers : measured.num_moe_layers,
            E = experts > 0 ? experts : measured.num_experts;
  MOE_CHECK(L >= 1 && E >= 1, "--layers and --experts must be >= 1 (the profile has none)");
  options.d_model = measured.d_model;
  std::vector<RoutingRecord> trace;
  if (!trace_path.empty()) {
    trace = load_routing_trace(trace_path);
  } else {
    spec.popularity = synthetic;
    spec.layers = L;
    spec.experts = E;
    spec.seed = seed;
    trace = sim::synthetic_trace(spec);
  }
  if (!write_trace_path.empty())
    write_file_atomically(write_trace_path, [&](std::ostream& out) {
      for (const auto& r : trace) out << routing_record_to_json_line(r) << "\n";
    });
  const auto policies = split_commas(policies_text);
  const auto placements = split_commas(placements_text);
  MOE_CHECK(!policies.empty() && !placements.empty(),
            "--policy and --placement need at least one name");
  PolicyContext context;
  context.seed = seed;
  context.profile = &profile;
  context.d_model = measured.d_model;
  if (!model_path.empty())
    context.latency_model = std::make_shared<LatencyModel>(LatencyModel::load(model_path));
  for (const auto& p : policies)
    make_dispatch_policy(p, context);  // rejects unknown names up front
  std::vector<std::pair<std::string, ExpertMap>> maps;
  for (const auto& p : placements)
    maps.push_back({p, sim::make_placement(p, cluster, profile, trace, L, E, seed)});
  std::unique_ptr<std::ofstream> samples_out, per_call;
  if (!samples_path.empty()) samples_out = std::make_unique<std::ofstream>(samples_path);
  if (!per_call_path.empty()) {
    per_call = std::make_unique<std::ofstream>(per_call_path);
    // The per-rank columns are bench-routing's (--per-call), so measured and simulated calls join.
    *per_call << "placement,policy,coordinator,pass,batch,step,layer,rows,start_us,latency_us";
    for (int r = cluster.first_expert_rank(); r < cluster.world_size(); ++r)
      *per_call << ",rows_rank" << r << ",latency_us_rank" << r << ",compute_us_rank" << r
                << ",queue_us_rank" << r;
    *per_call << "\n";
  }

  describe(cluster);
  int64_t rows = 0;
  for (const auto& r : trace)
    for (auto k : r.kept) rows += k;
  std::printf(
      "trace: %zu layer calls, %lld kept tokens (%.1f per call); %d sparse layers, %d experts, "
      "d_model %d\n\n",
      trace.size(), static_cast<long long>(rows), double(rows) / trace.size(), L, E,
      measured.d_model);

  struct Row {
    std::string placement, policy;
    sim::Summary s;
  };
  // Every (placement, policy) with its policies, one per coordinator.
  std::vector<Row> table;
  std::vector<std::vector<std::unique_ptr<DispatchPolicy>>> owned;
  std::vector<sim::Setting> settings;
  for (const auto& [placement, map] : maps)
    for (const auto& name : policies) {
      owned.push_back(sim::coordinator_policies(name, context, cluster.coordinators));
      sim::Setting setting;
      setting.map = &map;
      for (auto& policy : owned.back()) {
        if (samples_out)
          policy = std::make_unique<LatencySampleRecorder>(std::move(policy), profile,
                                                           measured.d_model, *samples_out);
        setting.policies.push_back(policy.get());
      }
      settings.push_back(setting);
      table.push_back({placement, name, {}});
    }
  std::vector<sim::SimResult> results;
  if (interleave) {
    results = sim::simulate_interleaved(cluster, settings, trace, options);
  } else {
    for (const auto& setting : settings)
      results.push_back(sim::simulate(cluster, *setting.map, setting.policies, trace, options));
  }
  for (size_t i = 0; i < table.size(); ++i) {
    table[i].s = sim::summarise(results[i], cluster.first_expert_rank(), cluster.world_size());
    if (per_call)
      for (const auto& c : results[i].calls) {
        *per_call << table[i].placement << "," << table[i].policy << "," << c.coordinator << ","
                  << c.pass << "," << c.batch << "," << c.step << "," << c.layer << "," << c.rows
                  << "," << c.start_us << "," << c.latency_us();
        for (int r = cluster.first_expert_rank(); r < cluster.world_size(); ++r)
          *per_call << "," << c.rows_per_rank[r] << "," << c.latency_us_per_rank[r] << ","
                    << c.compute_us_per_rank[r] << "," << c.queue_us_per_rank[r];
        *per_call << "\n";
      }
  }

  std::printf("%-24s %-14s %7s %12s %12s %14s %9s %9s %10s  %s\n", "placement", "policy", "calls",
              "mean_us", "p99_us", "tokens/s", "imbalance", "busy_imb", "policy_us",
              "latency-aware vs this (mean, p99)");
  std::ostringstream csv;
  csv << "cluster,placement,policy,calls,mean_us,p99_us,tokens_per_s,imbalance,busy_imbalance,"
         "policy_us\n";
  for (const auto& r : table) {
    std::string vs;
    for (const auto& la : table)
      if (la.placement == r.placement && la.policy == "latency-aware" &&
          r.policy != "latency-aware") {
        char buf[96];
        std::snprintf(buf, sizeof(buf), "%+.1f%%, %+.1f%%",
                      100 * (la.s.mean_us - r.s.mean_us) / r.s.mean_us,
                      100 * (la.s.p99_us - r.s.p99_us) / r.s.p99_us);
        vs = buf;
      }
    const std::string shown =
        r.placement.size() > 24 ? "..." + r.placement.substr(r.placement.size() - 21) : r.placement;
    std::printf("%-24s %-14s %7d %12.1f %12.1f %14.1f %9.2f %9.2f %10.2f  %s\n", shown.c_str(),
                r.policy.c_str(), r.s.calls, r.s.mean_us, r.s.p99_us, r.s.tokens_per_s,
                r.s.imbalance, r.s.busy_imbalance, r.s.policy_us, vs.c_str());
    csv << cluster.source << "," << r.placement << "," << r.policy << "," << r.s.calls << ","
        << r.s.mean_us << "," << r.s.p99_us << "," << r.s.tokens_per_s << "," << r.s.imbalance
        << "," << r.s.busy_imbalance << "," << r.s.policy_us << "\n";
  }
  if (!out_path.empty()) {
    std::ofstream out(out_path);
    out << csv.str();
    MOE_CHECK(out.good(), out_path, ": write failed");
  }
  return 0;
}

}  // namespace moe
