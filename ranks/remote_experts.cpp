#include "ranks/remote_experts.hpp"

#include <cstring>

#include "runtime/activity.hpp"
#include "runtime/mpi/control_plane.hpp"

namespace moe {

RemoteExpertExecutor::RemoteExpertExecutor(const World& world, DataTransport& transport,
                                           const ExpertMap& map, DispatchPolicy& policy,
                                           int d_model, double deadline_seconds,
                                           RankRecorder& recorder)
    : world_(world),
      transport_(transport),
      map_(map),
      policy_(policy),
      d_model_(d_model),
      deadline_seconds_(deadline_seconds),
      recorder_(recorder),
      send_(world.size()),
      recv_(world.size()) {}

void RemoteExpertExecutor::run(const SparseFfnWeights& layer, int64_t step, const GateResult& gate,
                               const ExpertDispatch& dispatch, const float* rows_in,
                               float* rows_out) {
  step_ = step;
  const int L = layer.moe_layer, N = world_.size(), d = d_model_;
  const std::string where = "sparse layer " + std::to_string(L) + ", step " + std::to_string(step_);
  const double t_dispatch = now_us();
  policy_.assign(L, dispatch, gate, map_, rank_of_row_);
  last_policy_us_ = now_us() - t_dispatch;

  // Per rank: segments in expert order, rows copied into one contiguous block.
  std::vector<WorkHeader> headers(N);
  std::vector<int> rows_on(N, 0);
  slot_of_row_.resize(dispatch.rows());
  for (int e = 0; e + 1 < int(dispatch.offsets.size()); ++e)
    for (int i = dispatch.offsets[e]; i < dispatch.offsets[e + 1]; ++i) {
      const int r = rank_of_row_[i];
      auto& segs = headers[r].segments;
      if (segs.empty() || segs.back().expert != e) segs.push_back({e, 0});
      ++segs.back().rows;
      slot_of_row_[i] = rows_on[r]++;
    }
  last_rows_ = rows_on;
  for (int r = 1; r < N; ++r)
    if (send_[r].size() < size_t(rows_on[r]) * d) send_[r].resize(size_t(rows_on[r]) * d);
  for (int i = 0; i < dispatch.rows(); ++i)
    std::memcpy(send_[rank_of_row_[i]].data() + size_t(slot_of_row_[i]) * d,
                rows_in + size_t(i) * d, sizeof(float) * d);

  std::vector<SendBlock> sends;
  for (int r = 1; r < N; ++r) {
    headers[r].step = step_;
    headers[r].moe_layer = L;
    send_control(r, headers[r]);
    sends.push_back({r, send_[r].data(), size_t(rows_on[r]) * d});
    recorder_.report().bytes_sent += uint64_t(rows_on[r]) * d * sizeof(float);
  }
  const Deadline deadline = Deadline::after(deadline_seconds_);
  // The blocks go out while we wait for replies; their completion is checked in combine (a
  // rendezvous-sized send would otherwise hold dispatch until every rank had posted its receive).
  transport_.start_sends(sends);
  recorder_.event("dispatch L" + std::to_string(L), t_dispatch);

  // Replies: one per expert rank, in any order; an error from a rank ends the run naming it.
  const double t_wait = now_us();
  std::vector<uint8_t> replied(N, 0);
  feedback_.clear();
  for (int pending = N - 1; pending > 0; --pending) {
    std::string waiting;
    for (int r = 1; r < N; ++r)
      if (!replied[r])
        waiting +=
            (waiting.empty() ? "" : ", ") + std::to_string(r) + " (host " + world_.host_of(r) + ")";
    const std::string doing = "waiting for rank(s) " + waiting + " at " + where;
    set_activity(doing);
    const Envelope e = receive_control(world_, kAnySource, deadline, doing);
    if (e.type == static_cast<uint32_t>(MessageType::kError)) {
      const auto err = decode_message<ErrorMessage>(e);
      MOE_FAIL("rank ", err.rank, " (host ", err.host, ") failed at ", where, ": ", err.what);
    }
    const auto reply = decode_message<WorkReply>(e);
    MOE_CHECK(reply.moe_layer == L && reply.step == step_, "rank ", e.sender,
              " replied for sparse layer ", reply.moe_layer, " step ", reply.step, ", expected ",
              where);
    MOE_CHECK(!replied[e.sender], "rank ", e.sender, " replied twice at ", where);
    replied[e.sender] = 1;
    // From the start of dispatch: a fast rank may answer before the slowest send has completed.
    feedback_.push_back({e.sender, L, rows_on[e.sender], now_us() - t_dispatch, reply.compute_us,
                         reply.queue_us, reply.other_cpu_us});
  }
  policy_.observe(feedback_);
  recorder_.report().wait_us += recorder_.event("wait L" + std::to_string(L), t_wait);

  const double t_combine = now_us();
  std::vector<RecvBlock> recvs;
  for (int r = 1; r < N; ++r) {
    if (recv_[r].size() < size_t(rows_on[r]) * d) recv_[r].resize(size_t(rows_on[r]) * d);
    recvs.push_back({r, recv_[r].data(), size_t(rows_on[r]) * d});
    recorder_.report().bytes_received += uint64_t(rows_on[r]) * d * sizeof(float);
  }
  set_activity("receiving the results of " + where);
  transport_.exchange({}, recvs, deadline, "receiving the results of " + where);
  transport_.finish_sends(deadline, "sending " + where);
  for (int i = 0; i < dispatch.rows(); ++i)
    std::memcpy(rows_out + size_t(i) * d,
                recv_[rank_of_row_[i]].data() + size_t(slot_of_row_[i]) * d, sizeof(float) * d);
  recorder_.event("combine L" + std::to_string(L), t_combine);
  set_activity("running attention and the router (step " + std::to_string(step_) + ")");
}

}  // namespace moe
