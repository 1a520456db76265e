// moe generate: greedy generation for every prompt of a JSONL file, in batches; alone or under
// mpirun (rank 0 coordinates, the other ranks serve experts).
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cstdio>

#include "model/generation.hpp"
#include "ranks/commands/commands.hpp"
#include "ranks/commands/requests.hpp"
#include "runtime/error.hpp"

namespace moe {
namespace po = boost::program_options;

namespace {

class GenerateCommand final : public DistributedCommand {
 public:
  void add_options(po::options_description& opts) override {
    // clang-format off
    opts.add_options()
        ("input", po::value(&input_)->required(), "JSONL: {\"id\", \"input_ids\"|\"text\"} per line")
        ("output", po::value(&output_), "JSONL results (written complete or not at all)")
        ("max-new-tokens", po::value(&max_new_tokens_)->default_value(32), "tokens to generate at most")
        ("batch-size", po::value(&batch_size_)->default_value(8), "prompts per batch")
        ("quiet", po::bool_switch(&quiet_), "do not print each answer");
    // clang-format on
  }

  void prepare(const World&, const ModelConfig& c) override {
    MOE_CHECK(max_new_tokens_ >= 1, "--max-new-tokens must be >= 1");
    MOE_CHECK(batch_size_ >= 1, "--batch-size must be >= 1");
    const auto tokenizer =
        load_tokenizer_if_present(run_options_.model_dir, c.eos_token_id, c.pad_token_id);
    requests_ = read_requests(input_, c, tokenizer.get());
  }

  int coordinate(Coordinator& coordinator) override;

 private:
  nlohmann::json answer(const Request& request, const std::vector<int>& ids,
                        const GenerationTimings& timings, const Tokenizer* tokenizer) const;

  std::string input_, output_;
  int max_new_tokens_ = 32, batch_size_ = 8;
  bool quiet_ = false;
  std::vector<Request> requests_;
};

// One output line; printed unless --quiet.
nlohmann::json GenerateCommand::answer(const Request& request, const std::vector<int>& ids,
                                       const GenerationTimings& timings,
                                       const Tokenizer* tokenizer) const {
  nlohmann::json line = {{"id", request.id},
                         {"output_ids", ids},
                         {"input_tokens", request.input_ids.size()},
                         {"output_tokens", ids.size()},
                         {"batch_encode_ms", timings.encode_seconds * 1e3},
                         {"batch_decode_ms", timings.decode_seconds * 1e3}};
  if (tokenizer) line["text"] = tokenizer->decode(ids);
  if (!quiet_) {
    const std::string said =
        tokenizer ? line["text"].get<std::string>() : line["output_ids"].dump();
    const std::string asked =
        request.text.empty() ? nlohmann::json(request.input_ids).dump() : request.text;
    std::printf("[%s] %s -> %s\n", request.id.dump().c_str(), asked.c_str(), said.c_str());
  }
  return line;
}

int GenerateCommand::coordinate(Coordinator& coordinator) {
  std::vector<nlohmann::json> results;
  const bool show_progress = isatty(STDERR_FILENO) && quiet_;
  int64_t generated = 0;
  const auto start = Clock::now();
  for (size_t first = 0; first < requests_.size(); first += batch_size_) {
    const size_t last = std::min(requests_.size(), first + size_t(batch_size_));
    std::vector<std::vector<int>> inputs;
    for (size_t i = first; i < last; ++i) inputs.push_back(requests_[i].input_ids);
    GenerationTimings timings;
    const auto outputs =
        generate_greedy(coordinator.model(), make_batch(inputs, coordinator.config().pad_token_id),
                        max_new_tokens_, &timings);
    for (size_t i = first; i < last; ++i) {
      generated += static_cast<int64_t>(outputs[i - first].size());
      results.push_back(answer(requests_[i], outputs[i - first], timings, coordinator.tokenizer()));
    }
    if (show_progress) {  // a terminal sees progress; batch logs stay quiet
      const double elapsed = seconds_since(start), done = double(last);
      std::fprintf(stderr, "\r[%zu/%zu prompts] %.1f tokens/s, %.0f s left   ", last,
                   requests_.size(), generated / std::max(elapsed, 1e-9),
                   elapsed / done * (requests_.size() - done));
    }
  }
  if (show_progress) std::fprintf(stderr, "\n");
  const double seconds = seconds_since(start);
  if (!output_.empty()) write_jsonl(output_, results);
  std::printf(
      "generated %lld tokens for %zu prompts in %.3f s: %.1f tokens/s (batch %d, %d rank(s))\n",
      static_cast<long long>(generated), requests_.size(), seconds,
      generated / std::max(seconds, 1e-9), batch_size_, coordinator.world().size());
  coordinator.finish(generated, seconds);
  return 0;
}

}  // namespace

std::unique_ptr<DistributedCommand> make_generate_command() {
  return std::make_unique<GenerateCommand>();
}

}  // namespace moe
