// Memory-budgeted experts (SwapMoE): which experts of each sparse layer are resident (the
// layer's "committee"), what a token routed to one that is not resident gets, how important each
// expert is, and which swaps a dynamic committee makes. Decisions only: the pages themselves are
// moved by the model's executor and its swapper thread, which report back through loaded().
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "router/gate.hpp"

namespace moe {

// What a token routed to a non-resident expert gets.
enum class MissPolicy {
  kWait,        // the expert is loaded for it and joins the committee (exact)
  kOnDemand,    // the expert is loaded for this call only (exact; the paper's baseline)
  kSubstitute,  // the resident expert with the highest router probability (approximate)
  kSkip,        // nothing: the residual only, as for a token beyond capacity
};
// Which experts are resident, and whether that changes.
enum class CommitteeKind {
  kDynamic,    // starts as kMagnitude; the most important experts are swapped in as they change
  kRandom,     // a fixed random subset (seeded)
  kMagnitude,  // the fixed subset of largest weight norm ‖wi‖·‖wo‖
};

MissPolicy parse_miss_policy(const std::string& name);        // throws naming the choices
CommitteeKind parse_committee_kind(const std::string& name);  // throws naming the choices
const char* miss_policy_name(MissPolicy policy);
const char* committee_kind_name(CommitteeKind kind);

// How many experts a --expert-memory budget keeps resident: `memory` is bytes ("3000000"; K, M or
// G for powers of 1024: "512M") or a share of all `total_experts` ("50%"). Throws naming the
// option when it is neither, or outside [0, all].
int64_t experts_within(const std::string& memory, int64_t total_experts, size_t bytes_per_expert);

// Committee sizes per sparse layer for `slots` resident experts in all, spread evenly over the
// layers (one seat at a time, first layers first), each at most the experts the layer holds here
// (held[l]).
std::vector<int> spread_committees(int64_t slots, const std::vector<int>& held);

// What a miss policy does to the gate (see ExpertResidency::route), for any view of residency:
// `resident(e)` says whether expert e can serve without a load. Adds to `counters` (missed,
// substituted, skipped; not routed).
struct ResidencyCounters;
void apply_miss_policy(MissPolicy policy, const std::function<bool(int)>& resident,
                       const float* logits, int experts, GateResult& gate,
                       ResidencyCounters& counters);

// A sparse layer's gate under a budget, in one process (ExpertResidency::route) or on an attention
// rank: counts its kept tokens (routed, their probability mass, the mass whose expert is
// resident), adds each one's router probability · ‖x‖ to demand[its expert] (x[T, d]; demand has
// `experts` entries), then applies the miss policy.
void route_with_residency(MissPolicy policy, const std::function<bool(int)>& resident,
                          const float* logits, const float* x, int d, int experts, GateResult& gate,
                          ResidencyCounters& counters, std::vector<double>& demand);

// Work for the swapper thread: map an expert's pages in, or give them back.
struct PageJob {
  enum Kind { kLoad, kGiveBack };
  Kind kind = kLoad;
  int layer = 0;
  int expert = 0;
};

struct ResidencyCounters {
  int64_t routed = 0;        // kept tokens routed (by the model's own gate)
  int64_t missed = 0;        // of those, to an expert that was not resident
  double routed_mass = 0;    // their router probabilities, summed
  double resident_mass = 0;  // of that, on experts that were resident
  int64_t substituted = 0;   // sent to another expert instead (kSubstitute)
  int64_t skipped = 0;       // given the residual only (kSkip, or no expert resident)
  int64_t loads = 0;         // synchronous loads in a step (kWait, kOnDemand)
  double load_ms = 0;        // their time
  int64_t swaps = 0;         // swaps started (dynamic committee)
  int64_t swaps_done = 0;    // whose newcomer took its seat
  double swap_ms = 0;        // the swapper's time loading, off the step's path
};

class ExpertResidency {
 public:
  // committee[l]: how many of layer l's experts stay resident; weight_norm[l][e] = ‖wi‖·‖wo‖
  // (Frobenius) of expert e of sparse layer l (the magnitude committee, and the gain of an expert
  // not yet measured). held[l][e]: whether this process holds the expert at all (an expert rank
  // holds those placed on it; empty: every one); one it does not hold is never resident. decay: how
  // much of an expert's importance carries over from one call of its layer to the next; margin: a
  // non-resident expert replaces a member only when its importance exceeds the member's by this
  // factor (no swapping back and forth).
  ExpertResidency(std::vector<int> committee, std::vector<std::vector<double>> weight_norm,
                  MissPolicy policy, CommitteeKind kind, uint64_t seed, double decay = 0.8,
                  double margin = 1.5, std::vector<std::vector<uint8_t>> held = {});

  // Seats exactly `members` (as many as the layer's committee, all held) in layer `layer`, in
  // place of the initial choice; before any use (a memory plan's committee).
  void seat(int layer, const std::vector<int>& members);

  int layers() const { return int(committee_.size()); }
  int experts() const { return experts_; }
  int committee(int layer) const { return committee_[layer]; }
  MissPolicy policy() const { return policy_; }
  CommitteeKind kind() const { return kind_; }
  bool resident(int layer, int expert) const;
  std::vector<int> resident_experts(int layer) const;
  double importance(int layer, int expert) const;

  // Once per sparse-layer call, after the gate: adds each kept token's router probability times
  // the norm of its router input x[T, d] times the expert's gain (below) to the importance of the
  // expert the gate chose, then
  // rewrites the gate where that expert is not resident: kSubstitute takes the resident expert of
  // the largest logit and its probability (softmax over all experts, as the gate computed it);
  // kSkip, and kSubstitute with no expert resident, drop the token. kWait and kOnDemand leave
  // the gate as it is: the executor loads what it needs. Capacity is not counted again.
  void route(int layer, const float* logits, const float* x, int d, GateResult& gate);

  // An expert rank's importance update, from the attention ranks' demand (WorkHeader::demand:
  // Σ router probability · ‖x‖ of the tokens the gate chose `expert` for) times its gain; and
  // its counts: `rows` served, of which `missed` arrived for an expert not resident.
  void record_demand(int layer, int expert, double demand);
  void count_served(int64_t rows, int64_t missed);

  // An expert's gain is how much it scales what it is given: the mean of ‖E(x)‖ / ‖x‖ over the
  // rows it computed in a call (`rows` of them), followed as a moving average. Until an expert is
  // measured its gain is estimated from its weight norm, scaled by the gain / weight-norm ratio of
  // the layer's measured experts (the norm bound ‖wi‖·‖wo‖ is loose: trained experts of equal
  // norms differ by ten times in what they add to the tokens routed to them).
  void observe_gain(int layer, int expert, double gain, int rows);
  double gain(int layer, int expert) const;

  // After a sparse-layer call: ends the call's importance update and returns the page work for
  // the swapper. A dynamic committee swaps one expert at a time, as a pair: the most important
  // non-member is loaded (kLoad) while the least important member goes on serving; at the end of
  // the layer's first call after the load, the newcomer takes the seat and the leaver's pages go
  // (kGiveBack). So a layer never has fewer members than its committee, and memory holds at most
  // one expert beyond the budget. Fixed committees return nothing.
  std::vector<PageJob> plan_swaps(int layer);
  // The swapper's report that a kLoad is done. False when the committee no longer waits for the
  // expert (a kWait admission changed the layer meanwhile): the swapper gives its pages back.
  bool loaded(int layer, int expert, double ms);
  // The swapper's question before it gives pages back: whether `expert` is out of the committee
  // (and not being loaded).
  bool out_of_committee(int layer, int expert) const;

  // kWait: `expert`, loaded in a step, joins the committee. Returns the expert whose pages the
  // caller gives back: the least important other member, `expert` itself when the layer has no
  // seats, or -1 when the committee had room.
  int admit(int layer, int expert, double load_ms);
  // kOnDemand: a load in a step that leaves the committee as it is.
  void loaded_for_call(double load_ms);

  ResidencyCounters counters() const;

 private:
  enum class State : uint8_t { kOut, kLoading, kIn };
  // A layer's swap in progress: `in` is loading (ready once loaded), `out` still serves.
  struct Pending {
    int in = -1, out = -1;
    bool ready = false;
  };
  void end_call_locked(int layer);
  void cancel_pending_locked(int layer);
  double gain_locked(int layer, int expert) const;

  std::vector<int> committee_;
  std::vector<std::vector<double>> weight_norm_;
  int experts_ = 0;
  MissPolicy policy_;
  CommitteeKind kind_;
  double decay_, margin_;
  mutable std::mutex mutex_;  // the swapper thread reports through loaded()
  std::vector<std::vector<State>> state_;
  std::vector<std::vector<uint8_t>> held_;
  std::vector<std::vector<double>> importance_, this_call_;
  std::vector<std::vector<double>> gain_;  // measured, or 0 where not yet
  std::vector<Pending> pending_;           // per layer
  int swaps_in_flight_ = 0;  // at most one: the budget holds one expert beyond the committee
  ResidencyCounters counters_;
};

}  // namespace moe
