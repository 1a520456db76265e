#include "model/config.hpp"

#include <fstream>
#include <nlohmann/json.hpp>

#include "runtime/error.hpp"

namespace moe {
namespace {

using nlohmann::json;

int read_int(const json& j, const std::string& source, const char* field, int min_value) {
  MOE_CHECK(j.contains(field), source, ": missing field '", field, "'");
  const json& v = j.at(field);
  MOE_CHECK(v.is_number_integer(), source, ": field '", field, "' must be an integer, got ",
            v.dump());
  const long long value = v.get<long long>();
  MOE_CHECK(value >= min_value && value <= (1LL << 30), source, ": field '", field, "' = ", value,
            " is out of range (must be >= ", min_value, ")");
  return static_cast<int>(value);
}

int read_int_or(const json& j, const std::string& source, const char* field, int fallback,
                int min_value) {
  if (!j.contains(field) || j.at(field).is_null()) return fallback;
  return read_int(j, source, field, min_value);
}

bool read_bool_or(const json& j, const std::string& source, const char* field, bool fallback) {
  if (!j.contains(field)) return fallback;
  MOE_CHECK(j.at(field).is_boolean(), source, ": field '", field, "' must be true or false");
  return j.at(field).get<bool>();
}

std::string read_string_or(const json& j, const std::string& source, const char* field,
                           const std::string& fallback) {
  if (!j.contains(field) || j.at(field).is_null()) return fallback;
  MOE_CHECK(j.at(field).is_string(), source, ": field '", field, "' must be a string");
  return j.at(field).get<std::string>();
}

// HF derives the sparse step from num_sparse_*_layers unless config.json states it explicitly.
int sparse_step(const json& j, const std::string& source, const char* step_field,
                const char* count_field, int layers) {
  if (j.contains(step_field)) return read_int(j, source, step_field, 0);
  const int sparse_layers = read_int_or(j, source, count_field, 3, 0);
  return sparse_layers > 0 ? layers / sparse_layers : layers;
}

}  // namespace

ModelConfig parse_model_config(const json& j, const std::string& source) {
  MOE_CHECK(j.is_object(), source, ": expected a JSON object");
  ModelConfig c;
  c.vocab_size = read_int(j, source, "vocab_size", 1);
  c.d_model = read_int(j, source, "d_model", 1);
  c.d_ff = read_int(j, source, "d_ff", 1);
  c.d_kv = read_int(j, source, "d_kv", 1);
  c.num_heads = read_int(j, source, "num_heads", 1);
  c.num_layers = read_int(j, source, "num_layers", 1);
  c.num_decoder_layers = read_int_or(j, source, "num_decoder_layers", c.num_layers, 1);
  const std::string model_type = read_string_or(j, source, "model_type", "switch_transformers");
  MOE_CHECK(model_type == "switch_transformers" || model_type == "t5", source,
            ": field 'model_type' = '", model_type,
            "' is not supported (switch_transformers, or t5 with relu)");
  if (model_type == "t5") {
    // T5 v1.0: every block's FFN is dense. v1.1 and FLAN-T5 gate theirs (gelu(wi_0 x) * wi_1 x),
    // which the dense FFN here (wo(relu(wi x))) does not compute.
    c.family = ModelFamily::t5;
    const std::string proj = read_string_or(j, source, "feed_forward_proj", "relu");
    MOE_CHECK(proj.rfind("gated-", 0) != 0, source, ": field 'feed_forward_proj' = '", proj,
              "' is not supported: gated FFNs (T5 v1.1, FLAN-T5) are not implemented, only relu");
    MOE_CHECK(proj == "relu", source, ": field 'feed_forward_proj' = '", proj,
              "' is not supported (only relu)");
  } else {
    c.num_experts = read_int(j, source, "num_experts", 1);
    c.expert_capacity = read_int(j, source, "expert_capacity", 1);
    c.encoder_sparse_step =
        sparse_step(j, source, "encoder_sparse_step", "num_sparse_encoder_layers", c.num_layers);
    c.decoder_sparse_step = sparse_step(j, source, "decoder_sparse_step",
                                        "num_sparse_decoder_layers", c.num_decoder_layers);
  }
  c.relative_attention_num_buckets = read_int(j, source, "relative_attention_num_buckets", 2);
  c.relative_attention_max_distance =
      read_int_or(j, source, "relative_attention_max_distance", 128, 1);
  MOE_CHECK(j.contains("layer_norm_epsilon"), source, ": missing field 'layer_norm_epsilon'");
  MOE_CHECK(j.at("layer_norm_epsilon").is_number(), source,
            ": field 'layer_norm_epsilon' must be a number");
  const double eps = j.at("layer_norm_epsilon").get<double>();
  MOE_CHECK(eps > 0 && eps < 1, source, ": field 'layer_norm_epsilon' = ", eps,
            " must be in (0, 1)");
  c.layer_norm_epsilon = static_cast<float>(eps);
  c.router_bias = read_bool_or(j, source, "router_bias", false);
  c.tie_word_embeddings = read_bool_or(j, source, "tie_word_embeddings", true);
  // HF's T5Config takes the rescale from tie_word_embeddings unless scale_decoder_outputs is given
  // (transformers 5.x writes it, with tie_word_embeddings always true); Switch always from the tie.
  c.scale_decoder_output =
      c.family == ModelFamily::t5
          ? read_bool_or(j, source, "scale_decoder_outputs", c.tie_word_embeddings)
          : c.tie_word_embeddings;
  c.pad_token_id = read_int_or(j, source, "pad_token_id", 0, 0);
  c.eos_token_id = read_int_or(j, source, "eos_token_id", 1, 0);
  c.decoder_start_token_id = read_int_or(j, source, "decoder_start_token_id", c.pad_token_id, 0);

  const std::string act = read_string_or(j, source, "dense_act_fn", "relu");
  MOE_CHECK(act == "relu", source, ": field 'dense_act_fn' = '", act,
            "' is not supported (only relu)");
  MOE_CHECK(!read_bool_or(j, source, "is_gated_act", false), source,
            ": field 'is_gated_act' = true is not supported");
  const std::string router_dtype = read_string_or(j, source, "router_dtype", "float32");
  MOE_CHECK(router_dtype == "float32", source, ": field 'router_dtype' = '", router_dtype,
            "' is not supported (only float32)");
  for (int id : {c.pad_token_id, c.eos_token_id, c.decoder_start_token_id})
    MOE_CHECK(id < c.vocab_size, source, ": special token id ", id, " is >= vocab_size ",
              c.vocab_size);
  MOE_CHECK(c.relative_attention_num_buckets % 2 == 0, source,
            ": field 'relative_attention_num_buckets' must be even");
  return c;
}

ModelConfig load_model_config(const std::string& path) {
  std::ifstream in(path);
  MOE_CHECK(in.good(), path, ": cannot open");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::parse_error& e) {
    MOE_FAIL(path, ": not valid JSON: ", e.what());
  }
  return parse_model_config(j, path);
}

}  // namespace moe
