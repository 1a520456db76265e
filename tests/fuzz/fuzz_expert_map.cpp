// An expert map from untrusted bytes, for a model of 4 sparse layers of 8 experts on ranks 1..4:
// layers, experts and ranks must be in range and every expert placed.
#include <nlohmann/json.hpp>

#include "router/expert_map.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  moe::fuzz::expect_clean_refusal([&] {
    const auto json = nlohmann::json::parse(data, data + size);
    const auto map = moe::parse_expert_map(json, "map.json", 4, 8, 1, 5);
    moe::expert_map_to_json(map);
  });
  return 0;
}
