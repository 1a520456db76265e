// moe profile: under mpirun, every expert rank times the expert FFN it may host over token
// counts, and rank 0 times the data transport to each rank (latency and bandwidth). Written as
// profile.json, which records each rank's device; --merge folds in an earlier profile;
// --contention adds a paired measurement of how much ranks computing at once slow each other;
// --record-latency-samples then sends each rank probe calls through the real dispatch path and
// writes their latency samples, priced by the profile just measured: training data for the
// latency model that covers loads concentrated on one rank, which the baseline policies rarely
// make.
#include <boost/program_options.hpp>
#include <cstdio>

#include "model/weights.hpp"
#include "ranks/commands/command_line.hpp"
#include "ranks/commands/commands.hpp"
#include "ranks/profiler.hpp"
#include "runtime/atomic_file.hpp"
#include "runtime/error.hpp"

namespace moe {
namespace po = boost::program_options;

namespace {

class ProfileCommand final : public DistributedCommand {
 public:
  void add_options(po::options_description& opts) override {
    // clang-format off
    opts.add_options()
        ("out", po::value(&out_path_)->required(), "profile.json to write")
        ("token-counts", po::value(&counts_text_)->default_value(counts_text_),
         "token counts to time: integers and ranges A-B. A GEMM's cost is not monotonic in the row "
         "count, so time every count the runs use rather than interpolate")
        ("repeats", po::value(&repeats_)->default_value(5),
         "timed repeats: rounds over the token counts for the expert curves (each point the median "
         "over rounds), and repeats of the link, contention and probe timings")
        ("max-experts", po::value(&max_experts_)->default_value(0),
         "experts timed per rank, in rotation (0: every expert it holds; a round's point is the "
         "median over them)")
        ("concurrency", po::value(&concurrency_)->default_value(1),
         "expert ranks timed at the same time (0: all): as many as compute at once in the runs to "
         "be modelled, up to a host's cores")
        ("contention", po::value(&contention_)->default_value(0),
         "also measure how much K expert ranks computing at once slow each other (paired with each "
         "alone, per token count and repeat), written as \"contention\" for the simulator (0: no)")
        ("serving-rows", po::value(&serving_text_),
         "also time the attention rank's side of serving (for moe plan and the serving model): "
         "encoder passes and decode steps over each of these numbers of sequences, e.g. "
         "1,2,4,8,16,32,64 (integers and ranges A-B), as moe generate runs them by default")
        ("serving-input-tokens", po::value(&serving_input_tokens_)->default_value(16),
         "tokens per sequence in the timed encoder passes")
        ("serving-steps", po::value(&serving_steps_)->default_value(8),
         "decode steps after each timed encoder pass (the first is not counted)")
        ("merge", po::value(&merge_path_), "an earlier profile.json to merge into the result");
    // clang-format on
  }

  void prepare(const World& world, const ModelConfig& c) override {
    MOE_CHECK(world.size() >= 2,
              "moe profile needs expert ranks: run it under mpirun -np 2 or more");
    MOE_CHECK(count_moe_layers(c) > 0, run_options_.model_dir,
              "/config.json: the model has no sparse layer (every block dense), so no expert to "
              "profile");
    MOE_CHECK(repeats_ >= 1 && max_experts_ >= 0, "--repeats must be >= 1 and --max-experts >= 0");
    MOE_CHECK(concurrency_ >= 0, "--concurrency must be >= 0");
    MOE_CHECK(contention_ == 0 || (contention_ >= 2 && contention_ < world.size()),
              "--contention K needs 2 <= K <= the number of expert ranks");
    request_.max_experts = max_experts_;
    for (int v : parse_int_list(counts_text_, "--token-counts")) request_.token_counts.push_back(v);
    const auto& counts = request_.token_counts;
    MOE_CHECK(!counts.empty(), "--token-counts: no token counts in '", counts_text_, "'");
    for (size_t i = 0; i < counts.size(); ++i)
      MOE_CHECK(counts[i] >= 1 && (i == 0 || counts[i] > counts[i - 1]),
                "--token-counts must be increasing positive integers: ", counts[i],
                i == 0 ? "" : " after " + std::to_string(counts[i - 1]));
    if (!merge_path_.empty()) load_profile(merge_path_);
    if (!serving_text_.empty()) {
      for (int v : parse_int_list(serving_text_, "--serving-rows")) {
        MOE_CHECK(v >= 1 && (serving_rows_.empty() || v > serving_rows_.back()),
                  "--serving-rows must be increasing positive integers, not '", serving_text_, "'");
        serving_rows_.push_back(v);
      }
      MOE_CHECK(serving_input_tokens_ >= 1 && serving_steps_ >= 2,
                "--serving-input-tokens must be >= 1 and --serving-steps >= 2");
      run_options_.measures_serving = true;
    }
    // The samples are priced by the profile this run measures: the run must not ask for one.
    samples_path_ = run_options_.record_latency_samples_path;
    run_options_.record_latency_samples_path.clear();
  }

  int coordinate(Coordinator& coordinator) override {
    const auto start = Clock::now();
    Profile profile = measure_profile(coordinator, request_, repeats_, concurrency_);
    if (!serving_rows_.empty()) {
      profile.serving = measure_serving(coordinator, serving_rows_, serving_input_tokens_,
                                        serving_steps_, repeats_);
      profile.serving.threads = run_options_.threads;
      profile.serving.dense_ffn = coordinator.plan().dense_placement();
      profile.serving.lm_head_on_experts = coordinator.plan().lm_head_on_experts;
    }
    if (!merge_path_.empty()) profile = merge_profiles(load_profile(merge_path_), profile);
    nlohmann::json written = profile_to_json(profile);
    if (contention_ > 0) {
      std::fprintf(stderr, "measuring the contention of %d expert ranks at once\n", contention_);
      written["contention"] = measure_contention(coordinator, request_, repeats_, contention_);
    }
    write_file_atomically(out_path_, [&](std::ostream& out) { out << written.dump(2) << "\n"; });
    print(profile);
    if (!samples_path_.empty())
      record_probe_samples(coordinator, profile, request_.token_counts, repeats_, samples_path_);
    coordinator.finish(0, seconds_since(start));
    return 0;
  }

 private:
  void print(const Profile& profile) const {
    std::printf("%-5s %-12s %12s %12s %12s %14s %12s %12s %12s\n", "rank", "device", "1 tok us",
                "64 tok us", "link us", "link MB/s", "call cpu us", "receive us", "load ms");
    for (const auto& r : profile.ranks)
      std::printf("%-5d %-12s %12.1f %12.1f %12.1f %14.1f %12.1f %12.1f %12.2f\n", r.rank,
                  r.device.c_str(), r.expert.at(1), r.expert.at(64), r.link_latency_us,
                  r.link_bytes_per_us, r.call_cpu_us, r.receive_us, r.expert_load_us / 1000);
    const ServingCurves& s = profile.serving;
    if (!s.empty()) {
      std::printf("%-10s %16s %16s %18s %18s\n", "sequences", "decode attn us", "decode expert us",
                  "encode attn us", "encode expert us");
      for (size_t i = 0; i < s.decode_attention.tokens.size(); ++i)
        std::printf("%-10.0f %16.1f %16.1f %18.1f %18.1f\n", s.decode_attention.tokens[i],
                    s.decode_attention.median_us[i], s.decode_experts.median_us[i],
                    s.encode_attention.median_us[i], s.encode_experts.median_us[i]);
      std::printf("exchanges per decode step %.0f, per encoder pass %.0f\n", s.decode_exchanges,
                  s.encode_exchanges);
    }
    std::printf("profile written to %s\n", out_path_.c_str());
  }

  std::string out_path_, merge_path_, samples_path_, serving_text_;
  std::vector<int> serving_rows_;
  int serving_input_tokens_ = 16, serving_steps_ = 8;
  std::string counts_text_ = "1-32,48,64,96,128,192,256,384,512,768,1024";
  int repeats_ = 5, max_experts_ = 0, concurrency_ = 1, contention_ = 0;
  ProfileRequest request_;
};

}  // namespace

std::unique_ptr<DistributedCommand> make_profile_command() {
  return std::make_unique<ProfileCommand>();
}

}  // namespace moe
