// A whole model loaded in this process: checkpoint, weights, device, tokenizer and the local
// expert executor, ready to hand to the encoder and decoder.
#pragma once

#include <memory>
#include <string>

#include "model/checkpoint.hpp"
#include "model/switch_model.hpp"
#include "model/tokenizer.hpp"
#include "model/weights.hpp"
#include "runtime/device.hpp"

namespace moe {

struct LocalModel {
  Checkpoint checkpoint;
  ModelWeights weights;
  std::unique_ptr<Device> device;
  LocalExpertExecutor executor;
  std::unique_ptr<Tokenizer> tokenizer;
  SwitchModel model;

  LocalModel(const std::string& dir, const std::string& device_spec)
      : checkpoint(dir),
        weights(load_weights(checkpoint)),
        device(make_device(device_spec)),
        executor(*device, checkpoint.config()),
        tokenizer(load_tokenizer_if_present(dir, checkpoint.config().eos_token_id,
                                            checkpoint.config().pad_token_id)),
        model{checkpoint.config(), weights, *device, executor, nullptr, {}} {}
  const ModelConfig& config() const { return checkpoint.config(); }
};

}  // namespace moe
