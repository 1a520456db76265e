// The model against Hugging Face transformers: every fixture under tests/reference/fixtures was
// produced by make_reference.py. Hidden states and logits must agree within 1e-4 absolute; router
// choices, drops and greedy generations exactly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "model/checkpoint.hpp"
#include "model/generation.hpp"
#include "model/safetensors.hpp"
#include "model/weights.hpp"
#include "runtime/cpu/cpu_device.hpp"
#include "runtime/error.hpp"
#include "test_files.hpp"

namespace moe {
namespace {

constexpr float kTolerance = 1e-4f;

std::vector<std::string> fixture_names() {
  std::vector<std::string> names;
  const auto root = std::filesystem::path(MOE_SOURCE_DIR) / "tests/reference/fixtures";
  if (std::filesystem::exists(root))
    for (const auto& e : std::filesystem::directory_iterator(root))
      if (std::filesystem::exists(e.path() / "expected.safetensors"))
        names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

struct Expected {
  SafetensorsFile file;
  explicit Expected(const std::string& dir) : file(dir + "/expected.safetensors") {}
  std::vector<float> floats(const std::string& name) const {
    std::vector<float> storage;
    const auto& info = file.info(name);
    const float* p = file.as_float32(info, storage);
    return {p, p + info.numel()};
  }
  std::vector<int64_t> ints(const std::string& name) const {
    return file.as_int64(file.info(name));
  }
  std::vector<int64_t> shape(const std::string& name) const { return file.info(name).shape; }
};

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float worst = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    worst = std::max(worst, std::fabs(a[i] - b[i]));
  return worst;
}

class Reference : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = test::fixture_dir(GetParam());
    checkpoint_ = std::make_unique<Checkpoint>(dir_ + "/model");
    weights_ = load_weights(*checkpoint_);
    expected_ = std::make_unique<Expected>(dir_);
    const auto shape = expected_->shape("input_ids");
    const auto ids = expected_->ints("input_ids");
    const auto mask = expected_->ints("attention_mask");
    for (int64_t b = 0; b < shape[0]; ++b) {
      std::vector<int> seq;
      for (int64_t s = 0; s < shape[1]; ++s)
        if (mask[b * shape[1] + s]) seq.push_back(int(ids[b * shape[1] + s]));
      inputs_.push_back(seq);
    }
    padded_len_ = int(shape[1]);
  }
  // HF pads to the longest input in the batch: so do we, then check the lengths agree.
  Batch batch() const {
    Batch b = make_batch(inputs_, checkpoint_->config().pad_token_id);
    EXPECT_EQ(b.seq_len, padded_len_);
    return b;
  }
  const ModelConfig& config() const { return checkpoint_->config(); }
  // The decoder's logits for the fixture's decoder_input_ids over the encoder output `enc`.
  std::vector<float> teacher_forced_logits(SwitchModel& m, const EncoderOutput& enc) const {
    const auto shape = expected_->shape("decoder_input_ids");
    const auto ids64 = expected_->ints("decoder_input_ids");
    const std::vector<int> ids(ids64.begin(), ids64.end());
    std::vector<SequenceCache> caches = start_decoder(m, enc, int(shape[1]));
    std::vector<float> logits;
    decode(m, all_of(caches), ids, int(shape[1]), false, logits);
    return logits;
  }

  std::string dir_;
  std::unique_ptr<Checkpoint> checkpoint_;
  ModelWeights weights_;
  std::unique_ptr<Expected> expected_;
  std::vector<std::vector<int>> inputs_;
  int padded_len_ = 0;
  CpuDevice device_{1};
};

TEST_P(Reference, EncoderStatesLogitsAndRouterChoicesMatchHuggingFace) {
  const ModelConfig& c = config();
  LocalExpertExecutor executor(device_, c);
  SwitchModel m{c, weights_, device_, executor, nullptr, {}};
  m.compute_padding = true;  // HF's tensors hold the padding positions too
  std::vector<std::pair<std::string, GateResult>> gates;
  std::vector<std::vector<float>> router_logits;
  m.on_route = [&](int layer, int, int, const std::vector<float>& logits, const GateResult& g) {
    gates.push_back({std::to_string(layer), g});
    router_logits.push_back(logits);
  };
  const Batch b = batch();
  const EncoderOutput enc = encode(m, b);
  EXPECT_LT(max_abs_diff(enc.hidden, expected_->floats("encoder_last_hidden_state")), kTolerance);

  EXPECT_LT(max_abs_diff(teacher_forced_logits(m, enc), expected_->floats("logits")), kTolerance);

  // Sparse layers were called in order: encoder's, then decoder's.
  std::vector<std::string> names;
  for (int i = 0; i < c.num_layers; ++i)
    if (c.encoder_block_is_sparse(i)) names.push_back("encoder_%." + std::to_string(i));
  for (int i = 0; i < c.num_decoder_layers; ++i)
    if (c.decoder_block_is_sparse(i)) names.push_back("decoder_%." + std::to_string(i));
  ASSERT_EQ(gates.size(), names.size());
  int dropped = 0;
  for (size_t l = 0; l < names.size(); ++l) {
    auto name = [&](const std::string& what) {
      std::string n = names[l];
      return n.replace(n.find('%'), 1, what);
    };
    SCOPED_TRACE(name("router"));
    const auto hf_index = expected_->ints(name("expert_index"));
    const auto hf_kept = expected_->ints(name("router_kept"));
    const GateResult& g = gates[l].second;
    ASSERT_EQ(hf_index.size(), g.expert.size());
    for (size_t t = 0; t < g.expert.size(); ++t) {
      EXPECT_EQ(hf_kept[t], g.kept[t]) << "token " << t;
      // HF reports the argmax of the capacity-filtered mask: a dropped token reads expert 0.
      EXPECT_EQ(hf_index[t], g.kept[t] ? g.expert[t] : 0) << "token " << t;
      dropped += !g.kept[t];
    }
    EXPECT_LT(max_abs_diff(router_logits[l], expected_->floats(name("router_logits"))), kTolerance);
  }
  if (GetParam().find("drop") != std::string::npos) {
    EXPECT_GT(dropped, 0);
  }
}

// Serving skips the projections and FFNs of padding positions: every real position and the logits
// still equal HF.
TEST_P(Reference, SkippingPaddingKeepsEveryRealPositionEqualToHuggingFace) {
  const ModelConfig& c = config();
  LocalExpertExecutor executor(device_, c);
  SwitchModel m{c, weights_, device_, executor, nullptr, {}};
  const Batch b = batch();
  const EncoderOutput enc = encode(m, b);
  const auto hf = expected_->floats("encoder_last_hidden_state");
  ASSERT_EQ(hf.size(), enc.hidden.size());
  const int d = c.d_model;
  double worst = 0;
  int padding = 0;
  for (size_t t = 0; t < b.valid.size(); ++t) {
    padding += !b.valid[t];
    if (!b.valid[t]) continue;
    for (int i = 0; i < d; ++i)
      worst = std::max(worst, double(std::abs(enc.hidden[t * d + i] - hf[t * d + i])));
  }
  EXPECT_LT(worst, kTolerance);
  EXPECT_LT(max_abs_diff(teacher_forced_logits(m, enc), expected_->floats("logits")), kTolerance);
  EXPECT_GT(padding, 0) << "the fixture's batch has no padding to skip";
}

// With padding skipped, a sequence's encoder states do not depend on its batch: each real row
// is computed as when the sequence is encoded alone (the products take each row on its own, and
// its attention has its own queries and keys only), to the bit.
TEST_P(Reference, PaddedBatchEncodesEachSequenceAsAlone) {
  const ModelConfig& c = config();
  LocalExpertExecutor executor(device_, c);
  SwitchModel m{c, weights_, device_, executor, nullptr, {}};
  const Batch b = batch();
  const EncoderOutput together = encode(m, b);
  const int d = c.d_model;
  for (size_t s = 0; s < inputs_.size(); ++s) {
    SCOPED_TRACE("sequence " + std::to_string(s));
    const EncoderOutput alone = encode(m, make_batch({inputs_[s]}, c.pad_token_id));
    ASSERT_EQ(alone.hidden.size(), inputs_[s].size() * d);
    const float* row = together.hidden.data() + s * b.seq_len * d;
    EXPECT_TRUE(std::equal(alone.hidden.begin(), alone.hidden.end(), row));
  }
}

TEST_P(Reference, GreedyGenerationMatchesHuggingFace) {
  const ModelConfig& c = config();
  LocalExpertExecutor executor(device_, c);
  SwitchModel m{c, weights_, device_, executor, nullptr, {}};
  const int max_new = int(expected_->ints("max_new_tokens").at(0));
  const auto outputs = generate_greedy(m, batch(), max_new);
  const auto shape = expected_->shape("generated_ids");
  const auto hf = expected_->ints("generated_ids");
  ASSERT_EQ(size_t(shape[0]), outputs.size());
  for (size_t b = 0; b < outputs.size(); ++b) {
    std::vector<int> want;  // HF's row without the start token, cut after eos
    for (int64_t s = 1; s < shape[1]; ++s) {
      want.push_back(int(hf[b * shape[1] + s]));
      if (want.back() == c.eos_token_id) break;
    }
    EXPECT_EQ(outputs[b], want) << "sequence " << b;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Reference, ::testing::ValuesIn(fixture_names()),
                         [](const auto& info) { return info.param; });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Reference);

TEST(ReferenceFixtures, AllSixFixturesArePresent) {
  // A missing fixture must fail loudly, not shrink the suite: four Switch, two dense T5.
  EXPECT_GE(fixture_names().size(), 6u);
}

// The T5 fixtures load as models whose every block is dense, and the untied one's lm_head is its
// own stored tensor, not the shared embedding.
TEST(ReferenceFixtures, T5CheckpointsLoadWithNoSparseLayer) {
  for (const std::string name : {"t5_dense_f32", "t5_untied_f32"}) {
    SCOPED_TRACE(name);
    const Checkpoint checkpoint(test::fixture_dir(name) + "/model");
    const ModelWeights w = load_weights(checkpoint);
    EXPECT_EQ(checkpoint.config().family, ModelFamily::t5);
    EXPECT_EQ(w.num_moe_layers, 0);
    for (const auto* stack : {&w.encoder, &w.decoder})
      for (const BlockWeights& b : *stack) {
        EXPECT_FALSE(b.sparse);
        EXPECT_NE(b.dense.wi, nullptr);
      }
    EXPECT_EQ(w.lm_head == w.decoder_embedding, name == "t5_dense_f32");
  }
}

}  // namespace
}  // namespace moe
