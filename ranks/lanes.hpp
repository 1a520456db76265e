// Cooperative lanes: n threads of which exactly one runs at a time (a baton passes between them),
// so that one micro-batch's attention runs while another micro-batch's tokens are at the expert
// ranks (ping-pong). A lane gives way only inside wait_until(); everything else runs as if the
// rank had a single thread, MPI calls included.
#pragma once

#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <vector>

namespace moe {

class Lanes {
 public:
  // Runs body(lane) for lanes 0..n-1, lane 0 on the calling thread, one at a time. Returns when
  // every lane has returned; rethrows the first exception (the other lanes stop at their next
  // wait). `progress` moves the rank's communication on; it is called, by whichever lane holds
  // the baton, while no lane can run.
  void run(int n, const std::function<void(int lane)>& body, const std::function<void()>& progress);

  // From inside lane `lane`: lets the other lanes run until ready() holds.
  void wait_until(int lane, const std::function<bool()>& ready);

  // Time no lane could run, summed over runs (µs).
  double idle_us() const { return idle_us_; }

 private:
  enum class State { kNew, kRunning, kWaiting, kDone };
  struct Lane {
    State state = State::kNew;
    std::function<bool()> ready;
  };
  // With the baton: finds the next lane that can run and hands it the baton (polling progress
  // while none can), or returns false once every lane is done.
  bool hand_off(int from, std::unique_lock<std::mutex>& lock);
  bool can_run(const Lane& l) const;
  void take_baton(int lane, std::unique_lock<std::mutex>& lock);
  void lane_main(int lane, const std::function<void(int)>& body);

  std::mutex mutex_;
  std::condition_variable baton_passed_;
  int holder_ = 0;
  std::vector<Lane> lanes_;
  std::function<void()> progress_;
  std::exception_ptr failure_;
  double idle_us_ = 0;
};

}  // namespace moe
