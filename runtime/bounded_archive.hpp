// Cereal's binary format read from bytes that may be malformed: as cereal::BinaryInputArchive,
// except that a container's claimed size is checked against the bytes left before anything is
// allocated for it (every element takes at least one byte), so a message that claims 2^60
// elements is refused with an error instead of exhausting memory.
#pragma once

#include <cereal/archives/binary.hpp>
#include <cereal/cereal.hpp>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace moe {

class BoundedBinaryInputArchive
    : public cereal::InputArchive<BoundedBinaryInputArchive, cereal::AllowEmptyClassElision> {
 public:
  explicit BoundedBinaryInputArchive(std::string_view bytes)
      : InputArchive<BoundedBinaryInputArchive, cereal::AllowEmptyClassElision>(this),
        bytes_(bytes) {}

  size_t remaining() const { return bytes_.size() - read_; }

  void loadBinary(void* data, std::streamsize size) {
    if (size < 0 || size_t(size) > remaining())
      throw cereal::Exception("needs " + std::to_string(size) + " more bytes, " +
                              std::to_string(remaining()) + " left");
    if (size > 0)
      std::memcpy(data, bytes_.data() + read_, size_t(size));  // an empty vector's data is null
    read_ += size_t(size);
  }

 private:
  std::string_view bytes_;
  size_t read_ = 0;
};

template <class T>
inline std::enable_if_t<std::is_arithmetic_v<T>> CEREAL_LOAD_FUNCTION_NAME(
    BoundedBinaryInputArchive& ar, T& t) {
  ar.loadBinary(std::addressof(t), sizeof(t));
}

template <class T>
inline void CEREAL_LOAD_FUNCTION_NAME(BoundedBinaryInputArchive& ar, cereal::NameValuePair<T>& t) {
  ar(t.value);
}

// The size of the container that follows: no more elements than bytes left.
template <class T>
inline void CEREAL_LOAD_FUNCTION_NAME(BoundedBinaryInputArchive& ar, cereal::SizeTag<T>& t) {
  uint64_t size = 0;
  ar.loadBinary(&size, sizeof(size));
  if (size > ar.remaining())
    throw cereal::Exception("claims " + std::to_string(size) + " elements with " +
                            std::to_string(ar.remaining()) + " bytes left");
  t.size = static_cast<std::remove_reference_t<decltype(t.size)>>(size);
}

template <class T>
inline void CEREAL_LOAD_FUNCTION_NAME(BoundedBinaryInputArchive& ar, cereal::BinaryData<T>& bd) {
  ar.loadBinary(bd.data, static_cast<std::streamsize>(bd.size));
}

}  // namespace moe

CEREAL_REGISTER_ARCHIVE(moe::BoundedBinaryInputArchive)
