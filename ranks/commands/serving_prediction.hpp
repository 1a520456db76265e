// The serving model (router/sim/serving_model.hpp) applied to a run of `moe generate`: whether a
// profile's serving curves describe the run, the model's choice of micro-batches when the command
// line leaves it open, and the prediction printed beside what the run measured.
#pragma once

#include <string>
#include <vector>

#include "ranks/run_plan.hpp"
#include "router/sim/serving_model.hpp"

namespace moe {

// Why the profile's serving curves do not describe a run of `plan` with `threads` per rank
// (empty when they do): none measured, or measured with another placement of the dense FFNs,
// another share of the lm_head on the expert ranks (which one process, computing them all in
// line, does not care about), or another thread count.
std::string serving_curves_mismatch(const Profile& profile, const RunPlan& plan, int threads);

// The host as the model sees it: the cores of this machine when every rank of `hosts` runs on
// it (they share them), else a core each; the profile's contention, or none.
sim::ServingHost serving_host(const Profile& profile, const std::vector<std::string>& hosts);

// The count among `counts` (increasing) whose predicted run of `workload` is fastest, where a
// count is taken over a smaller one only when predicted at least 3% faster (closer than that is
// within the model's error, and each lane re-reads the weights). `predictions` receives each
// count's prediction, in order.
int choose_micro_batches(const Profile& profile, sim::ServingLayout layout,
                         const sim::ServingWorkload& workload, const sim::ServingHost& host,
                         const std::vector<int>& counts,
                         std::vector<sim::ServingPrediction>* predictions = nullptr);

}  // namespace moe
