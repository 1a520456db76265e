// The serving model: how long `moe generate` takes with M attention ranks, N expert ranks and m
// ping-pong micro-batch lanes per attention rank, from the profile's serving curves (measured on
// one attention rank with one lane, router/profile.hpp) and its links. A discrete-event model of
// the run's own schedule (ranks/serving.cpp): each lane admits its share of the requests (an
// encoder pass), then decodes step by step, refilling as sequences finish; a pass is the
// attention rank's work cut into equal segments between its exchanges, and each exchange sends
// its rows out, has the expert ranks compute (a sparse layer's work split over them, each as long
// as the busiest; the lm_head's split evenly; a dense FFN's whole on one), and brings the results
// back. An attention rank runs one lane's segment at a time and an expert rank one exchange at a
// time, first come first served; ranks computing at once share the host's cores and slow each
// other by the profile's contention at the rows each computes (an expert, a sparse layer's rows
// over its experts). So ping-pong overlap, the cost of splitting a batch (each micro-batch's point
// on the curves: a GEMM over half the rows costs more than half), the expert ranks' share of the
// work and the exchanges' latency all come out of the same curves.
//
// Left out (docs/SIMULATOR.md): imbalance beyond uniform routing; replicas (no more expert ranks
// than experts per layer: replicas re-read the weights, which a split of the work cannot show;
// such layouts are refused); an expert rank's merging of exchanges from several attention ranks
// into one grouped call (they are served one after another; co-located ranks excepted, below); the
// growth of attention with the key/value cache (the curves are the mean over the timed steps).
#pragma once

#include <vector>

#include "router/profile.hpp"

namespace moe::sim {

struct ServingLayout {
  int attention_ranks = 1;
  int expert_ranks = 1;  // 0: one process, which computes the experts itself with no exchange
  int micro_batches = 1;
  int batch_size = 8;      // per attention rank
  int admit_per_step = 0;  // per lane after its first admission (0: a quarter of its share)
  // Co-located (--colocate): the attention ranks hold the experts too (expert_ranks is ignored);
  // each runs its own dense FFNs and lm_head, and serves a sparse layer's rows between its own
  // segments. The k-th exchanges of all the ranks meet in one grouped call on each rank (they run
  // in step): each pays its share of that call, the curve at every rank's rows together.
  bool colocated = false;
};

struct ServingWorkload {
  // Per request, in the order they are dealt (round-robin over the attention ranks): its input
  // tokens. An encoder pass pads the requests it admits to the longest, as make_batch does.
  std::vector<int> input_tokens;
  int new_tokens = 0;  // per request (every one runs to the limit)
};

struct ServingHost {
  double cores = 0;  // the cores every rank shares (0: a core each)
  // A computing rank's slowdown per other rank computing at once: by the token count of what it
  // computes (a GEMM over few rows streams its weights and suffers most; the profile's
  // contention by_tokens), or one value where that is empty; its value must be >= 0.
  Contention contention{0};
};

struct ServingPrediction {
  double seconds = 0;  // from the first admission to the last token
  double tokens_per_s = 0;
  double decode_step_ms = 0;  // one decode step of every lane, each full, in steady state
  // The share of `seconds` the attention ranks, and the expert ranks, spend computing (mean).
  double attention_busy = 0, experts_busy = 0;
};

// Throws naming what is missing when the profile has no serving curves or links, or when the
// layout has more expert ranks than the profile's model has experts per layer.
ServingPrediction predict_serving(const Profile& profile, const ServingLayout& layout,
                                  const ServingWorkload& workload, const ServingHost& host);

}  // namespace moe::sim
