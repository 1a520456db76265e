// Greedy generation as a server: an attention rank's requests wait in a queue; each micro-batch
// lane keeps up to its share of the batch decoding, and as soon as a sequence finishes a waiting
// request takes its place (its encoder pass runs as a micro-batch of its own, between the lane's
// decode steps; a few requests per step, see ServeOptions::admit_per_step). Every sequence decodes
// at its own position, so outputs equal one request at a time.
#pragma once

#include <cereal/types/vector.hpp>
#include <cstdint>
#include <functional>
#include <vector>

#include "ranks/coordinator.hpp"
#include "runtime/messages.hpp"

namespace moe {

struct GenerationRequest {
  int64_t index = 0;  // in the input
  std::vector<int> input_ids;
  template <class A>
  void serialize(A& ar) {
    ar(index, input_ids);
  }
};

struct GenerationResult {
  int64_t index = 0;
  std::vector<int> output_ids;  // without the decoder start token; ends with eos when produced
  double queue_ms = 0;          // waiting for a place in the batch
  double ttft_ms = 0;           // from arrival to the first token
  double tpot_ms = 0;           // per output token after the first
  template <class A>
  void serialize(A& ar) {
    ar(index, output_ids, queue_ms, ttft_ms, tpot_ms);
  }
};

// What rank 0 hands each other attention rank, and what comes back (on kShareTag).
struct RequestShare {
  std::vector<GenerationRequest> requests;
  template <class A>
  void serialize(A& ar) {
    ar(requests);
  }
};
// Results go back as they finish, in shares of a few; `last` marks the rank's final share.
struct ResultShare {
  std::vector<GenerationResult> results;
  bool last = false;
  template <class A>
  void serialize(A& ar) {
    ar(results, last);
  }
};
template <>
struct MessageTypeOf<RequestShare> {
  static constexpr MessageType value = MessageType::kRequestShare;
};
template <>
struct MessageTypeOf<ResultShare> {
  static constexpr MessageType value = MessageType::kResultShare;
};

struct ServeOptions {
  int batch_size = 8;  // sequences decoding at once on this rank, over all its lanes
  int max_new_tokens = 32;
  // Prompts a lane admits at most between two of its decode steps, after its first admission
  // (0: a quarter of its share of the batch, at least one). Sequences that end together (equal
  // lengths) would otherwise be replaced together, and the lane would alternate between whole-batch
  // encoder passes and decode steps; spread over steps, admissions (and so endings) stay spread.
  int admit_per_step = 0;
};

// Generates every request (all arrived at the call) on this attention rank's lanes. Each result
// goes to on_result as it finishes, when one is given (and is not kept: a long job's memory stays
// flat); otherwise they are returned in the order they finished.
std::vector<GenerationResult> serve_requests(
    Coordinator& coordinator, const std::vector<GenerationRequest>& requests,
    const ServeOptions& options,
    const std::function<void(const GenerationResult&)>& on_result = {});

}  // namespace moe
