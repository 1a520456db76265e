// config.json validation: missing fields and impossible values are named.
#include "model/config.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "runtime/error.hpp"

namespace moe {
namespace {

nlohmann::json small_config() {
  return {{"vocab_size", 100},
          {"d_model", 32},
          {"d_ff", 64},
          {"d_kv", 8},
          {"num_heads", 4},
          {"num_layers", 4},
          {"num_decoder_layers", 2},
          {"num_experts", 8},
          {"expert_capacity", 4},
          {"encoder_sparse_step", 2},
          {"decoder_sparse_step", 1},
          {"relative_attention_num_buckets", 32},
          {"layer_norm_epsilon", 1e-6}};
}

std::string error_of(const nlohmann::json& j) {
  try {
    parse_model_config(j, "config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Config, SparseStepRuleMatchesHuggingFace) {
  const ModelConfig c = parse_model_config(small_config(), "config.json");
  EXPECT_FALSE(c.encoder_block_is_sparse(0));
  EXPECT_TRUE(c.encoder_block_is_sparse(1));
  EXPECT_FALSE(c.encoder_block_is_sparse(2));
  EXPECT_TRUE(c.encoder_block_is_sparse(3));
  EXPECT_TRUE(c.decoder_block_is_sparse(0));
  EXPECT_TRUE(c.decoder_block_is_sparse(1));
}

TEST(Config, SparseStepDerivedFromSparseLayerCountWhenAbsent) {
  auto j = small_config();
  j.erase("encoder_sparse_step");
  j["num_sparse_encoder_layers"] = 2;
  EXPECT_EQ(parse_model_config(j, "config.json").encoder_sparse_step, 2);
}

TEST(Config, MissingFieldIsNamed) {
  auto j = small_config();
  j.erase("d_model");
  EXPECT_NE(error_of(j).find("config.json: missing field 'd_model'"), std::string::npos);
}

TEST(Config, ImpossibleValueIsNamed) {
  auto j = small_config();
  j["num_heads"] = 0;
  EXPECT_NE(error_of(j).find("field 'num_heads' = 0 is out of range"), std::string::npos);
  j = small_config();
  j["d_ff"] = "wide";
  EXPECT_NE(error_of(j).find("field 'd_ff' must be an integer"), std::string::npos);
  j = small_config();
  j["eos_token_id"] = 100;
  EXPECT_NE(error_of(j).find("special token id 100 is >= vocab_size 100"), std::string::npos);
}

}  // namespace moe
