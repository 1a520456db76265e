// The process's one pool of CPU threads: every parallel region of a rank (GEMM columns, expert
// groups, attention heads, norms, row copies) runs on it, so `--threads T` means T busy cores and
// no more — no second pool (OpenMP's, OpenBLAS's) spinning beside it. The caller works too: a pool
// of T threads has T - 1 workers, which sleep on a condition variable between regions. Before
// sleeping, a worker (and the caller waiting for the workers) spins for at most kSpin: within a
// decode step the next region starts a few microseconds later, and a sleep and wake-up cost tens.
// Past that a rank that waits leaves its cores to the ranks that compute.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace moe {

class ThreadPool {
 public:
  // The process's pool; one thread (the caller alone) until resized.
  static ThreadPool& instance();

  ~ThreadPool();
  // T threads in all (T - 1 workers); waits for no region, so call it between regions.
  void resize(int threads);
  int threads() const { return int(workers_.size()) + 1; }

  // body(begin, end) over [0, n) in up to threads() contiguous chunks, the first on the caller;
  // returns when all are done, rethrowing the first exception a chunk threw. A region started
  // while another is running (from another thread, or nested) runs whole on its caller.
  void parallel_for(int n, const std::function<void(int begin, int end)>& body);

 private:
  static constexpr std::chrono::microseconds kSpin{100};
  ThreadPool() = default;
  void worker(int index, long seen);
  void stop_workers();

  std::vector<std::thread> workers_;
  std::mutex region_;  // held by the thread whose region the workers serve
  std::mutex mutex_;   // guards the fields below
  std::condition_variable wake_, done_;
  const std::function<void(int, int)>* body_ = nullptr;
  int n_ = 0, chunks_ = 0;
  // Written under mutex_; read without it only while spinning.
  std::atomic<long> generation_{0};  // bumped per region: a worker runs each region once
  std::atomic<int> pending_{0};      // workers still running this region's chunks
  std::atomic<bool> stopping_{false};
  std::exception_ptr failure_;
};

// ThreadPool::instance().parallel_for(n, body): the form the model's loops use.
inline void parallel_for(int n, const std::function<void(int begin, int end)>& body) {
  ThreadPool::instance().parallel_for(n, body);
}

}  // namespace moe
