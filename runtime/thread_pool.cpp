#include "runtime/thread_pool.hpp"

#include "runtime/error.hpp"

namespace moe {

ThreadPool& ThreadPool::instance() {
  static ThreadPool pool;
  return pool;
}

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& w : workers_) w.join();
  workers_.clear();
  stopping_ = false;
}

void ThreadPool::resize(int threads) {
  MOE_CHECK(threads >= 1, "thread pool: thread count must be >= 1, got ", threads);
  if (threads == this->threads()) return;
  std::lock_guard<std::mutex> region(region_);
  stop_workers();
  // A new worker starts from the regions so far (none is under way: we hold region_), so that it
  // takes part in the next one even if that starts before the worker first runs.
  const long seen = generation_;
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i, seen] { worker(i, seen); });
}

// Chunk c of n items in `chunks` near-equal contiguous pieces.
static void chunk_bounds(int n, int chunks, int c, int* begin, int* end) {
  *begin = int(int64_t(n) * c / chunks);
  *end = int(int64_t(n) * (c + 1) / chunks);
}

namespace {

// Spins until done() or for at most `limit`.
template <class Done>
void spin_until(const Done& done, std::chrono::microseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < until) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();  // lets the sibling hyper-thread run
#endif
  }
}

}  // namespace

void ThreadPool::worker(int index, long seen) {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    const auto woken = [&] { return stopping_ || generation_ != seen; };
    lock.unlock();
    spin_until(woken, kSpin);
    lock.lock();
    wake_.wait(lock, woken);
    if (stopping_) return;
    seen = generation_;
    if (index >= chunks_) continue;  // fewer chunks than threads this time
    const auto* body = body_;
    int begin = 0, end = 0;
    chunk_bounds(n_, chunks_, index, &begin, &end);
    lock.unlock();
    std::exception_ptr failure;
    try {
      (*body)(begin, end);
    } catch (...) {
      failure = std::current_exception();
    }
    lock.lock();
    if (failure && !failure_) failure_ = failure;
    if (--pending_ == 0) done_.notify_one();
  }
}

void ThreadPool::parallel_for(int n, const std::function<void(int, int)>& body) {
  if (n <= 0) return;
  std::unique_lock<std::mutex> region(region_, std::try_to_lock);
  if (workers_.empty() || n == 1 || !region.owns_lock()) return body(0, n);
  const int chunks = std::min(n, threads());
  {
    std::lock_guard<std::mutex> lock(mutex_);
    body_ = &body;
    n_ = n;
    chunks_ = chunks;
    pending_ = chunks - 1;
    failure_ = nullptr;
    ++generation_;
  }
  wake_.notify_all();
  std::exception_ptr failure;
  try {
    int begin = 0, end = 0;
    chunk_bounds(n, chunks, 0, &begin, &end);
    body(begin, end);
  } catch (...) {
    failure = std::current_exception();
  }
  spin_until([&] { return pending_ == 0; }, kSpin);
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [&] { return pending_ == 0; });
  if (!failure) failure = failure_;
  body_ = nullptr;
  lock.unlock();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace moe
