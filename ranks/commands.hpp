// The sub-commands of the one `moe` executable. Each takes its own arguments (after the
// sub-command name) and returns the process exit code.
#pragma once

#include <string>
#include <vector>

namespace moe {

int run_generate(const std::vector<std::string>& args);
int run_forward(const std::vector<std::string>& args);

}  // namespace moe
