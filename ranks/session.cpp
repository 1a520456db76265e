#include "ranks/session.hpp"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <sstream>

#include <boost/program_options.hpp>

#include "model/weights.hpp"
#include "router/latency_policy.hpp"
#include "router/policy_factory.hpp"
#include "router/routing_trace.hpp"
#include "runtime/cpu/cpu_quota.hpp"
#include "runtime/transport_factory.hpp"
#include "ranks/command_line.hpp"
#include "ranks/expert_rank.hpp"
#include "runtime/activity.hpp"
#include "runtime/control_plane.hpp"
#include "runtime/error.hpp"

namespace moe {
namespace po = boost::program_options;

namespace {

// Counts the tokens each sparse layer sends to the experts (and, when they run in this process,
// their compute time) into rank 0's report.
class RecordingExecutor final : public ExpertExecutor {
 public:
  RecordingExecutor(ExpertExecutor& inner, RankRecorder& recorder, bool local)
      : inner_(inner), recorder_(recorder), local_(local) {}
  void run(const SparseFfnWeights& layer, int64_t step, const GateResult& gate,
           const ExpertDispatch& dispatch, const float* rows_in, float* rows_out) override {
    const double start = now_us();
    inner_.run(layer, step, gate, dispatch, rows_in, rows_out);
    const double us = local_ ? recorder_.event("experts L" + std::to_string(layer.moe_layer), start) : 0.0;
    recorder_.served(layer.moe_layer, dispatch.rows(), us);
  }

 private:
  ExpertExecutor& inner_;
  RankRecorder& recorder_;
  bool local_;
};

}  // namespace

void SessionOptions::add_to(po::options_description& opts) {
  opts.add_options()
      ("model", po::value(&model_dir)->required(), "model directory (config.json, *.safetensors)")
      ("expert-map", po::value(&expert_map_path), "expert_map.json (default: round-robin over expert ranks)")
      ("policy", po::value(&policy)->default_value("static"), "replica choice: static, round-robin, random, uniform")
      ("seed", po::value(&seed)->default_value(1), "seed of the random policy")
      ("deadline", po::value(&deadline_seconds)->default_value(60), "seconds any wait may take")
      ("threads", po::value(&threads)->default_value(1), "CPU threads per rank (OpenBLAS and OpenMP)")
      ("trace", po::value(&trace_path), "write a Chrome/Perfetto timeline of every rank")
      ("memory-per-rank", po::value(&memory_per_rank_bytes)->default_value(0),
       "bytes of expert weights each expert rank may hold (0: no limit)")
      ("devices", po::value(&devices),
       "device of each rank, comma-separated: cpu:THREADS[@CORES] (a CPU quota), cuda:INDEX[:bf16] or cuda:local[:bf16] (the GPU of the node-local rank)")
      ("profile", po::value(&profile_path), "profile.json from `moe profile` (for latency-aware routing and latency samples)")
      ("latency-model", po::value(&latency_model_path), "latency model from `moe train-latency-model` (for latency-aware)")
      ("record-routing", po::value(&record_routing_path), "write every sparse-layer call's routing (JSONL)")
      ("record-latency-samples", po::value(&record_latency_samples_path),
       "write one latency sample per rank and sparse-layer call (CSV; needs --profile)");
}

RunPlan Session::make_plan(const SessionOptions& o) {
  RunPlan plan;
  plan.model_dir = o.model_dir;
  plan.policy = o.policy;
  plan.seed = o.seed;
  plan.deadline_seconds = o.deadline_seconds;
  plan.trace = !o.trace_path.empty();
  try {
    MOE_CHECK(o.deadline_seconds > 0, "--deadline must be > 0");
    MOE_CHECK(o.threads >= 1, "--threads must be >= 1");
    const ModelConfig c = load_model_config((std::filesystem::path(o.model_dir) / "config.json").string());
    check_dispatch_policy_name(o.policy);
    if (o.check_inputs) o.check_inputs(c);
    const int layers = count_moe_layers(c), N = world_.size();
    if (N > 1) {
      plan.expert_map = o.expert_map_path.empty()
                            ? round_robin_expert_map(layers, c.num_experts, 1, N)
                            : load_expert_map(o.expert_map_path, layers, c.num_experts, 1, N);
      for (const auto& path : o.extra_expert_maps) {  // load the union, for runs that switch maps
        const ExpertMap extra = load_expert_map(path, layers, c.num_experts, 1, N);
        for (int l = 0; l < layers; ++l)
          for (int e = 0; e < c.num_experts; ++e)
            for (int r : extra.ranks_of(l, e))
              if (!plan.expert_map.holds(r, l, e)) plan.expert_map.replicas[l][e].push_back(r);
      }
      if (o.memory_per_rank_bytes > 0) {
        std::vector<size_t> budget(N, o.memory_per_rank_bytes);
        budget[0] = 0;
        check_expert_memory(plan.expert_map, size_t(2) * c.d_model * c.d_ff * sizeof(float), budget,
                            o.expert_map_path.empty() ? "round-robin expert map" : o.expert_map_path);
      }
    } else {
      MOE_CHECK(o.expert_map_path.empty() || std::filesystem::exists(o.expert_map_path),
                o.expert_map_path, ": cannot open expert map");
    }
    plan.devices.assign(N, "cpu:" + std::to_string(o.threads));
    if (!o.devices.empty()) {
      const std::vector<std::string> given = split_commas(o.devices);
      MOE_CHECK(int(given.size()) == N, "--devices lists ", given.size(), " devices for ", N, " rank(s)");
      for (const auto& spec : given) make_device_spec_check(spec);
      plan.devices = given;
    }
    plan.transport = transport_for(plan.devices);
    if (o.policy == "latency-aware" || !o.record_latency_samples_path.empty())
      MOE_CHECK(!o.profile_path.empty(), "--policy latency-aware and --record-latency-samples need --profile");
    if (!o.profile_path.empty()) {
      profile_ = load_profile(o.profile_path);
      for (int r = 1; r < N; ++r)
        MOE_CHECK(profile_.has(r), o.profile_path, ": has no entry for expert rank ", r);
    }
    if (o.policy == "latency-aware")
      MOE_CHECK(!o.latency_model_path.empty(), "--policy latency-aware needs --latency-model");
    if (!o.latency_model_path.empty())
      latency_model_ = std::make_shared<LatencyModel>(LatencyModel::load(o.latency_model_path));
  } catch (const std::exception& e) {
    plan.error = e.what();
  }
  return plan;
}

Session::Session(World& world, const SessionOptions& options) : world_(world), options_(options) {
  if (world.rank() == 0) plan_ = make_plan(options);
  if (world.distributed()) plan_ = broadcast_plan(world, plan_);
  if (!plan_.error.empty()) {
    if (world.rank() == 0) throw RejectedRun(plan_.error);
    exit_code_ = 0;  // rank 0 reports the rejection and exits non-zero
    return;
  }
  if (world.rank() != 0) {
    exit_code_ = run_expert_rank(world, plan_);
    return;
  }

  apply_quota_of(plan_.devices[0], 0);
  checkpoint_ = std::make_unique<Checkpoint>(plan_.model_dir);
  const ModelConfig& c = checkpoint_->config();
  LoadSelection selection;
  if (world.distributed()) selection.expert_wanted = [](int, int) { return false; };
  weights_ = load_weights(*checkpoint_, selection);
  device_ = make_device(resolve_local_device(plan_.devices[0], world.local_rank()));
  tokenizer_ = load_tokenizer_if_present(plan_.model_dir, c.eos_token_id, c.pad_token_id);
  recorder_ = std::make_unique<RankRecorder>(0, world.host(), plan_.devices[0], weights_.num_moe_layers,
                                             plan_.trace);
  if (world.distributed()) {
    report_activity_on_termination("rank 0 (host " + world.host() + ")");
    PolicyContext context;
    context.seed = plan_.seed;
    context.d_model = c.d_model;
    if (!options.profile_path.empty()) context.profile = &profile_;  // read by make_plan
    context.latency_model = latency_model_;
    policy_ = make_dispatch_policy(plan_.policy, context);
    if (!options.record_latency_samples_path.empty()) {
      samples_out_ = std::make_unique<std::ofstream>(options.record_latency_samples_path);
      MOE_CHECK(samples_out_->good(), options.record_latency_samples_path, ": cannot open for writing");
      policy_ = std::make_unique<LatencySampleRecorder>(std::move(policy_), profile_, c.d_model, *samples_out_);
    }
    auto remote = std::make_unique<RemoteExpertExecutor>(world, transport_ref_, plan_.expert_map, *policy_,
                                                         c.d_model, plan_.deadline_seconds, *recorder_);
    executor_ = std::move(remote);
    // Every expert rank must load its experts before any work starts.
    for (int pending = world.size() - 1; pending > 0; --pending) {
      set_activity("waiting for the expert ranks to load their experts");
      const Envelope e = receive_control(world, kAnySource, Deadline::after(plan_.deadline_seconds * 10),
                                         "waiting for the expert ranks to load their experts");
      if (e.type == static_cast<uint32_t>(MessageType::kError)) {
        const auto err = decode_message<ErrorMessage>(e);
        MOE_FAIL("rank ", err.rank, " (host ", err.host, ") failed while loading: ", err.what);
      }
      decode_message<Ready>(e);
    }
    transport_ = make_transport(world, plan_);  // collective: after every rank is ready
  } else {
    executor_ = std::make_unique<LocalExpertExecutor>(*device_, c);
  }
  recorder_->report().resident_bytes = resident_bytes();
  recorder_->report().weight_bytes = checkpoint_->stored_bytes([&](const std::string& name) {
    return !world.distributed() || name.find(".mlp.experts.") == std::string::npos;
  });
  recording_ = std::make_unique<RecordingExecutor>(*executor_, *recorder_, !world.distributed());
  model_ = std::make_unique<SwitchModel>(SwitchModel{c, weights_, *device_, *recording_, nullptr, {}});
  if (!options.record_routing_path.empty()) {
    routing_out_ = std::make_unique<std::ofstream>(options.record_routing_path);
    MOE_CHECK(routing_out_->good(), options.record_routing_path, ": cannot open for writing");
    model_->on_route = [this](int layer, int sequences, int seq_len, const std::vector<float>&,
                              const GateResult& gate) {
      if (model_->step == 0 && layer == 0) ++routing_batch_;
      RoutingRecord r{routing_batch_, model_->step, layer, sequences, seq_len, gate.expert,
                      gate.probability, gate.kept, gate.entropy};
      *routing_out_ << routing_record_to_json_line(r) << "\n";
    };
  }
}

Session::~Session() = default;

void Session::finish(int64_t generated_tokens, double wall_seconds) {
  recorder_->report().resident_bytes = resident_bytes();
  std::vector<RankReport> reports{recorder_->report()};
  if (world_.distributed()) {
    for (int r = 1; r < world_.size(); ++r) send_control(r, Shutdown{});
    for (int pending = world_.size() - 1; pending > 0; --pending) {
      set_activity("collecting the expert ranks' reports");
      const Envelope e = receive_control(world_, kAnySource, Deadline::after(plan_.deadline_seconds),
                                         "collecting the expert ranks' reports");
      reports.push_back(decode_message<RankReport>(e));
    }
    std::sort(reports.begin(), reports.end(), [](const auto& a, const auto& b) { return a.rank < b.rank; });
  }
  std::printf("checkpoint %s: %.1f MiB of weights; rss = resident memory at the end, wgt = weights this rank loaded\n",
              plan_.model_dir.c_str(), checkpoint_->stored_bytes() / 1048576.0);
  std::printf("%s", format_rank_table(reports, wall_seconds, generated_tokens).c_str());
  if (!options_.trace_path.empty()) {
    write_chrome_trace(options_.trace_path, reports);
    std::printf("trace written to %s\n", options_.trace_path.c_str());
  }
}

}  // namespace moe
