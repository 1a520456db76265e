// Every weight of a Switch Transformer (or a dense T5: no sparse block), loaded and shape-checked
// from a Checkpoint. A rank may load only some parts: the dense model (attention, norms, routers,
// embeddings) and/or a chosen subset of experts.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "model/checkpoint.hpp"
#include "runtime/device.hpp"

namespace moe {

struct AttentionWeights {
  Weight q, k, v;  // [inner_dim, d_model]
  Weight o;        // [d_model, inner_dim]
};

struct DenseFfnWeights {
  Weight wi;  // [d_ff, d_model]
  Weight wo;  // [d_model, d_ff]
};

struct SparseFfnWeights {
  int moe_layer = -1;  // index among all sparse layers: encoder's first, then decoder's
  Weight router;       // [num_experts, d_model]
  Weight router_bias;  // [num_experts] or null
  std::vector<DenseFfnWeights> experts;  // [num_experts]; wi/wo null where not resident
  ExpertWeights expert(int e) const { return {experts[e].wi.get(), experts[e].wo.get()}; }
  bool resident(int e) const { return experts[e].wi != nullptr; }
};

struct BlockWeights {
  Weight self_attn_norm;  // [d_model]
  AttentionWeights self_attn;
  Weight cross_attn_norm;  // decoder only
  AttentionWeights cross_attn;
  Weight ffn_norm;
  bool sparse = false;
  int dense_layer = -1;   // when !sparse: its index among the model's dense blocks
  DenseFfnWeights dense;  // when !sparse
  SparseFfnWeights moe;   // when sparse
};

struct ModelWeights {
  // [vocab, d_model]: `shared.weight`, unless the checkpoint stores the stack's own
  // embed_tokens (HF 5.x does when tie_word_embeddings is false).
  Weight encoder_embedding, decoder_embedding;
  Weight encoder_relative_bias;  // [buckets, heads]
  Weight decoder_relative_bias;
  std::vector<BlockWeights> encoder;
  std::vector<BlockWeights> decoder;
  Weight encoder_final_norm, decoder_final_norm;
  Weight lm_head;  // [vocab, d_model]; the shared embedding when tied and none is stored
  int num_moe_layers = 0;
};

struct LoadSelection {
  bool dense = true;     // everything but the experts
  bool lm_head = false;  // the lm_head even without the rest (an expert rank's)
  // Which dense blocks' FFNs to load even without the rest (an expert rank's), by their index
  // among the dense blocks.
  std::function<bool(int dense_layer)> dense_ffn_wanted;
  // Which experts to load, by (moe_layer, expert); all when empty.
  std::function<bool(int moe_layer, int expert)> expert_wanted;
};

ModelWeights load_weights(const Checkpoint& checkpoint, const LoadSelection& selection = {});

// The HF tensor name prefix of a sparse layer's expert, e.g.
// "encoder.block.1.layer.1.mlp.experts.expert_3".
std::string expert_prefix(const ModelConfig& config, int moe_layer, int expert);
int count_moe_layers(const ModelConfig& config);

}  // namespace moe
