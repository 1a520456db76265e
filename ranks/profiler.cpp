#include "ranks/profiler.hpp"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <random>

#include "model/decoder.hpp"
#include "model/generation.hpp"
#include "model/weights.hpp"
#include "ranks/remote_experts.hpp"
#include "router/latency_policy.hpp"
#include "router/statistics.hpp"
#include "runtime/error.hpp"
#include "runtime/mpi/control_plane.hpp"

namespace moe {

namespace {

// One-way time t(bytes) = latency + bytes / bandwidth, fitted by least squares to half round trips
// of the blocks a sparse-layer call sends a rank (1 to 256 rows). Larger blocks cross shared memory
// by another protocol (without single-copy, fragments that both ends must progress), so a line
// fitted to them too would under-state the speed of the blocks calls really send.
void time_link(Coordinator& s, int rank, int d_model, int repeats, RankProfile& out) {
  std::vector<double> xs, ys;
  for (int rows : {1, 4, 16, 64, 256}) {
    const size_t floats = size_t(rows) * d_model;
    std::vector<float> block(floats, 1.0f), back(floats);
    std::vector<double> times;
    for (int r = 0; r <= repeats; ++r) {
      const double start = now_us();
      send_control(rank, Echo{floats});
      const Deadline deadline = Deadline::after(s.plan().deadline_seconds);
      s.transport().exchange({{rank, block.data(), floats}}, {}, deadline,
                             "profiling the link to rank " + std::to_string(rank));
      s.transport().exchange({}, {{rank, back.data(), floats}}, deadline,
                             "profiling the link to rank " + std::to_string(rank));
      if (r > 0) times.push_back((now_us() - start) / 2);  // the first is a warm-up
    }
    xs.push_back(double(floats * sizeof(float)));
    ys.push_back(median(times));
  }
  const double n = double(xs.size());
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    sx += xs[i];
    sy += ys[i];
    sxx += xs[i] * xs[i];
    sxy += xs[i] * ys[i];
  }
  const double slope = std::max((n * sxy - sx * sy) / (n * sxx - sx * sx), 1e-9);
  out.link_latency_us = std::max((sy - slope * sx) / n, 0.0);
  out.link_bytes_per_us = 1.0 / slope;
}

// The CPU each expert rank spends per sparse-layer call outside its expert FFN
// (WorkReply::other_cpu_us: returning the last block, waiting for the header, receiving the
// block), which a CPU quota charges like the compute. It depends on how long those waits are and
// on what else the host runs, so the calls are like a run's: in the sparse layer where most ranks
// hold an expert, every rank that does gets `tokens` tokens of its first one at once. The mean
// per rank (a budget is spent by the sum) over `calls` calls, after two warm-up calls (0 for a
// rank without experts there). The same calls give each rank's receive time
// (WorkReply::queue_us: header in, block in hand), their median.
struct CallProbe {
  std::vector<double> cpu_us, receive_us;  // index = rank
};

CallProbe time_call_cpu(Coordinator& s, int tokens, int calls) {
  const ModelConfig& c = s.config();
  const int N = s.world().size();
  ExpertMap map = s.plan().expert_map;
  int layer = 0, most = -1;
  for (int l = 0; l < map.num_layers(); ++l) {
    int ranks = 0;
    for (int r = 1; r < N; ++r)
      for (int e = 0; e < c.num_experts; ++e)
        if (map.holds(r, l, e)) {
          ++ranks;
          break;
        }
    if (ranks > most) most = ranks, layer = l;
  }
  // Each rank's expert, that rank first among its replicas (the static policy sends it there);
  // ranks sharing an expert take turns to own it.
  GateResult gate;
  std::vector<int> expert_of(N, -1);
  for (int r = 1; r < N; ++r)
    for (int e = 0; e < c.num_experts && expert_of[r] < 0; ++e)
      if (map.holds(r, layer, e) &&
          std::find(expert_of.begin(), expert_of.end(), e) == expert_of.end()) {
        expert_of[r] = e;
        auto& replicas = map.replicas[layer][e];
        std::stable_partition(replicas.begin(), replicas.end(), [&](int x) { return x == r; });
        for (int t = 0; t < tokens; ++t) {
          gate.expert.push_back(e);
          gate.probability.push_back(1.0f);
          gate.kept.push_back(1);
          gate.entropy.push_back(0.0f);
        }
      }
  const auto policy = make_basic_dispatch_policy("static", 1);
  RemoteExpertExecutor executor(*s.exchanges(), map, *policy);
  SparseFfnWeights weights;
  weights.moe_layer = layer;
  ExpertDispatch dispatch;
  plan_expert_dispatch(gate, c.num_experts, dispatch);
  std::vector<float> rows_in(std::max<size_t>(gate.expert.size(), 1) * c.d_model, 1.0f),
      rows_out(rows_in.size());
  std::vector<std::vector<double>> cpu(N), receive(N);
  for (int i = 0; i < calls + 2; ++i) {
    executor.run(weights, i, gate, dispatch, rows_in.data(), rows_out.data());
    if (i >= 2)
      for (const auto& f : executor.last().feedback)
        if (expert_of[f.rank] >= 0) {
          cpu[f.rank].push_back(f.other_cpu_us);
          receive[f.rank].push_back(f.queue_us);
        }
  }
  CallProbe out{std::vector<double>(N, 0.0), std::vector<double>(N, 0.0)};
  for (int r = 1; r < N; ++r)
    if (!cpu[r].empty()) {
      out.cpu_us[r] = std::accumulate(cpu[r].begin(), cpu[r].end(), 0.0) / double(cpu[r].size());
      out.receive_us[r] = median(receive[r]);
    }
  return out;
}

// Expert ranks 1..world_size-1 in groups of `size` consecutive ranks (0: one group of all).
std::vector<std::vector<int>> waves_of(int world_size, int size) {
  if (size <= 0) size = world_size - 1;
  std::vector<std::vector<int>> waves;
  for (int r = 1; r < world_size; ++r) {
    if ((r - 1) % size == 0) waves.emplace_back();
    waves.back().push_back(r);
  }
  return waves;
}

// One timing of token count n on every rank of `ranks`, started at once (each the median over a
// rotation of its experts); the results in the order of `ranks`. With
// `stagger` the i-th rank's rotation starts i / ranks.size() of the way round its experts, so
// ranks holding the same experts run different ones at the same time.
std::vector<ProfileResult> time_at_once(Coordinator& s, const std::vector<int>& ranks,
                                        ProfileRequest request, int n, bool stagger = false) {
  request.token_counts = {n};
  request.rotation_parts = int(ranks.size());
  for (size_t i = 0; i < ranks.size(); ++i) {
    request.rotation_part = stagger ? int(i) : 0;
    send_control(ranks[i], request);
  }
  std::vector<ProfileResult> out;
  for (int r : ranks) {
    const Envelope e =
        receive_control(s.world(), r, Deadline::after(s.plan().deadline_seconds * 20),
                        "waiting for rank " + std::to_string(r) + "'s expert timings");
    out.push_back(decode_message<ProfileResult>(e));
    MOE_CHECK(out.back().median_us.size() == 1 && out.back().cpu_median_us.size() == 1, "rank ", r,
              " sent ", out.back().median_us.size(), " wall and ", out.back().cpu_median_us.size(),
              " CPU timings for one token count");
  }
  return out;
}

// Waves of `concurrency` expert ranks time their experts at the same time, one token count at a
// time so that they stay in step: ranks that share a host's memory bandwidth and cache in a run
// are measured sharing them. Rounds over the token counts, each timing every count once (one
// rotation of the experts), the median over rounds: a slow spell of a shared host then falls on
// a few counts of one round, which the median drops, rather than on every repeat of one count.
// Each count is warmed up in the first round.
void measure_expert_curves(Coordinator& s, const ProfileRequest& request, int repeats,
                           int concurrency, std::vector<RankProfile>& measured) {
  const World& world = s.world();
  for (const auto& wave : waves_of(world.size(), concurrency)) {
    std::string names;
    for (int r : wave) {
      names += (r == wave[0] ? "" : ", ") + std::to_string(r) + " (" + s.plan().devices[r] + ")";
      measured[r].rank = r;
      measured[r].host = world.host_of(r);
      measured[r].expert.tokens.assign(request.token_counts.begin(), request.token_counts.end());
      measured[r].expert_cpu.tokens = measured[r].expert.tokens;
    }
    std::fprintf(stderr, "profiling the experts of rank%s %s\n", wave.size() > 1 ? "s" : "",
                 names.c_str());
    const size_t K = request.token_counts.size();
    std::vector<std::vector<std::vector<double>>> wall(wave.size(),
                                                       std::vector<std::vector<double>>(K)),
        cpu = wall;
    ProfileRequest once = request;
    for (int round = 0; round < repeats; ++round) {
      once.warm_up = round == 0;
      for (size_t j = 0; j < K; ++j) {
        const auto results = time_at_once(s, wave, once, request.token_counts[j]);
        for (size_t i = 0; i < wave.size(); ++i) {
          measured[wave[i]].device = results[i].device;
          measured[wave[i]].memory_bytes = results[i].memory_bytes;
          wall[i][j].push_back(results[i].median_us[0]);
          cpu[i][j].push_back(results[i].cpu_median_us.at(0));
        }
      }
    }
    for (size_t i = 0; i < wave.size(); ++i)
      for (size_t j = 0; j < K; ++j) {
        measured[wave[i]].expert.median_us.push_back(median(wall[i][j]));
        measured[wave[i]].expert_cpu.median_us.push_back(median(cpu[i][j]));
      }
  }
}

}  // namespace

Profile measure_profile(Coordinator& s, const ProfileRequest& request, int repeats,
                        int concurrency) {
  const World& world = s.world();
  const ModelConfig& c = s.config();
  Profile profile;
  profile.d_model = c.d_model;
  profile.d_ff = c.d_ff;
  profile.num_experts = c.num_experts;
  profile.num_moe_layers = count_moe_layers(c);
  std::vector<RankProfile> measured(world.size());
  measure_expert_curves(s, request, repeats, concurrency, measured);
  // One expert's load from disk, one rank at a time (ranks that read the disk at once would slow
  // each other), after the curves so that it cannot perturb them.
  ProfileRequest load_request = request;
  load_request.max_experts = 1;
  load_request.warm_up = false;
  load_request.time_load = true;
  for (int r = 1; r < world.size(); ++r)
    measured[r].expert_load_us = time_at_once(s, {r}, load_request, 1)[0].load_us;
  for (int r = 1; r < world.size(); ++r) {
    std::fprintf(stderr, "profiling the link to rank %d\n", r);
    time_link(s, r, c.d_model, repeats, measured[r]);
  }
  std::fprintf(stderr, "profiling the CPU of a call outside the expert FFN\n");
  const auto call_probe = time_call_cpu(s, 8, 40);
  for (int r = 1; r < world.size(); ++r) {
    measured[r].call_cpu_us = call_probe.cpu_us[r];
    measured[r].receive_us = call_probe.receive_us[r];
    profile.ranks.push_back(measured[r]);
  }
  return profile;
}

namespace {

// What the attention rank and the expert ranks did between two readings.
struct ServingReading {
  double wall_us, wait_us;
  ExchangeTotals totals;
};

ServingReading read_serving(Coordinator& s) {
  return {now_us(), s.recorder().report().wait_us, s.exchanges()->totals()};
}

struct ServingSample {
  double attention_us, experts_us, dense_us, lm_head_us, exchanges, dense_exchanges,
      lm_head_exchanges;
};

ServingSample since(Coordinator& s, const ServingReading& a) {
  const ServingReading b = read_serving(s);
  return {std::max(0.0, (b.wall_us - a.wall_us) - (b.wait_us - a.wait_us)),
          b.totals.expert_compute_us - a.totals.expert_compute_us,
          b.totals.dense_compute_us - a.totals.dense_compute_us,
          b.totals.lm_head_compute_us - a.totals.lm_head_compute_us,
          double(b.totals.started - a.totals.started),
          double(b.totals.dense_started - a.totals.dense_started),
          double(b.totals.lm_head_started - a.totals.lm_head_started)};
}

// The medians of samples at x, as one point of each curve.
struct ServingPoints {
  LatencyCurve *attention, *experts, *dense, *lm_head;  // lm_head: null for encoder passes
  double *exchanges, *dense_exchanges, *lm_head_exchanges;
};

void add_point(double x, const std::vector<ServingSample>& samples, ServingPoints to) {
  const auto median_of = [&](double ServingSample::*field) {
    std::vector<double> v;
    for (const auto& sample : samples) v.push_back(sample.*field);
    return median(v);
  };
  for (auto [curve, field] : {std::pair{to.attention, &ServingSample::attention_us},
                              std::pair{to.experts, &ServingSample::experts_us},
                              std::pair{to.dense, &ServingSample::dense_us},
                              std::pair{to.lm_head, &ServingSample::lm_head_us}}) {
    if (curve == nullptr) continue;
    curve->tokens.push_back(x);
    curve->median_us.push_back(median_of(field));
  }
  *to.exchanges = median_of(&ServingSample::exchanges);
  *to.dense_exchanges = median_of(&ServingSample::dense_exchanges);
  if (to.lm_head_exchanges) *to.lm_head_exchanges = median_of(&ServingSample::lm_head_exchanges);
}

}  // namespace

ServingCurves measure_serving(Coordinator& s, const std::vector<int>& sequences, int input_tokens,
                              int steps, int repeats) {
  MOE_CHECK(s.exchanges() != nullptr && s.lanes() == 1,
            "measuring the serving curves needs expert ranks and one lane");
  MOE_CHECK(steps >= 2 && repeats >= 1 && input_tokens >= 1,
            "--serving-steps must be >= 2, --repeats and --serving-input-tokens >= 1");
  const ModelConfig& c = s.config();
  ServingCurves out;
  out.input_tokens = input_tokens;
  s.run_lanes([&](int lane) {
    SwitchModel& m = s.model(lane);
    for (int n : sequences) {
      std::fprintf(stderr, "profiling serving at %d sequence(s)\n", n);
      // Ids spread over the vocabulary past the special ones, ending with eos as a prompt does.
      std::vector<std::vector<int>> inputs(n, std::vector<int>(input_tokens));
      for (int i = 0; i < n; ++i) {
        for (int t = 0; t < input_tokens; ++t)
          inputs[i][t] = 3 + (97 * i + 31 * t) % std::max(1, c.vocab_size - 3);
        inputs[i].back() = c.eos_token_id;
      }
      const Batch batch = make_batch(inputs, c.pad_token_id);
      std::vector<ServingSample> encodes, decodes;
      for (int rep = 0; rep <= repeats; ++rep) {  // the first pass warms up
        ServingReading t0 = read_serving(s);
        const EncoderOutput enc = encode(m, batch);
        std::vector<SequenceCache> caches = start_decoder(m, enc, steps + 1);
        if (rep > 0) encodes.push_back(since(s, t0));
        std::vector<int> tokens(n, c.decoder_start_token_id);
        for (int step = 0; step < steps; ++step) {
          t0 = read_serving(s);
          tokens = decode_greedy(m, all_of(caches), tokens);
          if (rep > 0 && step > 0) decodes.push_back(since(s, t0));
        }
      }
      add_point(
          n, decodes,
          {&out.decode_attention, &out.decode_experts, &out.decode_dense, &out.decode_lm_head,
           &out.decode_exchanges, &out.decode_dense_exchanges, &out.decode_lm_head_exchanges});
      add_point(double(n) * input_tokens, encodes,
                {&out.encode_attention, &out.encode_experts, &out.encode_dense, nullptr,
                 &out.encode_exchanges, &out.encode_dense_exchanges, nullptr});
    }
  });
  return out;
}

// The slowdown of `together` ranks computing at once, paired: for each token count and repeat,
// every rank timed alone, then in waves of `together` — once with the ranks of a wave on the same
// experts at the same time, once staggered onto different ones, in alternating order; the median
// of together / alone - 1 of each. The two differ where the ranks hold the same experts mapped
// from one checkpoint file: the same expert's weights are then the same physical pages, and one
// rank's reads warm the shared cache for the other.
nlohmann::json measure_contention(Coordinator& s, const ProfileRequest& request, int repeats,
                                  int together) {
  const int N = s.world().size();
  const auto waves = waves_of(N, together);
  std::vector<double> same, different;
  nlohmann::json by_tokens = nlohmann::json::array();
  auto wave_ratios = [&](const std::vector<int>& wave, int n, const std::vector<double>& alone,
                         bool stagger, std::vector<double>& ratios) {
    const auto results = time_at_once(s, wave, request, n, stagger);
    for (size_t i = 0; i < wave.size(); ++i)
      if (alone[wave[i]] > 0) ratios.push_back(results[i].median_us[0] / alone[wave[i]]);
  };
  for (int n : request.token_counts) {
    std::vector<double> same_n, different_n;
    for (int rep = 0; rep < repeats; ++rep) {
      std::vector<double> alone(N, 0.0);
      for (int r = 1; r < N; ++r) alone[r] = time_at_once(s, {r}, request, n)[0].median_us[0];
      for (const auto& wave : waves) {
        if (wave.size() < 2) continue;  // a rank alone in its wave has no one to contend with
        const bool same_first = rep % 2 == 0;  // neither kind always runs first
        wave_ratios(wave, n, alone, !same_first, same_first ? same_n : different_n);
        wave_ratios(wave, n, alone, same_first, same_first ? different_n : same_n);
      }
    }
    if (same_n.empty()) continue;
    by_tokens.push_back(
        {{"tokens", n}, {"value", median(different_n) - 1}, {"same_experts", median(same_n) - 1}});
    same.insert(same.end(), same_n.begin(), same_n.end());
    different.insert(different.end(), different_n.begin(), different_n.end());
  }
  MOE_CHECK(!same.empty(), "--contention needs at least two expert ranks in a wave");
  const double value = std::max(median(different) - 1, 0.0);
  const double same_value = median(same) - 1;  // below 0: the other rank warmed the cache
  std::printf(
      "contention of %d ranks at once: %.3f on different experts, %.3f on the same experts "
      "(medians of %zu paired together / alone ratios each, less one)\n",
      together, value, same_value, same.size());
  return {{"ranks_at_once", together},
          {"value", value},
          {"same_experts", same_value},
          {"ratios", same.size()},
          {"by_tokens", by_tokens}};
}

// Probe calls for latency samples: for every expert rank, k of the experts it holds in one sparse
// layer with n tokens each, every other rank taking part with zero rows (as in any layer call).
void record_probe_samples(Coordinator& s, const Profile& profile,
                          const std::vector<int>& token_counts, int repeats,
                          const std::string& path) {
  const World& world = s.world();
  const ModelConfig& c = s.config();
  const int d = c.d_model, E = c.num_experts;
  std::ofstream out(path);
  MOE_CHECK(out.good(), path, ": cannot open for writing");
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> score(0.2f, 1.0f), entropy(0.0f, 2.0f);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> rows_in, rows_out;
  int calls = 0;
  for (int r = 1; r < world.size(); ++r) {
    // The sparse layer where this rank holds the most experts; those experts, this rank first.
    const ExpertMap& plan_map = s.plan().expert_map;
    int layer = 0, most = 0;
    for (int l = 0; l < plan_map.num_layers(); ++l) {
      int held = 0;
      for (int e = 0; e < E; ++e) held += plan_map.holds(r, l, e);
      if (held > most) most = held, layer = l;
    }
    MOE_CHECK(most > 0, "rank ", r, " holds no experts to probe");
    ExpertMap map = plan_map;
    std::vector<int> mine;
    for (int e = 0; e < E; ++e)
      if (plan_map.holds(r, layer, e)) {
        mine.push_back(e);
        auto& ranks = map.replicas[layer][e];
        std::stable_partition(ranks.begin(), ranks.end(), [&](int x) { return x == r; });
      }
    auto policy = std::make_unique<LatencySampleRecorder>(make_basic_dispatch_policy("static", 1),
                                                          profile, d, out);
    RemoteExpertExecutor executor(*s.exchanges(), map, *policy);
    SparseFfnWeights weights;
    weights.moe_layer = layer;
    for (int k : {1, 2, 4}) {
      if (k > int(mine.size())) break;
      for (int n : token_counts)
        for (int rep = 0; rep < repeats && n * k <= 1024; ++rep) {
          GateResult gate;
          for (int i = 0; i < k; ++i)
            for (int t = 0; t < n; ++t) {
              gate.expert.push_back(mine[(i + rep) % mine.size()]);
              gate.probability.push_back(score(rng));
              gate.entropy.push_back(entropy(rng));
              gate.kept.push_back(1);
            }
          ExpertDispatch dispatch;
          plan_expert_dispatch(gate, E, dispatch);
          const size_t floats = size_t(dispatch.rows()) * d;
          if (rows_in.size() < floats) {
            rows_in.resize(floats);
            rows_out.resize(floats);
            for (auto& v : rows_in) v = normal(rng);
          }
          executor.run(weights, calls++, gate, dispatch, rows_in.data(), rows_out.data());
        }
    }
  }
  out.close();
  MOE_CHECK(out.good(), path, ": write failed");
  std::printf("latency samples of %d probe calls written to %s\n", calls, path.c_str());
}

}  // namespace moe
