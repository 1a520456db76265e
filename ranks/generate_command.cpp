// moe generate: greedy generation for every prompt of a JSONL file, in batches; alone or under
// mpirun (rank 0 coordinates, the other ranks serve experts).
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include <boost/program_options.hpp>

#include "model/generation.hpp"
#include "ranks/command_line.hpp"
#include "ranks/commands.hpp"
#include "ranks/requests.hpp"
#include "ranks/session.hpp"
#include "runtime/error.hpp"

namespace moe {
namespace po = boost::program_options;

int run_generate(World& world, const std::vector<std::string>& args) {
  SessionOptions session_options;
  std::string input, output;
  int max_new_tokens = 32, batch_size = 8;
  bool quiet = false;
  po::options_description opts("moe generate options");
  opts.add_options()("help,h", "show this help");
  session_options.add_to(opts);
  opts.add_options()
      ("input", po::value(&input)->required(), "JSONL: {\"id\", \"input_ids\"|\"text\"} per line")
      ("output", po::value(&output), "JSONL results (written complete or not at all)")
      ("max-new-tokens", po::value(&max_new_tokens)->default_value(32), "tokens to generate at most")
      ("batch-size", po::value(&batch_size)->default_value(8), "prompts per batch")
      ("quiet", po::bool_switch(&quiet), "do not print each answer");
  if (!parse_command_line(world, opts, args)) return 0;

  std::vector<Request> requests;
  std::unique_ptr<Tokenizer> tokenizer;
  session_options.check_inputs = [&](const ModelConfig& c) {
    MOE_CHECK(max_new_tokens >= 1, "--max-new-tokens must be >= 1");
    MOE_CHECK(batch_size >= 1, "--batch-size must be >= 1");
    tokenizer = load_tokenizer_if_present(session_options.model_dir, c.eos_token_id, c.pad_token_id);
    requests = read_requests(input, c, tokenizer.get());
  };
  Session session(world, session_options);
  if (!session.is_coordinator()) return session.exit_code();

  std::vector<nlohmann::json> results;
  const bool show_progress = isatty(STDERR_FILENO) && quiet;
  int64_t generated = 0;
  const auto start = Clock::now();
  for (size_t first = 0; first < requests.size(); first += batch_size) {
    const size_t last = std::min(requests.size(), first + size_t(batch_size));
    std::vector<std::vector<int>> inputs;
    for (size_t i = first; i < last; ++i) inputs.push_back(requests[i].input_ids);
    GenerationTimings timings;
    const auto outputs = generate_greedy(session.model(), make_batch(inputs, session.config().pad_token_id),
                                         max_new_tokens, &timings);
    for (size_t i = first; i < last; ++i) {
      const auto& ids = outputs[i - first];
      generated += static_cast<int64_t>(ids.size());
      nlohmann::json line = {{"id", requests[i].id},
                             {"output_ids", ids},
                             {"input_tokens", requests[i].input_ids.size()},
                             {"output_tokens", ids.size()},
                             {"batch_encode_ms", timings.encode_seconds * 1e3},
                             {"batch_decode_ms", timings.decode_seconds * 1e3}};
      if (tokenizer) line["text"] = tokenizer->decode(ids);
      if (!quiet) {
        const std::string answer = tokenizer ? line["text"].get<std::string>() : line["output_ids"].dump();
        const std::string asked =
            requests[i].text.empty() ? nlohmann::json(requests[i].input_ids).dump() : requests[i].text;
        std::printf("[%s] %s -> %s\n", requests[i].id.dump().c_str(), asked.c_str(), answer.c_str());
      }
      results.push_back(std::move(line));
    }
    if (show_progress) {  // a terminal sees progress; batch logs stay quiet
      const double elapsed = seconds_since(start), done = double(last);
      std::fprintf(stderr, "\r[%zu/%zu prompts] %.1f tokens/s, %.0f s left   ", last, requests.size(),
                   generated / std::max(elapsed, 1e-9), elapsed / done * (requests.size() - done));
    }
  }
  if (show_progress) std::fprintf(stderr, "\n");
  const double seconds = seconds_since(start);
  if (!output.empty()) write_jsonl(output, results);
  std::printf("generated %lld tokens for %zu prompts in %.3f s: %.1f tokens/s (batch %d, %d rank(s))\n",
              static_cast<long long>(generated), requests.size(), seconds,
              generated / std::max(seconds, 1e-9), batch_size, world.size());
  session.finish(generated, seconds);
  return 0;
}

}  // namespace moe
