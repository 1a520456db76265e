// moe train-latency-model: fit the MLP latency predictor to samples (from `moe profile`-backed
// runs with --record-latency-samples), report held-out error against a linear model and against
// the profile table alone, and save the model (Cereal, versioned).
#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "ranks/commands/command_line.hpp"
#include "ranks/commands/commands.hpp"
#include "router/latency_model.hpp"
#include "runtime/error.hpp"

namespace moe {
namespace po = boost::program_options;

int run_train_latency_model(const World& world, const std::vector<std::string>& args) {
  std::string samples_text, out_path;
  TrainOptions o;
  po::options_description opts("moe train-latency-model options");
  // clang-format off
  opts.add_options()("help,h", "show this help")
      ("samples", po::value(&samples_text)->required(), "latency sample CSV file(s), comma-separated")
      ("out", po::value(&out_path)->required(), "model file to write")
      ("epochs", po::value(&o.epochs)->default_value(o.epochs), "passes over the training split")
      ("hidden", po::value(&o.hidden)->default_value(o.hidden), "hidden units per layer")
      ("learning-rate", po::value(&o.learning_rate)->default_value(o.learning_rate), "Adam learning rate")
      ("weight-decay", po::value(&o.weight_decay)->default_value(o.weight_decay),
       "decoupled weight decay on the weights (AdamW)")
      ("held-out", po::value(&o.held_out_fraction)->default_value(o.held_out_fraction), "fraction held out")
      ("seed", po::value(&o.seed)->default_value(o.seed), "split and initialisation seed");
  // clang-format on
  if (!parse_command_line(world, opts, args)) return 0;
  MOE_CHECK(!world.distributed(), "moe train-latency-model runs in one process (no mpirun)");
  std::vector<LatencySample> samples;
  for (const auto& path : split_commas(samples_text)) {
    auto more = load_latency_samples(path);
    samples.insert(samples.end(), more.begin(), more.end());
  }
  TrainReport report;
  const auto model = LatencyModel::train(samples, o, &report);
  model.save(out_path);
  std::printf("trained on %zu samples, held out %zu\n", report.train_samples,
              report.held_out_samples);
  std::printf("%-22s %10s\n", "held-out predictor", "MAPE");
  std::printf("%-22s %9.1f%%\n", "MLP (this model)", 100 * report.mlp_mape);
  std::printf("%-22s %9.1f%%\n", "linear, same features", 100 * report.linear_mape);
  std::printf("%-22s %9.1f%%\n", "profile table alone", 100 * report.profile_mape);
  std::printf("model written to %s\n", out_path.c_str());
  return 0;
}

}  // namespace moe
