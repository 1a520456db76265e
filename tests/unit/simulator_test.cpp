// The cluster simulator (router/sim/) against hand-computed cases: one rank's layer is
// link + compute + link, parallel ranks take the maximum, ports and queues add up, shared cores
// slow ranks down; the policies it drives decide exactly what they decide when called directly;
// the summary of a run; cluster configs, synthetic traces and placements.
// Times are exact sums of the given numbers (tolerance 1e-9 µs).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <set>

#include "router/latency_policy.hpp"
#include "router/policy_factory.hpp"
#include "router/sim/bench_schedule.hpp"
#include "router/sim/cluster.hpp"
#include "router/sim/event_model.hpp"
#include "router/sim/metrics.hpp"
#include "router/sim/placements.hpp"
#include "router/sim/refine_placement.hpp"
#include "router/sim/synthetic_trace.hpp"
#include "runtime/error.hpp"

namespace moe::sim {
namespace {

using nlohmann::json;
constexpr double kTol = 1e-9;

// Curve: 10 µs per token, exactly (at(n) = 10 n).
json linear_class() { return {{"expert_tokens", {1, 1000}}, {"expert_median_us", {10, 10000}}}; }

// One node holding `coordinators` coordinators and `experts` expert ranks of class "x".
json one_node(int coordinators, int experts, double latency_us, double gbytes_per_s,
              const std::string& combine = "push", int cores = 0) {
  return {{"format", "moe-cluster/1"},
          {"classes", {{"x", linear_class()}}},
          {"links",
           {{"intra_node", {{"latency_us", latency_us}, {"gbytes_per_s", gbytes_per_s}}},
            {"inter_node", {{"latency_us", 1000}, {"gbytes_per_s", 1}}}}},
          {"combine", combine},
          {"nodes",
           {{{"name", "n"},
             {"cores", cores},
             {"coordinators", coordinators},
             {"experts", {{{"class", "x"}, {"count", experts}}}}}}}};
}

ClusterConfig cluster_of(const json& j) { return parse_cluster(j, "test-cluster", Profile{}); }

// One layer call of batch `batch`: `count[e]` tokens to expert e, all kept.
RoutingRecord call_of(const std::vector<int>& count, int64_t batch = 0, int layer = 0) {
  RoutingRecord r;
  r.batch = batch;
  r.layer = layer;
  r.sequences = 1;
  for (int e = 0; e < int(count.size()); ++e)
    for (int i = 0; i < count[e]; ++i) {
      r.expert.push_back(e);
      r.probability.push_back(0.5f + 0.01f * float(i % 7));
      r.kept.push_back(1);
      r.entropy.push_back(1.0f);
    }
  r.seq_len = int(r.expert.size());
  return r;
}

// Every expert on the given ranks (one layer).
ExpertMap map_of(const std::vector<std::vector<int>>& ranks_of_expert, int layers = 1) {
  ExpertMap m;
  m.replicas.assign(layers, ranks_of_expert);
  return m;
}

SimOptions options(int d_model) {
  SimOptions o;
  o.d_model = d_model;
  o.warmup_passes = 0;
  o.passes = 1;
  return o;
}

// Passes decisions through and keeps what the simulator gave the policy and what it observed.
class Spy final : public DispatchPolicy {
 public:
  explicit Spy(std::unique_ptr<DispatchPolicy> inner) : inner_(std::move(inner)) {}
  std::string name() const override { return inner_->name(); }
  void assign(int layer, const ExpertDispatch& d, const GateResult& gate, const ExpertMap& map,
              std::vector<int>& rank_of_row) override {
    inner_->assign(layer, d, gate, map, rank_of_row);
    assigned.push_back(rank_of_row);
  }
  void observe(const std::vector<RankFeedback>& f) override {
    observed.push_back(f);
    inner_->observe(f);
  }
  std::vector<std::vector<int>> assigned;
  std::vector<std::vector<RankFeedback>> observed;

 private:
  std::unique_ptr<DispatchPolicy> inner_;
};

SimResult run(const ClusterConfig& c, const ExpertMap& map, const std::vector<RoutingRecord>& trace,
              int d_model, std::vector<DispatchPolicy*> policies = {}) {
  std::vector<std::unique_ptr<DispatchPolicy>> owned;
  if (policies.empty())
    for (int i = 0; i < c.coordinators; ++i) {
      owned.push_back(make_basic_dispatch_policy("static", 1));
      policies.push_back(owned.back().get());
    }
  return simulate(c, map, policies, trace, options(d_model));
}

}  // namespace

TEST(SimulatorEventModel, OneRankLayerIsLinkPlusComputePlusLink) {
  // d_model 250: a row is 1000 bytes; 1 GB/s = 1000 bytes/µs, so 10 rows take 10 µs on the wire.
  // Header 50, block 10, compute 100, reply 50 (+ rows 10), whether the rows ride with the reply
  // (push) or are taken after it (pull: no second latency, the transfer was announced).
  for (const std::string combine : {"push", "pull"}) {
    const auto c = cluster_of(one_node(1, 1, 50, 1.0, combine));
    const auto r = run(c, map_of({{1}}), {call_of({10})}, 250);
    ASSERT_EQ(r.calls.size(), 1u);
    EXPECT_NEAR(r.calls[0].latency_us(), 50 + 10 + 100 + 50 + 10, kTol) << combine;
    EXPECT_EQ(r.calls[0].rows_per_rank, (std::vector<int>{0, 10}));
    EXPECT_NEAR(r.busy_us[1], 100, kTol);
  }
}

TEST(SimulatorEventModel, TwoRanksInParallelTakeTheMaximum) {
  // Bandwidth too high to matter: rank 1 computes 100 µs, rank 2 300 µs, side by side.
  const auto c = cluster_of(one_node(1, 2, 50, 1e9));
  Spy spy(make_basic_dispatch_policy("static", 1));
  const auto r = run(c, map_of({{1}, {2}}), {call_of({10, 30})}, 250, {&spy});
  EXPECT_NEAR(r.calls[0].latency_us(), 50 + 300 + 50, 1e-6);
  // Each reply is seen as it arrives (the coordinator's sends do not hold it), as bench-routing
  // --per-call reports them.
  EXPECT_NEAR(r.calls[0].latency_us_per_rank[1], 50 + 100 + 50, 1e-6);
  EXPECT_NEAR(r.calls[0].latency_us_per_rank[2], 50 + 300 + 50, 1e-6);
  EXPECT_NEAR(r.calls[0].compute_us_per_rank[1], 100, 1e-6);
  EXPECT_NEAR(r.calls[0].compute_us_per_rank[2], 300, 1e-6);
  ASSERT_EQ(spy.observed.size(), 1u);
  ASSERT_EQ(spy.observed[0].size(), 2u);
  EXPECT_EQ(spy.observed[0][0].rank, 1);
  EXPECT_NEAR(spy.observed[0][0].latency_us, 200, 1e-6);
  EXPECT_NEAR(spy.observed[0][1].latency_us, 400, 1e-6);
}

TEST(SimulatorEventModel, TheCoordinatorsPortSerialisesItsSendsAndReceives) {
  // 1000 bytes/µs: both headers arrive at 50; rank 1 takes its 10 rows (50 → 60), rank 2 its 30
  // rows after them on the coordinator's port (60 → 90), computes to 390, its reply leaves 420
  // and arrives 470.
  const auto c = cluster_of(one_node(1, 2, 50, 1.0));
  const auto r = run(c, map_of({{1}, {2}}), {call_of({10, 30})}, 250);
  EXPECT_NEAR(r.calls[0].latency_us(), 470, kTol);
  // A per-message overhead of 5 µs: headers leave at 5 and 10; rank 2 takes its block after rank
  // 1's (65 → 95), computes to 395 and replies: 395 + 5 + 30 + 50 = 480.
  auto j = one_node(1, 2, 50, 1.0);
  j["message_overhead_us"] = 5;
  EXPECT_NEAR(
      run(cluster_of(j), map_of({{1}, {2}}), {call_of({10, 30})}, 250).calls[0].latency_us(), 480,
      kTol);
}

TEST(SimulatorEventModel, QueueingAddsUpAcrossCoordinators) {
  // Two coordinators send 10 rows each to one rank at t = 0; the rank serves them in turn.
  const auto c = cluster_of(one_node(2, 1, 50, 1e9));
  std::vector<std::unique_ptr<Spy>> spies;
  std::vector<DispatchPolicy*> policies;
  for (int i = 0; i < 2; ++i) {
    spies.push_back(std::make_unique<Spy>(make_basic_dispatch_policy("static", 1)));
    policies.push_back(spies.back().get());
  }
  const auto r = run(c, map_of({{2}}), {call_of({10}, 0), call_of({10}, 1)}, 250, policies);
  ASSERT_EQ(r.calls.size(), 2u);
  std::map<int, double> latency;
  for (const auto& call : r.calls) latency[call.coordinator] = call.latency_us();
  EXPECT_NEAR(latency[0], 50 + 100 + 50, 1e-6);
  EXPECT_NEAR(latency[1], 50 + 100 + 100 + 50, 1e-6);  // waited 100 µs in the rank's queue
  ASSERT_EQ(spies[1]->observed.size(), 1u);
  const RankFeedback f = spies[1]->observed[0][0];
  EXPECT_EQ(f.rank, 2);
  EXPECT_EQ(f.tokens, 10);
  // The rank measures its queue from its receive of the header returning, as expert_rank.cpp
  // does: the wait behind coordinator 0's block is not in it; the block arrives at once.
  EXPECT_NEAR(f.queue_us, 0, 1e-6);
  EXPECT_NEAR(f.compute_us, 100, 1e-6);
  EXPECT_NEAR(f.latency_us, 300, 1e-6);
}

TEST(SimulatorEventModel, TheReceiveTimeIsTheFloorUnderABlocksTransfer) {
  // 1000 bytes/µs, d_model 250: 10 rows take 10 µs on the wire, 100 rows 100 µs. With a receive
  // time of 25 µs the small block is in hand 25 µs after the header (50 + 25 + 100 compute + 50
  // reply + 10 pulled rows = 235), and the rank reports that as its queue; the large one's
  // transfer is longer than the floor and alone counts (50 + 100 + 1000 + 50 + 100 = 1300).
  auto j = one_node(1, 1, 50, 1.0, "pull");
  j["classes"]["x"]["receive_us"] = 25;
  const auto c = cluster_of(j);
  for (auto [rows, latency, queue] : {std::tuple{10, 235.0, 25.0}, {100, 1300.0, 100.0}}) {
    Spy spy(make_basic_dispatch_policy("static", 1));
    const auto r = run(c, map_of({{1}}), {call_of({rows})}, 250, {&spy});
    EXPECT_NEAR(r.calls[0].latency_us(), latency, kTol) << rows << " rows";
    EXPECT_NEAR(r.calls[0].queue_us_per_rank[1], queue, kTol) << rows << " rows";
    ASSERT_EQ(spy.observed.size(), 1u);
    EXPECT_NEAR(spy.observed[0][0].queue_us, queue, kTol) << rows << " rows";
  }
  // A rank with no rows posts no receive: it replies at once and reports no queue (rank 2 here;
  // rank 1's 10 rows as above).
  auto two = one_node(1, 2, 50, 1.0, "pull");
  two["classes"]["x"]["receive_us"] = 25;
  Spy spy(make_basic_dispatch_policy("static", 1));
  const auto r = run(cluster_of(two), map_of({{1}, {2}}), {call_of({10, 0})}, 250, {&spy});
  EXPECT_NEAR(r.calls[0].queue_us_per_rank[1], 25, kTol);
  EXPECT_NEAR(r.calls[0].queue_us_per_rank[2], 0, kTol);
  EXPECT_NEAR(r.calls[0].latency_us_per_rank[2], 50 + 50, kTol);
  j["classes"]["x"]["receive_us"] = -1;
  try {
    cluster_of(j);
    FAIL() << "accepted a negative receive_us";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("receive_us"), std::string::npos) << e.what();
  }
}

TEST(SimulatorEventModel, PullHoldsTheRankUntilItsRowsAreTaken) {
  // The rank's reply to coordinator 0 arrives at 200 and its rows are taken then; only now does
  // its blocking send return and the rank start coordinator 1's block: 200 + 100 + 50 = 350
  // (push would free it at 150: 300).
  const auto c = cluster_of(one_node(2, 1, 50, 1e9, "pull"));
  const auto r = run(c, map_of({{2}}), {call_of({10}, 0), call_of({10}, 1)}, 250);
  std::map<int, double> latency;
  for (const auto& call : r.calls) latency[call.coordinator] = call.latency_us();
  EXPECT_NEAR(latency[0], 200, 1e-6);
  EXPECT_NEAR(latency[1], 350, 1e-6);
}

TEST(SimulatorEventModel, PollingReceiversNoticeMessagesOnTheirBackoffSchedule) {
  // yield 20 µs, naps 10, 20, then 40 (the maximum), each 5 µs late: a receiver waiting since 0
  // looks at [0, 20], 35, 60, 105, and then at an unknown phase (+ half of 45 on average).
  PollModel p{20, 10, 40, 5};
  EXPECT_DOUBLE_EQ(p.notice(0, 10), 10);
  EXPECT_DOUBLE_EQ(p.notice(100, 50), 100);
  EXPECT_DOUBLE_EQ(p.notice(0, 30), 35);
  EXPECT_DOUBLE_EQ(p.notice(0, 36), 60);
  EXPECT_DOUBLE_EQ(p.notice(0, 61), 105);
  EXPECT_DOUBLE_EQ(p.notice(0, 200), 222.5);
  // One rank, long idle: it notices the header (50) at 72.5 and computes to 172.5; its reply
  // arrives at 222.5. The coordinator posted its send and polls for replies from 0 (the send
  // completes in combine): it sees the reply at 245 (222.5 + 22.5) and takes the rows at once.
  auto j = one_node(1, 1, 50, 1e9, "pull");
  j["poll"] = {{"yield_us", 20}, {"first_nap_us", 10}, {"max_nap_us", 40}, {"nap_slack_us", 5}};
  EXPECT_NEAR(run(cluster_of(j), map_of({{1}}), {call_of({10})}, 250).calls[0].latency_us(), 245,
              1e-6);
}

TEST(SimulatorEventModel, RanksSharingCoresSlowDownTogether) {
  // One core for two ranks computing 100 µs each from the same instant: both end at 200.
  const auto shared = cluster_of(one_node(1, 2, 50, 1e9, "push", 1));
  EXPECT_NEAR(run(shared, map_of({{1}, {2}}), {call_of({10, 10})}, 250).calls[0].latency_us(),
              50 + 200 + 50, 1e-6);
  // Rank 2 with 30 rows: 200 µs shared, then its last 200 µs of work alone.
  EXPECT_NEAR(run(shared, map_of({{1}, {2}}), {call_of({10, 30})}, 250).calls[0].latency_us(),
              50 + 400 + 50, 1e-6);
  const auto two_cores = cluster_of(one_node(1, 2, 50, 1e9, "push", 2));
  EXPECT_NEAR(run(two_cores, map_of({{1}, {2}}), {call_of({10, 10})}, 250).calls[0].latency_us(),
              50 + 100 + 50, 1e-6);
}

TEST(SimulatorEventModel, RanksComputingAtOnceContendByTheirMemoryShare) {
  // Contention 0.5 on dedicated cores: two ranks of 100 µs work from the same instant run at
  // 1/1.5 while both compute, so both end at 150.
  auto j = one_node(1, 2, 50, 1e9);
  j["nodes"][0]["contention"] = 0.5;
  EXPECT_NEAR(
      run(cluster_of(j), map_of({{1}, {2}}), {call_of({10, 10})}, 250).calls[0].latency_us(),
      50 + 150 + 50, 1e-6);
  // Rank 2 with 300 µs: 150 µs together (100 done each), then its 200 µs left alone.
  EXPECT_NEAR(
      run(cluster_of(j), map_of({{1}, {2}}), {call_of({10, 30})}, 250).calls[0].latency_us(),
      50 + 150 + 200 + 50, 1e-6);
  // A neighbour under a 0.4-core quota occupies the memory system 0.4 of the time: rank 1's
  // 100 µs take 120 (slowed by 0.5 × 0.4); rank 2, slowed by 0.5 × 1 meanwhile, does 80 of its
  // 1000 µs in those 120 and the other 920 alone.
  j["classes"]["q"] = linear_class();
  j["classes"]["q"]["device"] = "cpu:1@0.4";
  j["nodes"][0]["experts"] = {{{"class", "x"}, {"count", 1}}, {{"class", "q"}, {"count", 1}}};
  const ClusterConfig mixed = cluster_of(j);
  for (const auto& c : mixed.classes) EXPECT_NEAR(c.memory_share, c.name == "q" ? 0.4 : 1.0, kTol);
  EXPECT_NEAR(run(mixed, map_of({{1}, {2}}), {call_of({10, 100})}, 250).calls[0].latency_us(),
              50 + 120 + 920 + 50, 1e-6);
}

TEST(SimulatorEventModel, ACpuQuotaStallsOnTicksAndResumesOnRefills) {
  // A cpu:1@0.4 rank whose profile has its CPU-time curve (10 µs a token): 2000 µs of CPU per
  // 5000 µs period, noticed as used up on a tick. Its wall-time curve (25 µs a token) is what
  // the policies read, not what the event model runs. (The 1e9 GB/s links add 1e-6 µs.)
  Profile profile;
  RankProfile q;
  q.rank = 1;
  q.device = "cpu:1@0.4";
  q.expert = {{1, 1000}, {25, 25000}};
  q.expert_cpu = {{1, 1000}, {10, 10000}};
  profile.ranks = {q};
  auto j = one_node(1, 1, 50, 1e9);
  j["classes"] = {{"q", {{"profile_rank", 1}}}};
  j["nodes"][0]["experts"] = {{{"class", "q"}, {"count", 1}}};
  j["cfs_tick_us"] = 1000;
  {
    // 5000 µs of work from t = 50: the full budget lasts to 2050, the tick at 3000 stalls it
    // (2950 done), the refill at 5000 leaves 1050, the tick at 7000 stalls it (4950 done), the
    // refill at 10000 lets it finish at 10050; the reply lands at 10100.
    const ClusterConfig c = parse_cluster(j, "test-cluster", profile);
    EXPECT_TRUE(c.classes[0].quota.on());
    EXPECT_NEAR(c.classes[0].memory_share, 1.0, kTol);
    EXPECT_NEAR(run(c, map_of({{1}}), {call_of({500})}, 250).calls[0].latency_us(), 10100, 1e-3);
    // A short block after a pause runs at full speed.
    EXPECT_NEAR(run(c, map_of({{1}}), {call_of({100})}, 250).calls[0].latency_us(), 1100, 1e-3);
  }
  {
    // 1500 µs of CPU per call outside the compute (the profile's call_cpu_us) leave 500 when the
    // block comes in at 50: stalled at the tick at 1000 (950 done, -450), each refill gives 1550
    // and each run ends on the second tick after it: 2950 done at 7000, 4950 at 12000, the last
    // 50 from 15000; the reply lands at 15100.
    Profile busy = profile;
    busy.ranks[0].call_cpu_us = 1500;
    const ClusterConfig c = parse_cluster(j, "test-cluster", busy);
    EXPECT_NEAR(c.classes[0].quota.call_cpu_us, 1500, kTol);
    EXPECT_NEAR(run(c, map_of({{1}}), {call_of({500})}, 250).calls[0].latency_us(), 15100, 1e-3);
  }
  {
    // The profile rank's receive time becomes its class's.
    Profile measured = profile;
    measured.ranks[0].receive_us = 12;
    EXPECT_NEAR(parse_cluster(j, "test-cluster", measured).classes[0].receive_us, 12, kTol);
  }
  {
    // With a 4000 µs tick the overrun is larger: stalled at 4000 (3950 done, budget -1950),
    // refilled to 50 at 5000, done at 6050 with the budget at -1000. The next call's block comes
    // in at 6150 with nothing left, waits for the refill at 10000 and computes its 1000 µs.
    j["cfs_tick_us"] = 4000;
    const ClusterConfig c = parse_cluster(j, "test-cluster", profile);
    const auto r = run(c, map_of({{1}}), {call_of({500}), call_of({100}, 1)}, 250);
    ASSERT_EQ(r.calls.size(), 2u);
    EXPECT_NEAR(r.calls[0].latency_us(), 6100, 1e-3);
    EXPECT_NEAR(r.calls[1].latency_us(), 11050 - 6100, 1e-3);
  }
  {
    // cpu:1@0.8 (4000 µs a period): a block that ends on a period edge still gets that refill.
    // Call 1 computes 3000 µs from 50 (1000 left); call 2's 1850 µs from 3150 end at exactly
    // 5000 (-850 left), before the edge's own event; call 3's block at 5100 then has the
    // 5000 refill (3150) and computes its 1000 µs at once: 5050 -> 6150.
    // (Links of 1e300 GB/s: the blocks take no time, so the edges fall exactly.)
    Profile p80 = profile;
    p80.ranks[0].device = "cpu:1@0.8";
    auto exact = j;
    exact["links"]["intra_node"]["gbytes_per_s"] = 1e300;
    const ClusterConfig c = parse_cluster(exact, "test-cluster", p80);
    const auto r =
        run(c, map_of({{1}}), {call_of({300}), call_of({185}, 1), call_of({100}, 2)}, 250);
    ASSERT_EQ(r.calls.size(), 3u);
    EXPECT_NEAR(r.calls[0].latency_us(), 3100, 1e-6);
    EXPECT_NEAR(r.calls[1].latency_us(), 1950, 1e-6);
    EXPECT_NEAR(r.calls[2].latency_us(), 1100, 1e-6);
  }
  {
    // "model_quota": false keeps the wall-time curve and the 0.4 memory share.
    j["classes"]["q"]["model_quota"] = false;
    const ClusterConfig c = parse_cluster(j, "test-cluster", profile);
    EXPECT_FALSE(c.classes[0].quota.on());
    EXPECT_NEAR(c.classes[0].memory_share, 0.4, kTol);
    EXPECT_NEAR(run(c, map_of({{1}}), {call_of({500})}, 250).calls[0].latency_us(), 50 + 12500 + 50,
                1e-3);
  }
}

TEST(SimulatorEventModel, ContentionDependsOnTokensAndOnSharingTheExpert) {
  // 0.5 at 1..10 rows falling to 0.1 at 20, on different experts; a fifth of that on the same.
  auto j = one_node(1, 2, 50, 1e9);
  j["nodes"][0]["contention"] = {
      {"tokens", {10, 20}}, {"different_experts", {0.5, 0.1}}, {"same_experts", {0.1, 0.02}}};
  const ClusterConfig c = cluster_of(j);
  EXPECT_NEAR(c.nodes[0].contention.at(1, false), 0.5, kTol);
  EXPECT_NEAR(c.nodes[0].contention.at(15, false), 0.3, kTol);
  EXPECT_NEAR(c.nodes[0].contention.at(400, true), 0.02, kTol);
  // Experts 0 and 1 of 10 rows each on ranks 1 and 2: 100 µs each at 1/1.5 → both end at 150.
  EXPECT_NEAR(run(c, map_of({{1}, {2}}), {call_of({10, 10})}, 250).calls[0].latency_us(),
              50 + 150 + 50, 1e-6);
  // Expert 0 on both ranks, 10 rows each (uniform): the same expert at once, 1/1.1 → 110.
  auto uniform = make_basic_dispatch_policy("uniform", 1);
  EXPECT_NEAR(run(c, map_of({{1, 2}}), {call_of({20})}, 250, {uniform.get()}).calls[0].latency_us(),
              50 + 110 + 50, 1e-6);
  // A block of 100 µs on expert 0 (shared) and 100 µs on expert 1 (rank 1 only) beside a block of
  // 100 µs on expert 0: rank 1's mean factor (0.1 + 0.5) / 2 = 0.3, rank 2's 0.1. Rank 2 ends at
  // 110; rank 1 has done 110/1.3 = 84.6 µs by then and its other 115.4 µs alone.
  auto u2 = make_basic_dispatch_policy("uniform", 1);
  const double rank1 = 110 + (200 - 110 / 1.3);
  EXPECT_NEAR(
      run(c, map_of({{1, 2}, {1}}), {call_of({20, 10})}, 250, {u2.get()}).calls[0].latency_us(),
      50 + rank1 + 50, 1e-6);
  j["nodes"][0]["contention"] = {
      {"tokens", {10, 20}}, {"different_experts", {0.5}}, {"same_experts", {0.1, 0.0}}};
  EXPECT_THROW(cluster_of(j), Error);
}

TEST(SimulatorEventModel, ASharedExpertWarmsTheCacheOnce) {
  // Same expert at once: -0.2 (the other rank's reads warm the shared cache), so 100 µs of work
  // take 100 / 1.25 = 80. With three ranks on it the speedup still counts once, the largest, not
  // per neighbour; a slowdown from a rank on another expert adds to it.
  auto j = one_node(1, 3, 50, 1e9);
  j["nodes"][0]["contention"] = {
      {"tokens", {1}}, {"different_experts", {0.3}}, {"same_experts", {-0.2}}};
  const ClusterConfig c = cluster_of(j);
  auto uniform = make_basic_dispatch_policy("uniform", 1);
  EXPECT_NEAR(run(c, map_of({{1, 2}}), {call_of({20})}, 250, {uniform.get()}).calls[0].latency_us(),
              50 + 80 + 50, 1e-6);
  auto three = make_basic_dispatch_policy("uniform", 1);
  EXPECT_NEAR(
      run(c, map_of({{1, 2, 3}}), {call_of({30})}, 250, {three.get()}).calls[0].latency_us(),
      50 + 80 + 50, 1e-6);
  // Ranks 1 and 2 share expert 0 (10 rows each), rank 3 has expert 1 (10 rows): ranks 1 and 2 run
  // at 1 / (1 + 0.3 - 0.2), rank 3 at 1 / (1 + 0.6); rank 1 and 2 end at 110, rank 3 has done
  // 110 / 1.6 = 68.75 µs by then and its other 31.25 alone.
  auto mixed = make_basic_dispatch_policy("uniform", 1);
  EXPECT_NEAR(
      run(c, map_of({{1, 2}, {3}}), {call_of({20, 10})}, 250, {mixed.get()}).calls[0].latency_us(),
      50 + 110 + (100 - 110 / 1.6) + 50, 1e-6);
  j["nodes"][0]["contention"] = {
      {"tokens", {1}}, {"different_experts", {-0.1}}, {"same_experts", {0.0}}};
  EXPECT_THROW(cluster_of(j), Error);
  j["nodes"][0]["contention"] = {
      {"tokens", {1}}, {"different_experts", {0.1}}, {"same_experts", {-1.0}}};
  EXPECT_THROW(cluster_of(j), Error);
}

TEST(SimulatorEventModel, ComputeIsTheSumOverTheRanksExperts) {
  const auto c = cluster_of(one_node(1, 1, 0, 1e9));
  EXPECT_NEAR(run(c, map_of({{1}, {1}, {1}}), {call_of({3, 0, 4})}, 250).calls[0].latency_us(), 70,
              1e-6);
}

TEST(SimulatorEventModel, EveryRankTakesPartEvenWithZeroRows) {
  // Rank 2 holds nothing used, but its header and empty reply still travel: 2 × 50 µs.
  const auto c = cluster_of(one_node(1, 2, 50, 1e9));
  const auto r = run(c, map_of({{1}}), {call_of({0})}, 250);
  EXPECT_NEAR(r.calls[0].latency_us(), 100, 1e-6);
  EXPECT_EQ(r.calls[0].rows, 0);
}

TEST(SimulatorInterleaved, BenchScheduleRunsEveryCallOncePerPassAndNeverTheSameCallTwiceInARow) {
  const size_t S = 5, T = 102;  // the routing evaluation's settings and trace calls
  BenchSchedule schedule(S, T);
  std::vector<size_t> previous_calls;
  for (int pass = 0; pass < 3; ++pass) {
    schedule.start_pass();
    std::vector<std::vector<int>> runs(S, std::vector<int>(T, 0));
    size_t last = T;  // the call run just before
    for (size_t i = 0; i < T; ++i) {
      const auto slots = schedule.slot(i);
      ASSERT_EQ(slots.size(), S);
      std::set<size_t> settings, calls;
      for (const auto& slot : slots) {
        settings.insert(slot.setting);
        calls.insert(slot.call);
        ++runs[slot.setting][slot.call];
        EXPECT_NE(slot.call, last) << "pass " << pass << " slot " << i;
        last = slot.call;
      }
      EXPECT_EQ(settings.size(), S);
      EXPECT_EQ(calls.size(), S);  // offsets T/S apart: five different calls per slot
    }
    for (const auto& per_call : runs)
      for (int n : per_call) EXPECT_EQ(n, 1);
  }
}

// The (setting, call) sequence bench-routing runs: BenchSchedule over `passes` passes.
std::vector<std::pair<int, int>> bench_routing_sequence(size_t settings, size_t calls, int passes,
                                                        uint32_t seed) {
  BenchSchedule schedule(settings, calls, seed);
  std::vector<std::pair<int, int>> sequence;
  for (int pass = 0; pass < passes; ++pass) {
    schedule.start_pass();
    for (size_t i = 0; i < calls; ++i)
      for (const auto& slot : schedule.slot(i))
        sequence.push_back({int(slot.setting), int(slot.call)});
  }
  return sequence;
}

TEST(SimulatorInterleaved, SettingsRunInBenchRoutingsOrder) {
  const auto c = cluster_of(one_node(1, 3, 50, 1e9, "pull"));
  const std::vector<ExpertMap> maps = {map_of({{1}, {2}}), map_of({{2}, {3}}), map_of({{3}, {1}})};
  std::vector<std::unique_ptr<DispatchPolicy>> owned;
  std::vector<Setting> settings;
  for (const auto& m : maps) {
    owned.push_back(make_basic_dispatch_policy("static", 1));
    settings.push_back({&m, {owned.back().get()}});
  }
  // Each call's step names it, so the simulated sequence can be read back.
  std::vector<RoutingRecord> trace = {call_of({3, 1}), call_of({1, 4}), call_of({2, 2}),
                                      call_of({5, 0})};
  for (size_t i = 0; i < trace.size(); ++i) trace[i].step = int64_t(i);
  SimOptions o = options(250);
  o.warmup_passes = 1;
  o.passes = 2;
  const auto results = simulate_interleaved(c, settings, trace, o, 7);
  ASSERT_EQ(results.size(), 3u);
  std::vector<std::pair<double, std::pair<int, int>>>
      started;  // counted calls: start, (setting, call)
  for (int s = 0; s < 3; ++s) {
    EXPECT_EQ(results[s].calls.size(), 8u);  // 4 calls x 2 counted passes
    for (const auto& call : results[s].calls)
      started.push_back({call.start_us, {s, int(call.step)}});
  }
  std::sort(started.begin(), started.end());
  auto expected = bench_routing_sequence(3, 4, 3, 7);
  expected.erase(expected.begin(), expected.begin() + 12);  // the warm-up pass
  std::vector<std::pair<int, int>> seen;
  for (const auto& [start, sc] : started) seen.push_back(sc);
  EXPECT_EQ(seen, expected);
  // One coordinator at a time: a setting's span is the sum of its calls' latencies.
  for (const auto& r : results) {
    double sum = 0;
    for (const auto& call : r.calls) sum += call.latency_us();
    EXPECT_NEAR(r.span_us, sum, 1e-6);
  }
}

TEST(SimulatorInterleaved, WithNothingCarriedOverEachSettingTakesWhatItTakesAlone) {
  // No polling: a rank's send returns when its rows are taken, before the call ends, so every
  // call starts with idle ranks and its latency does not depend on the call before.
  const auto c = cluster_of(one_node(1, 2, 50, 1.0, "pull"));
  const ExpertMap one = map_of({{1}, {1}}), split = map_of({{1}, {2}});
  std::vector<RoutingRecord> trace = {call_of({3, 1}), call_of({1, 4}), call_of({6, 2})};
  for (size_t i = 0; i < trace.size(); ++i) trace[i].step = int64_t(i);  // names each call
  auto by_step = [](std::vector<CallResult> calls) {
    std::sort(calls.begin(), calls.end(),
              [](const auto& a, const auto& b) { return a.step < b.step; });
    return calls;
  };
  auto alone = [&](const ExpertMap& m) { return by_step(run(c, m, trace, 250).calls); };
  std::vector<std::unique_ptr<DispatchPolicy>> owned;
  for (int i = 0; i < 2; ++i) owned.push_back(make_basic_dispatch_policy("static", 1));
  const auto results = simulate_interleaved(
      c, {{&one, {owned[0].get()}}, {&split, {owned[1].get()}}}, trace, options(250), 7);
  for (const auto& [result, m] : {std::pair{results[0], &one}, std::pair{results[1], &split}}) {
    const auto expected = alone(*m), got = by_step(result.calls);
    ASSERT_EQ(got.size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i)
      EXPECT_NEAR(got[i].latency_us(), expected[i].latency_us(), 1e-6) << i;
  }
}

TEST(SimulatorInterleaved, ARankHeldByTheCallBeforeStartsFromWhereItsPollingIs) {
  // Poll: yield 20 µs, naps 10, 20, 40, each 5 µs late (PollModel above); link 50 µs, rows
  // instant; 10 µs per token; pull. One trace call: 10 tokens to expert 0, 1 to expert 1.
  // Setting "split" (expert 0 on rank 1, expert 1 on rank 2) runs first: headers at 50, both long-
  // idle ranks notice at 72.5; rank 2 replies at 82.5 + 50, rank 1 at 172.5 + 50; the
  // coordinator, polling since 0, sees them at 155 and 260, takes both blocks at 260. Rank 2's
  // send (posted 82.5) returns then and it notices at 282.5; rank 1 (posted 172.5) at 277.5.
  // Setting "one" (both experts on rank 2) starts at 260: header at 310, rank 2 (polling since
  // 282.5) notices at 317.5, computes 110, replies at 477.5; rank 1 (no rows, noticed at 312.5)
  // replies at 362.5; the coordinator sees them at 365 and 500: 240 µs. Alone, with both ranks
  // long idle, the same call takes 250 (noticed at 72.5, replies at 122.5 and 232.5, seen at 145
  // and 250).
  auto j = one_node(1, 2, 50, 1e9, "pull");
  j["poll"] = {{"yield_us", 20}, {"first_nap_us", 10}, {"max_nap_us", 40}, {"nap_slack_us", 5}};
  const auto c = cluster_of(j);
  const ExpertMap split = map_of({{1}, {2}}), one = map_of({{2}, {2}});
  const std::vector<RoutingRecord> trace = {call_of({10, 1})};
  uint32_t seed = 0;  // one whose schedule runs setting 0 ("split") first
  while (bench_routing_sequence(2, 1, 1, seed)[0].first != 0) ++seed;
  std::vector<std::unique_ptr<DispatchPolicy>> owned;
  for (int i = 0; i < 2; ++i) owned.push_back(make_basic_dispatch_policy("static", 1));
  const auto results = simulate_interleaved(
      c, {{&split, {owned[0].get()}}, {&one, {owned[1].get()}}}, trace, options(250), seed);
  ASSERT_EQ(results[1].calls.size(), 1u);
  EXPECT_NEAR(results[0].calls[0].latency_us(), 260, 1e-6);
  EXPECT_NEAR(results[1].calls[0].start_us, 260, 1e-6);
  EXPECT_NEAR(results[1].calls[0].latency_us(), 240, 1e-6);
  EXPECT_NEAR(run(c, one, trace, 250).calls[0].latency_us(), 250, 1e-6);
}

TEST(SimulatorPolicies, DecisionsEqualCallingThePolicyDirectly) {
  // Three experts on ranks {1,2,3}, {2,3}, {1}, over two layers and a skewed synthetic trace.
  const auto c = cluster_of(one_node(1, 3, 20, 10));
  const ExpertMap map = map_of({{1, 2, 3}, {2, 3}, {1}}, 2);
  SyntheticSpec spec;
  spec.popularity = "skewed";
  spec.layers = 2;
  spec.experts = 3;
  spec.batches = 6;
  spec.tokens_per_call = 37;
  const auto trace = synthetic_trace(spec);
  for (const std::string name : {"static", "random", "round-robin", "uniform"}) {
    Spy spy(make_basic_dispatch_policy(name, 7));
    const auto r = run(c, map, trace, 64, {&spy});
    auto direct = make_basic_dispatch_policy(name, 7);
    ASSERT_EQ(spy.assigned.size(), trace.size()) << name;
    for (size_t i = 0; i < trace.size(); ++i) {
      const GateResult gate{trace[i].expert, trace[i].probability, trace[i].kept, trace[i].entropy};
      ExpertDispatch d;
      plan_expert_dispatch(gate, 3, d);
      std::vector<int> expected;
      direct->assign(trace[i].layer, d, gate, map, expected);
      EXPECT_EQ(spy.assigned[i], expected) << name << ", call " << i;
      std::vector<int> per_rank(4, 0);
      for (int rank : expected) ++per_rank[rank];
      EXPECT_EQ(r.calls[i].rows_per_rank, per_rank) << name << ", call " << i;
    }
  }
}

TEST(SimulatorPolicies, LatencyAwareSeesTheSameFeedbackAsAReplay) {
  // A learning policy: replaying the simulator's feedback to a fresh instance between the same
  // assign() calls must reproduce every decision.
  std::vector<LatencySample> samples;
  for (int i = 0; i < 200; ++i) {
    LatencySample s;
    s.x = {0.5, 1.0, double(i % 40), double(i % 17), 100.0 + i, 0, 10.0 * (i % 40), 50};
    s.latency_us = 100 + 10 * (i % 40) + 3 * (i % 17);
    samples.push_back(s);
  }
  TrainOptions t;
  t.epochs = 5;
  const auto model = std::make_shared<LatencyModel>(LatencyModel::train(samples, t, nullptr));
  const auto c = cluster_of(one_node(1, 3, 20, 10));
  const ExpertMap map = map_of({{1, 2, 3}, {2, 3}, {1}}, 2);
  Profile measured;
  measured.d_model = 64;
  const Profile profile = cluster_profile(c, measured);
  PolicyContext context;
  context.profile = &profile;
  context.latency_model = model;
  context.d_model = 64;
  SyntheticSpec spec;
  spec.popularity = "skewed";
  spec.layers = 2;
  spec.experts = 3;
  spec.batches = 5;
  spec.tokens_per_call = 40;
  const auto trace = synthetic_trace(spec);
  Spy spy(make_dispatch_policy("latency-aware", context));
  run(c, map, trace, 64, {&spy});
  auto direct = make_dispatch_policy("latency-aware", context);
  ASSERT_EQ(spy.observed.size(), trace.size());
  for (size_t i = 0; i < trace.size(); ++i) {
    const GateResult gate{trace[i].expert, trace[i].probability, trace[i].kept, trace[i].entropy};
    ExpertDispatch d;
    plan_expert_dispatch(gate, 3, d);
    std::vector<int> expected;
    direct->assign(trace[i].layer, d, gate, map, expected);
    EXPECT_EQ(spy.assigned[i], expected) << "call " << i;
    EXPECT_EQ(spy.observed[i].size(), 3u) << "every expert rank replies";
    direct->observe(spy.observed[i]);
  }
}

TEST(SimulatorMetrics, ImbalanceIsMaxOverMeanOfTheExpertRanks) {
  SimResult r;
  CallResult a, b;
  a.rows_per_rank = {0, 4, 0, 0};  // 4 / (4/3) = 3
  a.rows = 4;
  a.start_us = 0;
  a.end_us = 100;
  b.rows_per_rank = {0, 2, 2, 2};  // 1
  b.rows = 6;
  b.start_us = 100;
  b.end_us = 400;
  r.calls = {a, b};
  r.busy_us = {0, 30, 10, 20};
  r.span_us = 400;
  const Summary s = summarise(r, 1, 4);
  EXPECT_EQ(s.calls, 2);
  EXPECT_DOUBLE_EQ(s.imbalance, 2.0);
  EXPECT_DOUBLE_EQ(s.busy_imbalance, 1.5);
  EXPECT_DOUBLE_EQ(s.mean_us, 200);
  EXPECT_DOUBLE_EQ(s.p99_us, 300);
  EXPECT_DOUBLE_EQ(s.tokens_per_s, 10 / 400e-6);
}

TEST(SimulatorCluster, NodesExpandAndCoordinatorsComeFirst) {
  json j = {
      {"format", "moe-cluster/1"},
      {"classes",
       {{"fast", {{"profile_rank", 1}, {"speed", 4.0}, {"memory_gib", 2}}},
        {"slow", {{"profile_rank", 1}}}}},
      {"links",
       {{"intra_node", {{"latency_us", 2}, {"gbytes_per_s", 100}}},
        {"inter_node", {{"latency_us", 9}, {"gbytes_per_s", 10}}}}},
      {"nodes",
       {{{"name", "head"}, {"coordinators", 1}, {"experts", {{{"class", "slow"}, {"count", 1}}}}},
        {{"name", "gpu"}, {"count", 2}, {"experts", {{{"class", "fast"}, {"count", 2}}}}}}}};
  Profile p;
  p.d_model = 8;
  RankProfile rp;
  rp.rank = 1;
  rp.expert = {{1, 40}, {100, 400}};  // tokens, µs
  rp.link_latency_us = 33;
  rp.link_bytes_per_us = 44;
  p.ranks = {rp};
  const auto c = parse_cluster(j, "t", p);
  ASSERT_EQ(c.world_size(), 6);
  EXPECT_EQ(c.coordinators, 1);
  EXPECT_EQ(c.nodes.size(), 3u);
  EXPECT_EQ(c.class_of(1).name, "slow");
  EXPECT_EQ(c.class_of(5).name, "fast");
  EXPECT_EQ(c.ranks[5].node, 2);
  EXPECT_DOUBLE_EQ(c.class_of(5).expert.at(40), 100);  // 400 µs / speed 4
  EXPECT_EQ(c.class_of(5).memory_bytes, size_t(2) << 30);
  EXPECT_DOUBLE_EQ(c.link(0, 1).latency_us, 2);       // same node
  EXPECT_DOUBLE_EQ(c.link(0, 3).bytes_per_us, 10e3);  // another node: 10 GB/s
  j["nodes"][1]["intra_node"] = {{"latency_us", 7}, {"gbytes_per_s", 20}};
  EXPECT_DOUBLE_EQ(parse_cluster(j, "t", p).link(2, 3).latency_us, 7);  // that node's own link
  EXPECT_DOUBLE_EQ(parse_cluster(j, "t", p).link(0, 1).latency_us, 2);
  j["nodes"][1].erase("intra_node");
  j["links"]["inter_node"] = {{"from_profile", true}};
  const auto from_profile = parse_cluster(j, "t", p);
  EXPECT_DOUBLE_EQ(from_profile.link(4, 0).latency_us, 33);
  EXPECT_DOUBLE_EQ(from_profile.link(0, 1).latency_us, 2);
  const Profile seen = cluster_profile(from_profile, p);
  ASSERT_EQ(seen.ranks.size(), 5u);
  EXPECT_EQ(seen.of(3).link_bytes_per_us, 44);
  EXPECT_DOUBLE_EQ(seen.of(3).expert.at(1), 25);
}

TEST(SimulatorCluster, RejectsAnUnknownClassNamingIt) {
  json j = one_node(1, 1, 1, 1);
  j["nodes"][0]["experts"][0]["class"] = "tpu";
  try {
    cluster_of(j);
    FAIL() << "accepted an unknown class";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'tpu'"), std::string::npos) << e.what();
  }
  json k = one_node(1, 1, 1, 1);
  k["classes"]["x"] = {{"profile_rank", 3}};
  EXPECT_THROW(cluster_of(k), Error);  // the (empty) profile has no rank 3
}

TEST(SimulatorTrace, SkewedConcentratesTokensAndCapacityDrops) {
  SyntheticSpec s;
  s.layers = 1;
  s.experts = 16;
  s.batches = 20;
  s.tokens_per_call = 512;
  auto top_share = [](const std::vector<RoutingRecord>& trace) {
    std::vector<double> n(16, 0);
    double all = 0;
    for (const auto& r : trace)
      for (int e : r.expert) n[e] += 1, all += 1;
    return *std::max_element(n.begin(), n.end()) / all;
  };
  const auto balanced = synthetic_trace(s);
  s.popularity = "skewed";
  const auto skewed = synthetic_trace(s);
  EXPECT_LT(top_share(balanced), 0.09);  // 1/16 = 0.0625 plus noise
  EXPECT_GT(top_share(skewed), 0.25);    // 1 / sum_k (k+1)^-1.2 over 16 experts ≈ 0.36
  EXPECT_EQ(synthetic_trace(s)[3].expert, skewed[3].expert) << "seeded";
  s.capacity_factor = 1.0;  // capacity 32 per expert per sequence
  for (const auto& r : synthetic_trace(s)) {
    std::vector<int> kept(16, 0);
    for (size_t t = 0; t < r.expert.size(); ++t) kept[r.expert[t]] += r.kept[t];
    EXPECT_LE(*std::max_element(kept.begin(), kept.end()), 32);
  }
}

TEST(SimulatorPlacement, ReplicatedSpreadsDistinctCopies) {
  const auto c = cluster_of(one_node(2, 6, 1, 1));
  const Profile p = cluster_profile(c, Profile{});
  const auto m = make_placement("replicated:3", c, p, {}, 2, 5, 1);
  for (int l = 0; l < 2; ++l)
    for (int e = 0; e < 5; ++e) {
      const auto& r = m.ranks_of(l, e);
      ASSERT_EQ(r.size(), 3u);
      EXPECT_EQ(std::set<int>(r.begin(), r.end()).size(), 3u);
      for (int rank : r) EXPECT_TRUE(rank >= 2 && rank < 8);
    }
  EXPECT_EQ(make_placement("all", c, p, {}, 1, 2, 1).ranks_of(0, 1).size(), 6u);
  EXPECT_EQ(make_placement("round-robin", c, p, {}, 1, 8, 1).ranks_of(0, 7), (std::vector<int>{3}));
  EXPECT_THROW(make_placement("replicated:7", c, p, {}, 1, 2, 1), Error);
}

}  // namespace moe::sim

namespace moe::sim {

TEST(SimulatorPlacement, RefinementMovesExpertsWhileTheSimulatedMeanFalls) {
  // Rank 1 costs 10 µs a token, rank 2 100; one call of 10 tokens to each of two experts, both
  // starting on rank 2: 50 + 2000 + 50. Moving expert 0 to rank 1 gives 50 + 1000 + 50, then
  // expert 1 too 50 + 200 + 50. With room for one expert per rank it stops at 1100.
  auto j = one_node(1, 1, 50, 1e9);
  j["classes"]["slow"] = {{"expert_tokens", {1, 1000}}, {"expert_median_us", {100, 100000}}};
  j["nodes"][0]["experts"] = {{{"class", "x"}, {"count", 1}}, {{"class", "slow"}, {"count", 1}}};
  const ClusterConfig c = cluster_of(j);
  Profile profile;
  profile.ranks.resize(2);
  profile.ranks[0].rank = 1;
  profile.ranks[1].rank = 2;
  PlacementProblem problem;
  problem.profile = &profile;
  problem.ranks = {1, 2};
  problem.bytes_per_expert = 1000;
  RefineOptions o;
  o.policy = "static";
  o.sim = options(250);
  const std::vector<RoutingRecord> trace = {call_of({10, 10})};
  const std::vector<std::pair<std::string, ExpertMap>> start = {{"slow", map_of({{2}, {2}})}};

  const RefineResult free = refine_by_simulation(c, problem, start, trace, o);
  EXPECT_EQ(free.started_from, "slow");
  EXPECT_NEAR(free.candidates_us.at(0).second, 2100, 1e-3);
  EXPECT_NEAR(free.mean_us, 300, 1e-3);
  EXPECT_EQ(free.map.replicas, map_of({{1}, {1}}).replicas);
  EXPECT_EQ(free.moves, 2);
  EXPECT_NEAR(simulated_mean_us(c, free.map, trace, o), free.mean_us, 1e-9);

  // With room for one expert per rank a map holding both on rank 2 cannot start the search, and
  // no move may put two on one rank: the fitting candidate stays, at 50 + 1000 + 50.
  problem.memory_per_rank = 1000;
  const RefineResult tight =
      refine_by_simulation(c, problem, {start[0], {"reversed", map_of({{2}, {1}})}}, trace, o);
  EXPECT_EQ(tight.started_from, "reversed");
  EXPECT_EQ(tight.candidates_us.size(), 1u);
  EXPECT_NEAR(tight.mean_us, 1100, 1e-3);
  EXPECT_EQ(tight.moves, 0);
  EXPECT_EQ(tight.map.experts_on(1), 1);
  EXPECT_EQ(tight.map.experts_on(2), 1);
  EXPECT_THROW(refine_by_simulation(c, problem, start, trace, o), Error);

  // The best candidate is where the search starts; the evaluation budget is honoured.
  problem.memory_per_rank = 0;
  const RefineResult two =
      refine_by_simulation(c, problem, {start[0], {"split", map_of({{1}, {2}})}}, trace, o);
  EXPECT_EQ(two.started_from, "split");
  o.max_evaluations = 1;
  EXPECT_EQ(refine_by_simulation(c, problem, start, trace, o).evaluations, 1);
}

}  // namespace moe::sim
