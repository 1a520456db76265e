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
  explicit MpiTransport(const World& world) : world_(world) {}
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
  std::map<Ticket, InFlight> in_flight_;
  Ticket next_ = 1;
};

}  // namespace moe
