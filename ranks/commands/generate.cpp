// moe generate: greedy generation for every prompt of a JSONL file, alone or under mpirun. Rank 0
// reads the prompts and hands every attention rank its share; each serves its share by
// continuous batching over its micro-batch lanes (ranks/serving.hpp); rank 0 collects and writes
// the answers in input order, with per-request latencies.
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cmath>
#include <cstdio>

#include "ranks/commands/commands.hpp"
#include "ranks/commands/requests.hpp"
#include "ranks/serving.hpp"
#include "router/statistics.hpp"
#include "runtime/atomic_file.hpp"
#include "runtime/error.hpp"
#include "runtime/mpi/control_plane.hpp"
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
        ("output", po::value(&output_), "JSONL results (written complete or not at all)")
        ("max-new-tokens", po::value(&options_.max_new_tokens)->default_value(32), "tokens to generate at most")
        ("batch-size", po::value(&options_.batch_size)->default_value(8),
         "sequences decoding at once per attention rank (continuous batching)")
        ("max-input-tokens", po::value(&max_input_tokens_)->default_value(512),
         "longest prompt accepted, in tokens (longer ones are refused before any work)")
        ("quiet", po::bool_switch(&quiet_), "do not print each answer");
    // clang-format on
  }

  void prepare(const World&, const ModelConfig& c) override {
    MOE_CHECK(options_.max_new_tokens >= 1, "--max-new-tokens must be >= 1");
    MOE_CHECK(options_.batch_size >= 1, "--batch-size must be >= 1");
    if (!output_.empty()) {  // before any work: a refused output would lose all of it
      check_output_path(output_);
      check_output_is_not(output_, input_);
    }
    const auto tokenizer =
        load_tokenizer_if_present(run_options_.model_dir, c.eos_token_id, c.pad_token_id);
    requests_ = read_requests(input_, c, tokenizer.get());
    check_limits(c);
    run_options_.serves = true;
    run_options_.batch_size = options_.batch_size;
  }

  int coordinate(Coordinator& coordinator) override;

 private:
  void check_limits(const ModelConfig& c) const;
  std::vector<GenerationResult> serve_all(Coordinator& coordinator);
  nlohmann::json answer(const GenerationResult& r, const Tokenizer* tokenizer) const;
  void print(const GenerationResult& r, const Tokenizer* tokenizer) const;
  void summarise(const std::vector<GenerationResult>& results, double seconds,
                 int attention_ranks) const;

  std::string input_, output_;
  ServeOptions options_;
  bool quiet_ = false;
  int max_input_tokens_ = 512;
  std::vector<Request> requests_;
};

// Bytes that serving `batch` sequences takes beyond the weights, with inputs of `input` tokens
// and `new_tokens` to generate: each sequence's key/value caches, and one encoder pass (its
// position bias, projections and FFN rows).
double serving_bytes(const ModelConfig& c, int batch, int input, int new_tokens) {
  const double inner = c.inner_dim(), S = input;
  const double caches = double(c.num_decoder_layers) * inner * 2 * (double(new_tokens) + 1 + S);
  const double encoder = S * (c.num_heads * S + 4 * inner + 3.0 * c.d_model + c.d_ff);
  return 4.0 * batch * (caches + encoder);
}

// Limits named before any work: a prompt too long, or a batch whose caches cannot fit.
void GenerateCommand::check_limits(const ModelConfig& c) const {
  MOE_CHECK(max_input_tokens_ >= 1, "--max-input-tokens must be >= 1");
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

// Rank 0 deals the requests round-robin over the attention ranks, serves its own share and
// gathers the others'; another attention rank serves the share it is handed.
std::vector<GenerationResult> GenerateCommand::serve_all(Coordinator& c) {
  const int M = c.plan().attention_ranks;
  const Deadline idle = Deadline::after(c.plan().deadline_seconds * 10);
  if (!c.is_lead()) {
    const auto share = decode_message<RequestShare>(receive_control(
        c.world(), 0, idle, "waiting for rank 0 to hand out the requests", kShareTag));
    send_control(0, ResultShare{serve_requests(c, share.requests, options_)}, kShareTag);
    return {};
  }
  std::vector<RequestShare> shares(M);
  for (size_t i = 0; i < requests_.size(); ++i)
    shares[i % M].requests.push_back({int64_t(i), requests_[i].input_ids});
  for (int a = 1; a < M; ++a) send_control(a, shares[a], kShareTag);
  // Answers are printed as they finish: rank 0's own at once, the others' as their shares come.
  const auto show = [&](const GenerationResult& r) { print(r, c.tokenizer()); };
  std::vector<GenerationResult> results = serve_requests(c, shares[0].requests, options_, show);
  for (int a = 1; a < M; ++a) {
    auto more = decode_message<ResultShare>(receive_control(
        c.world(), a, Deadline::after(c.plan().deadline_seconds * 10),
        "waiting for attention rank " + std::to_string(a) + "'s answers", kShareTag));
    for (auto& r : more.results) {
      show(r);
      results.push_back(std::move(r));
    }
  }
  std::sort(results.begin(), results.end(),
            [](const auto& a, const auto& b) { return a.index < b.index; });
  return results;
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

void GenerateCommand::summarise(const std::vector<GenerationResult>& results, double seconds,
                                int attention_ranks) const {
  int64_t generated = 0;
  std::vector<double> ttft, tpot;
  for (const auto& r : results) {
    generated += int64_t(r.output_ids.size());
    ttft.push_back(r.ttft_ms);
    if (r.output_ids.size() > 1) tpot.push_back(r.tpot_ms);
  }
  std::printf(
      "generated %lld tokens for %zu prompts in %.3f s: %.1f tokens/s (batch %d per attention "
      "rank, %d attention rank(s))\n",
      static_cast<long long>(generated), results.size(), seconds,
      generated / std::max(seconds, 1e-9), options_.batch_size, attention_ranks);
  std::printf(
      "time to first token p50 %.1f ms, p99 %.1f ms; time per output token p50 %.2f ms, p99 "
      "%.2f ms\n",
      median(ttft), percentile(ttft, 0.99), median(tpot), percentile(tpot, 0.99));
}

int GenerateCommand::coordinate(Coordinator& coordinator) {
  const auto start = Clock::now();
  const std::vector<GenerationResult> results = serve_all(coordinator);
  const double seconds = seconds_since(start);
  int64_t generated = 0;
  for (const auto& r : results) generated += int64_t(r.output_ids.size());
  if (coordinator.is_lead()) {
    std::vector<nlohmann::json> lines;
    for (const auto& r : results) lines.push_back(answer(r, coordinator.tokenizer()));
    if (!output_.empty()) write_jsonl(output_, lines);
    summarise(results, seconds, coordinator.plan().attention_ranks);
  }
  coordinator.finish(generated, seconds);
  return 0;
}

}  // namespace

std::unique_ptr<DistributedCommand> make_generate_command() {
  return std::make_unique<GenerateCommand>();
}

}  // namespace moe
