#include "model/weights.hpp"

#include "runtime/error.hpp"

namespace moe {
namespace {

struct Loader {
  const Checkpoint& ckpt;
  const ModelConfig& c;
  const LoadSelection& sel;

  Weight get(const std::string& name, std::vector<int64_t> shape) const {
    return ckpt.load(name, shape);
  }
  AttentionWeights attention(const std::string& p) const {
    const int64_t d = c.d_model, inner = c.inner_dim();
    return {get(p + ".q.weight", {inner, d}), get(p + ".k.weight", {inner, d}),
            get(p + ".v.weight", {inner, d}), get(p + ".o.weight", {d, inner})};
  }
  DenseFfnWeights ffn(const std::string& p) const {
    return {get(p + ".wi.weight", {c.d_ff, c.d_model}), get(p + ".wo.weight", {c.d_model, c.d_ff})};
  }
  void feed_forward(BlockWeights& block, const std::string& p, int& moe_layer,
                    int& dense_layer) const {
    if (sel.dense) block.ffn_norm = get(p + ".layer_norm.weight", {c.d_model});
    if (!block.sparse) {
      block.dense_layer = dense_layer++;
      if (sel.dense || (sel.dense_ffn_wanted && sel.dense_ffn_wanted(block.dense_layer)))
        block.dense = ffn(p + (c.family == ModelFamily::t5 ? ".DenseReluDense" : ".mlp"));
      return;
    }
    SparseFfnWeights& moe = block.moe;
    moe.moe_layer = moe_layer++;
    if (sel.dense) {
      moe.router = get(p + ".mlp.router.classifier.weight", {c.num_experts, c.d_model});
      if (c.router_bias) moe.router_bias = get(p + ".mlp.router.classifier.bias", {c.num_experts});
    }
    moe.experts.resize(c.num_experts);
    for (int e = 0; e < c.num_experts; ++e)
      if (!sel.expert_wanted || sel.expert_wanted(moe.moe_layer, e))
        moe.experts[e] = ffn(p + ".mlp.experts.expert_" + std::to_string(e));
  }
};

// HF 5.x ties the lm_head to shared.weight unless the checkpoint holds an lm_head.weight of its
// own (it then keeps that one, whatever tie_word_embeddings says); untied, one must be there.
std::string lm_head_name(const Checkpoint& ckpt) {
  return ckpt.has("lm_head.weight") || !ckpt.config().tie_word_embeddings ? "lm_head.weight"
                                                                          : "shared.weight";
}

}  // namespace

int count_moe_layers(const ModelConfig& c) {
  int n = 0;
  for (int i = 0; i < c.num_layers; ++i) n += c.encoder_block_is_sparse(i);
  for (int i = 0; i < c.num_decoder_layers; ++i) n += c.decoder_block_is_sparse(i);
  return n;
}

std::string expert_prefix(const ModelConfig& c, int moe_layer, int expert) {
  int n = 0;
  for (int i = 0; i < c.num_layers; ++i)
    if (c.encoder_block_is_sparse(i) && n++ == moe_layer)
      return "encoder.block." + std::to_string(i) + ".layer.1.mlp.experts.expert_" +
             std::to_string(expert);
  for (int i = 0; i < c.num_decoder_layers; ++i)
    if (c.decoder_block_is_sparse(i) && n++ == moe_layer)
      return "decoder.block." + std::to_string(i) + ".layer.2.mlp.experts.expert_" +
             std::to_string(expert);
  MOE_FAIL("sparse layer ", moe_layer, " does not exist (the model has ", n, ")");
}

ModelWeights load_weights(const Checkpoint& ckpt, const LoadSelection& sel) {
  const ModelConfig& c = ckpt.config();
  Loader L{ckpt, c, sel};
  ModelWeights w;
  const int64_t d = c.d_model;
  if (sel.dense) {
    const Weight shared = L.get("shared.weight", {c.vocab_size, d});
    auto embedding = [&](const std::string& name) {
      return ckpt.has(name) ? L.get(name, {c.vocab_size, d}) : shared;
    };
    w.encoder_embedding = embedding("encoder.embed_tokens.weight");
    w.decoder_embedding = embedding("decoder.embed_tokens.weight");
    w.encoder_relative_bias =
        L.get("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
              {c.relative_attention_num_buckets, c.num_heads});
    w.decoder_relative_bias =
        L.get("decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
              {c.relative_attention_num_buckets, c.num_heads});
    w.encoder_final_norm = L.get("encoder.final_layer_norm.weight", {d});
    w.decoder_final_norm = L.get("decoder.final_layer_norm.weight", {d});
    w.lm_head =
        lm_head_name(ckpt) == "shared.weight" ? shared : L.get("lm_head.weight", {c.vocab_size, d});
  } else if (sel.lm_head) {
    w.lm_head = L.get(lm_head_name(ckpt), {c.vocab_size, d});
  }
  int moe_layer = 0, dense_layer = 0;
  w.encoder.resize(c.num_layers);
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = "encoder.block." + std::to_string(i);
    BlockWeights& b = w.encoder[i];
    b.sparse = c.encoder_block_is_sparse(i);
    if (sel.dense) {
      b.self_attn_norm = L.get(p + ".layer.0.layer_norm.weight", {d});
      b.self_attn = L.attention(p + ".layer.0.SelfAttention");
    }
    L.feed_forward(b, p + ".layer.1", moe_layer, dense_layer);
  }
  w.decoder.resize(c.num_decoder_layers);
  for (int i = 0; i < c.num_decoder_layers; ++i) {
    const std::string p = "decoder.block." + std::to_string(i);
    BlockWeights& b = w.decoder[i];
    b.sparse = c.decoder_block_is_sparse(i);
    if (sel.dense) {
      b.self_attn_norm = L.get(p + ".layer.0.layer_norm.weight", {d});
      b.self_attn = L.attention(p + ".layer.0.SelfAttention");
      b.cross_attn_norm = L.get(p + ".layer.1.layer_norm.weight", {d});
      b.cross_attn = L.attention(p + ".layer.1.EncDecAttention");
    }
    L.feed_forward(b, p + ".layer.2", moe_layer, dense_layer);
  }
  w.num_moe_layers = moe_layer;
  return w;
}

}  // namespace moe
