// Encoding control messages to bytes and back: [version u32][type u32][Cereal binary payload].
#pragma once

#include <cereal/archives/binary.hpp>
#include <cstring>
#include <sstream>
#include <string>

#include "runtime/bounded_archive.hpp"
#include "runtime/error.hpp"
#include "runtime/messages.hpp"

namespace moe {

template <class T>
std::string encode_message(const T& message) {
  std::ostringstream out;
  const uint32_t head[2] = {kProtocolVersion, static_cast<uint32_t>(MessageTypeOf<T>::value)};
  out.write(reinterpret_cast<const char*>(head), sizeof(head));
  {
    cereal::BinaryOutputArchive archive(out);
    archive(message);
  }
  return out.str();
}

struct Envelope {
  int sender = -1;
  uint32_t version = 0;
  uint32_t type = 0;
  std::string bytes;  // the whole message, header included
};

// Throws naming the sender and type when the version or type is not the expected one, or when
// the payload does not decode (sizes it claims are checked against its length before use).
template <class T>
T decode_message(const Envelope& e) {
  const uint32_t want = static_cast<uint32_t>(MessageTypeOf<T>::value);
  MOE_CHECK(e.version == kProtocolVersion, "message from rank ", e.sender, " has protocol version ",
            e.version, ", expected ", kProtocolVersion);
  MOE_CHECK(e.type == want, "unexpected message from rank ", e.sender, ": got ",
            message_type_name(e.type), ", expected ", message_type_name(want));
  T message;
  try {
    BoundedBinaryInputArchive archive(std::string_view(e.bytes).substr(8));
    archive(message);
  } catch (const std::exception& ex) {
    MOE_FAIL("malformed ", message_type_name(e.type), " message from rank ", e.sender, ": ",
             ex.what());
  }
  return message;
}

// Splits the header off raw bytes; a message shorter than the header is malformed.
inline Envelope open_envelope(int sender, std::string bytes) {
  Envelope e;
  e.sender = sender;
  MOE_CHECK(bytes.size() >= 8, "malformed message from rank ", sender, ": ", bytes.size(),
            " bytes, shorter than the header");
  std::memcpy(&e.version, bytes.data(), 4);
  std::memcpy(&e.type, bytes.data() + 4, 4);
  e.bytes = std::move(bytes);
  return e;
}

}  // namespace moe
