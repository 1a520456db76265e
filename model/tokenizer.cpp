#include "model/tokenizer.hpp"

#include <sentencepiece_processor.h>

#include <filesystem>

#include "runtime/error.hpp"

namespace moe {

Tokenizer::Tokenizer(const std::string& path, int eos_token_id, int pad_token_id)
    : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()),
      path_(path),
      eos_(eos_token_id),
      pad_(pad_token_id) {
  const auto status = sp_->Load(path);
  MOE_CHECK(status.ok(), path, ": cannot load SentencePiece model: ", status.ToString());
}

Tokenizer::~Tokenizer() = default;

std::vector<int> Tokenizer::encode(const std::string& text) const {
  std::vector<int> ids;
  const auto status = sp_->Encode(text, &ids);
  MOE_CHECK(status.ok(), path_, ": cannot encode text: ", status.ToString());
  ids.push_back(eos_);
  return ids;
}

std::string Tokenizer::decode(const std::vector<int>& ids) const {
  std::vector<int> kept;
  for (int id : ids)
    if (id != eos_ && id != pad_) kept.push_back(id);
  std::string text;
  const auto status = sp_->Decode(kept, &text);
  MOE_CHECK(status.ok(), path_, ": cannot decode ids (", sp_->GetPieceSize(),
            " pieces; a truncated or foreign SentencePiece model?): ", status.ToString());
  return text;
}

int Tokenizer::vocab_size() const { return sp_->GetPieceSize(); }

std::unique_ptr<Tokenizer> load_tokenizer_if_present(const std::string& model_dir, int eos_token_id,
                                                     int pad_token_id) {
  const auto path = std::filesystem::path(model_dir) / "spiece.model";
  if (!std::filesystem::exists(path)) return nullptr;
  return std::make_unique<Tokenizer>(path.string(), eos_token_id, pad_token_id);
}

}  // namespace moe
