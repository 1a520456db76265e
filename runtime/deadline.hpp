// Deadlines for every wait, and a polling loop that backs off so that a waiting rank does not burn
// a core: it yields for the first polls, then sleeps with exponentially growing naps (≤ 500 µs).
#pragma once

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <thread>

namespace moe {

using Clock = std::chrono::steady_clock;

struct Deadline {
  Clock::time_point at;
  static Deadline after(double seconds) {
    return {Clock::now() +
            std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds))};
  }
  bool expired() const { return Clock::now() >= at; }
};

// Polls `done` until it returns true or the deadline passes; returns false on expiry.
inline bool poll_until(const std::function<bool()>& done, const Deadline& deadline) {
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

inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace moe
