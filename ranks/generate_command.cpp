// moe generate: greedy generation for every prompt of a JSONL file, in batches.
#include <chrono>
#include <cstdio>
#include <iostream>

#include <boost/program_options.hpp>

#include "model/generation.hpp"
#include "ranks/commands.hpp"
#include "ranks/local_model.hpp"
#include "ranks/requests.hpp"
#include "runtime/error.hpp"

namespace moe {
namespace po = boost::program_options;

int run_generate(const std::vector<std::string>& args) {
  std::string model_dir, input, output;
  int max_new_tokens = 32, threads = 1, batch_size = 8;
  bool quiet = false;
  po::options_description opts("moe generate options");
  opts.add_options()("help,h", "show this help")
      ("model", po::value(&model_dir)->required(), "model directory (config.json, *.safetensors)")
      ("input", po::value(&input)->required(), "JSONL: {\"id\", \"input_ids\"|\"text\"} per line")
      ("output", po::value(&output), "JSONL results (written complete or not at all)")
      ("max-new-tokens", po::value(&max_new_tokens)->default_value(32), "tokens to generate at most")
      ("batch-size", po::value(&batch_size)->default_value(8), "prompts per batch")
      ("threads", po::value(&threads)->default_value(1), "CPU threads (OpenBLAS and OpenMP)")
      ("quiet", po::bool_switch(&quiet), "do not print each answer");
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(opts).run(), vm);
  if (vm.count("help")) {
    std::cout << opts << "\n";
    return 0;
  }
  po::notify(vm);
  MOE_CHECK(max_new_tokens >= 1, "--max-new-tokens must be >= 1");
  MOE_CHECK(batch_size >= 1, "--batch-size must be >= 1");

  LocalModel lm(model_dir, "cpu:" + std::to_string(threads));
  const auto requests = read_requests(input, lm.config(), lm.tokenizer.get());

  std::vector<nlohmann::json> results;
  long long generated = 0;
  double busy_seconds = 0;
  for (size_t first = 0; first < requests.size(); first += batch_size) {
    const size_t last = std::min(requests.size(), first + size_t(batch_size));
    std::vector<std::vector<int>> inputs;
    for (size_t i = first; i < last; ++i) inputs.push_back(requests[i].input_ids);
    GenerationTimings timings;
    const auto outputs = generate_greedy(lm.model, make_batch(inputs, lm.config().pad_token_id),
                                         max_new_tokens, &timings);
    const double seconds = timings.encode_seconds + timings.decode_seconds;
    busy_seconds += seconds;
    for (size_t i = first; i < last; ++i) {
      const auto& ids = outputs[i - first];
      generated += static_cast<long long>(ids.size());
      nlohmann::json line = {{"id", requests[i].id},
                             {"output_ids", ids},
                             {"input_tokens", requests[i].input_ids.size()},
                             {"output_tokens", ids.size()},
                             {"batch_encode_ms", timings.encode_seconds * 1e3},
                             {"batch_decode_ms", timings.decode_seconds * 1e3}};
      if (lm.tokenizer) line["text"] = lm.tokenizer->decode(ids);
      if (!quiet) {
        const std::string shown = lm.tokenizer ? line["text"].get<std::string>() : line["output_ids"].dump();
        const std::string asked = requests[i].text.empty() ? nlohmann::json(requests[i].input_ids).dump()
                                                           : requests[i].text;
        std::printf("[%s] %s -> %s\n", requests[i].id.dump().c_str(), asked.c_str(), shown.c_str());
      }
      results.push_back(std::move(line));
    }
  }
  if (!output.empty()) write_jsonl(output, results);
  std::printf("generated %lld tokens for %zu prompts in %.3f s: %.1f tokens/s (batch %d, %d threads)\n",
              generated, requests.size(), busy_seconds, generated / std::max(busy_seconds, 1e-9),
              batch_size, threads);
  return 0;
}

}  // namespace moe
