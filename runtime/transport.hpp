// The data plane: contiguous blocks of token rows between ranks. Counts always travel first on
// the control plane, so both sides know every block's size before it moves.
#pragma once

#include <cstddef>
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
  virtual ~DataTransport() = default;
  virtual std::string name() const = 0;
  // Moves all blocks; returns when every send and receive has completed. On expiry throws naming
  // the first peer still outstanding and `doing`.
  virtual void exchange(const std::vector<SendBlock>& sends, const std::vector<RecvBlock>& recvs,
                        const Deadline& deadline, const std::string& doing) = 0;

  // Sends that complete later: the buffers must stay untouched until finish_sends returns.
  // By default they are just exchanged when finished; a transport that can overlap overrides both.
  virtual void start_sends(const std::vector<SendBlock>& sends) { pending_ = sends; }
  virtual void finish_sends(const Deadline& deadline, const std::string& doing) {
    std::vector<SendBlock> sends;
    sends.swap(pending_);
    exchange(sends, {}, deadline, doing);
  }

 private:
  std::vector<SendBlock> pending_;
};

}  // namespace moe
