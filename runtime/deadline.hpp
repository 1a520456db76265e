// Deadlines for every wait, and a polling loop that backs off so that a waiting rank does not burn
// a core: it yields for the first polls, then sleeps with exponentially growing naps (≤ 500 µs).
#pragma once

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
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

// The longest time between two consecutive looks of this thread's last poll_until: the process
// was not running then (stopped, e.g. by SIGSTOP, or starved of CPU). A wait that expired with a
// long pause of its own is not evidence against the peer it waited for.
inline double& longest_pause_of_last_wait() {
  thread_local double seconds = 0;
  return seconds;
}

// Polls `done` until it returns true or the deadline passes; returns false on expiry. Without
// `naps`, it only yields: for a wait that serves others, whom a nap would keep waiting.
inline bool poll_until(const std::function<bool()>& done, const Deadline& deadline,
                       bool naps = true) {
  int polls = 0;
  auto nap = std::chrono::microseconds(10);
  double& longest = longest_pause_of_last_wait();
  longest = 0;
  auto last = Clock::now();
  while (!done()) {
    const auto now = Clock::now();
    longest = std::max(longest, std::chrono::duration<double>(now - last).count());
    last = now;
    if (now >= deadline.at) return false;
    if (!naps || ++polls < 64) {
      sched_yield();
      continue;
    }
    std::this_thread::sleep_for(nap);
    nap = std::min(nap * 2, std::chrono::microseconds(500));
  }
  return true;
}

// "" or, after an expired wait in which this process itself did not run for a second or more,
// a note for the error that names the peer: the peer may have given up on this rank.
inline std::string own_pause_note() {
  const double pause = longest_pause_of_last_wait();
  if (pause < 1.0) return "";
  char text[200];
  std::snprintf(text, sizeof(text),
                " (but this rank itself did not run for %.1f s of that wait: it was stopped, e.g. "
                "by SIGSTOP, or starved of CPU, and the other rank may have given up on it)",
                pause);
  return text;
}

inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace moe
