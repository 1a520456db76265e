// The background thread of a dynamic committee: it maps in the pages of experts that join and
// gives back those of experts that left (PageJob), never blocking a step (SwapMoE's asynchronous
// swapping), and tells the residency when a newcomer is in.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

#include "router/residency.hpp"

namespace moe {

class ExpertSwapper {
 public:
  // map_in / give_back move one expert's pages (layer, expert); after_job runs on the swapper's
  // thread after each job (the executor samples resident memory there).
  ExpertSwapper(ExpertResidency& residency, std::function<void(int, int)> map_in,
                std::function<void(int, int)> give_back, std::function<void()> after_job);
  ~ExpertSwapper();  // drops jobs not started, waits for the one in progress
  ExpertSwapper(const ExpertSwapper&) = delete;
  ExpertSwapper& operator=(const ExpertSwapper&) = delete;

  // Both rethrow, on the caller's thread, an error a job raised on the swapper's (a GPU tier's
  // CUDA error), after which the swapper takes no more jobs.
  void submit(const PageJob& job);
  // Waits until every submitted job is done (the end of a run's measurements).
  void drain();

 private:
  void loop();
  void rethrow_failure_locked();

  ExpertResidency& residency_;
  std::function<void(int, int)> map_in_, give_back_;
  std::function<void()> after_job_;
  std::mutex mutex_;
  std::condition_variable wake_, idle_;
  std::deque<PageJob> queue_;
  bool busy_ = false, stop_ = false;
  std::exception_ptr failure_;
  std::thread thread_;
};

}  // namespace moe
