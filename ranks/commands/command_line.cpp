#include "ranks/commands/command_line.hpp"

#include <boost/program_options.hpp>
#include <charconv>
#include <cstdint>
#include <iostream>
#include <optional>
#include <sstream>

#include "runtime/error.hpp"

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

std::vector<int> parse_int_list(const std::string& text, const std::string& option) {
  // A whole non-negative integer, or nullopt.
  auto number = [](const std::string& t) -> std::optional<int> {
    int v = 0;
    const auto [end, error] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (t.empty() || error != std::errc() || end != t.data() + t.size() || v < 0)
      return std::nullopt;
    return v;
  };
  std::vector<int> out;
  for (const auto& item : split_commas(text)) {
    const size_t dash = item.find('-');
    const auto first = number(item.substr(0, dash));
    const auto last = dash == std::string::npos ? first : number(item.substr(dash + 1));
    MOE_CHECK(first && last && *first <= *last, option, ": '", item,
              "' is neither a non-negative integer nor a range A-B with A <= B");
    MOE_CHECK(int64_t(*last) - *first < 1000000, option, ": '", item,
              "' is a range of more than a million values");
    for (int64_t v = *first; v <= *last; ++v) out.push_back(int(v));
  }
  return out;
}

}  // namespace moe
