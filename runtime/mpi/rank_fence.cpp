#include "runtime/mpi/rank_fence.hpp"

#include <signal.h>

#include <fstream>
#include <sstream>
#include <string>

namespace moe {

long process_start_ticks(long pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  std::getline(in, stat);
  // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(stat.substr(close + 1));
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; ++i)
    if (i == 22) return std::stol(field);
  return 0;
}

void fence_if_local(const World& world, int rank) {
  if (world.host_of(rank) != world.host()) return;
  const long pid = world.pid_of(rank), started = world.start_ticks_of(rank);
  if (pid > 0 && started != 0 && process_start_ticks(pid) == started) kill(pid_t(pid), SIGKILL);
}

bool fenceable(const World& world, int rank, const std::function<bool(int)>& live) {
  for (int r = 0; r < world.size(); ++r)
    if (r != rank && live(r) && world.host_of(r) == world.host_of(rank)) return true;
  return false;
}

}  // namespace moe
