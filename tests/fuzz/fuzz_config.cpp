// A model's config.json from untrusted bytes: every field's type and range is checked.
#include <nlohmann/json.hpp>

#include "model/config.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  moe::fuzz::expect_clean_refusal([&] {
    const auto json = nlohmann::json::parse(data, data + size);
    moe::parse_model_config(json, "config.json");
  });
  return 0;
}
