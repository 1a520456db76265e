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

// A T5ForConditionalGeneration config.json (v1.0), as transformers 5.x writes it: no expert field.
nlohmann::json t5_config() {
  return {{"model_type", "t5"},
          {"architectures", {"T5ForConditionalGeneration"}},
          {"vocab_size", 100},
          {"d_model", 32},
          {"d_ff", 64},
          {"d_kv", 8},
          {"num_heads", 4},
          {"num_layers", 3},
          {"num_decoder_layers", 2},
          {"relative_attention_num_buckets", 32},
          {"layer_norm_epsilon", 1e-6},
          {"feed_forward_proj", "relu"},
          {"dense_act_fn", "relu"},
          {"is_gated_act", false},
          {"tie_word_embeddings", true}};
}

TEST(Config, T5IsASwitchModelWithNoSparseBlock) {
  const ModelConfig c = parse_model_config(t5_config(), "config.json");
  EXPECT_EQ(c.family, ModelFamily::t5);
  EXPECT_EQ(c.num_experts, 0);
  for (int i = 0; i < c.num_layers; ++i) EXPECT_FALSE(c.encoder_block_is_sparse(i)) << i;
  for (int i = 0; i < c.num_decoder_layers; ++i) EXPECT_FALSE(c.decoder_block_is_sparse(i)) << i;
  EXPECT_TRUE(c.scale_decoder_output);
  auto j = t5_config();
  j.erase("feed_forward_proj");  // T5Config's default is relu (the Hub's t5-base has no field)
  EXPECT_EQ(parse_model_config(j, "config.json").family, ModelFamily::t5);
}

// HF's T5Config: scale_decoder_outputs when written (transformers 5.x), else tie_word_embeddings.
// Switch rescales exactly when tied.
TEST(Config, DecoderOutputRescaleFollowsHuggingFacePerModelType) {
  auto j = t5_config();
  j["scale_decoder_outputs"] = false;
  EXPECT_FALSE(parse_model_config(j, "config.json").scale_decoder_output);
  j = t5_config();
  j["tie_word_embeddings"] = false;
  EXPECT_FALSE(parse_model_config(j, "config.json").scale_decoder_output);
  j["scale_decoder_outputs"] = true;
  EXPECT_TRUE(parse_model_config(j, "config.json").scale_decoder_output);
  j = small_config();
  EXPECT_TRUE(parse_model_config(j, "config.json").scale_decoder_output);
  j["tie_word_embeddings"] = false;
  j["scale_decoder_outputs"] = true;  // not a Switch field: ignored
  EXPECT_FALSE(parse_model_config(j, "config.json").scale_decoder_output);
}

TEST(Config, GatedOrNonReluT5IsRefusedNamingTheField) {
  auto refused = [](const std::string& field, const nlohmann::json& value,
                    const std::string& text) {
    auto j = t5_config();
    j[field] = value;
    EXPECT_NE(error_of(j).find(text), std::string::npos) << error_of(j);
  };
  // T5 v1.1, FLAN-T5
  refused("feed_forward_proj", "gated-gelu",
          "config.json: field 'feed_forward_proj' = 'gated-gelu' is not supported: gated FFNs "
          "(T5 v1.1, FLAN-T5) are not implemented");
  refused("feed_forward_proj", "gelu",
          "config.json: field 'feed_forward_proj' = 'gelu' is not supported (only relu)");
  refused("feed_forward_proj", 7, "config.json: field 'feed_forward_proj' must be a string");
  refused("model_type", "mt5", "config.json: field 'model_type' = 'mt5' is not supported");
}

}  // namespace moe
