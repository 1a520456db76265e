#include "runtime/messages.hpp"

namespace moe {

const char* message_type_name(uint32_t type) {
  switch (static_cast<MessageType>(type)) {
    case MessageType::kRunPlan:
      return "RunPlan";
    case MessageType::kWorkHeader:
      return "WorkHeader";
    case MessageType::kWorkReply:
      return "WorkReply";
    case MessageType::kError:
      return "Error";
    case MessageType::kShutdown:
      return "Shutdown";
    case MessageType::kRankReport:
      return "RankReport";
    case MessageType::kReady:
      return "Ready";
    case MessageType::kProfileRequest:
      return "ProfileRequest";
    case MessageType::kProfileResult:
      return "ProfileResult";
    case MessageType::kEcho:
      return "Echo";
    case MessageType::kAttentionDone:
      return "AttentionDone";
    case MessageType::kRequestShare:
      return "RequestShare";
    case MessageType::kResultShare:
      return "ResultShare";
    case MessageType::kRankLost:
      return "RankLost";
  }
  return "unknown-type";
}

}  // namespace moe
