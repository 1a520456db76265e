// moe bench-routing: replays a recorded routing trace (every sparse-layer call's expert choices)
// through the real expert ranks under every dispatch policy and expert map, in one run, and
// prints mean and p99 sparse-layer latency, tokens/s and load imbalance, with the improvement of
// latency-aware routing over each baseline. Token values are random: expert cost does not depend
// on them; which expert and which rank does.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>

#include <boost/program_options.hpp>

#include "model/weights.hpp"
#include "ranks/command_line.hpp"
#include "ranks/commands.hpp"
#include "ranks/remote_experts.hpp"
#include "ranks/session.hpp"
#include "router/latency_policy.hpp"
#include "router/policy_factory.hpp"
#include "router/routing_trace.hpp"
#include "runtime/error.hpp"

namespace moe {
namespace po = boost::program_options;

namespace {

struct Result {
  std::string map, policy;
  double mean_us = 0, p99_us = 0, tokens_per_s = 0, imbalance = 0;
};

}  // namespace

int run_bench_routing(World& world, const std::vector<std::string>& args) {
  SessionOptions so;
  std::string trace_path, policies_text = "static,random,round-robin,uniform", maps_text, csv_path;
  int repeats = 3;
  po::options_description opts("moe bench-routing options (run under mpirun)");
  opts.add_options()("help,h", "show this help");
  so.add_to(opts);
  opts.add_options()
      ("routing-trace", po::value(&trace_path)->required(), "routing trace (moe generate --record-routing)")
      ("policies", po::value(&policies_text)->default_value(policies_text), "policies to compare, comma-separated")
      ("expert-maps", po::value(&maps_text), "expert maps to compare, comma-separated (default: --expert-map or round-robin)")
      ("repeats", po::value(&repeats)->default_value(3), "passes over the trace per setting (after one warm-up)")
      ("csv", po::value(&csv_path), "also write the table as CSV");
  if (!parse_command_line(world, opts, args)) return 0;
  const auto policies = split_commas(policies_text);
  const auto map_paths = split_commas(maps_text);
  so.extra_expert_maps = map_paths;
  std::vector<RoutingRecord> trace;
  so.check_inputs = [&](const ModelConfig& c) {
    MOE_CHECK(world.size() >= 2, "moe bench-routing needs expert ranks: run it under mpirun -np 2 or more");
    trace = load_routing_trace(trace_path);
    const int layers = count_moe_layers(c);
    for (const auto& r : trace)
      MOE_CHECK(r.layer < layers, trace_path, ": names sparse layer ", r.layer, " but the model has ", layers);
    for (const auto& p : policies)
      if (p == "latency-aware")
        MOE_CHECK(!so.profile_path.empty() && !so.latency_model_path.empty(),
                  "--policies latency-aware needs --profile and --latency-model");
  };
  Session session(world, so);
  if (!session.is_coordinator()) return session.exit_code();
  const ModelConfig& c = session.config();
  const int d = c.d_model, layers = count_moe_layers(c);

  std::vector<std::pair<std::string, ExpertMap>> maps;
  for (const auto& path : map_paths)
    maps.push_back({path, load_expert_map(path, layers, c.num_experts, 1, world.size())});
  if (maps.empty())
    maps.push_back({so.expert_map_path.empty() ? "round-robin" : so.expert_map_path,
                    so.expert_map_path.empty() ? round_robin_expert_map(layers, c.num_experts, 1, world.size())
                                               : load_expert_map(so.expert_map_path, layers, c.num_experts, 1, world.size())});
  PolicyContext context;
  context.seed = so.seed;
  context.d_model = d;
  const Profile& profile = session.profile();
  if (!so.profile_path.empty()) context.profile = &profile;
  context.latency_model = session.latency_model();

  std::unique_ptr<std::ofstream> samples_out;
  if (!so.record_latency_samples_path.empty())
    samples_out = std::make_unique<std::ofstream>(so.record_latency_samples_path);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> rows_in, rows_out;
  std::vector<Result> results;
  for (const auto& [map_name, map] : maps)
    for (const auto& policy_name : policies) {
      auto policy = make_dispatch_policy(policy_name, context);
      if (samples_out) policy = std::make_unique<LatencySampleRecorder>(std::move(policy), profile, d, *samples_out);
      RankRecorder recorder(0, world.host(), "replay", layers, false);
      RemoteExpertExecutor executor(world, session.transport(), map, *policy, d, session.plan().deadline_seconds, recorder);
      std::vector<double> latencies;
      double total_us = 0, imbalance_sum = 0;
      int64_t tokens = 0;
      int calls = 0;
      for (int pass = 0; pass <= repeats; ++pass)
        for (const auto& rec : trace) {
          GateResult gate{rec.expert, rec.probability, rec.kept, rec.entropy};
          ExpertDispatch dispatch;
          plan_expert_dispatch(gate, c.num_experts, dispatch);
          const size_t n = size_t(dispatch.rows()) * d;
          if (rows_in.size() < n) {
            rows_in.resize(n);
            rows_out.resize(n);
            for (auto& v : rows_in) v = normal(rng);
          }
          SparseFfnWeights layer;
          layer.moe_layer = rec.layer;
          const double start = now_us();
          executor.run(layer, rec.step, gate, dispatch, rows_in.data(), rows_out.data());
          const double us = now_us() - start;
          if (pass == 0) continue;  // warm-up pass: policies learn, caches fill
          latencies.push_back(us);
          total_us += us;
          tokens += dispatch.rows();
          const auto& per_rank = executor.last_rows_per_rank();
          double most = 0, sum = 0;
          for (int r = 1; r < world.size(); ++r) {
            most = std::max(most, double(per_rank[r]));
            sum += per_rank[r];
          }
          if (sum > 0) {
            imbalance_sum += most / (sum / (world.size() - 1));
            ++calls;
          }
        }
      std::sort(latencies.begin(), latencies.end());
      Result r{map_name, policy_name};
      r.mean_us = total_us / std::max<size_t>(latencies.size(), 1);
      r.p99_us = latencies.empty() ? 0 : latencies[std::min(latencies.size() - 1, size_t(0.99 * latencies.size()))];
      r.tokens_per_s = tokens / std::max(total_us * 1e-6, 1e-9);
      r.imbalance = calls ? imbalance_sum / calls : 0;
      results.push_back(r);
      std::fprintf(stderr, "done: map %s, policy %s\n", map_name.c_str(), policy_name.c_str());
    }

  std::printf("%-28s %-14s %12s %12s %12s %10s  %s\n", "expert map", "policy", "mean_us", "p99_us", "tokens/s",
              "imbalance", "latency-aware vs this (mean, p99)");
  std::ostringstream csv;
  csv << "expert_map,policy,mean_us,p99_us,tokens_per_s,imbalance\n";
  for (const auto& r : results) {
    std::string vs;
    for (const auto& la : results)
      if (la.map == r.map && la.policy == "latency-aware" && r.policy != "latency-aware") {
        char buf[96];
        std::snprintf(buf, sizeof(buf), "%+.1f%%, %+.1f%%", 100 * (la.mean_us - r.mean_us) / r.mean_us,
                      100 * (la.p99_us - r.p99_us) / r.p99_us);
        vs = buf;
      }
    std::printf("%-28s %-14s %12.1f %12.1f %12.1f %10.2f  %s\n", r.map.substr(std::max<int>(0, int(r.map.size()) - 28)).c_str(),
                r.policy.c_str(), r.mean_us, r.p99_us, r.tokens_per_s, r.imbalance, vs.c_str());
    csv << r.map << "," << r.policy << "," << r.mean_us << "," << r.p99_us << "," << r.tokens_per_s << "," << r.imbalance << "\n";
  }
  if (!csv_path.empty()) std::ofstream(csv_path) << csv.str();
  session.finish(0, 0);
  return 0;
}

}  // namespace moe
