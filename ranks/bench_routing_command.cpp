// moe bench-routing: replays a recorded routing trace (every sparse-layer call's expert choices)
// through the real expert ranks under every dispatch policy and expert map, in one run, and
// prints mean and p99 sparse-layer latency, tokens/s, load imbalance and the policy's decision
// time, with the change of latency-aware routing against each baseline. The settings take turns
// call by call, each from its own offset in the trace (sim::BenchSchedule), so a machine whose
// speed drifts during the run slows every setting alike, and every setting runs every call once
// per pass, so the comparison is paired call for call. Token values are random: expert cost does
// not depend on them; which expert and which rank does.
#include <algorithm>
#include <boost/program_options.hpp>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <numeric>
#include <random>
#include <sstream>

#include "launch/simulator/bench_schedule.hpp"
#include "launch/simulator/metrics.hpp"
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

// One (expert map, policy) pair with its own policy state and measurements.
struct Setting {
  std::string map_name, policy_name;
  std::unique_ptr<DispatchPolicy> policy;
  std::unique_ptr<RankRecorder> recorder;
  std::unique_ptr<RemoteExpertExecutor> executor;
  std::vector<double> latency_us;  // per counted call, in (pass, trace record) order
  double policy_us = 0, imbalance_sum = 0;
  int64_t tokens = 0;
  int balanced_calls = 0;
};

// Change of `a` against `b` in mean latency over the same calls, with the standard error of the
// paired per-call differences (both as fractions of b's mean).
std::pair<double, double> paired_change(const std::vector<double>& a,
                                        const std::vector<double>& b) {
  const size_t n = std::min(a.size(), b.size());
  if (n < 2) return {0, 0};
  double base = 0, diff = 0;
  for (size_t i = 0; i < n; ++i) {
    base += b[i];
    diff += a[i] - b[i];
  }
  const double mean_diff = diff / double(n);
  double var = 0;
  for (size_t i = 0; i < n; ++i) var += std::pow(a[i] - b[i] - mean_diff, 2);
  const double se = std::sqrt(var / double(n - 1) / double(n));
  return {diff / base, se / (base / double(n))};
}

}  // namespace

int run_bench_routing(World& world, const std::vector<std::string>& args) {
  SessionOptions so;
  std::string trace_path, policies_text = "static,random,round-robin,uniform", maps_text, csv_path,
                          per_call_path;
  int repeats = 3;
  po::options_description opts("moe bench-routing options (run under mpirun)");
  opts.add_options()("help,h", "show this help");
  so.add_to(opts);
  opts.add_options()("routing-trace", po::value(&trace_path)->required(),
                     "routing trace (moe generate --record-routing)")(
      "policies", po::value(&policies_text)->default_value(policies_text),
      "policies to compare, comma-separated")(
      "expert-maps", po::value(&maps_text),
      "expert maps to compare, comma-separated (default: --expert-map or round-robin)")(
      "repeats", po::value(&repeats)->default_value(3),
      "passes over the trace per setting (after one warm-up)")("csv", po::value(&csv_path),
                                                               "also write the table as CSV")(
      "per-call", po::value(&per_call_path),
      "write every counted call (setting, layer, rows per rank, latency) as CSV");
  if (!parse_command_line(world, opts, args)) return 0;
  const auto policies = split_commas(policies_text);
  const auto map_paths = split_commas(maps_text);
  so.extra_expert_maps = map_paths;
  std::vector<RoutingRecord> trace;
  so.check_inputs = [&](const ModelConfig& c) {
    MOE_CHECK(world.size() >= 2,
              "moe bench-routing needs expert ranks: run it under mpirun -np 2 or more");
    MOE_CHECK(repeats >= 1, "--repeats must be >= 1");
    trace = load_routing_trace(trace_path);
    MOE_CHECK(!trace.empty(), trace_path, ": the routing trace has no calls");
    const int layers = count_moe_layers(c);
    for (const auto& r : trace)
      MOE_CHECK(r.layer < layers, trace_path, ": names sparse layer ", r.layer,
                " but the model has ", layers);
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
    maps.push_back(
        {so.expert_map_path.empty() ? "round-robin" : so.expert_map_path,
         so.expert_map_path.empty()
             ? round_robin_expert_map(layers, c.num_experts, 1, world.size())
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
  std::vector<Setting> settings;
  for (const auto& [map_name, map] : maps)
    for (const auto& policy_name : policies) {
      Setting s;
      s.map_name = map_name;
      s.policy_name = policy_name;
      s.policy = make_dispatch_policy(policy_name, context);
      if (samples_out)
        s.policy =
            std::make_unique<LatencySampleRecorder>(std::move(s.policy), profile, d, *samples_out);
      s.recorder = std::make_unique<RankRecorder>(0, world.host(), "replay", layers, false);
      s.executor =
          std::make_unique<RemoteExpertExecutor>(world, session.transport(), map, *s.policy, d,
                                                 session.plan().deadline_seconds, *s.recorder);
      settings.push_back(std::move(s));
    }

  // The trace's calls, planned once; rows are random (their values do not change the cost).
  std::vector<GateResult> gates;
  std::vector<ExpertDispatch> dispatches;
  size_t most_rows = 0;
  for (const auto& rec : trace) {
    gates.push_back({rec.expert, rec.probability, rec.kept, rec.entropy});
    dispatches.emplace_back();
    plan_expert_dispatch(gates.back(), c.num_experts, dispatches.back());
    most_rows = std::max(most_rows, size_t(dispatches.back().rows()));
  }
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> rows_in(std::max<size_t>(most_rows, 1) * d), rows_out(rows_in.size());
  for (auto& v : rows_in) v = normal(rng);

  const size_t S = settings.size();
  std::ostringstream per_call;
  per_call << "expert_map,policy,pass,call,batch,step,layer,rows,latency_us,policy_us";
  for (int r = 1; r < world.size(); ++r)
    per_call << ",rows_rank" << r << ",latency_us_rank" << r << ",compute_us_rank" << r
             << ",queue_us_rank" << r << ",other_cpu_us_rank" << r;
  per_call << "\n";
  // The settings take turns call by call, each from its own offset in the trace
  // (sim::BenchSchedule, which the simulator's --interleave replays). Latencies are kept by
  // (pass, trace call), so that settings compare call for call.
  const size_t T = trace.size();
  for (auto& s : settings) s.latency_us.assign(size_t(repeats) * T, 0.0);
  sim::BenchSchedule schedule(S, T);
  for (int pass = 0; pass <= repeats; ++pass) {
    schedule.start_pass();
    for (size_t i = 0; i < T; ++i) {
      for (const sim::BenchSlot& slot : schedule.slot(i)) {
        Setting& s = settings[slot.setting];
        const size_t j = slot.call;
        SparseFfnWeights layer;
        layer.moe_layer = trace[j].layer;
        const double start = now_us();
        s.executor->run(layer, trace[j].step, gates[j], dispatches[j], rows_in.data(),
                        rows_out.data());
        const double us = now_us() - start;
        if (pass == 0) continue;  // warm-up pass: policies learn, caches fill
        s.latency_us[size_t(pass - 1) * T + j] = us;
        s.policy_us += s.executor->last_policy_us();
        s.tokens += dispatches[j].rows();
        const auto& per_rank = s.executor->last_rows_per_rank();
        if (!per_call_path.empty()) {
          per_call << s.map_name << "," << s.policy_name << "," << pass << "," << j << ","
                   << trace[j].batch << "," << trace[j].step << "," << trace[j].layer << ","
                   << dispatches[j].rows() << "," << us << "," << s.executor->last_policy_us();
          std::vector<RankFeedback> by_rank(world.size());
          for (const auto& f : s.executor->last_feedback()) by_rank[f.rank] = f;
          for (int r = 1; r < world.size(); ++r)
            per_call << "," << per_rank[r] << "," << by_rank[r].latency_us << ","
                     << by_rank[r].compute_us << "," << by_rank[r].queue_us << ","
                     << by_rank[r].other_cpu_us;
          per_call << "\n";
        }
        // The simulator's definitions (launch/simulator/metrics.hpp), so the two tables compare.
        const double imbalance =
            sim::max_over_mean({per_rank.begin(), per_rank.end()}, 1, world.size());
        if (imbalance > 0) {
          s.imbalance_sum += imbalance;
          ++s.balanced_calls;
        }
      }
    }
    std::fprintf(stderr, "done: pass %d of %d over %zu calls, %zu settings\n", pass, repeats,
                 trace.size(), S);
  }

  std::printf("%-28s %-14s %11s %11s %10s %9s %10s %8s  %s\n", "expert map", "policy", "mean_us",
              "p99_us", "tokens/s", "imbalance", "policy_us", "policy%",
              "latency-aware vs this (mean ± s.e., p99)");
  std::ostringstream csv;
  csv << "expert_map,policy,mean_us,p99_us,tokens_per_s,imbalance,policy_us,calls,"
         "latency_aware_mean_change,latency_aware_mean_change_se,latency_aware_p99_change\n";
  for (const auto& s : settings) {
    const double total_us = std::accumulate(s.latency_us.begin(), s.latency_us.end(), 0.0);
    const double calls = double(s.latency_us.size());
    const double mean_us = total_us / calls, p99_us = sim::percentile(s.latency_us, 0.99);
    const double tokens_per_s = double(s.tokens) / std::max(total_us * 1e-6, 1e-9);
    const double imbalance = s.balanced_calls ? s.imbalance_sum / s.balanced_calls : 0;
    const double policy_us = s.policy_us / calls;
    std::string vs, vs_csv = ",,";
    for (const auto& la : settings)
      if (la.map_name == s.map_name && la.policy_name == "latency-aware" &&
          s.policy_name != "latency-aware") {
        const auto [change, se] = paired_change(la.latency_us, s.latency_us);
        const double p99_change = sim::percentile(la.latency_us, 0.99) / p99_us - 1;
        vs_csv =
            std::to_string(change) + "," + std::to_string(se) + "," + std::to_string(p99_change);
        char buf[96];
        std::snprintf(buf, sizeof(buf), "%+.1f%% ± %.1f, %+.1f%%", 100 * change, 100 * se,
                      100 * p99_change);
        vs = buf;
      }
    std::printf("%-28s %-14s %11.1f %11.1f %10.1f %9.2f %10.1f %7.2f%%  %s\n",
                s.map_name.substr(std::max<int>(0, int(s.map_name.size()) - 28)).c_str(),
                s.policy_name.c_str(), mean_us, p99_us, tokens_per_s, imbalance, policy_us,
                100 * policy_us / mean_us, vs.c_str());
    csv << s.map_name << "," << s.policy_name << "," << mean_us << "," << p99_us << ","
        << tokens_per_s << "," << imbalance << "," << policy_us << "," << s.latency_us.size() << ","
        << vs_csv << "\n";
  }
  if (!csv_path.empty()) std::ofstream(csv_path) << csv.str();
  if (!per_call_path.empty()) std::ofstream(per_call_path) << per_call.str();
  session.finish(0, 0);
  return 0;
}

}  // namespace moe
