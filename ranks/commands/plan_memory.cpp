// moe plan-memory: committee sizes per sparse layer for a memory budget and a latency budget, from
// a routing trace of the all-resident model (router/memory_plan.hpp); one expert's load time comes
// from a profile (--profile) or is measured here, from the checkpoint on disk. Prints the predicted
// memory, latency and resident routed mass, and writes the plan that `moe generate --memory-plan`
// runs.
#include <algorithm>
#include <boost/program_options.hpp>
#include <cstdio>
#include <filesystem>

#include "model/checkpoint.hpp"
#include "model/resident_experts.hpp"
#include "ranks/commands/command_line.hpp"
#include "ranks/commands/commands.hpp"
#include "router/memory_plan.hpp"
#include "router/profile.hpp"
#include "runtime/atomic_file.hpp"
#include "runtime/error.hpp"
#include "runtime/rank_stats.hpp"

namespace moe {
namespace po = boost::program_options;

namespace {

// One miss's time (model/resident_experts.hpp), over this checkpoint's first experts.
double measure_load_ms(const std::string& model_dir) {
  const Checkpoint checkpoint(model_dir);
  const ModelConfig& c = checkpoint.config();
  LoadSelection selection;
  selection.dense = false;
  const ModelWeights weights = load_weights(checkpoint, selection);
  const double ms = time_expert_loads_ms(loaded_experts(weights, c), c, /*map_back=*/false);
  MOE_CHECK(ms > 0, model_dir, ": no expert to time");
  return ms;
}

// The median over a profile's ranks of their measured load time.
double profiled_load_ms(const std::string& profile_path) {
  std::vector<double> us;
  for (const RankProfile& r : load_profile(profile_path).ranks)
    if (r.expert_load_us > 0) us.push_back(r.expert_load_us);
  MOE_CHECK(!us.empty(), profile_path,
            ": no rank has expert_load_us (profile CPU ranks without --expert-memory, or give "
            "--load-ms)");
  std::sort(us.begin(), us.end());
  return us[us.size() / 2] / 1000;
}

}  // namespace

int run_plan_memory(const World& world, const std::vector<std::string>& args) {
  std::string model_dir, trace_path, memory, out_path, policy_name, profile_path;
  double latency_ms = 0, base_ms = 0, load_ms = 0;
  po::options_description opts("moe plan-memory options");
  // clang-format off
  opts.add_options()("help,h", "show this help")
      ("model", po::value(&model_dir)->required(), "model directory (its config, and its experts to time a load)")
      ("trace", po::value(&trace_path)->required(), "routing trace of the all-resident model (moe generate --record-routing)")
      ("memory", po::value(&memory)->required(), "memory for resident experts, one in flight included: bytes (K, M, G) or a share of the experts' (50%)")
      ("latency-ms", po::value(&latency_ms)->default_value(0), "latency budget per generated token (0: none)")
      ("base-ms-per-token", po::value(&base_ms)->default_value(0), "the all-resident run's time per generated token (needed with --latency-ms)")
      ("on-missing-expert", po::value(&policy_name)->default_value("substitute"), "the miss policy the run will use: wait, on-demand, substitute, skip")
      ("load-ms", po::value(&load_ms)->default_value(0), "one missed expert's load and give-back time (0: from --profile, else measured here)")
      ("profile", po::value(&profile_path), "profile.json from `moe profile`: the ranks' median expert_load_us is the load time")
      ("out", po::value(&out_path)->required(), "plan JSON to write (moe generate --memory-plan)");
  // clang-format on
  if (!parse_command_line(world, opts, args)) return 0;
  MOE_CHECK(!world.distributed(), "moe plan-memory runs in one process (no mpirun)");
  MOE_CHECK(latency_ms >= 0 && base_ms >= 0 && load_ms >= 0,
            "--latency-ms, --base-ms-per-token and --load-ms must be >= 0");
  MOE_CHECK(latency_ms == 0 || base_ms > 0,
            "--latency-ms needs --base-ms-per-token (the all-resident run's time per token)");
  const ModelConfig c =
      load_model_config((std::filesystem::path(model_dir) / "config.json").string());
  MemoryPlanInputs in;
  in.layers = count_moe_layers(c);
  in.experts = c.num_experts;
  in.expert_bytes = expert_bytes(c);
  in.policy = parse_miss_policy(policy_name);
  in.base_ms_per_token = base_ms;
  if (load_ms == 0 && !profile_path.empty()) load_ms = profiled_load_ms(profile_path);
  in.load_ms = load_ms > 0 ? load_ms : measure_load_ms(model_dir);
  MOE_CHECK(in.layers > 0, model_dir, ": has no sparse layer");
  const size_t bytes =
      size_t(experts_within(memory, int64_t(in.layers) * in.experts, in.expert_bytes)) *
      in.expert_bytes;
  const MemoryPlan plan = plan_memory(load_routing_trace(trace_path), in, bytes, latency_ms);
  std::string sizes;
  for (int k : plan.committees) sizes += (sizes.empty() ? "" : " ") + std::to_string(k);
  std::printf(
      "committees per sparse layer: %s\npredicted: %.1f MiB of experts (one in flight included, "
      "budget %.1f MiB), %.3f ms per token (budget %s; one load %.2f ms), %.1f%% of the routed "
      "probability mass resident\n",
      sizes.c_str(), double(plan.memory_bytes) / 1048576.0, double(bytes) / 1048576.0,
      plan.ms_per_token, latency_ms > 0 ? (std::to_string(latency_ms) + " ms").c_str() : "none",
      in.load_ms, 100.0 * plan.resident_mass);
  MOE_CHECK(plan.feasible, "no plan meets the budgets: ", plan.why);
  write_file_atomically(
      out_path, [&](std::ostream& o) { o << memory_plan_to_json(plan, in.policy) << "\n"; });
  std::printf("plan written to %s\n", out_path.c_str());
  return 0;
}

}  // namespace moe
