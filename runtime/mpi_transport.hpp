// The data plane over MPI non-blocking point-to-point (used on CPU ranks).
#pragma once

#include "runtime/transport.hpp"
#include "runtime/world.hpp"

namespace moe {

class MpiTransport final : public DataTransport {
 public:
  explicit MpiTransport(const World& world) : world_(world) {}
  std::string name() const override { return "mpi"; }
  void exchange(const std::vector<SendBlock>& sends, const std::vector<RecvBlock>& recvs,
                const Deadline& deadline, const std::string& doing) override;

 private:
  const World& world_;
};

}  // namespace moe
