// End to end: the model's encoder and greedy generation on a Hugging Face fixture with a
// CudaDevice in place of the CpuDevice. Encoder states must agree with the CPU run and with
// Hugging Face within 1e-4 absolute (the fixtures' tolerance); router choices and generated ids
// exactly.
#include "model/encoder.hpp"

#include <gtest/gtest.h>

#include <filesystem>

#include "cuda_test_support.hpp"
#include "model/checkpoint.hpp"
#include "model/generation.hpp"
#include "model/safetensors.hpp"
#include "model/weights.hpp"
#include "runtime/cpu/cpu_device.hpp"

namespace moe {
namespace {

constexpr double kTolerance = 1e-4;

std::string fixture(const std::string& name) {
  return std::string(MOE_SOURCE_DIR) + "/tests/reference/fixtures/" + name;
}

struct EncoderRun {
  EncoderOutput encoder;
  std::vector<GateResult> gates;
};

class CudaEndToEnd : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    MOE_SKIP_WITHOUT_GPU();
    dir_ = fixture(GetParam());
    ASSERT_TRUE(std::filesystem::exists(dir_ + "/expected.safetensors")) << dir_;
    checkpoint_ = std::make_unique<Checkpoint>(dir_ + "/model");
    weights_ = load_weights(*checkpoint_);
    expected_ = std::make_unique<SafetensorsFile>(dir_ + "/expected.safetensors");
    const auto& ids_info = expected_->info("input_ids");
    const auto ids = expected_->as_int64(ids_info);
    const auto mask = expected_->as_int64(expected_->info("attention_mask"));
    const int64_t B = ids_info.shape[0], S = ids_info.shape[1];
    std::vector<std::vector<int>> inputs(B);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t s = 0; s < S; ++s)
        if (mask[b * S + s]) inputs[b].push_back(int(ids[b * S + s]));
    batch_ = make_batch(inputs, checkpoint_->config().pad_token_id);
  }

  EncoderRun encode_on(Device& device) {
    const ModelConfig& c = checkpoint_->config();
    LocalExpertExecutor executor(device, c);
    SwitchModel m{c, weights_, device, executor, nullptr, {}};
    EncoderRun run;
    m.on_route = [&](int, int, int, const std::vector<float>&, const GateResult& g) {
      run.gates.push_back(g);
    };
    run.encoder = encode(m, batch_);
    return run;
  }

  std::vector<std::vector<int>> generate_on(Device& device, int max_new) {
    const ModelConfig& c = checkpoint_->config();
    LocalExpertExecutor executor(device, c);
    SwitchModel m{c, weights_, device, executor, nullptr, {}};
    return generate_greedy(m, batch_, max_new);
  }

  std::string dir_;
  std::unique_ptr<Checkpoint> checkpoint_;
  ModelWeights weights_;
  std::unique_ptr<SafetensorsFile> expected_;
  Batch batch_;
};

TEST_P(CudaEndToEnd, EncoderOnCudaDeviceMatchesCpuDeviceAndHuggingFace) {
  CpuDevice cpu(4);
  CudaDevice gpu(0);
  const EncoderRun on_cpu = encode_on(cpu);
  const EncoderRun on_gpu = encode_on(gpu);
  EXPECT_LE(test::max_abs_diff(on_gpu.encoder.hidden, on_cpu.encoder.hidden), kTolerance);
  std::vector<float> storage;
  const auto& info = expected_->info("encoder_last_hidden_state");
  const float* hf = expected_->as_float32(info, storage);
  const std::vector<float> hf_hidden(hf, hf + info.numel());
  EXPECT_LE(test::max_abs_diff(on_gpu.encoder.hidden, hf_hidden), kTolerance);
  ASSERT_EQ(on_gpu.gates.size(), on_cpu.gates.size());
  for (size_t l = 0; l < on_cpu.gates.size(); ++l) {
    EXPECT_EQ(on_gpu.gates[l].expert, on_cpu.gates[l].expert) << "sparse layer " << l;
    EXPECT_EQ(on_gpu.gates[l].kept, on_cpu.gates[l].kept) << "sparse layer " << l;
  }
}

TEST_P(CudaEndToEnd, GreedyGenerationOnCudaDeviceEqualsCpuDevice) {
  CpuDevice cpu(4);
  CudaDevice gpu(0);
  const int max_new = int(expected_->as_int64(expected_->info("max_new_tokens")).at(0));
  EXPECT_EQ(generate_on(gpu, max_new), generate_on(cpu, max_new));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaEndToEnd,
                         ::testing::Values("switch8_f32", "switch4_drop_f32", "t5_dense_f32",
                                           "t5_untied_f32"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace moe
