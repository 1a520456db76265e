// How long after a send a polling rank notices a control message, when the message comes while
// it naps: runtime/mpi/control_plane.cpp's receive_control (two looks per wake-up) against one
// MPI_Iprobe per wake-up, side by side (alternate messages), under poll_until's backoff.
// Usage: mpirun -np 2 build/tests/bench_poll_notice [MESSAGES]   (launch/mpirun_flags.sh)
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "runtime/deadline.hpp"
#include "runtime/error.hpp"
#include "runtime/messages.hpp"
#include "runtime/mpi/control_plane.hpp"
#include "runtime/mpi/world.hpp"
#include "runtime/wire.hpp"

namespace {

double now_us() {
  return std::chrono::duration<double, std::micro>(moe::Clock::now().time_since_epoch()).count();
}

// What receive_control did before: one Iprobe per wake-up.
moe::Envelope receive_one_look(const moe::Deadline& deadline) {
  MPI_Status status{};
  int ready = 0;
  const bool arrived = moe::poll_until(
      [&] {
        MPI_Iprobe(0, moe::kControlTag, MPI_COMM_WORLD, &ready, &status);
        return ready != 0;
      },
      deadline);
  MOE_CHECK(arrived, "rank 0 sent nothing before the deadline");
  int count = 0;
  MPI_Get_count(&status, MPI_BYTE, &count);
  std::string bytes(size_t(std::max(count, 0)), '\0');
  MPI_Recv(bytes.data(), count, MPI_BYTE, 0, moe::kControlTag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  return moe::open_envelope(0, std::move(bytes));
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  moe::World world(&argc, &argv);
  if (world.size() != 2) {
    std::fprintf(stderr, "bench_poll_notice: run it with mpirun -np 2\n");
    return 2;
  }
  const int messages = argc > 1 ? std::max(2, std::atoi(argv[1])) : 300;
  std::mt19937 rng(1);
  std::vector<double> two_looks, one_look;
  for (int i = 0; i < messages; ++i) {
    if (world.rank() == 0) {  // idle 2-8 ms (the receiver's naps reach 500 µs), then send
      std::this_thread::sleep_for(std::chrono::microseconds(2000 + rng() % 6000));
      moe::send_control(1, moe::WorkReply{uint64_t(i), i, 0, 0, now_us(), 0, 0, {}});
      continue;
    }
    const auto deadline = moe::Deadline::after(10);
    const moe::Envelope e = i % 2
                                ? receive_one_look(deadline)
                                : moe::receive_control(world, 0, deadline, "waiting for a message");
    const double late = now_us() - moe::decode_message<moe::WorkReply>(e).compute_us;
    (i % 2 ? one_look : two_looks).push_back(late);
  }
  if (world.rank() == 1)
    std::printf(
        "notice after send, median of %zu each: receive_control %.0f us, one look %.0f us "
        "(one look / receive_control %.2fx)\n",
        two_looks.size(), median(two_looks), median(one_look),
        median(one_look) / std::max(median(two_looks), 1e-9));
  return 0;
}
