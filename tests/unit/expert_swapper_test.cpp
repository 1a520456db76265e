// The swapper thread (model/expert_swapper.hpp) against its contract: jobs run in order on its own
// thread, a load nobody is waiting for is given back, and an error a job raises there (a GPU
// tier's CUDA error) reaches the step's thread from drain() and submit() instead of ending the
// process.
#include "model/expert_swapper.hpp"

#include <gtest/gtest.h>

#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "runtime/error.hpp"

namespace moe {
namespace {

// One sparse layer of two experts, a committee of one (expert 0).
ExpertResidency one_of_two() {
  return ExpertResidency({1}, {{1.0, 1.0}}, MissPolicy::kSubstitute, CommitteeKind::kDynamic, 1);
}

}  // namespace

TEST(ExpertSwapper, RunsJobsOnItsOwnThreadAndGivesBackALoadNobodyWaitsFor) {
  ExpertResidency residency = one_of_two();
  std::mutex m;
  std::vector<std::pair<char, int>> calls;
  std::thread::id worker;
  ExpertSwapper swapper(
      residency,
      [&](int, int e) {
        std::lock_guard<std::mutex> lock(m);
        calls.push_back({'i', e});
        worker = std::this_thread::get_id();
      },
      [&](int, int e) {
        std::lock_guard<std::mutex> lock(m);
        calls.push_back({'o', e});
      },
      [] {});
  swapper.submit({PageJob::kLoad, 0, 1});      // no swap planned for it: in, then out again
  swapper.submit({PageJob::kGiveBack, 0, 0});  // a member: its pages stay
  swapper.drain();
  EXPECT_EQ(calls, (std::vector<std::pair<char, int>>{{'i', 1}, {'o', 1}}));
  EXPECT_NE(worker, std::this_thread::get_id());
}

TEST(ExpertSwapper, AnErrorOnItsThreadIsRethrownOnTheCallersAndStopsIt) {
  ExpertResidency residency = one_of_two();
  int loads = 0;
  ExpertSwapper swapper(
      residency,
      [&](int, int) {
        ++loads;
        throw Error("cuda:0: out of memory (a test)");
      },
      [](int, int) {}, [] {});
  swapper.submit({PageJob::kLoad, 0, 1});
  try {
    swapper.drain();
    FAIL() << "drain() returned after a failed job";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("out of memory (a test)"), std::string::npos);
  }
  EXPECT_THROW(swapper.submit({PageJob::kLoad, 0, 1}), Error);
  EXPECT_THROW(swapper.drain(), Error);
  EXPECT_EQ(loads, 1);
}

}  // namespace moe
