// moe generate: greedy generation for every prompt of a JSONL file, alone or under mpirun. Rank 0
// reads the prompts and hands every attention rank its share; each serves its share by
// continuous batching over its micro-batch lanes (ranks/serving.hpp) and streams its answers back
// as they finish; rank 0 writes them in input order, with per-request latencies, to
// OUTPUT.partial as they come (renamed to OUTPUT at the end), so that memory stays flat however
// many prompts, and a job that stopped can be resumed where it stopped.
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>

#include "ranks/commands/commands.hpp"
#include "ranks/commands/requests.hpp"
#include "ranks/commands/serving_prediction.hpp"
#include "ranks/serving.hpp"
#include "router/statistics.hpp"
#include "runtime/atomic_file.hpp"
#include "runtime/error.hpp"
#include "runtime/mpi/control_plane.hpp"
#include "runtime/partial_file.hpp"
#include "runtime/rank_stats.hpp"

namespace moe {
namespace po = boost::program_options;

namespace {

class GenerateCommand final : public DistributedCommand {
 public:
  void add_options(po::options_description& opts) override {
    // clang-format off
    opts.add_options()
        ("input", po::value(&input_)->required(), "JSONL: {\"id\", \"input_ids\"|\"text\"} per line (- : standard input)")
        ("output", po::value(&output_),
         "JSONL results in input order, written to OUTPUT.partial as they finish and renamed to OUTPUT at the end")
        ("resume", po::bool_switch(&resume_),
         "continue a job that stopped: keep the answers OUTPUT.partial holds and skip their prompts")
        ("max-new-tokens", po::value(&options_.max_new_tokens)->default_value(32), "tokens to generate at most")
        ("batch-size", po::value(&options_.batch_size)->default_value(8),
         "sequences decoding at once per attention rank (continuous batching)")
        ("admit-per-step", po::value(&options_.admit_per_step)->default_value(0),
         "prompts each micro-batch lane takes in at most between two decode steps, after its first batch (0: a quarter of its share of the batch)")
        ("max-input-tokens", po::value(&max_input_tokens_)->default_value(512),
         "longest prompt accepted, in tokens (longer ones are refused before any work, or cut with --truncate-input)")
        ("truncate-input", po::bool_switch(&truncate_input_),
         "cut prompts longer than --max-input-tokens to their first tokens (keeping a final end-of-sequence token) instead of refusing them")
        ("quiet", po::bool_switch(&quiet_), "do not print each answer");
    // clang-format on
  }

  void prepare(const World&, const ModelConfig& c) override {
    MOE_CHECK(options_.max_new_tokens >= 1, "--max-new-tokens must be >= 1");
    MOE_CHECK(max_input_tokens_ >= 1, "--max-input-tokens must be >= 1");
    MOE_CHECK(options_.batch_size >= 1, "--batch-size must be >= 1");
    MOE_CHECK(options_.admit_per_step >= 0, "--admit-per-step must be >= 0");
    if (!output_.empty()) {  // before any work: a refused output would lose all of it
      check_output_path(output_);
      check_output_is_not(output_, input_);
    }
    const auto tokenizer =
        load_tokenizer_if_present(run_options_.model_dir, c.eos_token_id, c.pad_token_id);
    requests_ = read_requests(input_, c, tokenizer.get());
    if (truncate_input_) truncate_inputs(c.eos_token_id);
    check_limits(c);
    MOE_CHECK(!resume_ || !output_.empty(), "--resume needs --output");
    if (!output_.empty()) {
      out_ = std::make_unique<PartialFile>(
          output_, resume_, [&](std::string_view line, long n) { check_kept(line, n); });
      next_ = out_->lines_kept();
      if (out_->lines_kept() > 0)
        std::printf("resuming %s: %ld of %zu prompts answered before\n",
                    out_->partial_path().c_str(), out_->lines_kept(), requests_.size());
    }
    run_options_.serves = true;
    run_options_.batch_size = options_.batch_size;
    first_new_ = next_;
  }

  void settle(const World& world, CheckedRun& run) override;
  int coordinate(Coordinator& coordinator) override;

 private:
  // The serving model's view of this run (router/sim/serving_model.hpp).
  sim::ServingLayout serving_layout(const RunPlan& plan) const;
  sim::ServingWorkload serving_workload(int requests, int new_tokens) const;
  // With a profile whose serving curves describe the run: the predicted run beside the measured.
  void compare_with_model(Coordinator& coordinator, double seconds) const;
  void truncate_inputs(int eos_token_id);
  void check_limits(const ModelConfig& c) const;
  void check_kept(std::string_view line, long number) const;
  void serve_all(Coordinator& coordinator);
  void take(const GenerationResult& r, const Tokenizer* tokenizer);
  nlohmann::json answer(const GenerationResult& r, const Tokenizer* tokenizer) const;
  void print(const GenerationResult& r, const Tokenizer* tokenizer) const;
  void summarise(double seconds, int attention_ranks) const;

  // Answers per share an attention rank streams back to rank 0 (or fewer, every kShareSeconds).
  static constexpr size_t kResultsPerShare = 64;
  static constexpr double kShareSeconds = 0.2;

  std::string input_, output_;
  bool resume_ = false;
  ServeOptions options_;
  bool quiet_ = false;
  int max_input_tokens_ = 512;
  bool truncate_input_ = false;
  std::vector<Request> requests_;
  // Rank 0's output: answers wait here until every earlier one is written.
  std::unique_ptr<PartialFile> out_;
  std::map<int64_t, std::string> waiting_;
  int64_t next_ = 0;       // the input index of the next answer to write (those before are written)
  int64_t first_new_ = 0;  // the first prompt this run answers (those before were, by a run before)
  int64_t generated_ = 0, answered_ = 0;
  StreamQuantiles ttft_, tpot_;
};

// A line of the partial output being resumed must answer the prompt on the same line of the
// input: otherwise it belongs to another job.
void GenerateCommand::check_kept(std::string_view line, long number) const {
  const std::string partial = output_ + ".partial";
  nlohmann::json answer;
  try {
    answer = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    MOE_FAIL(partial, ":", number, ": not an answer line (", e.what(), ")");
  }
  MOE_CHECK(size_t(number) <= requests_.size(), partial, " holds more answers than ", input_,
            " has prompts (", requests_.size(), "): not a run of this input");
  const Request& asked = requests_[size_t(number) - 1];
  MOE_CHECK(answer.is_object() && answer.contains("id") && answer["id"] == asked.id, partial, ":",
            number, ": answers id ",
            answer.is_object() ? answer.value("id", nlohmann::json()).dump() : "?",
            ", but the prompt on line ", asked.line, " of ", input_, " has id ", asked.id.dump(),
            ": not a run of this input");
}

// Bytes that serving `batch` sequences takes beyond the weights, with inputs of `input` tokens
// and `new_tokens` to generate: each sequence's key/value caches, and one encoder pass (its
// position bias, projections and FFN rows).
double serving_bytes(const ModelConfig& c, int batch, int input, int new_tokens) {
  const double inner = c.inner_dim(), S = input;
  const double caches = double(c.num_decoder_layers) * inner * 2 * (double(new_tokens) + 1 + S);
  const double encoder = S * (c.num_heads * S + 4 * inner + 3.0 * c.d_model + c.d_ff);
  return 4.0 * batch * (caches + encoder);
}

// Prompts longer than the limit keep their first tokens, and end with end-of-sequence where they
// did (as a tokenizer truncating to a maximum length does).
void GenerateCommand::truncate_inputs(int eos_token_id) {
  const size_t limit = size_t(max_input_tokens_);
  size_t cut = 0;
  for (auto& r : requests_) {
    if (r.input_ids.size() <= limit) continue;
    const bool ended = r.input_ids.back() == eos_token_id;
    r.input_ids.resize(limit);
    if (ended) r.input_ids.back() = eos_token_id;
    ++cut;
  }
  if (cut > 0)
    std::printf("--truncate-input: %zu of %zu prompts cut to %zu tokens\n", cut, requests_.size(),
                limit);
}

// Limits named before any work: a prompt too long, or a batch whose caches cannot fit.
void GenerateCommand::check_limits(const ModelConfig& c) const {
  size_t longest = 0;
  for (const auto& r : requests_) {
    MOE_CHECK(r.input_ids.size() <= size_t(max_input_tokens_), input_, ":", r.line, ": ",
              r.input_ids.size(), " input tokens, more than --max-input-tokens ",
              max_input_tokens_);
    longest = std::max(longest, r.input_ids.size());
  }
  const double need = serving_bytes(c, options_.batch_size, int(longest), options_.max_new_tokens);
  const double available = double(available_memory_bytes());
  const auto gib = [](double bytes) { return std::round(bytes / (1 << 30) * 10) / 10; };
  MOE_CHECK(available == 0 || need <= available, "a batch of ", options_.batch_size,
            " with inputs of up to ", longest, " tokens and --max-new-tokens ",
            options_.max_new_tokens, " needs about ", gib(need), " GiB beyond the weights; ",
            gib(available), " GiB are available: lower --batch-size or --max-new-tokens");
}

sim::ServingLayout GenerateCommand::serving_layout(const RunPlan& plan) const {
  return {plan.attention_ranks, plan.expert_ranks(),     plan.micro_batches,
          options_.batch_size,  options_.admit_per_step, plan.colocated};
}

// The input lengths of the requests this run answers, `requests` of them.
sim::ServingWorkload GenerateCommand::serving_workload(int requests, int new_tokens) const {
  sim::ServingWorkload w;
  for (size_t i = size_t(first_new_); i < requests_.size() && int(w.input_tokens.size()) < requests;
       ++i)
    w.input_tokens.push_back(int(requests_[i].input_ids.size()));
  w.new_tokens = new_tokens;
  return w;
}

std::vector<std::string> hosts_of(const World& world) {
  std::vector<std::string> hosts;
  for (int r = 0; r < world.size(); ++r) hosts.push_back(world.host_of(r));
  return hosts;
}

// --micro-batches 0 (the default) with a profile whose serving curves describe the run: the
// count the serving model predicts fastest for these requests, instead of the rule of thumb.
void GenerateCommand::settle(const World& world, CheckedRun& run) {
  RunPlan& plan = run.plan;
  const int left = int(requests_.size() - size_t(first_new_));
  if (run_options_.micro_batches != 0 || plan.expert_ranks() == 0 || left == 0 ||
      plan.profile_path.empty())
    return;
  const std::string mismatch = serving_curves_mismatch(run.profile, plan, run_options_.threads);
  if (!mismatch.empty()) {
    std::printf("micro-batches: %d, from the batch size (no serving model: %s)\n",
                plan.micro_batches, mismatch.c_str());
    return;
  }
  constexpr int kMostMicroBatches = 4;
  std::vector<int> counts;
  for (int m = 1; m <= std::min(kMostMicroBatches, options_.batch_size); ++m) counts.push_back(m);
  std::vector<sim::ServingPrediction> predicted;
  try {
    plan.micro_batches = choose_micro_batches(
        run.profile, serving_layout(plan), serving_workload(left, options_.max_new_tokens),
        serving_host(run.profile, hosts_of(world)), counts, &predicted);
  } catch (const std::exception& e) {  // a profile the model cannot use leaves the rule of thumb
    std::printf("micro-batches: %d, from the batch size (no serving model: %s: %s)\n",
                plan.micro_batches, plan.profile_path.c_str(), e.what());
    return;
  }
  std::string rates;
  for (size_t i = 0; i < predicted.size(); ++i)
    rates += (i ? ", " : "") + std::to_string(int(std::lround(predicted[i].tokens_per_s))) +
             " at " + std::to_string(i + 1);
  std::printf("micro-batches: %d, chosen by the serving model (predicted tokens/s: %s)\n",
              plan.micro_batches, rates.c_str());
}

void GenerateCommand::compare_with_model(Coordinator& coordinator, double seconds) const {
  const CheckedRun& run = coordinator.run();
  if (run.plan.profile_path.empty() || answered_ == 0) return;
  const std::string mismatch = serving_curves_mismatch(run.profile, run.plan, run_options_.threads);
  if (!mismatch.empty()) {
    std::printf("serving model: no prediction (%s)\n", mismatch.c_str());
    return;
  }
  // Every request as long as their mean answer: the model runs each to its limit.
  const int new_tokens = std::max(1, int(std::lround(double(generated_) / double(answered_))));
  const sim::ServingWorkload workload = serving_workload(int(answered_), new_tokens);
  sim::ServingPrediction p;
  try {
    p = sim::predict_serving(run.profile, serving_layout(run.plan), workload,
                             serving_host(run.profile, hosts_of(coordinator.world())));
  } catch (const std::exception& e) {  // the run's answers are in: only the prediction is lost
    std::printf("serving model: no prediction (%s: %s)\n", run.plan.profile_path.c_str(), e.what());
    return;
  }
  const double measured = double(generated_) / std::max(seconds, 1e-9);
  std::printf(
      "serving model: predicted %.1f tokens/s (%.3f s; decode step %.2f ms; attention ranks "
      "busy %.0f%%, expert ranks %.0f%%), measured %.1f tokens/s (%.3f s): %+.1f%%\n",
      p.tokens_per_s, p.seconds, p.decode_step_ms, 100 * p.attention_busy, 100 * p.experts_busy,
      measured, seconds, 100 * (p.tokens_per_s / measured - 1));
}

// Rank 0 deals the requests not yet answered round-robin over the attention ranks, serves its
// own share and takes the others' answers as they stream in (between its own, and at the end);
// another attention rank serves the share it is handed and streams its answers back.
void GenerateCommand::serve_all(Coordinator& c) {
  const int M = c.plan().attention_ranks;
  const double wait_s = c.plan().deadline_seconds * 10;
  if (!c.is_lead()) {
    const auto share = decode_message<RequestShare>(
        receive_control(c.world(), 0, Deadline::after(wait_s),
                        "waiting for rank 0 to hand out the requests", kShareTag));
    BackgroundSends sends(c.world());
    ResultShare chunk;
    auto since = Clock::now();
    const auto send = [&](bool last) {
      chunk.last = last;
      sends.send(0, chunk, kShareTag);
      chunk.results.clear();
      since = Clock::now();
    };
    serve_requests(c, share.requests, options_, [&](const GenerationResult& r) {
      chunk.results.push_back(r);
      if (chunk.results.size() >= kResultsPerShare || seconds_since(since) >= kShareSeconds)
        send(false);
    });
    send(true);
    // A co-located rank serves the others' experts until rank 0 has taken every answer.
    if (c.serves_experts())
      c.wait_serving([&] { return sends.delivered(); }, wait_s, "handing rank 0 the answers");
    else
      sends.wait_all(Deadline::after(wait_s), "handing rank 0 the answers");
    return;
  }
  std::vector<RequestShare> shares(M);
  for (size_t i = size_t(next_); i < requests_.size(); ++i)
    shares[(i - size_t(next_)) % M].requests.push_back({int64_t(i), requests_[i].input_ids});
  for (int a = 1; a < M; ++a) {
    send_control(a, shares[a], kShareTag);
    shares[a] = {};
  }
  int streaming = M - 1;  // attention ranks whose last share has not come
  const auto take_share = [&](const Envelope& e) {
    const auto share = decode_message<ResultShare>(e);
    for (const auto& r : share.results) take(r, c.tokenizer());
    if (share.last) --streaming;
  };
  serve_requests(c, shares[0].requests, options_, [&](const GenerationResult& r) {
    take(r, c.tokenizer());
    while (streaming > 0) {
      const auto e = try_receive_control(c.world(), kAnySource, kShareTag);
      if (!e) break;
      take_share(*e);
    }
  });
  const std::string doing = "waiting for the other attention ranks' answers";
  while (streaming > 0) {
    if (!c.serves_experts()) {
      take_share(receive_control(c.world(), kAnySource, Deadline::after(wait_s), doing, kShareTag));
      continue;
    }
    // Co-located: this rank's experts serve the other ranks' sequences meanwhile.
    std::optional<Envelope> share;
    c.wait_serving(
        [&] { return (share = try_receive_control(c.world(), kAnySource, kShareTag)).has_value(); },
        wait_s, doing);
    take_share(*share);
  }
}

// An answer that finished (on rank 0): printed at once, counted, and written once every earlier
// one is.
void GenerateCommand::take(const GenerationResult& r, const Tokenizer* tokenizer) {
  print(r, tokenizer);
  generated_ += int64_t(r.output_ids.size());
  ++answered_;
  ttft_.add(r.ttft_ms);
  if (r.output_ids.size() > 1) tpot_.add(r.tpot_ms);
  if (!out_) return;
  waiting_.emplace(r.index, answer(r, tokenizer).dump());
  for (auto it = waiting_.begin(); it != waiting_.end() && it->first == next_;
       it = waiting_.erase(it), ++next_)
    out_->append(it->second);
}

void GenerateCommand::print(const GenerationResult& r, const Tokenizer* tokenizer) const {
  if (quiet_) return;
  const Request& request = requests_.at(r.index);
  const std::string said =
      tokenizer ? tokenizer->decode(r.output_ids) : nlohmann::json(r.output_ids).dump();
  const std::string asked =
      request.text.empty() ? nlohmann::json(request.input_ids).dump() : request.text;
  std::printf("[%s] %s -> %s\n", request.id.dump().c_str(), asked.c_str(), said.c_str());
  std::fflush(stdout);
}

// One output line.
nlohmann::json GenerateCommand::answer(const GenerationResult& r,
                                       const Tokenizer* tokenizer) const {
  const Request& request = requests_.at(r.index);
  nlohmann::json line = {{"id", request.id},
                         {"output_ids", r.output_ids},
                         {"input_tokens", request.input_ids.size()},
                         {"output_tokens", r.output_ids.size()},
                         {"queue_ms", r.queue_ms},
                         {"ttft_ms", r.ttft_ms},
                         {"tpot_ms", r.tpot_ms}};
  if (tokenizer) line["text"] = tokenizer->decode(r.output_ids);
  return line;
}

void GenerateCommand::summarise(double seconds, int attention_ranks) const {
  std::printf(
      "generated %lld tokens for %lld prompts in %.3f s: %.1f tokens/s (batch %d per attention "
      "rank, %d attention rank(s))\n",
      static_cast<long long>(generated_), static_cast<long long>(answered_), seconds,
      double(generated_) / std::max(seconds, 1e-9), options_.batch_size, attention_ranks);
  if (out_ && out_->lines_kept() > 0)
    std::printf("resumed: %ld prompts answered by the run before are in %s too\n",
                out_->lines_kept(), output_.c_str());
  std::printf(
      "time to first token p50 %.1f ms, p99 %.1f ms; time per output token p50 %.2f ms, p99 "
      "%.2f ms\n",
      ttft_.quantile(0.5), ttft_.quantile(0.99), tpot_.quantile(0.5), tpot_.quantile(0.99));
}

int GenerateCommand::coordinate(Coordinator& coordinator) {
  const auto start = Clock::now();
  try {
    serve_all(coordinator);
  } catch (...) {
    if (out_) {
      out_->flush();
      const long kept = out_->lines_kept() + out_->lines_written();
      if (kept > 0)
        std::fprintf(stderr,
                     "moe generate: %ld answers are kept in %s; the same command with --resume "
                     "continues the job\n",
                     kept, out_->partial_path().c_str());
    }
    throw;
  }
  const double seconds = seconds_since(start);
  if (coordinator.is_lead()) {
    MOE_CHECK(!out_ || (waiting_.empty() && size_t(next_) == requests_.size()),
              "internal: ", waiting_.size(), " answers wait for earlier ones at the end");
    if (out_) out_->finish();
    summarise(seconds, coordinator.plan().attention_ranks);
    compare_with_model(coordinator, seconds);
  }
  coordinator.finish(generated_, seconds);
  return 0;
}

}  // namespace

std::unique_ptr<DistributedCommand> make_generate_command() {
  return std::make_unique<GenerateCommand>();
}

}  // namespace moe
