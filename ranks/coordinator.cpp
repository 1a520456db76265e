#include "ranks/coordinator.hpp"

#include <algorithm>
#include <cstdio>

#include "model/weights.hpp"
#include "ranks/remote_experts.hpp"
#include "router/latency_policy.hpp"
#include "router/policy_factory.hpp"
#include "router/routing_trace.hpp"
#include "runtime/activity.hpp"
#include "runtime/cpu/cpu_quota.hpp"
#include "runtime/error.hpp"
#include "runtime/mpi/control_plane.hpp"
#include "runtime/mpi/transport_factory.hpp"

namespace moe {
namespace {

// Counts the tokens each sparse layer sends to the experts (and, when they run in this process,
// their compute time) into the coordinator's report.
class RecordingExecutor final : public ExpertExecutor {
 public:
  RecordingExecutor(ExpertExecutor& inner, RankRecorder& recorder, bool local)
      : inner_(inner), recorder_(recorder), local_(local) {}
  void run(const SparseFfnWeights& layer, int64_t step, const GateResult& gate,
           const ExpertDispatch& dispatch, const float* rows_in, float* rows_out) override {
    const double start = now_us();
    inner_.run(layer, step, gate, dispatch, rows_in, rows_out);
    const double us =
        local_ ? recorder_.event("experts L" + std::to_string(layer.moe_layer), start) : 0.0;
    recorder_.served(layer.moe_layer, dispatch.rows(), us);
  }

 private:
  ExpertExecutor& inner_;
  RankRecorder& recorder_;
  bool local_;
};

}  // namespace

Coordinator::Coordinator(World& world, CheckedRun run) : world_(world), run_(std::move(run)) {
  const RunPlan& plan = run_.plan;
  apply_quota_of(plan.devices[0], 0);
  checkpoint_ = std::make_unique<Checkpoint>(plan.model_dir);
  const ModelConfig& c = checkpoint_->config();
  LoadSelection selection;
  if (world.distributed()) selection.expert_wanted = [](int, int) { return false; };
  weights_ = load_weights(*checkpoint_, selection);
  device_ = make_device(resolve_local_device(plan.devices[0], world.local_rank()));
  tokenizer_ = load_tokenizer_if_present(plan.model_dir, c.eos_token_id, c.pad_token_id);
  recorder_ = std::make_unique<RankRecorder>(0, world.host(), plan.devices[0],
                                             weights_.num_moe_layers, plan.trace);
  if (world.distributed()) {
    report_activity_on_termination("rank 0 (host " + world.host() + ")");
    wait_for_expert_ranks();
    transport_ = make_transport(world, plan.transport, plan.devices[0], plan.deadline_seconds);
    PolicyContext context;
    context.seed = plan.seed;
    context.d_model = c.d_model;
    if (run_.has_profile) context.profile = &run_.profile;
    context.latency_model = run_.latency_model;
    policy_ = make_dispatch_policy(plan.policy, context);
    if (!run_.record_latency_samples_path.empty()) {
      samples_out_ = std::make_unique<std::ofstream>(run_.record_latency_samples_path);
      MOE_CHECK(samples_out_->good(), run_.record_latency_samples_path,
                ": cannot open for writing");
      policy_ = std::make_unique<LatencySampleRecorder>(std::move(policy_), run_.profile, c.d_model,
                                                        *samples_out_);
    }
    executor_ =
        std::make_unique<RemoteExpertExecutor>(world, *transport_, plan.expert_map, *policy_,
                                               c.d_model, plan.deadline_seconds, *recorder_);
  } else {
    executor_ = std::make_unique<LocalExpertExecutor>(*device_, c);
  }
  recorder_->report().resident_bytes = resident_bytes();
  recorder_->report().weight_bytes = checkpoint_->stored_bytes([&](const std::string& name) {
    return !world.distributed() || name.find(".mlp.experts.") == std::string::npos;
  });
  recording_ = std::make_unique<RecordingExecutor>(*executor_, *recorder_, !world.distributed());
  model_ =
      std::make_unique<SwitchModel>(SwitchModel{c, weights_, *device_, *recording_, nullptr, {}});
  if (!run_.record_routing_path.empty()) record_routing(run_.record_routing_path);
}

Coordinator::~Coordinator() = default;

// Every expert rank must load its experts before any work starts (the transport is collective).
void Coordinator::wait_for_expert_ranks() {
  const std::string doing = "waiting for the expert ranks to load their experts";
  for (int pending = world_.size() - 1; pending > 0; --pending) {
    set_activity(doing);
    const Envelope e = receive_control(world_, kAnySource,
                                       Deadline::after(run_.plan.deadline_seconds * 10), doing);
    if (e.type == static_cast<uint32_t>(MessageType::kError)) {
      const auto err = decode_message<ErrorMessage>(e);
      MOE_FAIL("rank ", err.rank, " (host ", err.host, ") failed while loading: ", err.what);
    }
    decode_message<Ready>(e);
  }
}

void Coordinator::record_routing(const std::string& path) {
  routing_out_ = std::make_unique<std::ofstream>(path);
  MOE_CHECK(routing_out_->good(), path, ": cannot open for writing");
  model_->on_route = [this](int layer, int sequences, int seq_len, const std::vector<float>&,
                            const GateResult& gate) {
    if (model_->step == 0 && layer == 0) ++routing_batch_;
    RoutingRecord r{routing_batch_, model_->step,     layer,     sequences,   seq_len,
                    gate.expert,    gate.probability, gate.kept, gate.entropy};
    *routing_out_ << routing_record_to_json_line(r) << "\n";
  };
}

void Coordinator::finish(int64_t generated_tokens, double wall_seconds) {
  recorder_->report().resident_bytes = resident_bytes();
  std::vector<RankReport> reports{recorder_->report()};
  if (world_.distributed()) {
    for (int r = 1; r < world_.size(); ++r) send_control(r, Shutdown{});
    const std::string doing = "collecting the expert ranks' reports";
    for (int pending = world_.size() - 1; pending > 0; --pending) {
      set_activity(doing);
      const Envelope e =
          receive_control(world_, kAnySource, Deadline::after(run_.plan.deadline_seconds), doing);
      reports.push_back(decode_message<RankReport>(e));
    }
    std::sort(reports.begin(), reports.end(),
              [](const auto& a, const auto& b) { return a.rank < b.rank; });
  }
  std::printf(
      "checkpoint %s: %.1f MiB of weights; rss = resident memory at the end, wgt = weights this "
      "rank loaded\n",
      run_.plan.model_dir.c_str(), checkpoint_->stored_bytes() / 1048576.0);
  std::printf("%s", format_rank_table(reports, wall_seconds, generated_tokens).c_str());
  if (!run_.trace_path.empty()) {
    write_chrome_trace(run_.trace_path, reports);
    std::printf("trace written to %s\n", run_.trace_path.c_str());
  }
}

}  // namespace moe
