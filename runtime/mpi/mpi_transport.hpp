// The data plane over MPI non-blocking point-to-point (used on CPU ranks). A ticket's sends and
// receives are posted at once and progressed by every MPI call until they complete.
#pragma once

#include <mpi.h>

#include <map>

#include "runtime/mpi/world.hpp"
#include "runtime/transport.hpp"

namespace moe {

class MpiTransport final : public DataTransport {
 public:
  // Blocks go out tagged send_tag and are taken tagged recv_tag: a rank that both sends work to
  // experts and serves them (co-located) keeps the two streams apart by their tags.
  explicit MpiTransport(const World& world, int send_tag, int recv_tag)
      : world_(world), send_tag_(send_tag), recv_tag_(recv_tag) {}
  std::string name() const override { return "mpi"; }
  Ticket start(const std::vector<SendBlock>& sends, const std::vector<RecvBlock>& recvs) override;
  bool test(Ticket ticket) override;
  void wait(Ticket ticket, const Deadline& deadline, const std::string& doing) override;
  std::vector<int> unfinished_peers(Ticket ticket) override;
  void abandon(Ticket ticket, const std::function<bool(int peer)>& lost) override;

 private:
  struct InFlight {
    std::vector<MPI_Request> requests;
    std::vector<int> peers;
  };
  InFlight& find(Ticket ticket);

  const World& world_;
  const int send_tag_, recv_tag_;
  std::map<Ticket, InFlight> in_flight_;
  Ticket next_ = 1;
};

}  // namespace moe
