#include "runtime/mpi/mpi_transport.hpp"

#include <climits>

#include "runtime/mpi/control_plane.hpp"
#include "runtime/mpi/mpi_check.hpp"

namespace moe {

namespace {

// Posts one non-blocking send or receive per non-empty block, recording request and peer.
template <class Block, class Post>
void post(const std::vector<Block>& blocks, const char* direction,
          std::vector<MPI_Request>& requests, std::vector<int>& peers, Post post_one) {
  for (const auto& b : blocks) {
    if (b.count == 0) continue;
    MOE_CHECK(b.count <= size_t(INT_MAX), "block of ", b.count, " floats ", direction, " rank ",
              b.peer, " is too large for one MPI message");
    requests.emplace_back();
    peers.push_back(b.peer);
    MPI_CHECK(post_one(b, &requests.back()));
  }
}

int post_send(const SendBlock& s, MPI_Request* request) {
  return MPI_Isend(s.data, int(s.count), MPI_FLOAT, s.peer, kDataTag, MPI_COMM_WORLD, request);
}

int post_recv(const RecvBlock& r, MPI_Request* request) {
  return MPI_Irecv(r.data, int(r.count), MPI_FLOAT, r.peer, kDataTag, MPI_COMM_WORLD, request);
}

}  // namespace

void MpiTransport::exchange(const std::vector<SendBlock>& sends,
                            const std::vector<RecvBlock>& recvs, const Deadline& deadline,
                            const std::string& doing) {
  std::vector<MPI_Request> requests;
  std::vector<int> peers;
  post(recvs, "from", requests, peers, post_recv);
  post(sends, "to", requests, peers, post_send);
  wait_all(requests, peers, deadline, doing);
}

void MpiTransport::start_sends(const std::vector<SendBlock>& sends) {
  MOE_CHECK(pending_requests_.empty(), "start_sends: earlier sends were not finished");
  post(sends, "to", pending_requests_, pending_peers_, post_send);
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
      [&] {  // two looks, as receive_control does: Testall checks before it progresses
        for (int look = 0; look < 2 && !done; ++look)
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
