#include "runtime/cuda/nccl_transport.hpp"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>

#include "runtime/cuda/cuda_check.hpp"

namespace moe {

struct NcclTransport::State {
  int rank = 0;
  int device = 0;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  float* staging = nullptr;  // device memory for every block of one exchange
  size_t staging_floats = 0;
  double deadline_seconds = 60;
  Ticket tickets = 0;

  // Waits for the communicator's pending work; aborts it and throws on error or expiry.
  void wait(const Deadline& deadline, const std::string& doing, bool stream_too) {
    ncclResult_t async = ncclSuccess;
    const bool done = poll_until(
        [&] {
          NCCL_CHECK(ncclCommGetAsyncError(comm, &async));
          if (async == ncclInProgress) return false;
          if (async != ncclSuccess) return true;
          if (!stream_too) return true;
          const cudaError_t q = cudaStreamQuery(stream);
          if (q == cudaErrorNotReady) return false;
          CUDA_CHECK(q);
          return true;
        },
        deadline);
    if (!done || async != ncclSuccess) {
      ncclCommAbort(comm);
      comm = nullptr;
      if (!done) MOE_FAIL("NCCL: the deadline passed while ", doing, own_pause_note());
      MOE_FAIL("NCCL: ", ncclGetErrorString(async), " while ", doing);
    }
  }
};

NcclTransport::NcclTransport(int rank, int world_size, int cuda_device, double deadline_seconds,
                             const std::function<void(void*, size_t)>& broadcast)
    : state_(std::make_unique<State>()) {
  state_->rank = rank;
  state_->device = cuda_device;
  state_->deadline_seconds = deadline_seconds;
  CUDA_CHECK(cudaSetDevice(cuda_device));
  CUDA_CHECK(cudaStreamCreateWithFlags(&state_->stream, cudaStreamNonBlocking));
  ncclUniqueId id;
  if (rank == 0) NCCL_CHECK(ncclGetUniqueId(&id));
  broadcast(&id, sizeof(id));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // creation returns at once; we wait under the deadline
  const ncclResult_t started = ncclCommInitRankConfig(&state_->comm, world_size, id, rank, &config);
  if (started != ncclSuccess && started != ncclInProgress) NCCL_CHECK(started);
  state_->wait(Deadline::after(deadline_seconds), "creating the NCCL communicator", false);
}

NcclTransport::~NcclTransport() {
  if (!state_) return;
  if (state_->comm) ncclCommDestroy(state_->comm);
  if (state_->staging) cudaFree(state_->staging);
  if (state_->stream) cudaStreamDestroy(state_->stream);
}

DataTransport::Ticket NcclTransport::start(const std::vector<SendBlock>& sends,
                                           const std::vector<RecvBlock>& recvs) {
  State& s = *state_;
  const Deadline deadline = Deadline::after(s.deadline_seconds);
  const std::string doing = "moving " + std::to_string(sends.size()) + " block(s) out and " +
                            std::to_string(recvs.size()) + " in over NCCL";
  MOE_CHECK(s.comm != nullptr,
            "NCCL: the communicator was aborted earlier; cannot move data while ", doing);
  size_t total = 0;
  for (const auto& b : sends) total += b.count;
  for (const auto& b : recvs) total += b.count;
  if (total == 0) return ++s.tickets;
  CUDA_CHECK(cudaSetDevice(s.device));
  if (total > s.staging_floats) {
    if (s.staging) CUDA_CHECK(cudaFree(s.staging));
    CUDA_CHECK(cudaMalloc(&s.staging, total * sizeof(float)));
    s.staging_floats = total;
  }
  // Host → staging for the sends; counts are known on both sides (they travel on the control
  // plane).
  size_t offset = 0;
  std::vector<size_t> send_at, recv_at;
  for (const auto& b : sends) {
    send_at.push_back(offset);
    if (b.count)
      CUDA_CHECK(cudaMemcpyAsync(s.staging + offset, b.data, b.count * sizeof(float),
                                 cudaMemcpyHostToDevice, s.stream));
    offset += b.count;
  }
  for (const auto& b : recvs) {
    recv_at.push_back(offset);
    offset += b.count;
  }
  auto issue = [&](ncclResult_t r) {
    if (r != ncclSuccess && r != ncclInProgress) NCCL_CHECK(r);
  };
  issue(ncclGroupStart());
  for (size_t i = 0; i < sends.size(); ++i)
    if (sends[i].count)
      issue(ncclSend(s.staging + send_at[i], sends[i].count, ncclFloat32, sends[i].peer, s.comm,
                     s.stream));
  for (size_t i = 0; i < recvs.size(); ++i)
    if (recvs[i].count)
      issue(ncclRecv(s.staging + recv_at[i], recvs[i].count, ncclFloat32, recvs[i].peer, s.comm,
                     s.stream));
  issue(ncclGroupEnd());
  // A non-blocking communicator may still be enqueuing the group: only once it is no longer
  // "in progress" are the transfers on the stream, so the copies back can follow them.
  s.wait(deadline, doing, false);
  for (size_t i = 0; i < recvs.size(); ++i)
    if (recvs[i].count)
      CUDA_CHECK(cudaMemcpyAsync(recvs[i].data, s.staging + recv_at[i],
                                 recvs[i].count * sizeof(float), cudaMemcpyDeviceToHost, s.stream));
  s.wait(deadline, doing, true);
  return ++s.tickets;
}

}  // namespace moe
