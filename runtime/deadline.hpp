// Deadlines for every wait, and a polling loop that backs off so that a waiting rank does not burn
// a core: it yields for the first polls, then sleeps with exponentially growing naps (≤ 500 µs).
#pragma once

#include <chrono>
#include <functional>
#include <string>

namespace moe {

using Clock = std::chrono::steady_clock;

struct Deadline {
  Clock::time_point at;
  static Deadline after(double seconds) {
    return {Clock::now() + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(seconds))};
  }
  bool expired() const { return Clock::now() >= at; }
};

// Polls `done` until it returns true or the deadline passes; returns false on expiry.
bool poll_until(const std::function<bool()>& done, const Deadline& deadline);

inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace moe
