// profile.json (router/profile.hpp): what `moe profile` writes reads back the same, the optional
// CPU-time curve included, and a bad field is named.
#include "router/profile.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "runtime/error.hpp"

namespace moe {
namespace {

Profile two_ranks() {
  Profile p;
  p.d_model = 8;
  p.d_ff = 32;
  p.num_experts = 4;
  p.num_moe_layers = 2;
  RankProfile a;
  a.rank = 1;
  a.host = "h";
  a.device = "cpu:1";
  a.expert = {{1, 2, 4}, {10, 15, 30}};
  a.link_latency_us = 7;
  a.link_bytes_per_us = 900;
  a.memory_bytes = 1 << 20;
  RankProfile b = a;
  b.rank = 2;
  b.device = "cpu:1@0.4";
  b.expert = {{1, 2, 4}, {25, 40, 80}};  // wall time under the quota
  b.expert_cpu = {{1, 2, 4}, {9, 14, 29}};
  b.call_cpu_us = 310;
  b.receive_us = 12.5;
  b.expert_load_us = 6400;
  p.ranks = {a, b};
  return p;
}

TEST(Profile, RoundTripsWithAndWithoutTheCpuTimeCurve) {
  const Profile p = two_ranks();
  const nlohmann::json j = profile_to_json(p);
  EXPECT_FALSE(j.at("ranks").at(0).contains("expert_cpu_us"));
  EXPECT_EQ(j.at("ranks").at(1).at("expert_cpu_us"), (std::vector<double>{9, 14, 29}));
  const Profile q = parse_profile(j, "p.json");
  ASSERT_EQ(q.ranks.size(), 2u);
  EXPECT_TRUE(q.of(1).expert_cpu.median_us.empty());
  EXPECT_EQ(q.of(2).expert_cpu.tokens, (std::vector<double>{1, 2, 4}));
  EXPECT_EQ(q.of(2).expert_cpu.median_us, (std::vector<double>{9, 14, 29}));
  EXPECT_EQ(q.of(2).expert.median_us, (std::vector<double>{25, 40, 80}));
  EXPECT_EQ(q.of(2).device, "cpu:1@0.4");
  EXPECT_DOUBLE_EQ(q.of(2).expert_cpu.at(3), 21.5);
  // The CPU per call outside the FFN: written where measured, 0 where absent.
  EXPECT_FALSE(j.at("ranks").at(0).contains("call_cpu_us"));
  EXPECT_DOUBLE_EQ(q.of(1).call_cpu_us, 0);
  EXPECT_DOUBLE_EQ(q.of(2).call_cpu_us, 310);
  // So is the receive time.
  EXPECT_FALSE(j.at("ranks").at(0).contains("receive_us"));
  EXPECT_DOUBLE_EQ(q.of(1).receive_us, 0);
  EXPECT_DOUBLE_EQ(q.of(2).receive_us, 12.5);
  // And one expert's load time (0: not measured, as on a GPU rank).
  EXPECT_FALSE(j.at("ranks").at(0).contains("expert_load_us"));
  EXPECT_DOUBLE_EQ(q.of(1).expert_load_us, 0);
  EXPECT_DOUBLE_EQ(q.of(2).expert_load_us, 6400);
}

TEST(Profile, ANegativeCallCpuReceiveOrLoadTimeIsRejectedNamingTheRank) {
  for (const std::string field : {"call_cpu_us", "receive_us", "expert_load_us"}) {
    nlohmann::json j = profile_to_json(two_ranks());
    j["ranks"][1][field] = -1;
    try {
      parse_profile(j, "p.json");
      FAIL() << "accepted a negative " << field;
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("rank 2"), std::string::npos) << what;
      EXPECT_NE(what.find(field), std::string::npos) << what;
    }
  }
}

TEST(Profile, ACpuCurveOfTheWrongLengthOrANegativeTimeIsRejected) {
  nlohmann::json j = profile_to_json(two_ranks());
  j["ranks"][1]["expert_cpu_us"] = {9, 14};
  try {
    parse_profile(j, "p.json");
    FAIL() << "accepted a short expert_cpu_us";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("p.json"), std::string::npos) << what;
    EXPECT_NE(what.find("rank 2"), std::string::npos) << what;
    EXPECT_NE(what.find("expert_cpu_us"), std::string::npos) << what;
  }
  j["ranks"][1]["expert_cpu_us"] = {9, -14, 29};
  EXPECT_THROW(parse_profile(j, "p.json"), Error);
}

TEST(Profile, ServingCurvesAndContentionRoundTripAndABadCurveIsNamed) {
  Profile p = two_ranks();
  EXPECT_FALSE(profile_to_json(p).contains("serving"));
  ServingCurves& s = p.serving;
  s.decode_attention = {{1, 8}, {900, 2400}};
  s.decode_experts = {{1, 8}, {1500, 5200}};
  s.encode_attention = {{16, 128}, {4000, 21000}};
  s.encode_experts = {{16, 128}, {3000, 30000}};
  s.decode_dense = {{1, 8}, {0, 0}};
  s.decode_lm_head = {{1, 8}, {300, 900}};
  s.decode_lm_head_exchanges = 1;
  s.encode_dense = {{16, 128}, {1400, 14000}};
  s.decode_exchanges = 7;
  s.encode_exchanges = 12;
  s.encode_dense_exchanges = 6;
  s.input_tokens = 16;
  s.threads = 1;
  s.dense_ffn = "xxaa";
  s.lm_head_on_experts = 0.5;
  p.contention.value = 0.12;
  nlohmann::json j = profile_to_json(p);
  const Profile q = parse_profile(j, "p.json");
  EXPECT_EQ(q.serving.decode_experts.median_us, (std::vector<double>{1500, 5200}));
  EXPECT_EQ(q.serving.encode_attention.tokens, (std::vector<double>{16, 128}));
  EXPECT_DOUBLE_EQ(q.serving.decode_exchanges, 7);
  EXPECT_DOUBLE_EQ(q.serving.encode_dense_exchanges, 6);
  EXPECT_DOUBLE_EQ(q.serving.decode_lm_head_exchanges, 1);
  EXPECT_EQ(q.serving.decode_lm_head.median_us, (std::vector<double>{300, 900}));
  EXPECT_EQ(q.serving.encode_dense.median_us, (std::vector<double>{1400, 14000}));
  EXPECT_EQ(q.serving.dense_ffn, "xxaa");
  EXPECT_DOUBLE_EQ(q.serving.lm_head_on_experts, 0.5);
  EXPECT_DOUBLE_EQ(q.contention.value, 0.12);
  // The contention object as `moe profile --contention` writes it is written back whole.
  nlohmann::json measured = {{"value", 0.16},
                             {"same_experts", 0.15},
                             {"ranks_at_once", 2},
                             {"by_tokens",
                              {{{"tokens", 1}, {"value", 0.5}, {"same_experts", 0.51}},
                               {{"tokens", 8}, {"value", 0.1}, {"same_experts", 0.09}}}}};
  nlohmann::json with_contention = profile_to_json(p);
  with_contention["contention"] = measured;
  const Profile r = parse_profile(with_contention, "p.json");
  EXPECT_EQ(profile_to_json(r).at("contention"), measured);
  EXPECT_DOUBLE_EQ(r.contention.at(4), 0.5 - 0.4 * 3 / 7);
  EXPECT_DOUBLE_EQ(r.contention.at(64), 0.1);
  EXPECT_EQ(profile_to_json(merge_profiles(r, two_ranks())).at("contention"), measured);
  with_contention["contention"]["by_tokens"][0]["tokens"] = 0;
  EXPECT_THROW(parse_profile(with_contention, "p.json"), Error);
  // A merge keeps the newer curves.
  EXPECT_DOUBLE_EQ(merge_profiles(two_ranks(), q).serving.decode_exchanges, 7);
  j["serving"]["decode_experts_us"] = {1500};
  try {
    parse_profile(j, "p.json");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("p.json: serving: decode_sequences and decode_experts_us"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace moe
