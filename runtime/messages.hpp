// Control-plane messages (the run plan, ranks/run_plan.hpp, is one more). Each travels as [protocol
// version][type tag][Cereal binary payload]; one `serialize` per struct. A message of another
// version or an unexpected type is an error naming the sending rank and the type.
#pragma once

#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace moe {

// Raised whenever a message or the run plan changes shape (2: WorkHeader::lm_head).
constexpr uint32_t kProtocolVersion = 6;

enum class MessageType : uint32_t {
  kRunPlan = 1,
  kWorkHeader = 2,
  kWorkReply = 3,
  kError = 4,
  kShutdown = 5,
  kRankReport = 6,
  kReady = 7,
  kProfileRequest = 8,
  kProfileResult = 9,
  kEcho = 10,
  kAttentionDone = 11,
  kRequestShare = 12,
  kResultShare = 13,
  kRankLost = 14,
};
const char* message_type_name(uint32_t type);

struct ExpertSegment {
  int32_t expert = 0;
  int32_t rows = 0;
  template <class A>
  void serialize(A& ar) {
    ar(expert, rows);
  }
};

// Precedes a block of token rows: which experts they belong to, in order. An expert rank serves
// the k-th exchange of every attention rank together (M2N), whatever layer each is at.
struct WorkHeader {
  uint64_t exchange = 0;  // the sending attention rank's count of exchanges so far
  int64_t step = 0;
  int32_t moe_layer = 0;     // the sparse layer, or -1 for a dense FFN
  int32_t dense_layer = -1;  // for a dense FFN: its index among the model's dense blocks
  int32_t micro_batch = 0;
  // The decoder's final states, for this rank's lm_head columns (moe_layer and dense_layer -1);
  // the reply holds each row's largest logit there and its id.
  bool lm_head = false;
  std::vector<ExpertSegment> segments;  // a dense FFN's or the lm_head's one segment has expert 0
  // Under a memory budget (--expert-memory): per expert of the sparse layer, Σ router probability
  // · ‖x‖ of the tokens the gate chose it for, before any were sent elsewhere for want of a
  // resident replica (the expert ranks' importance; empty without a budget).
  std::vector<float> demand;
  template <class A>
  void serialize(A& ar) {
    ar(exchange, step, moe_layer, dense_layer, micro_batch, lm_head, segments, demand);
  }
};

// The result block of lm_head work: per row, the largest logit over the rank's columns and that
// column's vocabulary id (the int's bits in a float's room, so that any id travels exactly).
struct BestLogit {
  float logit = 0;
  int32_t id = 0;
};
constexpr size_t kBestLogitFloats = 2;  // per row
inline void put_best_logit(float* block, size_t row, const BestLogit& best) {
  block[row * kBestLogitFloats] = best.logit;
  std::memcpy(&block[row * kBestLogitFloats + 1], &best.id, sizeof(best.id));
}
inline BestLogit best_logit_at(const float* block, size_t row) {
  BestLogit best{block[row * kBestLogitFloats], 0};
  std::memcpy(&best.id, &block[row * kBestLogitFloats + 1], sizeof(best.id));
  return best;
}

struct WorkReply {
  uint64_t exchange = 0;
  int64_t step = 0;
  int32_t moe_layer = 0;
  int32_t micro_batch = 0;
  double compute_us = 0;  // expert FFN time
  double queue_us = 0;    // from the header's arrival to the start of compute
  // The rank's process CPU since its previous reply outside the expert FFN: returning the last
  // block, waiting for this header, receiving this block (polling, MPI, copies). Under a CPU quota
  // it is spent from the same budget as the compute.
  double other_cpu_us = 0;
  // Under a memory budget (--expert-memory): per expert of the layer, 1 where it is resident on
  // this rank after the call; empty without a budget.
  std::vector<uint8_t> resident;
  template <class A>
  void serialize(A& ar) {
    ar(exchange, step, moe_layer, micro_batch, compute_us, queue_us, other_cpu_us, resident);
  }
};

struct ErrorMessage {
  int32_t rank = 0;
  std::string host;
  std::string what;
  template <class A>
  void serialize(A& ar) {
    ar(rank, host, what);
  }
};

// An expert rank has loaded its experts and is ready for work.
struct Ready {
  int32_t rank = 0;
  uint64_t resident_bytes = 0;
  uint64_t weight_bytes = 0;
  template <class A>
  void serialize(A& ar) {
    ar(rank, resident_bytes, weight_bytes);
  }
};

// `moe profile`: time the experts this rank holds at these token counts, one rotation each (the
// profiler repeats requests in rounds).
struct ProfileRequest {
  std::vector<int32_t> token_counts;
  int32_t max_experts = 0;  // 0: every expert the rank holds
  // The rotation over the k experts timed starts at expert k * rotation_part / rotation_parts.
  int32_t rotation_part = 0, rotation_parts = 1;
  bool warm_up = true;     // one untimed pass over the experts at each count first
  bool time_load = false;  // also time one expert's load from disk (ProfileResult::load_us)
  template <class A>
  void serialize(A& ar) {
    ar(token_counts, max_experts, rotation_part, rotation_parts, warm_up, time_load);
  }
};

struct ProfileResult {
  int32_t rank = 0;
  std::string device;
  std::vector<double> median_us;  // per token count: median over repeats, then over experts
  std::vector<double>
      cpu_median_us;  // the same calls' process CPU time (a quota stalls wall time only)
  uint64_t memory_bytes = 0;
  // With time_load: one expert's load and give-back (0 where the experts are not pages of the
  // mapped checkpoint, or held under a memory budget).
  double load_us = 0;
  template <class A>
  void serialize(A& ar) {
    ar(rank, device, median_us, cpu_median_us, memory_bytes, load_us);
  }
};

// `moe profile`: the next data block of `floats` floats is to be sent straight back.
struct Echo {
  uint64_t floats = 0;
  template <class A>
  void serialize(A& ar) {
    ar(floats);
  }
};

// An attention rank has sent its last exchange: expert ranks stop waiting for its headers.
struct AttentionDone {
  template <class A>
  void serialize(A&) {}
};

struct Shutdown {
  template <class A>
  void serialize(A&) {}
};

// An attention rank declared `rank` lost (--on-rank-failure continue): the other attention ranks
// stop routing to it; a rank on its host stops the process (it may only be paused).
struct RankLost {
  int32_t rank = 0;
  std::string reason;
  template <class A>
  void serialize(A& ar) {
    ar(rank, reason);
  }
};

struct TraceEvent {
  std::string name;
  double start_us = 0;
  double duration_us = 0;
  int32_t lane = 0;  // the micro-batch lane of an attention rank (a thread in the trace)
  template <class A>
  void serialize(A& ar) {
    ar(name, start_us, duration_us, lane);
  }
};

// What each rank reports at the end of a run.
struct RankReport {
  int32_t rank = 0;
  std::string host;
  std::string device;
  uint64_t resident_bytes = 0;  // process resident memory after loading
  uint64_t weight_bytes = 0;    // weights this rank loaded
  std::vector<int64_t> tokens_per_layer;
  std::vector<double> compute_us_per_layer;
  double wait_us = 0;
  // Compute outside the sparse layers' experts: an attention rank's attention, dense layers and
  // lm_head; an expert rank's dense FFNs.
  double other_compute_us = 0;
  uint64_t bytes_sent = 0, bytes_received = 0;
  std::vector<TraceEvent> events;
  template <class A>
  void serialize(A& ar) {
    ar(rank, host, device, resident_bytes, weight_bytes, tokens_per_layer, compute_us_per_layer,
       wait_us, other_compute_us, bytes_sent, bytes_received, events);
  }
};

template <class T>
struct MessageTypeOf;
template <>
struct MessageTypeOf<WorkHeader> {
  static constexpr MessageType value = MessageType::kWorkHeader;
};
template <>
struct MessageTypeOf<WorkReply> {
  static constexpr MessageType value = MessageType::kWorkReply;
};
template <>
struct MessageTypeOf<ErrorMessage> {
  static constexpr MessageType value = MessageType::kError;
};
template <>
struct MessageTypeOf<AttentionDone> {
  static constexpr MessageType value = MessageType::kAttentionDone;
};
template <>
struct MessageTypeOf<Shutdown> {
  static constexpr MessageType value = MessageType::kShutdown;
};
template <>
struct MessageTypeOf<RankLost> {
  static constexpr MessageType value = MessageType::kRankLost;
};
template <>
struct MessageTypeOf<Ready> {
  static constexpr MessageType value = MessageType::kReady;
};
template <>
struct MessageTypeOf<ProfileRequest> {
  static constexpr MessageType value = MessageType::kProfileRequest;
};
template <>
struct MessageTypeOf<ProfileResult> {
  static constexpr MessageType value = MessageType::kProfileResult;
};
template <>
struct MessageTypeOf<Echo> {
  static constexpr MessageType value = MessageType::kEcho;
};
template <>
struct MessageTypeOf<RankReport> {
  static constexpr MessageType value = MessageType::kRankReport;
};

}  // namespace moe
