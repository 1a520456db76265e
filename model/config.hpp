// The model's shape, read from a Hugging Face config.json and validated once, where it enters: a
// SwitchTransformersConfig, or a T5Config (v1.0, relu), which is a Switch model with no sparse
// layer.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>

namespace moe {

// Which Hugging Face model the checkpoint is: the names of its dense FFN tensors and how
// config.json says whether the decoder output is rescaled differ.
enum class ModelFamily { switch_transformers, t5 };

struct ModelConfig {
  ModelFamily family = ModelFamily::switch_transformers;
  int vocab_size = 0;
  int d_model = 0;
  int d_ff = 0;
  int d_kv = 0;
  int num_heads = 0;
  int num_layers = 0;           // encoder blocks
  int num_decoder_layers = 0;   // decoder blocks
  int num_experts = 0;          // 0 for T5: every block dense
  int expert_capacity = 0;      // tokens per expert per sequence
  int encoder_sparse_step = 0;  // 0: no sparse block
  int decoder_sparse_step = 0;
  int relative_attention_num_buckets = 0;
  int relative_attention_max_distance = 0;
  float layer_norm_epsilon = 0;
  bool router_bias = false;
  bool tie_word_embeddings = true;
  // logits = (dec_out * d_model**-0.5) · lm_headᵀ when set. Switch: tie_word_embeddings; T5:
  // scale_decoder_outputs, which HF 5.x writes (its tie_word_embeddings is then always true).
  bool scale_decoder_output = true;
  int decoder_start_token_id = 0;
  int eos_token_id = 1;
  int pad_token_id = 0;

  int inner_dim() const { return num_heads * d_kv; }
  // HF's rule (SwitchTransformersStack): block i is sparse when i % step == 1, or step == 1.
  bool encoder_block_is_sparse(int block) const { return is_sparse(block, encoder_sparse_step); }
  bool decoder_block_is_sparse(int block) const { return is_sparse(block, decoder_sparse_step); }

 private:
  static bool is_sparse(int block, int step) {
    return step > 0 && (block % step == 1 || step == 1);
  }
};

// Parses and validates; `source` names the file in error messages.
ModelConfig parse_model_config(const nlohmann::json& json, const std::string& source);
ModelConfig load_model_config(const std::string& config_json_path);

}  // namespace moe
