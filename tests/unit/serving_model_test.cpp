// The serving model (router/sim/serving_model.hpp) against hand-computed runs: one lane's pass is
// its segments, exchanges and links end to end; two lanes overlap attention with the experts and
// approach the larger side's work; one shared core leaves no overlap; contention slows both sides;
// admissions and the requests left over follow the server's rules; co-located ranks serve each
// other's rows between their own segments, read their experts once for every rank's rows, and run
// the dense FFNs and the lm_head themselves; a profile without curves is refused naming the option
// that measures them.
#include "router/sim/serving_model.hpp"

#include <gtest/gtest.h>

#include "runtime/error.hpp"

namespace moe::sim {
namespace {

constexpr double kUsTol = 1e-6;

// y = slope · x exactly (the curve through (1, slope) and (1000, 1000 slope)).
LatencyCurve proportional(double slope) { return {{1, 1000}, {slope, 1000 * slope}}; }

// Attention a µs and experts x µs per decoded sequence, k exchanges a step; encoder passes cost
// ea and ex µs per input token with ke exchanges; links of `latency` µs and unlimited bandwidth.
Profile profile_of(double a, double x, int k, double ea, double ex, int ke, double latency) {
  Profile p;
  p.d_model = 4;
  p.num_experts = 8;
  RankProfile r;
  r.rank = 1;
  r.link_latency_us = latency;
  r.link_bytes_per_us = 1e18;
  p.ranks.push_back(r);
  ServingCurves& s = p.serving;
  s.decode_attention = proportional(a);
  s.decode_experts = proportional(x);
  s.encode_attention = proportional(ea);
  s.encode_experts = proportional(ex);
  s.decode_exchanges = k;
  s.encode_exchanges = ke;
  s.input_tokens = 4;
  s.threads = 1;
  return p;
}

TEST(ServingModel, OneLaneIsItsSegmentsExchangesAndLinksEndToEnd) {
  // One request of 4 input tokens, 3 new tokens: an encoder pass (40 + 20 µs of work, one
  // exchange: two 5 µs links), then 3 decode steps of 1 row (100 + 60 µs, two exchanges).
  const Profile p = profile_of(100, 60, 2, 10, 5, 1, 5);
  const ServingPrediction r = predict_serving(p, {1, 1, 1, 1, 0}, {{4}, 3}, {});
  const double encode = 40 + 20 + 1 * 10, step = 100 + 60 + 2 * 10;
  EXPECT_NEAR(r.seconds * 1e6, encode + 3 * step, kUsTol);
  EXPECT_NEAR(r.tokens_per_s, 3 / r.seconds, 1e-6);
  EXPECT_NEAR(r.decode_step_ms * 1e3, step, kUsTol);
  EXPECT_NEAR(r.attention_busy, (40 + 3 * 100) / (encode + 3 * step), 1e-9);
}

TEST(ServingModel, OneProcessComputesTheExpertsInLineWithoutLinks) {
  const Profile p = profile_of(100, 60, 2, 10, 5, 1, 5);
  const ServingPrediction r = predict_serving(p, {1, 0, 1, 1, 0}, {{4}, 3}, {});
  EXPECT_NEAR(r.seconds * 1e6, 60 + 3 * 160, kUsTol);
  EXPECT_NEAR(r.attention_busy, 1.0, 1e-9);
}

TEST(ServingModel, TwoLanesOverlapAttentionWithTheExperts) {
  // Equal sides, proportional curves: one lane of 8 rows takes 8 (100 + 100) per step; two lanes
  // of 4 alternate, each side busy nearly all the time: close to 8 · 100 per step.
  const Profile p = profile_of(100, 100, 6, 10, 10, 6, 0);
  const double one =
      predict_serving(p, {1, 1, 1, 8, 0}, {std::vector<int>(8, 4), 4}, {}).decode_step_ms;
  const double two =
      predict_serving(p, {1, 1, 2, 8, 0}, {std::vector<int>(8, 4), 4}, {}).decode_step_ms;
  EXPECT_NEAR(one * 1e3, 1600, kUsTol);
  EXPECT_LT(two * 1e3, 0.6 * 1600);
  EXPECT_GE(two * 1e3, 800 - kUsTol);  // neither side can do more than its work
}

TEST(ServingModel, OneSharedCoreLeavesNothingToOverlap) {
  const Profile p = profile_of(100, 100, 6, 10, 10, 6, 0);
  const double two =
      predict_serving(p, {1, 1, 2, 8, 0}, {std::vector<int>(8, 4), 4}, {1, {0}}).decode_step_ms;
  EXPECT_NEAR(two * 1e3, 1600, 1e-3);
}

TEST(ServingModel, ContentionSlowsRanksThatComputeAtOnce) {
  const Profile p = profile_of(100, 100, 6, 10, 10, 6, 0);
  const double free =
      predict_serving(p, {1, 1, 2, 8, 0}, {std::vector<int>(8, 4), 4}, {}).decode_step_ms;
  const double slowed =
      predict_serving(p, {1, 1, 2, 8, 0}, {std::vector<int>(8, 4), 4}, {0, {0.5}}).decode_step_ms;
  EXPECT_GT(slowed, 1.2 * free);
  // Without overlap there is nobody to contend with.
  const double one =
      predict_serving(p, {1, 1, 1, 8, 0}, {std::vector<int>(8, 4), 4}, {0, {0.5}}).decode_step_ms;
  EXPECT_NEAR(one * 1e3, 1600, kUsTol);
}

TEST(ServingModel, ContentionIsTakenAtTheRowsEachRankComputes) {
  // Contention 1 at one token, 0 from 8 on: the attention rank's 4-row segments are slowed by
  // 0.57 (interpolated at 4), the experts' 0.5-row share of each of 8 experts at the 1-token
  // value, so the overlap gains less than at a flat contention of 0.
  const Profile p = profile_of(100, 100, 6, 10, 10, 6, 0);
  ServingHost by_rows{0, {0, {{1, 8}, {1, 0}}}};
  EXPECT_DOUBLE_EQ(by_rows.contention.at(4), 1 - 3.0 / 7);
  EXPECT_DOUBLE_EQ(by_rows.contention.at(0.5), 1);  // below one token: the one-token value
  EXPECT_DOUBLE_EQ(by_rows.contention.at(64), 0);
  // Past the ends the measured values hold; one point holds everywhere.
  ServingHost noisy_end{0, {0, {{1, 2, 4}, {0.1, 0.3, 0.5}}}};
  EXPECT_DOUBLE_EQ(noisy_end.contention.at(128), 0.5);
  ServingHost one_point{0, {0, {{8}, {0.2}}}};
  EXPECT_DOUBLE_EQ(one_point.contention.at(1), 0.2);
  EXPECT_DOUBLE_EQ(one_point.contention.at(512), 0.2);
  const double flat =
      predict_serving(p, {1, 1, 2, 8, 0}, {std::vector<int>(8, 4), 4}, {}).decode_step_ms;
  const double slowed =
      predict_serving(p, {1, 1, 2, 8, 0}, {std::vector<int>(8, 4), 4}, by_rows).decode_step_ms;
  EXPECT_GT(slowed, 1.3 * flat);
}

TEST(ServingModel, RefusesAHostItCannotModel) {
  const Profile p = profile_of(100, 100, 6, 10, 10, 6, 0);
  EXPECT_THROW(predict_serving(p, {1, 1, 2, 8, 0}, {{4}, 1}, {0.5, {2}}), Error);  // cores
  EXPECT_THROW(predict_serving(p, {1, 1, 2, 8, 0}, {{4}, 1}, {0, {-0.5}}), Error);
  EXPECT_NO_THROW(predict_serving(p, {1, 1, 2, 8, 0}, {{4}, 1}, {1, {3}}));
}

TEST(ServingModel, RefusesMoreExpertRanksThanExperts) {
  const Profile p = profile_of(100, 100, 6, 10, 10, 6, 0);
  EXPECT_NO_THROW(predict_serving(p, {1, 8, 1, 8, 0}, {{4}, 1}, {}));
  EXPECT_THROW(predict_serving(p, {1, 9, 1, 8, 0}, {{4}, 1}, {}), Error);
}

TEST(ServingModel, LanesRefillAsTheServerDoes) {
  // Batch 4, one lane, 6 requests of 2 new tokens, later admissions of a quarter of the lane (1):
  // the first 4 join in one encoder pass and leave after 2 steps; then the fifth joins and steps
  // once, the sixth joins and both step (the fifth leaves), and the sixth steps alone.
  const Profile p = profile_of(10, 0, 0, 1, 0, 0, 0);
  const ServingPrediction r = predict_serving(p, {1, 1, 1, 4, 0}, {std::vector<int>(6, 4), 2}, {});
  const double encode4 = 4 * 4 * 1, encode1 = 4 * 1;
  const double expected = encode4 + 2 * (4 * 10)  // the first four
                          + encode1 + 1 * 10      // the fifth's first step
                          + encode1 + 2 * 10      // the sixth joins: both step
                          + 1 * 10;               // the sixth's last step
  EXPECT_NEAR(r.seconds * 1e6, expected, kUsTol);
  EXPECT_NEAR(r.tokens_per_s, 12 / r.seconds, 1e-6);
}

TEST(ServingModel, ADenseFfnGoesWholeToOneExpertRankWhereASparseLayerSpreads) {
  // Two expert ranks, one request of one new token: 100 µs of attention, 60 µs of expert work
  // over 2 exchanges. Spread, each exchange takes 30 / 2 µs; dense, 30 µs on one rank.
  Profile p = profile_of(100, 60, 2, 0, 0, 0, 0);
  const double spread = predict_serving(p, {1, 2, 1, 1, 0}, {{4}, 1}, {}).seconds;
  EXPECT_NEAR(spread * 1e6, 100 + 30, kUsTol);
  p.serving.decode_dense = proportional(60);
  p.serving.decode_dense_exchanges = 2;
  const double dense = predict_serving(p, {1, 2, 1, 1, 0}, {{4}, 1}, {}).seconds;
  EXPECT_NEAR(dense * 1e6, 100 + 60, kUsTol);
  // One dense exchange of 20 µs on one rank, one spread exchange of 40 µs over both.
  p.serving.decode_dense = proportional(20);
  p.serving.decode_dense_exchanges = 1;
  const double half = predict_serving(p, {1, 2, 1, 1, 0}, {{4}, 1}, {}).seconds;
  EXPECT_NEAR(half * 1e6, 100 + 20 + 40 / 2.0, kUsTol);
}

TEST(ServingModel, ASparseLayerWaitsForItsBusiestExpertRank) {
  // Each expert costs 100 µs however many rows it gets (bound by its weights). One row hits one
  // expert, on one of 2 ranks: the busiest rank has all of the work, twice the mean, so the
  // exchange takes 2 × 60 / 2 µs. Many rows hit every expert: even.
  Profile p = profile_of(100, 60, 1, 0, 0, 0, 0);
  p.ranks[0].expert = {{1, 1000}, {100, 100}};
  EXPECT_NEAR(predict_serving(p, {1, 2, 1, 1, 0}, {{4}, 1}, {}).seconds * 1e6, 100 + 60, kUsTol);
  EXPECT_NEAR(predict_serving(p, {1, 1, 1, 1, 0}, {{4}, 1}, {}).seconds * 1e6, 100 + 60, kUsTol);
  p.serving.decode_experts = proportional(60.0 / 4096);  // 60 µs at 4096 rows
  p.serving.decode_attention = proportional(100.0 / 4096);
  const double many =
      predict_serving(p, {1, 2, 1, 4096, 0}, {std::vector<int>(4096, 4), 1}, {}).decode_step_ms;
  EXPECT_NEAR(many * 1e3, 100 + 30, kUsTol);
  // The lm_head's columns split evenly whatever the rows.
  Profile q = profile_of(100, 60, 1, 0, 0, 0, 0);
  q.ranks[0].expert = {{1, 1000}, {100, 100}};
  q.serving.decode_lm_head = proportional(60);
  q.serving.decode_lm_head_exchanges = 1;
  EXPECT_NEAR(predict_serving(q, {1, 2, 1, 1, 0}, {{4}, 1}, {}).seconds * 1e6, 100 + 30, kUsTol);
}

TEST(ServingModel, LanesOfOneAttentionRankShareItsQueueAndTakeTurns) {
  // Two lanes of one sequence each, 3 requests of 4 tokens, 1 new token, attention only (1 µs per
  // input token, 10 per decoded row). On the one attention rank, first come first served: lane 0's
  // encoder pass [0, 4], lane 1's [4, 8], lane 0's step [8, 18] (its sequence leaves and it takes
  // the third request), lane 1's step [18, 28] (nothing left for it), lane 0's encoder pass
  // [28, 32] and its step [32, 42].
  const Profile p = profile_of(10, 0, 0, 1, 0, 0, 0);
  const ServingPrediction r = predict_serving(p, {1, 1, 2, 2, 0}, {{4, 4, 4}, 1}, {});
  EXPECT_NEAR(r.seconds * 1e6, 42, kUsTol);
  EXPECT_NEAR(r.tokens_per_s, 3 / r.seconds, 1e-6);
}

TEST(ServingModel, AdmitPerStepSetsHowManyJoinAPass) {
  // Encoder passes cost 10 µs each plus 1 per token, so fewer, larger admissions are cheaper.
  // Batch 4, 6 requests of 4 tokens, 2 new tokens, 10 µs per decoded row. By default a lane
  // admits a quarter of its share (1) per step after its first: passes of 16, 4 and 4 tokens
  // (26 + 14 + 14) and steps of 4, 4, 1, 2, 1 rows (120). Two at a time: passes of 16 and 8
  // tokens (26 + 18) and steps of 4, 4, 2, 2 rows (120).
  Profile p = profile_of(10, 0, 0, 1, 0, 0, 0);
  p.serving.encode_attention = {{4, 1000}, {14, 1010}};
  const ServingWorkload six{std::vector<int>(6, 4), 2};
  EXPECT_NEAR(predict_serving(p, {1, 1, 1, 4, 0}, six, {}).seconds * 1e6, 54 + 120, kUsTol);
  EXPECT_NEAR(predict_serving(p, {1, 1, 1, 4, 2}, six, {}).seconds * 1e6, 44 + 120, kUsTol);
}

TEST(ServingModel, AnEncoderPassPadsItsRequestsToTheLongest) {
  // Two requests of 2 and 6 input tokens join together: 2 × 6 tokens of encoder work.
  const Profile p = profile_of(10, 0, 0, 1, 0, 0, 0);
  const ServingPrediction r = predict_serving(p, {1, 1, 1, 2, 0}, {{2, 6}, 1}, {});
  EXPECT_NEAR(r.seconds * 1e6, 2 * 6 + 2 * 10, kUsTol);
}

TEST(ServingModel, AttentionRanksShareTheRequestsAndTheExpertRanks) {
  // Two attention ranks with one request each run side by side: the same time as one alone when
  // the experts cost nothing.
  const Profile p = profile_of(100, 0, 2, 10, 0, 1, 0);
  const double alone = predict_serving(p, {1, 1, 1, 1, 0}, {{4}, 3}, {}).seconds;
  const double two = predict_serving(p, {2, 1, 1, 1, 0}, {{4, 4}, 3}, {}).seconds;
  EXPECT_NEAR(two, alone, 1e-12);
}

TEST(ServingModel, CoLocatedRanksServeEachOthersRowsBetweenTheirOwnSegments) {
  // Two co-located ranks, one request each, decode steps of one row each, no encoder work. A
  // rank's step is its attention (100) and its share of every sparse layer's rows (60 over both
  // ranks' rows, half of them on each rank). With links, no more than 2 × 5 µs per exchange on
  // top (a rank serves the other's rows while its own results travel).
  const Profile p = profile_of(100, 60, 2, 0, 0, 1, 0);
  const ServingLayout colocated{2, 0, 1, 1, 0, true};
  const ServingPrediction r = predict_serving(p, colocated, {{4, 4}, 3}, {});
  EXPECT_NEAR(r.decode_step_ms * 1e3, 100 + 60, kUsTol);
  EXPECT_NEAR(r.tokens_per_s, 6 / r.seconds, 1e-6);
  EXPECT_NEAR(r.experts_busy, r.attention_busy, 1e-12);  // the same ranks
  const double linked =
      predict_serving(profile_of(100, 60, 2, 0, 0, 1, 5), colocated, {{4, 4}, 3}, {})
          .decode_step_ms;
  EXPECT_GT(linked * 1e3, 160 + kUsTol);
  EXPECT_LE(linked * 1e3, 160 + 2 * 10 + kUsTol);
}

TEST(ServingModel, CoLocatedRanksReadTheirExpertsOnceForEveryRanksRows) {
  // Experts whose cost does not grow with the rows (a weight read: 80 µs a step at any count):
  // the ranks' k-th exchanges meet in one call on each rank, so each rank pays half of 80.
  Profile p = profile_of(100, 0, 2, 0, 0, 1, 0);
  p.serving.decode_experts = {{1, 1000}, {80, 80}};
  const ServingPrediction r = predict_serving(p, {2, 0, 1, 1, 0, true}, {{4, 4}, 3}, {});
  EXPECT_NEAR(r.decode_step_ms * 1e3, 100 + 80 / 2, kUsTol);
}

TEST(ServingModel, CoLocatedRanksRunTheDenseFfnsAndTheLmHeadThemselves) {
  // Measured with expert ranks: a dense FFN (20 µs) and the lm_head's share (10 µs) among the
  // experts' 60, each with its exchange. Co-located, they join the rank's own work and their
  // exchanges go: the same run as a profile with 30 µs more attention and one sparse exchange.
  Profile p = profile_of(100, 60, 3, 0, 0, 1, 5);
  p.serving.decode_dense = proportional(20);
  p.serving.decode_dense_exchanges = 1;
  p.serving.decode_lm_head = proportional(10);
  p.serving.decode_lm_head_exchanges = 1;
  const ServingLayout colocated{2, 0, 1, 1, 0, true};
  const ServingPrediction r = predict_serving(p, colocated, {{4, 4}, 3}, {});
  const ServingPrediction same =
      predict_serving(profile_of(130, 30, 1, 0, 0, 1, 5), colocated, {{4, 4}, 3}, {});
  EXPECT_NEAR(r.seconds, same.seconds, 1e-12);
  EXPECT_NEAR(r.decode_step_ms, same.decode_step_ms, 1e-9);
}

TEST(ServingModel, RefusesAProfileWithoutServingCurves) {
  Profile p = profile_of(1, 1, 1, 1, 1, 1, 0);
  p.serving = {};
  try {
    predict_serving(p, {}, {{4}, 3}, {});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--serving-rows"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace moe::sim
