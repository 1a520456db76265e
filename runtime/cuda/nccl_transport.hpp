// The data plane over NCCL, for runs where every rank has a GPU: blocks move with grouped
// ncclSend/ncclRecv on the transport's own stream, through device staging buffers that only grow.
// Host buffers are staged through the device, so a ticket completes within start() (under the
// deadline given at creation): no overlap of transfers with host work yet.
// The communicator is created non-blocking from a unique id that rank 0 broadcasts over the
// control plane, so its creation and every transfer wait under a deadline (and abort on expiry).
// No CUDA or NCCL header here.
#pragma once

#include <functional>
#include <memory>

#include "runtime/transport.hpp"

namespace moe {

class NcclTransport final : public DataTransport {
 public:
  // broadcast(bytes, n): rank 0's n bytes to every rank (MPI_Bcast in a run; nothing when alone).
  NcclTransport(int rank, int world_size, int cuda_device, double deadline_seconds,
                const std::function<void(void* bytes, size_t n)>& broadcast);
  ~NcclTransport() override;
  std::string name() const override { return "nccl"; }
  Ticket start(const std::vector<SendBlock>& sends, const std::vector<RecvBlock>& recvs) override;
  bool test(Ticket) override { return true; }
  void wait(Ticket, const Deadline&, const std::string&) override {}

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace moe
