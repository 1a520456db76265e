// The one executable. `moe SUBCOMMAND [options]`; every error ends the process with one line
// naming what went wrong and a non-zero exit.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include <boost/program_options/errors.hpp>

#include "ranks/commands.hpp"
#include "runtime/error.hpp"

namespace {

void usage() {
  std::printf(
      "usage: moe SUBCOMMAND [options]   (moe SUBCOMMAND --help for its options)\n"
      "  generate   greedy generation for a JSONL file of prompts\n"
      "  forward    encoder states, logits and router choices to a safetensors file\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    usage();
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  try {
    if (command == "generate") return moe::run_generate(args);
    if (command == "forward") return moe::run_forward(args);
    std::fprintf(stderr, "moe: error: unknown sub-command '%s'\n", command.c_str());
    usage();
    return 2;
  } catch (const boost::program_options::error& e) {
    std::fprintf(stderr, "moe %s: error: %s\n", command.c_str(), e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moe %s: error: %s\n", command.c_str(), e.what());
    return 1;
  }
}
