// Control messages over MPI point-to-point, with a deadline on every wait. The work of a run
// (headers, replies, reports) travels on kControlTag; what attention ranks hand each other at the
// start and end of a run (request and result shares) on kShareTag, so that polling for replies
// never takes them.
#pragma once

#include <list>
#include <memory>
#include <optional>
#include <string>

#include "runtime/deadline.hpp"
#include "runtime/mpi/world.hpp"
#include "runtime/wire.hpp"

namespace moe {

constexpr int kControlTag = 11;
constexpr int kDataTag = 12;
constexpr int kShareTag = 13;
constexpr int kResultTag = 14;  // experts' result blocks, where a rank also serves experts
constexpr int kAnySource = -1;

void send_bytes(int dest, const std::string& bytes, int tag = kControlTag);

template <class T>
void send_control(int dest, const T& message, int tag = kControlTag) {
  send_bytes(dest, encode_message(message), tag);
}

// Waits for the next control message from `source` (or any rank). On expiry throws an error that
// names the silent rank, its host and `doing` (what this rank was waiting for).
Envelope receive_control(const World& world, int source, const Deadline& deadline,
                         const std::string& doing, int tag = kControlTag);

// The next control message from `source` (or any rank) if one has arrived; does not wait.
std::optional<Envelope> try_receive_control(const World& world, int source, int tag = kControlTag);

// Control messages sent without waiting for the receiver to take them: for a stream of messages
// to a rank that takes them only between its own work, so that neither waits on the other. Each
// message keeps its bytes until it is delivered.
class BackgroundSends {
 public:
  explicit BackgroundSends(const World& world);
  ~BackgroundSends();  // what was not delivered is cancelled
  BackgroundSends(const BackgroundSends&) = delete;
  BackgroundSends& operator=(const BackgroundSends&) = delete;

  template <class T>
  void send(int dest, const T& message, int tag = kControlTag) {
    send_bytes(dest, encode_message(message), tag);
  }
  void send_bytes(int dest, std::string bytes, int tag);
  // True once every message is delivered; does not wait.
  bool delivered();
  // Waits until every message is delivered; on expiry throws naming the receiver and `doing`.
  void wait_all(const Deadline& deadline, const std::string& doing);

 private:
  struct Pending;
  void forget_delivered();
  const World& world_;
  std::list<std::unique_ptr<Pending>> pending_;
};

// Rank 0's bytes go to every rank (size first, then bytes); collective.
std::string broadcast_bytes(const std::string& bytes_on_root);

}  // namespace moe
