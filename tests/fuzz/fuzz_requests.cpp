// A JSONL file of requests from untrusted bytes, for the default model (its tokenizer turns
// "text" into ids): ids, token ids and texts are checked line by line.
#include "model/config.hpp"
#include "model/tokenizer.hpp"
#include "ranks/commands/requests.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string model = std::string(MOE_SOURCE_DIR) + "/configs/models/switch-tiny";
  static const moe::ModelConfig config = moe::load_model_config(model + "/config.json");
  static const auto tokenizer =
      moe::load_tokenizer_if_present(model, config.eos_token_id, config.pad_token_id);
  moe::fuzz::MemoryFile file(data, size);
  moe::fuzz::expect_clean_refusal(
      [&] { moe::read_requests(file.path(), config, tokenizer.get()); });
  return 0;
}
