// moe bench-routing: replays a recorded routing trace (every sparse-layer call's expert choices)
// through the real expert ranks under every dispatch policy and expert map, in one run
// (ranks/routing_replay.hpp), and prints mean and p99 sparse-layer latency, tokens/s, load
// imbalance and the policy's decision time, with the change of latency-aware routing against
// each baseline.
#include <boost/program_options.hpp>
#include <fstream>

#include "model/weights.hpp"
#include "ranks/commands/command_line.hpp"
#include "ranks/commands/commands.hpp"
#include "ranks/routing_replay.hpp"
#include "runtime/error.hpp"

namespace moe {
namespace po = boost::program_options;

namespace {

class BenchRoutingCommand final : public DistributedCommand {
 public:
  void add_options(po::options_description& opts) override {
    // clang-format off
    opts.add_options()
        ("routing-trace", po::value(&trace_path_)->required(), "routing trace (moe generate --record-routing)")
        ("policies", po::value(&policies_text_)->default_value(policies_text_), "policies to compare, comma-separated")
        ("expert-maps", po::value(&maps_text_),
         "expert maps to compare, comma-separated (default: --expert-map or round-robin)")
        ("repeats", po::value(&repeats_)->default_value(3), "passes over the trace per setting (after one warm-up)")
        ("csv", po::value(&csv_path_), "also write the table as CSV")
        ("per-call", po::value(&per_call_path_),
         "write every counted call (setting, layer, rows per rank, latency) as CSV");
    // clang-format on
  }

  void prepare(const World& world, const ModelConfig& c) override {
    MOE_CHECK(world.size() >= 2,
              "moe bench-routing needs expert ranks: run it under mpirun -np 2 or more");
    MOE_CHECK(repeats_ >= 1, "--repeats must be >= 1");
    trace_ = load_routing_trace(trace_path_);
    MOE_CHECK(!trace_.empty(), trace_path_, ": the routing trace has no calls");
    const int layers = count_moe_layers(c);
    for (const auto& r : trace_)
      MOE_CHECK(r.layer < layers, trace_path_, ": names sparse layer ", r.layer,
                " but the model has ", layers);
    for (const auto& p : split_commas(policies_text_)) {
      if (p == "latency-aware")
        MOE_CHECK(!run_options_.profile_path.empty() && !run_options_.latency_model_path.empty(),
                  "--policies latency-aware needs --profile and --latency-model");
      settings_.policies.push_back(p);
    }
    const RunOptions& o = run_options_;
    for (const auto& path : split_commas(maps_text_))
      settings_.maps.push_back(
          {path, load_expert_map(path, layers, c.num_experts, 1, world.size())});
    if (settings_.maps.empty())
      settings_.maps.push_back(
          {o.expert_map_path.empty() ? "round-robin" : o.expert_map_path,
           o.expert_map_path.empty()
               ? round_robin_expert_map(layers, c.num_experts, 1, world.size())
               : load_expert_map(o.expert_map_path, layers, c.num_experts, 1, world.size())});
    // The expert ranks load the experts of every map compared.
    run_options_.extra_expert_maps = split_commas(maps_text_);
    settings_.passes = repeats_;
  }

  int coordinate(Coordinator& coordinator) override {
    const CheckedRun& run = coordinator.run();
    settings_.context.seed = run.plan.seed;
    settings_.context.d_model = coordinator.config().d_model;
    if (!run.plan.profile_path.empty()) settings_.context.profile = &run.profile;
    settings_.context.latency_model = run.latency_model;
    std::unique_ptr<std::ofstream> samples, per_call_file;
    std::unique_ptr<PerCallCsv> per_call;
    if (!run.record_latency_samples_path.empty()) {
      samples = std::make_unique<std::ofstream>(run.record_latency_samples_path);
      settings_.samples = samples.get();
    }
    if (!per_call_path_.empty()) {
      per_call_file = std::make_unique<std::ofstream>(per_call_path_);
      per_call = std::make_unique<PerCallCsv>(*per_call_file, 1, coordinator.world().size());
    }
    const auto rows = replay_routing(coordinator, trace_, settings_, per_call.get());
    print_comparison(stdout, rows);
    if (!csv_path_.empty()) write_comparison_csv(csv_path_, "measured", rows);
    coordinator.finish(0, 0);
    return 0;
  }

 private:
  std::string trace_path_, policies_text_ = "static,random,round-robin,uniform", maps_text_,
                           csv_path_, per_call_path_;
  int repeats_ = 3;
  std::vector<RoutingRecord> trace_;
  ReplaySettings settings_;
};

}  // namespace

std::unique_ptr<DistributedCommand> make_bench_routing_command() {
  return std::make_unique<BenchRoutingCommand>();
}

}  // namespace moe
