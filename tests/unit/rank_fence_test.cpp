// A lost rank's process is told apart from a later process with the same id by its start time.
#include "runtime/mpi/rank_fence.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

namespace moe {

TEST(RankFence, ThisProcessHasAStartTimeThatDoesNotChange) {
  const long ticks = process_start_ticks(getpid());
  EXPECT_GT(ticks, 0);
  EXPECT_EQ(process_start_ticks(getpid()), ticks);
}

TEST(RankFence, AProcessThatEndedHasNone) {
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_EQ(process_start_ticks(child), 0);  // gone (its id not yet reused, so nothing there)
  EXPECT_EQ(process_start_ticks(-5), 0);
}

}  // namespace moe
