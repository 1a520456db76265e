// `moe simulate`: the discrete-event cluster simulator (launch/simulator/) as a sub-command.
#pragma once

#include <string>
#include <vector>

#include "runtime/world.hpp"

namespace moe {

int run_simulate(World& world, const std::vector<std::string>& args);

}  // namespace moe
