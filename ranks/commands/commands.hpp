// The sub-commands of the one `moe` executable. A distributed command runs on every rank of a
// run (main() gives each rank its role from the plan); a one-process command runs alone.
#pragma once

#include <boost/program_options/options_description.hpp>
#include <memory>
#include <string>
#include <vector>

#include "model/config.hpp"
#include "ranks/commands/run_options.hpp"
#include "ranks/coordinator.hpp"
#include "runtime/mpi/world.hpp"

namespace moe {

class DistributedCommand {
 public:
  virtual ~DistributedCommand() = default;
  // Adds the command's own options; the run options are added beside them.
  virtual void add_options(boost::program_options::options_description& opts) = 0;
  RunOptions& run_options() { return run_options_; }
  // On rank 0, before the plan goes out: reads and checks the command's own inputs. A throw
  // rejects the run before any rank starts work.
  virtual void prepare(const World& world, const ModelConfig& config) {}
  // On rank 0, once the run is checked and before its plan goes out: settles what the plan left
  // open. A throw rejects the run.
  virtual void settle(const World& world, CheckedRun& run) {}
  // On the coordinator, once every expert rank is serving. Returns the exit code.
  virtual int coordinate(Coordinator& coordinator) = 0;

 protected:
  RunOptions run_options_;
};

std::unique_ptr<DistributedCommand> make_generate_command();
std::unique_ptr<DistributedCommand> make_forward_command();
std::unique_ptr<DistributedCommand> make_profile_command();
std::unique_ptr<DistributedCommand> make_bench_routing_command();

int run_place(const World& world, const std::vector<std::string>& args);
int run_train_latency_model(const World& world, const std::vector<std::string>& args);
int run_simulate(const World& world, const std::vector<std::string>& args);
int run_plan_memory(const World& world, const std::vector<std::string>& args);
int run_plan(const World& world, const std::vector<std::string>& args);

}  // namespace moe
