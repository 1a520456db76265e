// The data plane: contiguous blocks of token rows between ranks. Counts always travel first on
// the control plane, so both sides know every block's size before it moves.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/deadline.hpp"

namespace moe {

struct SendBlock {
  int peer;
  const float* data;  // host memory
  size_t count;       // floats
};
struct RecvBlock {
  int peer;
  float* data;
  size_t count;
};

class DataTransport {
 public:
  // A set of sends and receives in flight; its buffers stay untouched until it has completed.
  using Ticket = uint64_t;

  virtual ~DataTransport() = default;
  virtual std::string name() const = 0;
  // Starts moving the blocks (empty ones take no part) and returns at once where the transport
  // can overlap, or once they have moved where it cannot.
  virtual Ticket start(const std::vector<SendBlock>& sends,
                       const std::vector<RecvBlock>& recvs) = 0;
  // True once every block of the ticket has moved; the ticket is then spent.
  virtual bool test(Ticket ticket) = 0;
  // Waits for the ticket; on expiry throws naming the first peer outstanding and `doing`.
  virtual void wait(Ticket ticket, const Deadline& deadline, const std::string& doing) = 0;

  // The peers of the ticket's blocks that have not moved yet (none where start() moves them).
  virtual std::vector<int> unfinished_peers(Ticket) { return {}; }
  // Gives up the ticket's blocks with peers that `lost` names (a rank declared lost): their
  // receives are cancelled, and neither they nor their sends are waited for again. Their buffers
  // must outlive the process's communication (a cancel may not take effect). The blocks with the
  // other peers go on, and test() still tells when they have moved.
  virtual void abandon(Ticket, const std::function<bool(int peer)>& /*lost*/) {}

  // Moves all blocks; returns when every send and receive has completed.
  void exchange(const std::vector<SendBlock>& sends, const std::vector<RecvBlock>& recvs,
                const Deadline& deadline, const std::string& doing) {
    wait(start(sends, recvs), deadline, doing);
  }
};

}  // namespace moe
