// poll_until notices when its own process did not run during a wait (the gap between two looks),
// so that an expired wait does not blame the peer alone.
#include "runtime/deadline.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace moe {
namespace {

TEST(Deadline, AWaitThatRanThroughoutHasNoPauseNote) {
  EXPECT_FALSE(poll_until([] { return false; }, Deadline::after(0.05)));
  EXPECT_LT(longest_pause_of_last_wait(), 0.5);
  EXPECT_EQ(own_pause_note(), "");
  EXPECT_TRUE(poll_until([] { return true; }, Deadline::after(0.05)));
}

TEST(Deadline, AWaitInWhichThisThreadStoodStillSaysSo) {
  // One look takes 1.2 s, as when the process is stopped between two looks.
  bool first = true;
  const bool arrived = poll_until(
      [&] {
        if (first) std::this_thread::sleep_for(std::chrono::milliseconds(1200));
        first = false;
        return false;
      },
      Deadline::after(0.5));
  EXPECT_FALSE(arrived);
  EXPECT_GE(longest_pause_of_last_wait(), 1.2);
  EXPECT_NE(own_pause_note().find("this rank itself did not run for 1."), std::string::npos)
      << own_pause_note();
}

}  // namespace
}  // namespace moe
