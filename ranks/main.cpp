// The one executable. `moe SUBCOMMAND [options]`, alone or under mpirun/srun: the same binary on
// every rank. A distributed sub-command's run plan gives each rank its role: rank 0 coordinates,
// the other ranks serve experts. Every error ends the run with one line naming what went wrong
// (and the rank, when distributed) and a non-zero exit.
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "ranks/commands/command_line.hpp"
#include "ranks/commands/commands.hpp"
#include "ranks/coordinator.hpp"
#include "ranks/expert_rank.hpp"
#include "ranks/run_plan.hpp"
#include "runtime/error.hpp"
#include "runtime/exit_status.hpp"
#include "runtime/mpi/world.hpp"

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
      "  plan-memory           committee sizes per sparse layer for memory and latency budgets\n"
      "  plan       attention ranks and micro-batches for a run, from a profile's serving curves\n"
      "Run under mpirun -np N: rank 0 coordinates (with --attention-ranks M, ranks 0..M-1 run\n"
      "attention, each on its share of the prompts), the other ranks serve experts.\n");
}

std::unique_ptr<moe::DistributedCommand> distributed_command(const std::string& name) {
  if (name == "generate") return moe::make_generate_command();
  if (name == "forward") return moe::make_forward_command();
  if (name == "profile") return moe::make_profile_command();
  if (name == "bench-routing") return moe::make_bench_routing_command();
  return nullptr;
}

// Rank 0 checks every input and makes the plan; every rank gets it and plays its role: ranks
// 0..M-1 attention (coordinator) ranks, the others expert ranks.
int run_distributed(moe::World& world, moe::DistributedCommand& command,
                    const std::vector<std::string>& args, const std::string& name) {
  boost::program_options::options_description opts("moe " + name + " options");
  opts.add_options()("help,h", "show this help");
  command.run_options().add_to(opts);
  command.add_options(opts);
  if (!moe::parse_command_line(world, opts, args)) return 0;

  moe::CheckedRun run;
  if (world.rank() == 0) {
    try {
      const moe::ModelConfig config = moe::load_run_config(command.run_options());
      command.prepare(world, config);
      run = moe::check_run(command.run_options(), config, world.size());
      command.settle(world, run);
    } catch (const std::exception& e) {
      run.plan.error = e.what();
    }
  }
  if (world.distributed()) run.plan = moe::share_plan(world, run.plan);
  if (!run.plan.error.empty()) {
    if (world.rank() == 0) throw moe::RejectedRun(run.plan.error);
    return 0;  // rank 0 reports the rejection and exits non-zero
  }
  if (!run.plan.is_attention_rank(world.rank())) return moe::run_expert_rank(world, run.plan);
  moe::Coordinator coordinator(world, std::move(run));
  return command.coordinate(coordinator);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    usage();
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  std::unique_ptr<moe::World> world;
  try {
    world = std::make_unique<moe::World>(&argc, &argv);
    if (auto distributed = distributed_command(command)) {
      const int code = run_distributed(*world, *distributed, args, command);
      if (world->rank() == 0) moe::record_exit_status(code);
      return code;
    }
    if (command == "place") return moe::run_place(*world, args);
    if (command == "train-latency-model") return moe::run_train_latency_model(*world, args);
    if (command == "simulate") return moe::run_simulate(*world, args);
    if (command == "plan-memory") return moe::run_plan_memory(*world, args);
    if (command == "plan") return moe::run_plan(*world, args);
    if (world->rank() == 0) {
      std::fprintf(stderr, "moe: error: unknown sub-command '%s'\n", command.c_str());
      usage();
    }
    return 2;
  } catch (const std::exception& e) {
    const bool usage_error = dynamic_cast<const boost::program_options::error*>(&e) != nullptr;
    if (!world || world->rank() == 0) moe::record_exit_status(usage_error ? 2 : 1);
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
