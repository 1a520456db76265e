// The sub-commands of the one `moe` executable. Each takes its own arguments (after the
// sub-command name) and returns the process exit code.
#pragma once

#include <string>
#include <vector>

#include "ranks/simulate_command.hpp"
#include "runtime/world.hpp"

namespace moe {

int run_generate(World& world, const std::vector<std::string>& args);
int run_forward(World& world, const std::vector<std::string>& args);
int run_profile(World& world, const std::vector<std::string>& args);
int run_place(World& world, const std::vector<std::string>& args);
int run_train_latency_model(World& world, const std::vector<std::string>& args);
int run_bench_routing(World& world, const std::vector<std::string>& args);

}  // namespace moe
