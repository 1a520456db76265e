// The one executable. `moe SUBCOMMAND [options]`, alone or under mpirun/srun (the same binary on
// every rank; rank 0 coordinates). Every error ends the run with one line naming what went wrong
// (and the rank, when distributed) and a non-zero exit.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include <boost/program_options/errors.hpp>

#include "ranks/commands.hpp"
#include "runtime/error.hpp"
#include "runtime/world.hpp"

namespace {

void usage() {
  std::printf(
      "usage: moe SUBCOMMAND [options]   (moe SUBCOMMAND --help for its options)\n"
      "  generate   greedy generation for a JSONL file of prompts\n"
      "  forward    encoder states, logits and router choices to a safetensors file\n"
      "  profile    time every expert rank's expert FFN and the links to it (profile.json)\n"
      "  place      place experts (and replicas of hot ones) on ranks from a profile and a trace\n"
      "  train-latency-model   train the MLP latency predictor from latency samples\n"
      "  bench-routing         replay a routing trace through every policy and expert map\n"
      "  simulate   a routing trace through a modelled cluster, every policy and expert map\n"
      "Run under mpirun -np N: rank 0 coordinates, ranks 1..N-1 serve experts.\n");
}

}  // namespace

int main(int argc, char** argv) {
  // OpenMP threads that spin while OpenBLAS's own pool works fight it for the cores (measured:
  // 0.16x Hugging Face at 2 threads, 1.29x with passive waiting). The runtime reads the policy
  // when it loads, so set it and start again, once, before anything else (MPI included) runs.
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv);  // returns only on failure: then carry on as we are
  }
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    usage();
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  std::unique_ptr<moe::World> world;
  try {
    world = std::make_unique<moe::World>(&argc, &argv);
    if (command == "generate") return moe::run_generate(*world, args);
    if (command == "forward") return moe::run_forward(*world, args);
    if (command == "profile") return moe::run_profile(*world, args);
    if (command == "place") return moe::run_place(*world, args);
    if (command == "train-latency-model") return moe::run_train_latency_model(*world, args);
    if (command == "bench-routing") return moe::run_bench_routing(*world, args);
    if (command == "simulate") return moe::run_simulate(*world, args);
    if (world->rank() == 0) {
      std::fprintf(stderr, "moe: error: unknown sub-command '%s'\n", command.c_str());
      usage();
    }
    return 2;
  } catch (const std::exception& e) {
    const bool usage_error = dynamic_cast<const boost::program_options::error*>(&e) != nullptr;
    if (world && world->distributed()) {
      std::fprintf(stderr, "moe %s: error: rank %d (host %s): %s\n", command.c_str(), world->rank(),
                   world->host().c_str(), e.what());
      std::fflush(stderr);
      // A rejected run ends on every rank by itself; anything else must stop the other ranks.
      if (!dynamic_cast<const moe::RejectedRun*>(&e)) world->abort(usage_error ? 2 : 1);
      return usage_error ? 2 : 1;
    }
    std::fprintf(stderr, "moe %s: error: %s\n", command.c_str(), e.what());
    return usage_error ? 2 : 1;
  }
}
