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

}  // namespace

DataTransport::Ticket MpiTransport::start(const std::vector<SendBlock>& sends,
                                          const std::vector<RecvBlock>& recvs) {
  const Ticket ticket = next_++;
  InFlight& f = in_flight_[ticket];
  post(recvs, "from", f.requests, f.peers, [&](const RecvBlock& r, MPI_Request* request) {
    return MPI_Irecv(r.data, int(r.count), MPI_FLOAT, r.peer, recv_tag_, MPI_COMM_WORLD, request);
  });
  post(sends, "to", f.requests, f.peers, [&](const SendBlock& s, MPI_Request* request) {
    return MPI_Isend(s.data, int(s.count), MPI_FLOAT, s.peer, send_tag_, MPI_COMM_WORLD, request);
  });
  return ticket;
}

MpiTransport::InFlight& MpiTransport::find(Ticket ticket) {
  const auto it = in_flight_.find(ticket);
  MOE_CHECK(it != in_flight_.end(), "data transfer ", ticket, " is not in flight");
  return it->second;
}

bool MpiTransport::test(Ticket ticket) {
  InFlight& f = find(ticket);
  int done = 1;
  // Two looks, as receive_control does: Testall checks before it progresses.
  for (int look = 0; look < 2 && !f.requests.empty(); ++look) {
    MPI_CHECK(MPI_Testall(int(f.requests.size()), f.requests.data(), &done, MPI_STATUSES_IGNORE));
    if (done) break;
  }
  if (done) in_flight_.erase(ticket);
  return done != 0;
}

void MpiTransport::wait(Ticket ticket, const Deadline& deadline, const std::string& doing) {
  if (poll_until([&] { return test(ticket); }, deadline)) return;
  const std::string pause = own_pause_note();
  InFlight& f = find(ticket);
  for (size_t i = 0; i < f.requests.size(); ++i) {
    int one = 0;
    MPI_Test(&f.requests[i], &one, MPI_STATUS_IGNORE);
    if (!one)
      MOE_FAIL("rank ", f.peers[i], " (host ", world_.host_of(f.peers[i]),
               ") did not complete a data transfer before the deadline while ", doing, pause);
  }
  in_flight_.erase(ticket);
}

std::vector<int> MpiTransport::unfinished_peers(Ticket ticket) {
  std::vector<int> peers;
  const auto it = in_flight_.find(ticket);
  if (it == in_flight_.end()) return peers;  // spent: every block moved
  InFlight& f = it->second;
  for (size_t i = 0; i < f.requests.size(); ++i) {
    int done = 0;
    MPI_CHECK(MPI_Test(&f.requests[i], &done, MPI_STATUS_IGNORE));
    if (!done) peers.push_back(f.peers[i]);
  }
  return peers;
}

void MpiTransport::abandon(Ticket ticket, const std::function<bool(int peer)>& lost) {
  const auto it = in_flight_.find(ticket);
  if (it == in_flight_.end()) return;
  InFlight& f = it->second;
  for (size_t i = 0; i < f.requests.size(); ++i) {
    if (f.requests[i] == MPI_REQUEST_NULL || !lost(f.peers[i])) continue;
    // A send to a lost rank may never be matched; freeing the request stops us from waiting for
    // it (the buffer stays with the caller). MPI_Cancel of a matched transfer has no effect.
    MPI_Cancel(&f.requests[i]);
    MPI_Request_free(&f.requests[i]);
  }
}

}  // namespace moe
