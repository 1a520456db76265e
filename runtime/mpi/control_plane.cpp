#include "runtime/mpi/control_plane.hpp"

#include "runtime/mpi/mpi_check.hpp"

namespace moe {

void send_bytes(int dest, const std::string& bytes, int tag) {
  MPI_CHECK(MPI_Send(bytes.data(), int(bytes.size()), MPI_BYTE, dest, tag, MPI_COMM_WORLD));
}

namespace {

Envelope receive_probed(const MPI_Status& status, int tag) {
  int count = 0;
  MPI_CHECK(MPI_Get_count(&status, MPI_BYTE, &count));
  std::string bytes(size_t(count), '\0');
  MPI_CHECK(MPI_Recv(bytes.data(), count, MPI_BYTE, status.MPI_SOURCE, tag, MPI_COMM_WORLD,
                     MPI_STATUS_IGNORE));
  return open_envelope(status.MPI_SOURCE, std::move(bytes));
}

}  // namespace

std::optional<Envelope> try_receive_control(const World& world, int source, int tag) {
  if (!world.uses_mpi()) return std::nullopt;
  MPI_Status status{};
  int ready = 0;
  for (int look = 0; look < 2 && !ready; ++look)
    MPI_CHECK(MPI_Iprobe(source == kAnySource ? MPI_ANY_SOURCE : source, tag, MPI_COMM_WORLD,
                         &ready, &status));
  if (!ready) return std::nullopt;
  return receive_probed(status, tag);
}

Envelope receive_control(const World& world, int source, const Deadline& deadline,
                         const std::string& doing, int tag) {
  const int from = source == kAnySource ? MPI_ANY_SOURCE : source;
  MPI_Status status{};
  int ready = 0;
  // Two looks per poll: Open MPI's Iprobe matches before it progresses the transport, so a message
  // that came in during a nap is seen by the second call, not the first — one look per wake-up
  // would cost a whole extra nap (docs/BENCHMARKS.md, "Performance problems found").
  const bool arrived = poll_until(
      [&] {
        for (int look = 0; look < 2 && !ready; ++look)
          MPI_CHECK(MPI_Iprobe(from, tag, MPI_COMM_WORLD, &ready, &status));
        return ready != 0;
      },
      deadline);
  if (!arrived) {
    if (source == kAnySource)
      MOE_FAIL("deadline passed with no answer while ", doing, own_pause_note());
    MOE_FAIL("rank ", source, " (host ", world.host_of(source),
             ") did not answer before the deadline while ", doing, own_pause_note());
  }
  return receive_probed(status, tag);
}

struct BackgroundSends::Pending {
  int dest;
  std::string bytes;
  MPI_Request request = MPI_REQUEST_NULL;
};

BackgroundSends::BackgroundSends(const World& world) : world_(world) {}

BackgroundSends::~BackgroundSends() {
  for (auto& p : pending_) {
    MPI_Cancel(&p->request);
    MPI_Request_free(&p->request);
  }
}

void BackgroundSends::forget_delivered() {
  for (auto it = pending_.begin(); it != pending_.end();) {
    int done = 0;
    MPI_CHECK(MPI_Test(&(*it)->request, &done, MPI_STATUS_IGNORE));
    it = done ? pending_.erase(it) : std::next(it);
  }
}

void BackgroundSends::send_bytes(int dest, std::string bytes, int tag) {
  forget_delivered();
  auto p = std::make_unique<Pending>(Pending{dest, std::move(bytes)});
  MPI_CHECK(MPI_Isend(p->bytes.data(), int(p->bytes.size()), MPI_BYTE, dest, tag, MPI_COMM_WORLD,
                      &p->request));
  pending_.push_back(std::move(p));
}

bool BackgroundSends::delivered() {
  forget_delivered();
  return pending_.empty();
}

void BackgroundSends::wait_all(const Deadline& deadline, const std::string& doing) {
  if (!poll_until([&] { return delivered(); }, deadline)) {
    const int dest = pending_.front()->dest;
    MOE_FAIL("rank ", dest, " (host ", world_.host_of(dest),
             ") did not take a message before the deadline while ", doing, own_pause_note());
  }
}

std::string broadcast_bytes(const std::string& bytes_on_root) {
  std::string bytes = bytes_on_root;
  unsigned long long size = bytes.size();
  MPI_CHECK(MPI_Bcast(&size, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD));
  bytes.resize(size);
  MPI_CHECK(MPI_Bcast(bytes.data(), int(size), MPI_BYTE, 0, MPI_COMM_WORLD));
  return bytes;
}

}  // namespace moe
