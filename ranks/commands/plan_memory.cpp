// moe plan-memory: committee sizes per sparse layer for a memory budget and a latency budget, from
// a routing trace of the all-resident model (router/memory_plan.hpp); one expert's load time is
// measured here, from the checkpoint on disk. Prints the predicted memory, latency and resident
// routed mass, and writes the plan that `moe generate --memory-plan` runs.
#include <algorithm>
#include <boost/program_options.hpp>
#include <cstdio>
#include <filesystem>

#include "model/checkpoint.hpp"
#include "model/resident_experts.hpp"
#include "ranks/commands/command_line.hpp"
#include "ranks/commands/commands.hpp"
#include "router/memory_plan.hpp"
#include "runtime/atomic_file.hpp"
#include "runtime/error.hpp"
#include "runtime/rank_stats.hpp"

namespace moe {
namespace po = boost::program_options;

namespace {

// What one missed expert costs a step beyond its compute: its pages mapped in from the checkpoint
// on disk, and given back after use (as on-demand does). The median over up to five experts, each
// mapped in once first, so that giving it back drops it from the page cache too (pages this
// process never mapped stay cached, and would time a page-cache copy instead of a read).
double measure_load_ms(const std::string& model_dir) {
  const Checkpoint checkpoint(model_dir);
  const ModelConfig& c = checkpoint.config();
  LoadSelection selection;
  selection.dense = false;
  const ModelWeights weights = load_weights(checkpoint, selection);
  std::vector<double> ms;
  for (const auto& layer : expert_table(weights, c))
    for (const ExpertWeights& e : layer) {
      if (ms.size() == 5) break;
      map_in_expert(e, c);
      give_back_expert(e, c);
      const double start_us = now_us();
      map_in_expert(e, c);
      give_back_expert(e, c);
      ms.push_back((now_us() - start_us) / 1000);
    }
  MOE_CHECK(!ms.empty(), model_dir, ": no expert to time");
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int run_plan_memory(const World& world, const std::vector<std::string>& args) {
  std::string model_dir, trace_path, memory, out_path, policy_name;
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
      ("load-ms", po::value(&load_ms)->default_value(0), "one missed expert's load and give-back time (0: measured here)")
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
