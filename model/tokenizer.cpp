#include "model/tokenizer.hpp"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string_view>

#include "runtime/error.hpp"

namespace moe {
namespace {

// The numbers of the top-level fields of a serialized ModelProto, in order. Every field at that
// level is a length-delimited message (pieces 1, trainer_spec 2, normalizer_spec 3, ...); the
// walk only looks at tags and lengths, so that a file cut short is told apart from a whole one.
// Empty where the bytes are not such a sequence.
std::vector<uint64_t> top_level_fields(std::string_view bytes) {
  std::vector<uint64_t> fields;
  size_t at = 0;
  const auto varint = [&](uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64 && at < bytes.size(); shift += 7) {
      const auto byte = uint8_t(bytes[at++]);
      v |= uint64_t(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return true;
    }
    return false;
  };
  while (at < bytes.size()) {
    uint64_t tag = 0, length = 0;
    if (!varint(tag) || (tag & 7) != 2 || !varint(length) || length > bytes.size() - at) return {};
    fields.push_back(tag >> 3);
    at += length;
  }
  return fields;
}

}  // namespace

Tokenizer::Tokenizer(const std::string& path, int eos_token_id, int pad_token_id)
    : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()),
      path_(path),
      eos_(eos_token_id),
      pad_(pad_token_id) {
  const auto status = sp_->Load(path);
  MOE_CHECK(status.ok(), path, ": cannot load SentencePiece model: ", status.ToString());
  // A file cut just after one of its pieces still parses (as fewer pieces). The trainer writes
  // its trainer_spec (2) and normalizer_spec (3) after every piece: without them it is cut short.
  const auto fields = top_level_fields(sp_->serialized_model_proto());
  for (uint64_t needed : {2, 3})
    MOE_CHECK(fields.empty() || std::find(fields.begin(), fields.end(), needed) != fields.end(),
              path, ": SentencePiece model ends after its ", sp_->GetPieceSize(),
              " pieces, with no ", needed == 2 ? "trainer_spec" : "normalizer_spec",
              ": the file is truncated (a whole model ends with its trainer and normalizer specs)");
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
