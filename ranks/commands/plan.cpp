// moe plan: the layout of a `moe generate` run from a profile's serving curves (moe profile
// --serving-rows): for every count of ranks asked for, every split of them into M attention and N
// expert ranks, the same ranks co-located (--colocate: each attends and holds experts; "same" in
// the experts column), and every count of micro-batches, the serving model's predicted run
// (router/sim/serving_model.hpp), the one-process run beside them, and the fastest layout as the
// command that runs it. With --in-flight the layouts hold the same sequences at once (each
// attention rank its share), so that more ranks than cores can be weighed against fewer: on two
// cores, two attention and two expert ranks taking turns on each core read no expert twice a
// step, where one attention rank's two micro-batches do (docs/BENCHMARKS.md section 13).
#include <algorithm>
#include <boost/program_options.hpp>
#include <cstdio>
#include <thread>

#include "ranks/commands/command_line.hpp"
#include "ranks/commands/commands.hpp"
#include "ranks/commands/serving_prediction.hpp"
#include "router/sim/serving_model.hpp"
#include "runtime/error.hpp"

namespace moe {
namespace po = boost::program_options;

namespace {

// Input lengths "L" (every request L tokens) or "A-B" (spread over A..B, as a mix of prompts).
std::vector<int> input_lengths(const std::string& text, int requests) {
  int lo = 0, hi = 0;
  const auto dash = text.find('-');
  const auto whole_number = [&](const std::string& part) {
    size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(part, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    MOE_CHECK(used > 0 && used == part.size(), "--input-tokens must be N or A-B, not '", text, "'");
    return v;
  };
  lo = whole_number(text.substr(0, dash));
  hi = dash == std::string::npos ? lo : whole_number(text.substr(dash + 1));
  MOE_CHECK(lo >= 1 && hi >= lo, "--input-tokens must be N or A-B with 1 <= A <= B, not '", text,
            "'");
  std::vector<int> lengths;
  uint64_t state = 1234;
  for (int i = 0; i < requests; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;  // a fixed pseudo-random mix
    lengths.push_back(lo + int((state >> 33) % uint64_t(hi - lo + 1)));
  }
  return lengths;
}

// The curves of one side sped up: a faster kind of device on the attention or the expert ranks.
void speed_up(LatencyCurve& curve, double speed) {
  for (double& us : curve.median_us) us /= speed;
}

}  // namespace

int run_plan(const World& world, const std::vector<std::string>& args) {
  std::string profile_path, inputs = "0", attention_text, micro_text = "1-4", ranks_text;
  int batch = 8, in_flight = 0, requests = 256, new_tokens = 32;
  double cores = -1, contention = -1, attention_speed = 1, expert_speed = 1;
  po::options_description opts("moe plan options");
  // clang-format off
  opts.add_options()("help,h", "show this help")
      ("profile", po::value(&profile_path)->required(), "profile.json with serving curves (moe profile --serving-rows)")
      ("ranks", po::value(&ranks_text)->required(), "ranks of the run (mpirun -np), or several to weigh: 2,4")
      ("batch-size", po::value(&batch)->default_value(batch), "sequences per attention rank")
      ("in-flight", po::value(&in_flight)->default_value(0), "sequences in flight over all attention ranks, each its share (instead of --batch-size; 0: not used)")
      ("requests", po::value(&requests)->default_value(requests), "prompts in the job")
      ("input-tokens", po::value(&inputs)->default_value(inputs), "input tokens per prompt: N, or A-B for a spread (0: the profile's)")
      ("new-tokens", po::value(&new_tokens)->default_value(new_tokens), "tokens generated per prompt")
      ("attention-ranks", po::value(&attention_text), "attention rank counts to weigh (default: 1 to ranks - 1)")
      ("micro-batches", po::value(&micro_text)->default_value(micro_text), "micro-batch counts to weigh")
      ("cores", po::value(&cores)->default_value(cores), "cores the ranks share (-1: this machine's; 0: a core or device each)")
      ("contention", po::value(&contention)->default_value(contention), "slowdown of a rank per other rank computing at once (-1: the profile's, by the rows it computes where measured; else 0)")
      ("attention-speed", po::value(&attention_speed)->default_value(1), "the attention ranks' speed relative to the profiled one")
      ("expert-speed", po::value(&expert_speed)->default_value(1), "the expert ranks' speed relative to the profiled one");
  // clang-format on
  if (!parse_command_line(world, opts, args)) return 0;
  MOE_CHECK(!world.distributed(), "moe plan runs in one process (no mpirun)");
  const std::vector<int> rank_counts = parse_int_list(ranks_text, "--ranks");
  for (int ranks : rank_counts)
    MOE_CHECK(ranks >= 2, "--ranks must be >= 2 (one process needs no plan), not ", ranks);
  MOE_CHECK(batch >= 1 && requests >= 1 && new_tokens >= 1 && in_flight >= 0,
            "--batch-size, --requests and --new-tokens must be >= 1, --in-flight >= 0");
  MOE_CHECK(attention_speed > 0 && expert_speed > 0,
            "--attention-speed and --expert-speed must be > 0");
  MOE_CHECK(cores == -1 || cores == 0 || cores >= 1,
            "--cores must be -1 (this machine's), 0 (a core or device each) or at least 1");
  MOE_CHECK(contention == -1 || contention >= 0, "--contention must be -1 (the profile's) or >= 0");
  const Profile profiled = load_profile(profile_path);
  Profile profile = profiled;
  MOE_CHECK(!profile.serving.empty(), profile_path,
            ": has no serving curves: measure them with moe profile --serving-rows");
  ServingCurves& s = profile.serving;
  for (LatencyCurve* c : {&s.decode_attention, &s.encode_attention}) speed_up(*c, attention_speed);
  for (LatencyCurve* c :
       {&s.decode_experts, &s.encode_experts, &s.decode_dense, &s.encode_dense, &s.decode_lm_head})
    speed_up(*c, expert_speed);
  sim::ServingHost host;
  host.cores = cores < 0 ? std::max(1u, std::thread::hardware_concurrency()) : cores;
  host.contention = contention >= 0 ? Contention{contention} : profile.contention;
  host.contention.value = std::max(host.contention.value, 0.0);
  const sim::ServingWorkload workload{
      input_lengths(inputs == "0" ? std::to_string(s.input_tokens) : inputs, requests), new_tokens};
  std::vector<int> micro_counts = parse_int_list(micro_text, "--micro-batches");
  const std::vector<int> asked_attention =
      attention_text.empty() ? std::vector<int>{}
                             : parse_int_list(attention_text, "--attention-ranks");
  // An asked M must leave an expert rank in at least one of the rank counts (the largest).
  const int most_ranks = *std::max_element(rank_counts.begin(), rank_counts.end());
  for (int m : asked_attention)
    MOE_CHECK(m >= 1 && m < most_ranks, "--attention-ranks ", m, " leaves no expert rank among ",
              most_ranks);
  // Per count of ranks, its splits: M attention ranks (those asked, where asked), the rest experts.
  // More expert ranks than experts would hold replicas, which the model's even split of the expert
  // work cannot show (router/sim/serving_model.hpp); --in-flight is shared evenly.
  std::vector<std::pair<int, int>> splits;
  for (int ranks : rank_counts)
    for (int m = 1; m < ranks; ++m) {
      const bool asked =
          asked_attention.empty() ||
          std::find(asked_attention.begin(), asked_attention.end(), m) != asked_attention.end();
      if (asked && ranks - m <= profile.num_experts && (in_flight == 0 || in_flight % m == 0))
        splits.push_back({ranks, m});
    }
  MOE_CHECK(!splits.empty(), "no split of ", ranks_text,
            " ranks to weigh: each leaves more expert ranks than the ", profile.num_experts,
            " experts per layer (which the serving model does not weigh)",
            in_flight > 0 ? " or has attention ranks that do not divide --in-flight" : "");
  for (int m : micro_counts) MOE_CHECK(m >= 1, "--micro-batches must be >= 1");
  // Fewer lanes first: a count is taken over fewer only when it wins by 3%, as moe generate
  // chooses (choose_micro_batches).
  std::sort(micro_counts.begin(), micro_counts.end());

  std::printf(
      "serving model: %d requests of %s input tokens, %d new tokens each; cores %s, "
      "contention %.3f%s; curves measured with %d thread(s) per rank, dense FFNs '%s', "
      "lm_head share %.2f on the expert ranks\n",
      requests, inputs == "0" ? std::to_string(s.input_tokens).c_str() : inputs.c_str(), new_tokens,
      host.cores > 0 ? std::to_string(int(host.cores)).c_str() : "one per rank",
      host.contention.value,
      host.contention.by_tokens.tokens.empty() ? "" : " (median; by rows as profiled)", s.threads,
      s.dense_ffn.c_str(), s.lm_head_on_experts);
  // One process of the profiled kind, with every sequence in flight: the curves as measured, the
  // experts in line.
  const int alone_batch = in_flight > 0 ? in_flight : batch;
  const sim::ServingPrediction alone =
      sim::predict_serving(profiled, {1, 0, 1, alone_batch, 0}, workload, host);
  std::printf("%-9s %-7s %-6s %6s %12s %10s %14s %10s %10s %8s\n", "attention", "experts", "micro",
              "batch", "tokens/s", "seconds", "decode step ms", "attn busy", "exp busy", "x alone");
  std::printf("%-9s %-7s %-6d %6d %12.1f %10.3f %14.2f %9.0f%% %10s %8.2f\n", "1 (alone)", "0", 1,
              alone_batch, alone.tokens_per_s, alone.seconds, alone.decode_step_ms,
              100 * alone.attention_busy, "-", 1.0);
  int best_ranks = 0, best_m = 0, best_micro = 0, best_batch = 0;
  bool best_colocated = false;
  double best_rate = 0;
  // Every split, then every count of co-located ranks (each attends and holds experts): `m` = 0.
  std::vector<std::pair<int, int>> layouts = splits;
  for (int ranks : rank_counts)
    if (ranks <= profile.num_experts && (in_flight == 0 || in_flight % ranks == 0))
      layouts.push_back({ranks, 0});
  for (const auto& [ranks, m] : layouts) {
    const bool colocated = m == 0;
    const int attention = colocated ? ranks : m;
    const int per_rank = in_flight > 0 ? in_flight / attention : batch;
    std::vector<int> counts;  // a micro-batch holds a sequence at least
    for (int micro : micro_counts)
      if (micro <= per_rank) counts.push_back(micro);
    if (counts.empty()) continue;
    std::vector<sim::ServingPrediction> predicted;
    const int micro =
        choose_micro_batches(profile, {attention, ranks - attention, 1, per_rank, 0, colocated},
                             workload, host, counts, &predicted);
    for (size_t i = 0; i < counts.size(); ++i) {
      const sim::ServingPrediction& p = predicted[i];
      std::printf("%-9d %-7s %-6d %6d %12.1f %10.3f %14.2f %9.0f%% %9.0f%% %8.2f\n", attention,
                  colocated ? "same" : std::to_string(ranks - m).c_str(), counts[i], per_rank,
                  p.tokens_per_s, p.seconds, p.decode_step_ms, 100 * p.attention_busy,
                  100 * p.experts_busy, p.tokens_per_s / alone.tokens_per_s);
      if (counts[i] == micro && p.tokens_per_s > best_rate)
        best_rate = p.tokens_per_s, best_ranks = ranks, best_m = attention, best_micro = micro,
        best_batch = per_rank, best_colocated = colocated;
    }
  }
  MOE_CHECK(best_ranks > 0, "no layout to weigh: --micro-batches are all above the batch per ",
            "attention rank");
  const std::string roles =
      best_colocated ? "--colocate" : "--attention-ranks " + std::to_string(best_m);
  std::printf(
      "chosen: mpirun -np %d moe generate %s --micro-batches %d --batch-size %d (predicted %.1f "
      "tokens/s, %.2fx one process)\n",
      best_ranks, roles.c_str(), best_micro, best_batch, best_rate, best_rate / alone.tokens_per_s);
  return 0;
}

}  // namespace moe
