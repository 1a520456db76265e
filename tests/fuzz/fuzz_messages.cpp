// A control message from untrusted bytes, as a rank receives it: the envelope, then the payload
// of whichever type the header names. A malformed message must be refused with a line that names
// the sender and type, whatever sizes it claims.
#include "ranks/run_plan.hpp"
#include "ranks/serving.hpp"
#include "runtime/messages.hpp"
#include "runtime/wire.hpp"
#include "tests/fuzz/fuzz_support.hpp"

namespace {

template <class T>
void decode_as(const moe::Envelope& e) {
  moe::decode_message<T>(e);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using moe::MessageType;
  moe::fuzz::expect_clean_refusal([&] {
    // The version is the one ranks speak: the fuzzer varies what follows the header.
    std::string bytes(reinterpret_cast<const char*>(data), size);
    if (bytes.size() >= 4) {
      const uint32_t version = moe::kProtocolVersion;
      std::memcpy(bytes.data(), &version, 4);
    }
    const moe::Envelope e = moe::open_envelope(1, std::move(bytes));
    switch (static_cast<MessageType>(e.type)) {
      case MessageType::kRunPlan:
        return decode_as<moe::RunPlan>(e);
      case MessageType::kWorkHeader:
        return decode_as<moe::WorkHeader>(e);
      case MessageType::kWorkReply:
        return decode_as<moe::WorkReply>(e);
      case MessageType::kError:
        return decode_as<moe::ErrorMessage>(e);
      case MessageType::kShutdown:
        return decode_as<moe::Shutdown>(e);
      case MessageType::kRankReport:
        return decode_as<moe::RankReport>(e);
      case MessageType::kReady:
        return decode_as<moe::Ready>(e);
      case MessageType::kProfileRequest:
        return decode_as<moe::ProfileRequest>(e);
      case MessageType::kProfileResult:
        return decode_as<moe::ProfileResult>(e);
      case MessageType::kEcho:
        return decode_as<moe::Echo>(e);
      case MessageType::kAttentionDone:
        return decode_as<moe::AttentionDone>(e);
      case MessageType::kRequestShare:
        return decode_as<moe::RequestShare>(e);
      case MessageType::kResultShare:
        return decode_as<moe::ResultShare>(e);
      case MessageType::kRankLost:
        return decode_as<moe::RankLost>(e);
    }
    decode_as<moe::Echo>(e);  // an unknown type: refused by name
  });
  return 0;
}
