// What every sub-command does with its arguments: parse them against its options, print the
// options for --help (on rank 0 only), and split comma-separated lists.
#pragma once

#include <boost/program_options/options_description.hpp>
#include <string>
#include <vector>

#include "runtime/mpi/world.hpp"

namespace moe {

// Returns false when --help was asked for (and printed); throws on bad or missing options.
bool parse_command_line(const World& world, const boost::program_options::options_description& opts,
                        const std::vector<std::string>& args);

// "a,b,,c" → {"a", "b", "c"}: empty items are dropped.
std::vector<std::string> split_commas(const std::string& text);
// "1-16,24,32": integers and inclusive ranges, in the order given; `option` names the flag in
// errors.
std::vector<int> parse_int_list(const std::string& text, const std::string& option);

}  // namespace moe
