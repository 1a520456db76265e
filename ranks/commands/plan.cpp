// moe plan: the layout of a `moe generate` run from a profile's serving curves (moe profile
// --serving-rows): for every split of the ranks into M attention and N expert ranks and every
// count of micro-batches, the serving model's predicted run (router/sim/serving_model.hpp), the
// one-process run beside them, and the fastest layout as the command that runs it.
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
  std::string profile_path, inputs = "0", attention_text, micro_text = "1-4";
  int ranks = 0, batch = 8, requests = 256, new_tokens = 32;
  double cores = -1, contention = -1, attention_speed = 1, expert_speed = 1;
  po::options_description opts("moe plan options");
  // clang-format off
  opts.add_options()("help,h", "show this help")
      ("profile", po::value(&profile_path)->required(), "profile.json with serving curves (moe profile --serving-rows)")
      ("ranks", po::value(&ranks)->required(), "ranks of the run (mpirun -np)")
      ("batch-size", po::value(&batch)->default_value(batch), "sequences per attention rank")
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
  MOE_CHECK(ranks >= 2, "--ranks must be >= 2 (one process needs no plan)");
  MOE_CHECK(batch >= 1 && requests >= 1 && new_tokens >= 1,
            "--batch-size, --requests and --new-tokens must be >= 1");
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
  std::vector<int> attention_counts, micro_counts = parse_int_list(micro_text, "--micro-batches");
  if (attention_text.empty())
    for (int m = 1; m < ranks; ++m) attention_counts.push_back(m);
  else
    attention_counts = parse_int_list(attention_text, "--attention-ranks");
  for (int m : attention_counts)
    MOE_CHECK(m >= 1 && m < ranks, "--attention-ranks ", m, " leaves no expert rank among ", ranks);
  // More expert ranks than experts would hold replicas, which the model's even split of the
  // expert work cannot show (router/sim/serving_model.hpp).
  const auto replicas = [&](int m) { return ranks - m > profile.num_experts; };
  attention_counts.erase(std::remove_if(attention_counts.begin(), attention_counts.end(), replicas),
                         attention_counts.end());
  MOE_CHECK(!attention_counts.empty(), "every split of ", ranks,
            " ranks has more expert ranks than the ", profile.num_experts,
            " experts per layer, which the serving model does not weigh");
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
  // One process of the profiled kind: the curves as measured, the experts in line.
  const sim::ServingPrediction alone =
      sim::predict_serving(profiled, {1, 0, 1, batch, 0}, workload, host);
  std::printf("%-9s %-7s %-6s %12s %10s %14s %10s %10s %8s\n", "attention", "experts", "micro",
              "tokens/s", "seconds", "decode step ms", "attn busy", "exp busy", "x alone");
  std::printf("%-9s %-7s %-6d %12.1f %10.3f %14.2f %9.0f%% %10s %8.2f\n", "1 (alone)", "0", 1,
              alone.tokens_per_s, alone.seconds, alone.decode_step_ms, 100 * alone.attention_busy,
              "-", 1.0);
  micro_counts.erase(std::remove_if(micro_counts.begin(), micro_counts.end(),
                                    [&](int micro) { return micro > batch; }),
                     micro_counts.end());
  MOE_CHECK(!micro_counts.empty(),
            "no layout to weigh: --micro-batches are all above --batch-size");
  int best_m = 0, best_micro = 0;
  double best_rate = 0;
  for (int m : attention_counts) {
    std::vector<sim::ServingPrediction> predicted;
    const int micro = choose_micro_batches(profile, {m, ranks - m, 1, batch, 0}, workload, host,
                                           micro_counts, &predicted);
    for (size_t i = 0; i < micro_counts.size(); ++i) {
      const sim::ServingPrediction& p = predicted[i];
      std::printf("%-9d %-7d %-6d %12.1f %10.3f %14.2f %9.0f%% %9.0f%% %8.2f\n", m, ranks - m,
                  micro_counts[i], p.tokens_per_s, p.seconds, p.decode_step_ms,
                  100 * p.attention_busy, 100 * p.experts_busy,
                  p.tokens_per_s / alone.tokens_per_s);
      if (micro_counts[i] == micro && p.tokens_per_s > best_rate)
        best_rate = p.tokens_per_s, best_m = m, best_micro = micro;
    }
  }
  std::printf(
      "chosen: mpirun -np %d moe generate --attention-ranks %d --micro-batches %d --batch-size %d "
      "(predicted %.1f tokens/s, %.2fx one process)\n",
      ranks, best_m, best_micro, batch, best_rate, best_rate / alone.tokens_per_s);
  return 0;
}

}  // namespace moe
