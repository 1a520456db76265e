#include "runtime/deadline.hpp"

#include <sched.h>

#include <thread>

namespace moe {

bool poll_until(const std::function<bool()>& done, const Deadline& deadline) {
  int polls = 0;
  auto nap = std::chrono::microseconds(10);
  while (!done()) {
    if (deadline.expired()) return false;
    if (++polls < 64) {
      sched_yield();
      continue;
    }
    std::this_thread::sleep_for(nap);
    nap = std::min(nap * 2, std::chrono::microseconds(500));
  }
  return true;
}

}  // namespace moe
