// The data plane over MPI non-blocking point-to-point (used on CPU ranks).
#pragma once

#include <mpi.h>

#include "runtime/mpi/world.hpp"
#include "runtime/transport.hpp"

namespace moe {

class MpiTransport final : public DataTransport {
 public:
  explicit MpiTransport(const World& world) : world_(world) {}
  std::string name() const override { return "mpi"; }
  void exchange(const std::vector<SendBlock>& sends, const std::vector<RecvBlock>& recvs,
                const Deadline& deadline, const std::string& doing) override;
  // Non-blocking sends: posted now, progressed by every MPI call until finished.
  void start_sends(const std::vector<SendBlock>& sends) override;
  void finish_sends(const Deadline& deadline, const std::string& doing) override;

 private:
  void wait_all(std::vector<MPI_Request>& requests, const std::vector<int>& peers,
                const Deadline& deadline, const std::string& doing);
  const World& world_;
  std::vector<MPI_Request> pending_requests_;
  std::vector<int> pending_peers_;
};

}  // namespace moe
