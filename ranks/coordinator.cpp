#include "ranks/coordinator.hpp"

#include <algorithm>
#include <cstdio>

#include "model/device_weights.hpp"
#include "model/weights.hpp"
#include "router/latency_policy.hpp"
#include "router/policy_factory.hpp"
#include "router/routing_trace.hpp"
#include "runtime/activity.hpp"
#include "runtime/cpu/cpu_quota.hpp"
#include "runtime/error.hpp"
#include "runtime/mpi/control_plane.hpp"
#include "runtime/mpi/rank_fence.hpp"
#include "runtime/mpi/transport_factory.hpp"

namespace moe {
namespace {

// Counts the tokens each sparse layer sends to the experts (and, when they run in this process,
// their compute time) into the rank's report. A co-located rank's server counts the tokens its
// experts serve instead (`count` false).
class RecordingExecutor final : public ExpertExecutor {
 public:
  RecordingExecutor(ExpertExecutor& inner, RankRecorder& recorder, bool local, int lane, bool count)
      : inner_(inner), recorder_(recorder), local_(local), lane_(lane), count_(count) {}
  void run(const SparseFfnWeights& layer, int64_t step, const GateResult& gate,
           const ExpertDispatch& dispatch, const float* rows_in, float* rows_out) override {
    const double start = now_us();
    inner_.run(layer, step, gate, dispatch, rows_in, rows_out);
    const double us =
        local_ ? recorder_.event("experts L" + std::to_string(layer.moe_layer), start, lane_) : 0.0;
    if (count_) recorder_.served(layer.moe_layer, dispatch.rows(), us);
  }
  void adjust_routing(int moe_layer, const float* logits, const float* x, int d,
                      GateResult& gate) override {
    inner_.adjust_routing(moe_layer, logits, x, d, gate);
  }
  bool runs_dense(const BlockWeights& block) const override { return inner_.runs_dense(block); }
  void run_dense(const BlockWeights& block, int64_t step, int rows, const float* x,
                 float* y) override {
    inner_.run_dense(block, step, rows, x, y);
  }
  int lm_head_kept(int vocab) const override { return inner_.lm_head_kept(vocab); }
  void start_lm_head(int64_t step, int rows, const float* states) override {
    inner_.start_lm_head(step, rows, states);
  }
  void finish_lm_head(std::vector<float>& best_logit, std::vector<int>& best_id) override {
    inner_.finish_lm_head(best_logit, best_id);
  }

 private:
  ExpertExecutor& inner_;
  RankRecorder& recorder_;
  bool local_;
  int lane_;
  bool count_;
};

}  // namespace

Coordinator::Coordinator(World& world, CheckedRun run) : world_(world), run_(std::move(run)) {
  const double start_us = now_us();
  const RunPlan& plan = run_.plan;
  const int rank = world.rank();
  apply_quota_of(plan.devices[rank], rank);
  checkpoint_ = std::make_unique<Checkpoint>(plan.model_dir);
  const ModelConfig& c = checkpoint_->config();
  LoadSelection selection;
  if (world.distributed()) selection.expert_wanted = [](int, int) { return false; };
  weights_ = load_weights(*checkpoint_, selection);
  device_ = make_device(resolve_local_device(plan.devices[rank], world.local_rank()));
  const bool budgeted = !world.distributed() && !plan.expert_memory.empty();
  prepare_weights(*device_, weights_, c, 0, c.vocab_size, /*with_experts=*/!budgeted);
  load_seconds_ = (now_us() - start_us) / 1e6;
  tokenizer_ = load_tokenizer_if_present(plan.model_dir, c.eos_token_id, c.pad_token_id);
  recorder_ = std::make_unique<RankRecorder>(rank, world.host(), plan.devices[rank],
                                             weights_.num_moe_layers, plan.trace);
  if (world.distributed()) {
    report_activity_on_termination("rank " + std::to_string(rank) + " (host " + world.host() + ")");
    if (is_lead()) wait_for_ranks(plan.expert_ranks());
    // Co-located, the rank's own server takes work on kDataTag and sends results on kResultTag.
    transport_ = make_transport(world, plan.transport, plan.devices[rank], plan.deadline_seconds,
                                plan.colocated ? DataTags{kDataTag, kResultTag} : DataTags{});
    // Every attention rank reads the profile and latency model rank 0 checked.
    if (!is_lead() && !plan.profile_path.empty()) run_.profile = load_profile(plan.profile_path);
    if (!is_lead() && !plan.latency_model_path.empty())
      run_.latency_model =
          std::make_shared<LatencyModel>(LatencyModel::load(plan.latency_model_path));
    PolicyContext context;
    context.seed = plan.seed + uint64_t(rank);
    context.d_model = c.d_model;
    if (!plan.profile_path.empty()) context.profile = &run_.profile;
    context.latency_model = run_.latency_model;
    policy_ = make_dispatch_policy(plan.policy, context);
    if (!run_.record_latency_samples_path.empty()) {
      samples_out_ = std::make_unique<std::ofstream>(run_.record_latency_samples_path);
      MOE_CHECK(samples_out_->good(), run_.record_latency_samples_path,
                ": cannot open for writing");
      policy_ = std::make_unique<LatencySampleRecorder>(std::move(policy_), run_.profile, c.d_model,
                                                        *samples_out_);
    }
    exchanges_ = std::make_unique<ExpertExchanges>(
        world, *transport_,
        ExchangeOptions{c.d_model, plan.deadline_seconds, plan.first_expert_rank(),
                        plan.micro_batches, plan.continue_on_rank_failure, &run_.plan.expert_map,
                        !plan.expert_memory.empty(), parse_miss_policy(plan.on_missing_expert)},
        *recorder_);
    const MissPolicy miss = parse_miss_policy(plan.on_missing_expert);
    if (!plan.expert_memory.empty() && world.rank() == 0)
      std::printf(policy_->weighs_residency() &&
                          (miss == MissPolicy::kWait || miss == MissPolicy::kOnDemand)
                      ? "routing under the budgets: %s prices a load on a non-resident replica "
                        "(the profile's expert_load_us)\n"
                      : "routing under the budgets: %s is given each expert's resident replicas, "
                        "where it has one\n",
                  policy_->name().c_str());
  }
  make_lane_models();
  recorder_->report().resident_bytes = resident_bytes();
  recorder_->report().weight_bytes = checkpoint_->stored_bytes([&](const std::string& name) {
    return !world.distributed() || name.find(".mlp.experts.") == std::string::npos;
  });
  if (plan.colocated) {
    serve_experts_here();
    // As expert ranks do: no rank sends work before every rank can serve it (a rank that loads
    // longer than an exchange's deadline would otherwise fail the others).
    if (is_lead())
      wait_for_ranks(world.size() - 1);
    else
      send_control(0, Ready{rank, resident_bytes(), recorder_->report().weight_bytes});
  }
  if (!run_.record_routing_path.empty()) record_routing(run_.record_routing_path);
  ready_seconds_ = (now_us() - start_us) / 1e6;
}

// Co-located: this rank's experts on its own device, served whenever its lanes wait. Work headers
// and the other ranks' AttentionDone go to the server; rank 0's Shutdown ends the run here.
void Coordinator::serve_experts_here() {
  server_ = std::make_unique<ExpertServer>(world_, run_.plan, *device_, *recorder_);
  exchanges_->serve_alongside(
      [this](const Envelope& e) {
        const auto type = static_cast<MessageType>(e.type);
        if (type == MessageType::kShutdown && !is_lead()) {
          MOE_CHECK(e.sender == 0, "rank ", e.sender, " sent Shutdown; only rank 0 may");
          shutdown_ = true;
          return true;
        }
        if (type != MessageType::kWorkHeader && type != MessageType::kAttentionDone) return false;
        server_->take(e);
        return true;
      },
      [this] { server_->serve_ready_exchanges(); }, [this] { return server_->waited_for(); });
}

// The deadline bounds silence, not the wait: a co-located rank that served another rank's rows
// in the last `seconds` is not stuck, however long the others' sequences take. Such a wait is the
// others' service, so it polls without napping: once a rank's own sequences were done, naps of up
// to 0.5 ms before each exchange it served made the other ranks' tail many times slower
// (docs/BENCHMARKS.md section 14).
void Coordinator::wait_serving(const std::function<bool()>& ready, double seconds,
                               const std::string& doing) {
  MOE_CHECK(server_, "internal: wait_serving on a rank that serves no experts");
  set_activity(doing);
  const double start = now_us();
  for (;;) {
    const double served = server_->serve_us();
    const bool done = poll_until(
        [&] {
          exchanges_->progress();
          return ready();
        },
        Deadline::after(seconds), /*naps=*/false);
    if (done) break;
    if (server_->serve_us() > served) continue;
    // The ranks whose work this rank's experts wait for, else those not yet done.
    const std::vector<int> waited = server_->waited_for();
    const std::string silent = waited.empty() ? world_.ranks_with_hosts([&](int r) {
      return server_->active(r) && r != world_.rank();
    })
                                              : world_.ranks_with_hosts(waited);
    MOE_FAIL("rank ", world_.rank(), ": nothing came within the ", seconds, " s deadline while ",
             doing, silent.empty() ? "" : " (from rank(s) " + silent + ")", own_pause_note());
  }
  recorder_->report().wait_us += now_us() - start;
}

Coordinator::~Coordinator() = default;

void Coordinator::make_lane_models() {
  const ModelConfig& c = checkpoint_->config();
  const bool alone = !world_.distributed();
  const int lanes = alone ? 1 : run_.plan.micro_batches;
  for (int lane = 0; lane < lanes; ++lane) {
    if (alone && !run_.plan.expert_memory.empty())
      executors_.push_back(make_budgeted_executor());
    else if (alone)
      executors_.push_back(std::make_unique<LocalExpertExecutor>(*device_, c));
    else
      executors_.push_back(std::make_unique<RemoteExpertExecutor>(
          *exchanges_, run_.plan.expert_map, *policy_,
          [this](int dense) { return run_.plan.dense_rank(dense); }, lane,
          lanes > 1 ? &lane_runner_ : nullptr,
          run_.plan.lm_head_columns(world_.rank(), c.vocab_size).second));
    recording_.push_back(std::make_unique<RecordingExecutor>(*executors_.back(), *recorder_, alone,
                                                             lane, !run_.plan.colocated));
    models_.push_back(std::make_unique<SwitchModel>(
        SwitchModel{c, weights_, *device_, *recording_.back(), nullptr, {}}));
  }
}

std::unique_ptr<ExpertExecutor> Coordinator::make_budgeted_executor() {
  const ModelConfig& c = checkpoint_->config();
  const RunPlan& plan = run_.plan;
  const std::vector<int> committees =
      !plan.committees.empty()
          ? plan.committees
          : spread_committees(
                experts_within(plan.expert_memory, int64_t(weights_.num_moe_layers) * c.num_experts,
                               expert_bytes(c)),
                std::vector<int>(weights_.num_moe_layers, c.num_experts));
  residency_ = std::make_unique<ExpertResidency>(
      committees, budgeted_expert_norms(*checkpoint_, weights_, *device_),
      parse_miss_policy(plan.on_missing_expert), parse_committee_kind(plan.committee), plan.seed);
  for (size_t l = 0; l < plan.committee_members.size(); ++l)
    residency_->seat(int(l), plan.committee_members[l]);
  auto executor = std::make_unique<BudgetedExpertExecutor>(*device_, c, weights_, *residency_);
  budgeted_ = executor.get();
  return executor;
}

void Coordinator::report_budget(int64_t generated_tokens, double wall_seconds) const {
  const double mib = double(expert_bytes(checkpoint_->config())) / 1048576.0;
  int64_t planned = 0;  // the plan's committees, in experts
  for (int k : run_.plan.committees) planned += k;
  // --memory-plan: what the run seated (`seated`, in experts, and where), its time per token and
  // its resident routed mass (`n`) against the plan's prediction.
  auto plan_line = [&](int64_t seated, const char* where, const ResidencyCounters& n) {
    const MemoryPlan& p = run_.memory_plan;
    std::printf(
        "memory plan: measured against predicted: experts' memory %.1f MiB %s against %.1f MiB "
        "(%.1f MiB of committees); %.3f ms per token against %.3f; routed probability mass "
        "resident %.1f%% against %.1f%%\n",
        double(seated) * mib, where, double(p.memory_bytes) / 1048576.0, double(planned) * mib,
        generated_tokens > 0 ? 1000.0 * wall_seconds / double(generated_tokens) : 0.0,
        p.ms_per_token, n.routed_mass > 0 ? 100.0 * n.resident_mass / n.routed_mass : 0.0,
        100.0 * p.resident_mass);
  };
  if (budgeted_) {
    budgeted_->pages().drain();
    std::printf("%s\n", budgeted_->pages().summary().c_str());
    if (!run_.plan.committees.empty())
      plan_line(planned, "(+ one in flight)", residency_->counters());
  }
  if (exchanges_ && !run_.plan.expert_memory.empty()) {
    const ResidencyCounters n = exchanges_->budget_counters();
    const std::string budget = run_.plan.committee_members.empty()
                                   ? "--expert-memory " + run_.plan.expert_memory + " each"
                                   : "--memory-plan, each its members";
    std::printf(
        "expert memory on the expert ranks (%s, on a miss: %s): %lld of %lld routed tokens of rank "
        "%d had no resident replica: %lld substituted, %lld skipped\n",
        budget.c_str(), run_.plan.on_missing_expert.c_str(), static_cast<long long>(n.missed),
        static_cast<long long>(n.routed), world_.rank(), static_cast<long long>(n.substituted),
        static_cast<long long>(n.skipped));
    if (!run_.plan.committee_members.empty()) {
      // The plan's seats as the expert map shares them out: a replicated member sits on each of
      // its ranks.
      int64_t seated = 0;
      for (size_t l = 0; l < run_.plan.committee_members.size(); ++l)
        for (int e : run_.plan.committee_members[l])
          seated += int64_t(run_.plan.expert_map.ranks_of(int(l), e).size());
      plan_line(seated,
                "seated over the expert ranks by the map (+ one in flight each; each rank's own "
                "line has its peak)",
                n);
    }
  }
}

void Coordinator::run_lanes(const std::function<void(int lane)>& body) {
  if (lanes() == 1) {
    body(0);
    return;
  }
  lane_runner_.run(lanes(), body, [this] { exchanges_->progress(); });
}

// Every expert rank must load its experts before any work starts (the transport is collective),
// and every co-located rank its weights.
void Coordinator::wait_for_ranks(int count) {
  const std::string doing = run_.plan.colocated
                                ? "waiting for the other ranks to load their weights"
                                : "waiting for the expert ranks to load their experts";
  for (int pending = count; pending > 0; --pending) {
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
  for (auto& model : models_) {
    SwitchModel* m = model.get();
    m->on_route = [this, m](int layer, int sequences, int seq_len, const std::vector<float>&,
                            const GateResult& gate) {
      if (m->step == 0 && layer == 0) ++routing_batch_;
      RoutingRecord r{routing_batch_, m->step,          layer,     sequences,   seq_len,
                      gate.expert,    gate.probability, gate.kept, gate.entropy};
      *routing_out_ << routing_record_to_json_line(r) << "\n";
    };
  }
}

void Coordinator::done_with_experts() {
  if (said_done_ || !exchanges_) return;
  exchanges_->say_done();
  said_done_ = true;
}

void Coordinator::finish(int64_t generated_tokens, double wall_seconds) {
  RankReport& mine = recorder_->report();
  mine.resident_bytes = resident_bytes();
  mine.wait_us += lane_runner_.idle_us();
  // A co-located rank serves experts inside its waits: that time is compute.
  if (server_) mine.wait_us = std::max(0.0, mine.wait_us - server_->serve_us());
  double experts_us = 0;
  for (double us : mine.compute_us_per_layer) experts_us += us;
  mine.other_compute_us = std::max(0.0, wall_seconds * 1e6 - mine.wait_us - experts_us);
  if (server_) {
    // Its experts serve the other ranks until every one is done; then rank 0 ends the run.
    const double wait_us = mine.wait_us, seconds = run_.plan.deadline_seconds * 10;
    done_with_experts();
    if (!is_lead()) {
      wait_serving([this] { return shutdown_; }, seconds, "waiting for rank 0 to end the run");
      server_->finish();
      mine.wait_us = wait_us;
      send_control(0, mine);
      return;
    }
    wait_serving([this] { return server_->attention_ranks_done(); }, seconds,
                 "waiting for the other ranks to finish their sequences");
    server_->finish();
    mine.wait_us = wait_us;
  }
  if (world_.distributed() && !is_lead()) {
    done_with_experts();
    Envelope e;
    do  // a rank another attention rank lost may still be announced
      e = receive_control(world_, 0, Deadline::after(run_.plan.deadline_seconds * 10),
                          "waiting for rank 0 to end the run");
    while (exchanges_->take_notice(e));
    decode_message<Shutdown>(e);
    send_control(0, mine);
    return;
  }
  std::vector<RankReport> reports{mine};
  if (world_.distributed()) {
    done_with_experts();
    std::vector<uint8_t> pending(world_.size(), 0);
    for (int r = 1; r < world_.size(); ++r)
      if (!exchanges_->is_lost(r)) {
        send_control(r, Shutdown{});
        pending[r] = 1;
      }
    const std::string doing = "collecting the other ranks' reports";
    while (std::find(pending.begin(), pending.end(), 1) != pending.end()) {
      set_activity(doing);
      const Envelope e =
          receive_control(world_, kAnySource, Deadline::after(run_.plan.deadline_seconds), doing);
      if (exchanges_->take_notice(e)) {  // lost after it was told to shut down: no report
        for (int r : exchanges_->lost_ranks()) pending[r] = 0;
        continue;
      }
      reports.push_back(decode_message<RankReport>(e));
      pending.at(e.sender) = 0;
    }
    std::sort(reports.begin(), reports.end(),
              [](const auto& a, const auto& b) { return a.rank < b.rank; });
  }
  std::printf(
      "checkpoint %s: %.1f MiB of weights, loaded by rank 0 in %.2f s, every rank ready after "
      "%.2f s; rss = resident memory at the end, wgt = weights this rank loaded\n",
      run_.plan.model_dir.c_str(), checkpoint_->stored_bytes() / 1048576.0, load_seconds_,
      ready_seconds_);
  std::printf("%s", format_rank_table(reports, wall_seconds, generated_tokens).c_str());
  report_budget(generated_tokens, wall_seconds);
  if (!run_.trace_path.empty()) {
    write_chrome_trace(run_.trace_path, reports);
    std::printf("trace written to %s\n", run_.trace_path.c_str());
  }
  if (exchanges_) end_without_lost_ranks();
}

void Coordinator::end_without_lost_ranks() {
  if (exchanges_->lost_ranks().empty()) return;
  std::printf("lost rank(s): %s; the run went on without them (--on-rank-failure continue)\n",
              world_.ranks_with_hosts([&](int r) { return exchanges_->is_lost(r); }).c_str());
  // No live rank shares such a rank's host, so none could stop it. A process that died is gone;
  // one that is only paused holds the job (mpirun waits for every process, MPI_Finalize for every
  // peer, and under --enable-recovery MPI_Abort does not end it either) until it is stopped there.
  const auto live = [&](int r) { return !exchanges_->is_lost(r); };
  const std::string unstoppable = world_.ranks_with_hosts(
      [&](int r) { return exchanges_->is_lost(r) && !fenceable(world_, r, live); });
  if (!unstoppable.empty())
    std::printf(
        "the answers are complete; no live rank shares a host with lost rank(s) %s: if "
        "one is only paused, the job ends once it is stopped there\n",
        unstoppable.c_str());
  std::fflush(stdout);
}

}  // namespace moe
