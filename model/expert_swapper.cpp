#include "model/expert_swapper.hpp"

#include "runtime/rank_stats.hpp"

namespace moe {

ExpertSwapper::ExpertSwapper(ExpertResidency& residency, std::function<void(int, int)> map_in,
                             std::function<void(int, int)> give_back,
                             std::function<void()> after_job)
    : residency_(residency),
      map_in_(std::move(map_in)),
      give_back_(std::move(give_back)),
      after_job_(std::move(after_job)),
      thread_([this] { loop(); }) {}

ExpertSwapper::~ExpertSwapper() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    queue_.clear();
  }
  wake_.notify_all();
  thread_.join();
}

void ExpertSwapper::submit(const PageJob& job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    rethrow_failure_locked();
    queue_.push_back(job);
  }
  wake_.notify_one();
}

void ExpertSwapper::drain() {
  std::unique_lock<std::mutex> lock(mutex_);
  idle_.wait(lock, [this] { return (queue_.empty() && !busy_) || failure_; });
  rethrow_failure_locked();
}

void ExpertSwapper::rethrow_failure_locked() {
  if (failure_) std::rethrow_exception(failure_);
}

void ExpertSwapper::loop() {
  for (;;) {
    PageJob job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      job = queue_.front();
      queue_.pop_front();
      busy_ = true;
    }
    // A kWait admission on the step's thread may have seated the expert again meanwhile (then its
    // pages stay), or taken the seat a newcomer was loaded for (then they go).
    std::exception_ptr failure;
    try {
      if (job.kind == PageJob::kGiveBack) {
        if (residency_.out_of_committee(job.layer, job.expert)) give_back_(job.layer, job.expert);
      } else {
        const double start_us = now_us();
        map_in_(job.layer, job.expert);
        const double ms = (now_us() - start_us) / 1000;
        if (!residency_.loaded(job.layer, job.expert, ms) &&
            residency_.out_of_committee(job.layer, job.expert))
          give_back_(job.layer, job.expert);
      }
      after_job_();
    } catch (...) {  // a GPU tier's CUDA error: the step's thread rethrows it (submit, drain)
      failure = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      busy_ = false;
      if (failure && !failure_) failure_ = failure;
      if (queue_.empty() || failure_) idle_.notify_all();
      if (failure_) return;  // no more jobs: the run is ending with the error
    }
  }
}

}  // namespace moe
