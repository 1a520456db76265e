// The coordinator's side of `moe profile`: it has the expert ranks time their expert FFN over
// token counts, times the data link to each rank and the CPU a call costs a rank outside its
// experts, measures how much ranks computing at once slow each other, and drives probe calls
// through the real dispatch path to record latency samples.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ranks/coordinator.hpp"
#include "router/profile.hpp"
#include "runtime/messages.hpp"

namespace moe {

// Every expert rank's curves (waves of `concurrency` ranks timed at once, 0: all), link and call
// CPU; each curve point is the median over `repeats` rounds.
Profile measure_profile(Coordinator& coordinator, const ProfileRequest& request, int repeats,
                        int concurrency);

// The attention rank's side of serving (ServingCurves): for each batch of `sequences`, encoder
// passes over that many sequences of `input_tokens` tokens and `steps` greedy decode steps after
// each, on this attention rank's one lane with the expert ranks serving; each point the median
// over `repeats` passes (decode: over every step but each pass's first). The caller fills in the
// run options it was measured with.
ServingCurves measure_serving(Coordinator& coordinator, const std::vector<int>& sequences,
                              int input_tokens, int steps, int repeats);

// The slowdown of `together` ranks computing at once against each alone, per token count, on the
// same and on different experts (the profile's "contention" object).
nlohmann::json measure_contention(Coordinator& coordinator, const ProfileRequest& request,
                                  int repeats, int together);

// Probe calls for latency samples: for every expert rank, 1, 2 and 4 of the experts it holds in
// one sparse layer with each token count, every other rank taking part with zero rows; the
// samples, priced by `profile`, are written to `path` (CSV).
void record_probe_samples(Coordinator& coordinator, const Profile& profile,
                          const std::vector<int>& token_counts, int repeats,
                          const std::string& path);

}  // namespace moe
