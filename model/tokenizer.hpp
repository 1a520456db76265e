// Text ↔ token ids through SentencePiece (the model directory's spiece.model), with T5's
// conventions: an encoded input ends with eos; decoding drops pad and eos.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace moe {

class Tokenizer {
 public:
  // Loads `path` (a spiece.model); eos and pad ids come from the model config.
  Tokenizer(const std::string& path, int eos_token_id, int pad_token_id);
  ~Tokenizer();
  std::vector<int> encode(const std::string& text) const;
  std::string decode(const std::vector<int>& ids) const;
  int vocab_size() const;

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::string path_;  // for messages
  int eos_, pad_;
};

// The tokenizer of a model directory, or null when it has no spiece.model.
std::unique_ptr<Tokenizer> load_tokenizer_if_present(const std::string& model_dir, int eos_token_id,
                                                     int pad_token_id);

}  // namespace moe
