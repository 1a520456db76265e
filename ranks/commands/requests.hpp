// Requests read from a JSONL file: one object per line with an "id" and either "input_ids" or
// "text" (which needs the model's tokenizer), and for `forward` optionally "decoder_input_ids".
// Every id is checked against the vocabulary here, before any work starts.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/config.hpp"
#include "model/tokenizer.hpp"

namespace moe {

struct Request {
  nlohmann::json id;
  int line = 0;      // in the input, for messages
  std::string text;  // when given as text
  std::vector<int> input_ids;
  std::vector<int> decoder_input_ids;  // empty unless given
};

std::vector<Request> read_requests(const std::string& path, const ModelConfig& config,
                                   const Tokenizer* tokenizer);

}  // namespace moe
