#include "ranks/serving.hpp"

#include <algorithm>

#include "model/decoder.hpp"
#include "model/generation.hpp"
#include "runtime/error.hpp"

namespace moe {
namespace {

using Ms = std::chrono::duration<double, std::milli>;

// A request being decoded.
struct Active {
  const GenerationRequest* request;
  SequenceCache cache;
  int token;  // the next input token
  std::vector<int> output;
  Clock::time_point admitted, first_token;
};

// The rank's queue and results, shared by its lanes (which take turns).
struct Server {
  Coordinator& coordinator;
  const std::vector<GenerationRequest>& requests;
  const ServeOptions& options;
  const std::function<void(const GenerationResult&)>& on_result;
  Clock::time_point arrival = Clock::now();
  size_t next = 0;
  std::vector<GenerationResult> results;

  int capacity(int lane) const {
    const int lanes = coordinator.lanes();
    return options.batch_size / lanes + (lane < options.batch_size % lanes ? 1 : 0);
  }
  void admit(SwitchModel& m, int room, std::vector<Active>& active);
  void step(SwitchModel& m, std::vector<Active>& active);
  void lane(int lane);
};

// Up to `room` waiting requests join: one encoder pass over them, then each its decoder cache.
void Server::admit(SwitchModel& m, int room, std::vector<Active>& active) {
  std::vector<std::vector<int>> inputs;
  const size_t first = next;
  while (room-- > 0 && next < requests.size()) inputs.push_back(requests[next++].input_ids);
  if (inputs.empty()) return;
  const auto admitted = Clock::now();
  const ModelConfig& c = m.config;
  const EncoderOutput enc = encode(m, make_batch(inputs, c.pad_token_id));
  std::vector<SequenceCache> caches = start_decoder(m, enc, options.max_new_tokens + 1);
  for (size_t i = 0; i < caches.size(); ++i)
    active.push_back(
        {&requests[first + i], std::move(caches[i]), c.decoder_start_token_id, {}, admitted, {}});
}

// One decoder step for every active sequence; finished ones leave with their result.
void Server::step(SwitchModel& m, std::vector<Active>& active) {
  const ModelConfig& c = m.config;
  std::vector<SequenceCache*> caches;
  std::vector<int> tokens;
  for (auto& a : active) {
    caches.push_back(&a.cache);
    tokens.push_back(a.token);
  }
  const std::vector<int> next = decode_greedy(m, caches, tokens);
  const auto now = Clock::now();
  std::vector<Active> going_on;
  for (size_t b = 0; b < active.size(); ++b) {
    Active& a = active[b];
    const int best = next[b];
    a.output.push_back(best);
    a.token = best;
    if (a.output.size() == 1) a.first_token = now;
    if (best != c.eos_token_id && int(a.output.size()) < options.max_new_tokens) {
      going_on.push_back(std::move(a));
      continue;
    }
    const size_t n = a.output.size();
    GenerationResult r{a.request->index, std::move(a.output), Ms(a.admitted - arrival).count(),
                       Ms(a.first_token - arrival).count(),
                       n > 1 ? Ms(now - a.first_token).count() / double(n - 1) : 0.0};
    if (on_result)
      on_result(r);
    else
      results.push_back(std::move(r));
  }
  active = std::move(going_on);
}

void Server::lane(int lane) {
  SwitchModel& m = coordinator.model(lane);
  std::vector<Active> active;
  const int room = capacity(lane);
  constexpr int kAdmissionSteps = 4;  // the default: a lane refills over 4 steps
  const int per_step = options.admit_per_step > 0
                           ? options.admit_per_step
                           : std::max(1, (room + kAdmissionSteps - 1) / kAdmissionSteps);
  // The lane's first admission takes its whole share (no ramp at the start of a job); later ones
  // are spread.
  for (bool first = true;; first = false) {
    admit(m, first ? room : std::min(per_step, room - int(active.size())), active);
    if (active.empty()) return;
    step(m, active);
  }
}

}  // namespace

std::vector<GenerationResult> serve_requests(
    Coordinator& coordinator, const std::vector<GenerationRequest>& requests,
    const ServeOptions& options, const std::function<void(const GenerationResult&)>& on_result) {
  MOE_CHECK(options.batch_size >= 1 && options.max_new_tokens >= 1,
            "serving needs a batch size and max new tokens of at least 1");
  Server server{coordinator, requests, options, on_result, Clock::now(), 0, {}};
  coordinator.run_lanes([&](int lane) { server.lane(lane); });
  coordinator.done_with_experts();
  return std::move(server.results);
}

}  // namespace moe
