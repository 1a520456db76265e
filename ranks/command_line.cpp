#include "ranks/command_line.hpp"

#include <iostream>
#include <sstream>

#include <boost/program_options.hpp>

namespace moe {
namespace po = boost::program_options;

bool parse_command_line(const World& world, const po::options_description& opts,
                        const std::vector<std::string>& args) {
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(opts).run(), vm);
  if (vm.count("help")) {
    if (world.rank() == 0) std::cout << opts << "\n";
    return false;
  }
  po::notify(vm);
  return true;
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream list(text);
  for (std::string item; std::getline(list, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace moe
