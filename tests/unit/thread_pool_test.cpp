// The process's ThreadPool: every item runs once whatever the threads and the count, a chunk's
// exception reaches the caller, a region inside a region runs on its caller, and resizing between
// regions works.
#include "runtime/thread_pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

namespace moe {
namespace {

struct PoolSize {  // restores the one-thread pool the other tests expect
  explicit PoolSize(int threads) { ThreadPool::instance().resize(threads); }
  ~PoolSize() { ThreadPool::instance().resize(1); }
};

TEST(ThreadPool, EveryItemRunsOnceOnUpToTheThreadsAsked) {
  for (int threads : {1, 2, 3, 5}) {
    PoolSize size(threads);
    for (int n : {0, 1, 2, 3, 7, 64, 1001}) {
      std::vector<std::atomic<int>> runs(n);
      std::mutex m;
      std::set<std::thread::id> ids;
      parallel_for(n, [&](int begin, int end) {
        {
          std::lock_guard<std::mutex> lock(m);
          ids.insert(std::this_thread::get_id());
        }
        for (int i = begin; i < end; ++i) ++runs[i];
      });
      for (int i = 0; i < n; ++i) ASSERT_EQ(runs[i], 1) << "item " << i << " of " << n;
      EXPECT_LE(int(ids.size()), threads);
      if (n >= threads) {
        EXPECT_EQ(int(ids.size()), threads) << n << " items";
      }
    }
  }
}

TEST(ThreadPool, AChunksExceptionReachesTheCallerAndThePoolGoesOn) {
  PoolSize size(3);
  EXPECT_THROW(parallel_for(30,
                            [](int begin, int) {
                              if (begin > 0) throw std::runtime_error("chunk failed");
                            }),
               std::runtime_error);
  std::atomic<int> sum = 0;
  parallel_for(30, [&](int begin, int end) { sum += end - begin; });
  EXPECT_EQ(sum, 30);
}

TEST(ThreadPool, ARegionInsideARegionRunsOnItsCaller) {
  PoolSize size(2);
  std::atomic<int> inner = 0;
  parallel_for(4, [&](int begin, int end) {
    for (int i = begin; i < end; ++i) {
      const auto caller = std::this_thread::get_id();
      parallel_for(10, [&](int b, int e) {
        EXPECT_EQ(std::this_thread::get_id(), caller);
        inner += e - b;
      });
    }
  });
  EXPECT_EQ(inner, 40);
}

}  // namespace
}  // namespace moe
