// The memory-budget decisions against their definitions: committees, each miss policy, importance
// and the swaps a dynamic committee plans.
#include "router/residency.hpp"

#include <gtest/gtest.h>

#include <cmath>

#include "runtime/error.hpp"

namespace moe {
namespace {

// One layer of four experts whose norms rank them 3, 1, 2, 0 (largest first).
ExpertResidency four_experts(int committee, MissPolicy policy,
                             CommitteeKind kind = CommitteeKind::kMagnitude) {
  return ExpertResidency({committee}, {{1.0, 3.0, 2.0, 4.0}}, policy, kind, /*seed=*/7);
}

// logits[T, 4] for T tokens, gated without a capacity limit; x[T, 2] all (3, 4): norm 5.
struct Tokens {
  std::vector<float> logits, x;
  GateResult gate;
  explicit Tokens(std::vector<float> l) : logits(std::move(l)) {
    const int T = int(logits.size() / 4);
    for (int t = 0; t < T; ++t) x.insert(x.end(), {3.0f, 4.0f});
    top1_gate(logits.data(), 1, T, 4, T, gate);
  }
};

}  // namespace

TEST(Residency, MagnitudeCommitteeKeepsTheLargestNorms) {
  ExpertResidency r = four_experts(2, MissPolicy::kSubstitute);
  EXPECT_EQ(r.resident_experts(0), (std::vector<int>{1, 3}));
}

TEST(Residency, RandomCommitteeHasItsSizeAndFollowsTheSeed) {
  ExpertResidency a({3, 1}, {{1, 1, 1, 1}, {1, 1, 1, 1}}, MissPolicy::kSkip, CommitteeKind::kRandom,
                    11);
  ExpertResidency b({3, 1}, {{1, 1, 1, 1}, {1, 1, 1, 1}}, MissPolicy::kSkip, CommitteeKind::kRandom,
                    11);
  EXPECT_EQ(a.resident_experts(0).size(), 3u);
  EXPECT_EQ(a.resident_experts(1).size(), 1u);
  EXPECT_EQ(a.resident_experts(0), b.resident_experts(0));
  EXPECT_EQ(a.resident_experts(1), b.resident_experts(1));
}

TEST(Residency, SubstituteTakesTheResidentExpertOfTheLargestLogitWithItsProbability) {
  ExpertResidency r = four_experts(2, MissPolicy::kSubstitute);  // 1 and 3 resident
  // Token 0 wants 2 (not resident); of the residents, 1 has the larger logit. Token 1 wants 3.
  Tokens in({0.0f, 1.0f, 2.0f, 0.5f, 0.0f, 0.0f, 0.0f, 1.0f});
  const float p0 = in.gate.probability[0];
  r.route(0, in.logits.data(), in.x.data(), 2, in.gate);
  EXPECT_EQ(in.gate.expert[0], 1);
  const double z = std::exp(0.0) + std::exp(1.0) + std::exp(2.0) + std::exp(0.5);
  EXPECT_NEAR(in.gate.probability[0], std::exp(1.0) / z, 1e-6);
  EXPECT_NEAR(p0, std::exp(2.0) / z, 1e-6);
  EXPECT_EQ(in.gate.kept[0], 1);
  EXPECT_EQ(in.gate.expert[1], 3);  // resident: unchanged
  const ResidencyCounters n = r.counters();
  EXPECT_EQ(n.routed, 2);
  EXPECT_EQ(n.missed, 1);
  EXPECT_EQ(n.substituted, 1);
}

TEST(Residency, SkipDropsTokensOfNonResidentExperts) {
  ExpertResidency r = four_experts(2, MissPolicy::kSkip);
  Tokens in({0.0f, 1.0f, 2.0f, 0.5f, 0.0f, 0.0f, 0.0f, 1.0f});
  r.route(0, in.logits.data(), in.x.data(), 2, in.gate);
  EXPECT_EQ(in.gate.kept[0], 0);
  EXPECT_EQ(in.gate.kept[1], 1);
  EXPECT_EQ(r.counters().skipped, 1);
}

TEST(Residency, SubstituteWithNothingResidentDrops) {
  ExpertResidency r = four_experts(0, MissPolicy::kSubstitute);
  Tokens in({0.0f, 1.0f, 2.0f, 0.5f});
  r.route(0, in.logits.data(), in.x.data(), 2, in.gate);
  EXPECT_EQ(in.gate.kept[0], 0);
}

TEST(Residency, WaitAndOnDemandLeaveTheGateAsItIs) {
  for (MissPolicy policy : {MissPolicy::kWait, MissPolicy::kOnDemand}) {
    ExpertResidency r = four_experts(1, policy);
    Tokens in({0.0f, 1.0f, 2.0f, 0.5f});
    const GateResult before = in.gate;
    r.route(0, in.logits.data(), in.x.data(), 2, in.gate);
    EXPECT_EQ(in.gate.expert, before.expert);
    EXPECT_EQ(in.gate.probability, before.probability);
    EXPECT_EQ(in.gate.kept, before.kept);
    EXPECT_EQ(r.counters().missed, 1);
  }
}

TEST(Residency, WaitAdmitsTheLoadedExpertInPlaceOfTheLeastImportantMember) {
  ExpertResidency r = four_experts(2, MissPolicy::kWait);  // 1 and 3
  // Expert 3 gets importance, 1 none: 1 leaves for 0.
  Tokens in({0.0f, 0.0f, 0.0f, 1.0f});
  r.route(0, in.logits.data(), in.x.data(), 2, in.gate);
  r.plan_swaps(0);  // ends the call (no swaps: a magnitude committee is fixed)
  EXPECT_EQ(r.admit(0, 0, 1.5), 1);
  EXPECT_EQ(r.resident_experts(0), (std::vector<int>{0, 3}));
  EXPECT_EQ(r.counters().loads, 1);
  EXPECT_EQ(r.admit(0, 0, 1.0), -1);  // already in
  ExpertResidency none = four_experts(0, MissPolicy::kWait);
  EXPECT_EQ(none.admit(0, 2, 1.0), 2);  // no seats: it leaves again at once
}

TEST(Residency, ImportanceIsProbabilityTimesInputNormTimesGain) {
  ExpertResidency r({1}, {{1.0, 3.0, 2.0, 4.0}}, MissPolicy::kSubstitute, CommitteeKind::kMagnitude,
                    1, /*decay=*/0.5);
  Tokens in({0.0f, 2.0f, 0.0f, 0.0f});
  const double p = in.gate.probability[0];
  r.route(0, in.logits.data(), in.x.data(), 2, in.gate);
  r.plan_swaps(0);
  EXPECT_NEAR(r.importance(0, 1), 0.5 * p * 5.0 * 3.0, 1e-9);  // gain: the weight norm, unmeasured
  r.plan_swaps(0);                                             // a call without tokens halves it
  EXPECT_NEAR(r.importance(0, 1), 0.25 * p * 5.0 * 3.0, 1e-9);
}

TEST(Residency, MeasuredGainReplacesTheWeightNormAndScalesTheUnmeasuredOnes) {
  ExpertResidency r = four_experts(1, MissPolicy::kSubstitute);  // norms 1, 3, 2, 4
  EXPECT_DOUBLE_EQ(r.gain(0, 2), 2.0);                           // nothing measured: the norm
  r.observe_gain(0, 1, 0.6, 10);  // expert 1 adds 0.6 of its input: the layer's ratio is 0.2
  EXPECT_DOUBLE_EQ(r.gain(0, 1), 0.6);
  EXPECT_DOUBLE_EQ(r.gain(0, 2), 2.0 * 0.2);
  r.observe_gain(0, 1, 1.6, 10);  // a moving average (decay 0.8)
  EXPECT_NEAR(r.gain(0, 1), 0.8 * 0.6 + 0.2 * 1.6, 1e-12);
  r.observe_gain(0, 3, 5.0, 0);  // no rows: nothing measured
  EXPECT_NEAR(r.gain(0, 3), 4.0 * (0.8 * 0.6 + 0.2 * 1.6) / 3.0, 1e-12);
  // Importance follows the measured gain: a token of probability p and input norm 5 to expert 1.
  Tokens in({0.0f, 2.0f, 0.0f, 0.0f});
  const double p = in.gate.probability[0];
  r.route(0, in.logits.data(), in.x.data(), 2, in.gate);
  r.plan_swaps(0);
  EXPECT_NEAR(r.importance(0, 1), 0.2 * p * 5.0 * r.gain(0, 1), 1e-9);
}

TEST(Residency, DynamicCommitteeSwapsInTheMostImportantExpertWhileTheLeaverServes) {
  ExpertResidency r = four_experts(1, MissPolicy::kSubstitute, CommitteeKind::kDynamic);
  EXPECT_EQ(r.resident_experts(0), (std::vector<int>{3}));
  Tokens in({0.0f, 0.0f, 3.0f, 0.0f});  // wants 2
  r.route(0, in.logits.data(), in.x.data(), 2, in.gate);
  std::vector<PageJob> jobs = r.plan_swaps(0);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].kind, PageJob::kLoad);
  EXPECT_EQ(jobs[0].expert, 2);
  // While 2 loads, 3 still serves: the layer never has fewer members than its committee.
  EXPECT_EQ(r.resident_experts(0), (std::vector<int>{3}));
  EXPECT_FALSE(r.out_of_committee(0, 2));
  EXPECT_TRUE(r.plan_swaps(0).empty());  // not loaded yet: nothing changes
  EXPECT_TRUE(r.loaded(0, 2, 4.0));
  EXPECT_EQ(r.resident_experts(0), (std::vector<int>{3}));  // seated at the layer's next call end
  jobs = r.plan_swaps(0);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].kind, PageJob::kGiveBack);
  EXPECT_EQ(jobs[0].expert, 3);
  EXPECT_EQ(r.resident_experts(0), (std::vector<int>{2}));
  EXPECT_TRUE(r.out_of_committee(0, 3));
  EXPECT_EQ(r.counters().swaps_done, 1);
  EXPECT_FALSE(r.loaded(0, 2, 1.0));  // reported twice: nothing waits for it
}

TEST(Residency, DynamicCommitteeSwapsOneExpertAtATimeAcrossLayers) {
  ExpertResidency r({1, 1}, {{1.0, 2.0}, {1.0, 2.0}}, MissPolicy::kSubstitute,
                    CommitteeKind::kDynamic, 1);
  std::vector<float> logits = {5.0f, 0.0f}, x = {1.0f};  // each layer's token wants expert 0
  for (int layer : {0, 1}) {
    GateResult g;
    top1_gate(logits.data(), 1, 1, 2, 1, g);
    r.route(layer, logits.data(), x.data(), 1, g);
  }
  EXPECT_EQ(r.plan_swaps(0).size(), 1u);
  EXPECT_TRUE(r.plan_swaps(1).empty());  // layer 0's swap is in flight
  r.loaded(0, 0, 1.0);
  EXPECT_EQ(r.plan_swaps(0).size(), 1u);  // the give-back; layer 0 wants nothing more
  EXPECT_EQ(r.plan_swaps(1).size(), 1u);  // now layer 1 may swap
}

TEST(Residency, WaitTakingThePendingLeaversSeatEndsTheSwap) {
  ExpertResidency r({1}, {{1.0, 1.0, 1.0}}, MissPolicy::kWait, CommitteeKind::kDynamic, 1);
  std::vector<float> logits = {0.0f, 5.0f, 0.0f}, x = {1.0f};  // wants 1; 0 is the member
  GateResult g;
  top1_gate(logits.data(), 1, 1, 3, 1, g);
  r.route(0, logits.data(), x.data(), 1, g);
  ASSERT_EQ(r.plan_swaps(0).size(), 1u);  // 1 loads in the background, 0 serves
  EXPECT_EQ(r.admit(0, 2, 1.0), 0);       // a step loaded 2: it takes 0's seat
  EXPECT_FALSE(r.loaded(0, 1, 1.0));      // the swap of 1 ended
  EXPECT_TRUE(r.out_of_committee(0, 1));
  EXPECT_EQ(r.resident_experts(0), (std::vector<int>{2}));
}

TEST(Residency, DynamicCommitteeDoesNotSwapBelowTheMargin) {
  ExpertResidency r({1}, {{1.0, 1.0}}, MissPolicy::kSubstitute, CommitteeKind::kDynamic, 1);
  // Expert 0 is in; 1 gets slightly more importance than 0: no swap (margin 1.5).
  std::vector<float> logits = {1.0f, 0.0f, 0.0f, 1.01f}, x = {1.0f, 1.0f};
  GateResult g;
  top1_gate(logits.data(), 1, 2, 2, 2, g);
  r.route(0, logits.data(), x.data(), 1, g);
  EXPECT_TRUE(r.plan_swaps(0).empty());
}

TEST(Residency, FixedCommitteesNeverSwap) {
  for (CommitteeKind kind : {CommitteeKind::kMagnitude, CommitteeKind::kRandom}) {
    ExpertResidency r = four_experts(1, MissPolicy::kSubstitute, kind);
    Tokens in({5.0f, 5.0f, 5.0f, 0.0f, 0.0f, 5.0f, 0.0f, 0.0f});
    r.route(0, in.logits.data(), in.x.data(), 2, in.gate);
    EXPECT_TRUE(r.plan_swaps(0).empty());
  }
}

TEST(Residency, BudgetInBytesOrShareGivesExperts) {
  EXPECT_EQ(experts_within("50%", 96, 1000), 48);
  EXPECT_EQ(experts_within("0", 96, 1000), 0);
  EXPECT_EQ(experts_within("2500", 96, 1000), 2);
  EXPECT_EQ(experts_within("1M", 96, 1024), 96);  // capped at all
  EXPECT_EQ(experts_within("3K", 96, 1024), 3);
  EXPECT_THROW(experts_within("lots", 96, 1000), Error);
  EXPECT_THROW(experts_within("150%", 96, 1000), Error);
  EXPECT_THROW(experts_within("-1", 96, 1000), Error);
  EXPECT_THROW(experts_within("5T", 96, 1000), Error);
}

TEST(Residency, CommitteesSpreadOverLayersWithinWhatEachHolds) {
  EXPECT_EQ(spread_committees(10, {8, 8, 8, 8}), (std::vector<int>{3, 3, 2, 2}));
  EXPECT_EQ(spread_committees(100, {8, 8}), (std::vector<int>{8, 8}));
  EXPECT_EQ(spread_committees(0, {8, 8, 8}), (std::vector<int>{0, 0, 0}));
  EXPECT_EQ(spread_committees(5, {1, 4, 0}), (std::vector<int>{1, 4, 0}));
  EXPECT_EQ(spread_committees(3, {1, 4, 2}), (std::vector<int>{1, 1, 1}));
}

TEST(Residency, ExpertsNotHeldAreNeverResidentNorSwappedIn) {
  // An expert rank holding experts 0 and 2 of four.
  ExpertResidency r({1}, {{1.0, 9.0, 2.0, 9.0}}, MissPolicy::kSubstitute, CommitteeKind::kDynamic,
                    1, 0.8, 1.5, {{1, 0, 1, 0}});
  EXPECT_EQ(r.resident_experts(0), (std::vector<int>{2}));  // the larger norm of those held
  r.record_demand(0, 0, 10.0);  // demand for 0 makes it the more important
  r.record_demand(0, 1, 99.0);  // not held here: ignored
  const std::vector<PageJob> jobs = r.plan_swaps(0);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].expert, 0);
  EXPECT_THROW(ExpertResidency({3}, {{1.0, 1.0, 1.0, 1.0}}, MissPolicy::kSkip,
                               CommitteeKind::kRandom, 1, 0.8, 1.5, {{1, 0, 1, 0}}),
               Error);
}

TEST(Residency, MissPolicyAppliesToAnyViewOfResidency) {
  ResidencyCounters n;
  Tokens in({0.0f, 1.0f, 2.0f, 0.5f});  // wants 2
  apply_miss_policy(
      MissPolicy::kSubstitute, [](int e) { return e == 3; }, in.logits.data(), 4, in.gate, n);
  EXPECT_EQ(in.gate.expert[0], 3);
  EXPECT_EQ(n.substituted, 1);
}

TEST(Residency, PolicyAndCommitteeNamesRoundTripAndBadOnesAreRefused) {
  for (const char* name : {"wait", "on-demand", "substitute", "skip"})
    EXPECT_STREQ(miss_policy_name(parse_miss_policy(name)), name);
  for (const char* name : {"dynamic", "random", "magnitude"})
    EXPECT_STREQ(committee_kind_name(parse_committee_kind(name)), name);
  EXPECT_THROW(parse_miss_policy("later"), Error);
  EXPECT_THROW(parse_committee_kind("all"), Error);
}

}  // namespace moe
