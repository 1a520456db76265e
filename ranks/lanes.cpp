#include "ranks/lanes.hpp"

#include <sched.h>

#include <chrono>
#include <thread>

#include "runtime/error.hpp"

namespace moe {
namespace {

// Thrown into a waiting lane when another lane has failed, to unwind it.
struct Cancelled {};

}  // namespace

void Lanes::run(int n, const std::function<void(int lane)>& body,
                const std::function<void()>& progress) {
  MOE_CHECK(n >= 1, "lanes: need at least one");
  lanes_.assign(n, Lane{});
  progress_ = progress;
  failure_ = nullptr;
  holder_ = 0;
  std::vector<std::thread> threads;  // every lane's parallel regions run on the one ThreadPool
  for (int i = 1; i < n; ++i) threads.emplace_back([this, i, &body] { lane_main(i, body); });
  lane_main(0, body);
  for (auto& t : threads) t.join();
  lanes_.clear();
  if (failure_) std::rethrow_exception(failure_);
}

void Lanes::lane_main(int lane, const std::function<void(int)>& body) {
  std::unique_lock<std::mutex> lock(mutex_);
  take_baton(lane, lock);
  lanes_[lane].state = State::kRunning;
  lock.unlock();
  try {
    if (!failure_) body(lane);
  } catch (const Cancelled&) {
  } catch (...) {
    if (!failure_) failure_ = std::current_exception();
  }
  lock.lock();
  lanes_[lane].state = State::kDone;
  hand_off(lane, lock);
}

void Lanes::take_baton(int lane, std::unique_lock<std::mutex>& lock) {
  baton_passed_.wait(lock, [&] { return holder_ == lane; });
}

bool Lanes::hand_off(int from, std::unique_lock<std::mutex>& lock) {
  const int n = int(lanes_.size());
  auto nap = std::chrono::microseconds(10);
  const auto idle_since = std::chrono::steady_clock::now();
  const auto count_idle = [&] {
    idle_us_ +=
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - idle_since)
            .count();
  };
  for (int polls = 0;; ++polls) {
    bool all_done = true;
    for (int k = 1; k <= n; ++k) {
      const int j = (from + k) % n;
      Lane& l = lanes_[j];
      all_done = all_done && l.state == State::kDone;
      if (can_run(l)) {
        if (polls > 0) count_idle();
        holder_ = j;
        baton_passed_.notify_all();
        return true;
      }
    }
    if (all_done) {
      if (polls > 0) count_idle();
      holder_ = -1;
      baton_passed_.notify_all();
      return false;
    }
    // Nobody can run: move the communication on, yielding at first, then napping.
    try {
      progress_();
    } catch (...) {
      if (!failure_) failure_ = std::current_exception();
      continue;  // every waiting lane can now run, to unwind
    }
    if (polls < 64) {
      lock.unlock();
      sched_yield();
      lock.lock();
    } else {
      lock.unlock();
      std::this_thread::sleep_for(nap);
      nap = std::min(nap * 2, std::chrono::microseconds(100));
      lock.lock();
    }
  }
}

bool Lanes::can_run(const Lane& l) const {
  return l.state == State::kNew || (l.state == State::kWaiting && (failure_ || l.ready()));
}

void Lanes::wait_until(int lane, const std::function<bool()>& ready) {
  if (failure_) throw Cancelled{};
  if (ready()) return;
  std::unique_lock<std::mutex> lock(mutex_);
  Lane& me = lanes_[lane];
  me.state = State::kWaiting;
  me.ready = ready;
  // Hands the baton to whichever lane can go on, this one included once it is ready.
  hand_off(lane, lock);
  take_baton(lane, lock);
  me.state = State::kRunning;
  me.ready = nullptr;
  if (failure_) throw Cancelled{};
}

}  // namespace moe
