#include "runtime/mpi_transport.hpp"

#include <climits>

#include "runtime/control_plane.hpp"
#include "runtime/mpi_check.hpp"

namespace moe {

void MpiTransport::exchange(const std::vector<SendBlock>& sends,
                            const std::vector<RecvBlock>& recvs, const Deadline& deadline,
                            const std::string& doing) {
  std::vector<MPI_Request> requests;
  std::vector<int> peers;
  for (const auto& r : recvs) {
    if (r.count == 0) continue;
    MOE_CHECK(r.count <= size_t(INT_MAX), "block of ", r.count, " floats from rank ", r.peer,
              " is too large for one MPI message");
    requests.emplace_back();
    peers.push_back(r.peer);
    MPI_CHECK(MPI_Irecv(r.data, int(r.count), MPI_FLOAT, r.peer, kDataTag, MPI_COMM_WORLD,
                        &requests.back()));
  }
  for (const auto& s : sends) {
    if (s.count == 0) continue;
    MOE_CHECK(s.count <= size_t(INT_MAX), "block of ", s.count, " floats to rank ", s.peer,
              " is too large for one MPI message");
    requests.emplace_back();
    peers.push_back(s.peer);
    MPI_CHECK(MPI_Isend(s.data, int(s.count), MPI_FLOAT, s.peer, kDataTag, MPI_COMM_WORLD,
                        &requests.back()));
  }
  wait_all(requests, peers, deadline, doing);
}

void MpiTransport::start_sends(const std::vector<SendBlock>& sends) {
  MOE_CHECK(pending_requests_.empty(), "start_sends: earlier sends were not finished");
  for (const auto& s : sends) {
    if (s.count == 0) continue;
    MOE_CHECK(s.count <= size_t(INT_MAX), "block of ", s.count, " floats to rank ", s.peer,
              " is too large for one MPI message");
    pending_requests_.emplace_back();
    pending_peers_.push_back(s.peer);
    MPI_CHECK(MPI_Isend(s.data, int(s.count), MPI_FLOAT, s.peer, kDataTag, MPI_COMM_WORLD,
                        &pending_requests_.back()));
  }
}

void MpiTransport::finish_sends(const Deadline& deadline, const std::string& doing) {
  std::vector<MPI_Request> requests;
  std::vector<int> peers;
  requests.swap(pending_requests_);
  peers.swap(pending_peers_);
  wait_all(requests, peers, deadline, doing);
}

void MpiTransport::wait_all(std::vector<MPI_Request>& requests, const std::vector<int>& peers,
                            const Deadline& deadline, const std::string& doing) {
  if (requests.empty()) return;
  int done = 0;
  const bool finished = poll_until(
      [&] {
        MPI_CHECK(MPI_Testall(int(requests.size()), requests.data(), &done, MPI_STATUSES_IGNORE));
        return done != 0;
      },
      deadline);
  if (!finished) {
    for (size_t i = 0; i < requests.size(); ++i) {
      int one = 0;
      MPI_Test(&requests[i], &one, MPI_STATUS_IGNORE);
      if (!one)
        MOE_FAIL("rank ", peers[i], " (host ", world_.host_of(peers[i]),
                 ") did not complete a data transfer before the deadline while ", doing);
    }
  }
}

}  // namespace moe
