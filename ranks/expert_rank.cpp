#include "ranks/expert_rank.hpp"

#include <algorithm>
#include <fstream>
#include <random>
#include <thread>

#include "model/checkpoint.hpp"
#include "model/weights.hpp"
#include "runtime/control_plane.hpp"
#include "runtime/cpu/cpu_quota.hpp"
#include "runtime/device.hpp"
#include "runtime/transport_factory.hpp"
#include "runtime/rank_stats.hpp"

namespace moe {
namespace {

size_t weight_bytes_of(const ModelWeights& w, const ModelConfig& c) {
  size_t experts = 0;
  for (const auto* stack : {&w.encoder, &w.decoder})
    for (const auto& block : *stack)
      if (block.sparse)
        for (int e = 0; e < c.num_experts; ++e) experts += block.moe.resident(e);
  return experts * size_t(2) * c.d_model * c.d_ff * sizeof(float);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

uint64_t available_memory_bytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  std::string unit;
  while (meminfo >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  return 0;
}

// `moe profile`: the expert FFN over each token count on the experts this rank holds (all, or up
// to max_experts), timed in rotation (expert 1, 2, …, k, 1, 2, …) after a warm-up pass (skipped
// in the profiler's later rounds over counts already warmed up): in a run a rank goes through all
// its experts, layer after layer, so an expert's weights are rarely in the cache, and their pages
// rarely in the TLB, when its turn comes. Timing one expert over and over, or a few, would find
// them there and under-state the cost (by 24% here with 4 of 32 experts). The median over the
// rotation's timings. Where the rotation starts is part of the request, so that ranks timed at
// once can run the same or different experts.
ProfileResult time_experts(const ProfileRequest& request,
                           const std::vector<const SparseFfnWeights*>& layers, Device& device,
                           const ModelConfig& c, int rank, const std::string& device_spec) {
  std::vector<ExpertWeights> experts;
  for (const auto* layer : layers)
    for (int e = 0; e < c.num_experts && (request.max_experts == 0 || int(experts.size()) < request.max_experts); ++e)
      if (layer->resident(e)) experts.push_back(layer->expert(e));
  MOE_CHECK(!experts.empty(), "rank ", rank, " holds no experts to profile");
  int most = 1;
  for (int n : request.token_counts) most = std::max(most, n);
  std::vector<float> x(size_t(most) * c.d_model), y(x.size());
  std::mt19937 rng(rank);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto& v : x) v = normal(rng);
  ProfileResult result;
  result.rank = rank;
  result.device = device_spec;
  result.memory_bytes = available_memory_bytes();
  for (int n : request.token_counts) {
    if (request.warm_up)
      for (const auto& w : experts)
        device.expert_ffn({{w, 0, n}}, x.data(), y.data(), c.d_model, c.d_ff);
    std::vector<double> times, cpu_times;
    const size_t k = experts.size();
    const size_t first = request.rotation_parts > 0
                             ? k * size_t(std::max(request.rotation_part, 0)) / size_t(request.rotation_parts) % k
                             : 0;
    for (size_t i = 0; i < k; ++i) {
      const ExpertWeights& w = experts[(first + i) % k];
      const double start = now_us(), cpu_start = process_cpu_us();
      device.expert_ffn({{w, 0, n}}, x.data(), y.data(), c.d_model, c.d_ff);
      times.push_back(now_us() - start);
      cpu_times.push_back(process_cpu_us() - cpu_start);
    }
    result.median_us.push_back(median(times));
    result.cpu_median_us.push_back(median(cpu_times));
  }
  return result;
}

void serve(const World& world, const RunPlan& plan) {
  const int rank = world.rank();
  apply_quota_of(plan.devices.at(rank), rank);
  const Checkpoint checkpoint(plan.model_dir);
  const ModelConfig& c = checkpoint.config();
  LoadSelection selection;
  selection.dense = false;
  selection.expert_wanted = [&](int layer, int expert) {
    return plan.expert_map.holds(rank, layer, expert);
  };
  const ModelWeights weights = load_weights(checkpoint, selection);
  std::vector<const SparseFfnWeights*> layers;
  for (const auto* stack : {&weights.encoder, &weights.decoder})
    for (const auto& block : *stack)
      if (block.sparse) layers.push_back(&block.moe);

  auto device = make_device(resolve_local_device(plan.devices.at(rank), world.local_rank()));
  RankRecorder recorder(rank, world.host(), plan.devices.at(rank), int(layers.size()), plan.trace);
  recorder.report().weight_bytes = weight_bytes_of(weights, c);
  recorder.report().resident_bytes = resident_bytes();
  send_control(0, Ready{rank, recorder.report().resident_bytes, recorder.report().weight_bytes});
  const auto transport_owner = make_transport(world, plan);  // collective, after Ready
  DataTransport& transport = *transport_owner;

  const int d = c.d_model;
  std::vector<float> rows_in, rows_out;
  std::vector<ExpertGroup> groups;
  double cpu_at_reply = process_cpu_us();  // at the previous reply (or a non-work request)
  for (;;) {
    const double t_idle = now_us();
    // Idle between requests is normal; the deadline only catches a coordinator that vanished.
    const Envelope e = receive_control(world, 0, Deadline::after(plan.deadline_seconds * 10),
                                       "expert rank " + std::to_string(rank) + " waiting for work");
    recorder.report().wait_us += now_us() - t_idle;
    if (e.type == static_cast<uint32_t>(MessageType::kShutdown)) break;
    if (e.type == static_cast<uint32_t>(MessageType::kProfileRequest)) {
      send_control(0, time_experts(decode_message<ProfileRequest>(e), layers, *device, c, rank,
                                   plan.devices.at(rank)));
      cpu_at_reply = process_cpu_us();
      continue;
    }
    if (e.type == static_cast<uint32_t>(MessageType::kEcho)) {
      const auto echo = decode_message<Echo>(e);
      std::vector<float> block(echo.floats);
      const Deadline deadline = Deadline::after(plan.deadline_seconds);
      transport.exchange({}, {{0, block.data(), block.size()}}, deadline, "receiving an echo block");
      transport.exchange({{0, block.data(), block.size()}}, {}, deadline, "returning an echo block");
      cpu_at_reply = process_cpu_us();
      continue;
    }
    const WorkHeader header = decode_message<WorkHeader>(e);
    const double t_arrived = now_us();
    MOE_CHECK(header.moe_layer >= 0 && header.moe_layer < int(layers.size()), "rank 0 sent work for sparse layer ",
              header.moe_layer, " which does not exist");
    const SparseFfnWeights& layer = *layers[header.moe_layer];
    groups.clear();
    int rows = 0;
    for (const auto& seg : header.segments) {
      MOE_CHECK(seg.expert >= 0 && seg.expert < c.num_experts && seg.rows >= 0, "rank 0 sent a bad segment (expert ",
                seg.expert, ", ", seg.rows, " rows)");
      MOE_CHECK(layer.resident(seg.expert), "rank 0 sent tokens for expert ", seg.expert, " of sparse layer ",
                header.moe_layer, ", which is not placed on rank ", rank);
      groups.push_back({layer.expert(seg.expert), rows, seg.rows});
      rows += seg.rows;
    }
    if (rows_in.size() < size_t(rows) * d) {
      rows_in.resize(size_t(rows) * d);
      rows_out.resize(size_t(rows) * d);
    }
    const std::string where = "sparse layer " + std::to_string(header.moe_layer) + ", step " +
                              std::to_string(header.step);
    const Deadline deadline = Deadline::after(plan.deadline_seconds);
    transport.exchange({}, {{0, rows_in.data(), size_t(rows) * d}}, deadline, "receiving " + where);
    recorder.report().bytes_received += uint64_t(rows) * d * sizeof(float);
    recorder.event("receive L" + std::to_string(header.moe_layer), t_arrived);
    const double t_compute = now_us(), cpu_compute = process_cpu_us();
    device->expert_ffn(groups, rows_in.data(), rows_out.data(), d, c.d_ff);
    const double compute_us = recorder.event("experts L" + std::to_string(header.moe_layer), t_compute);
    recorder.served(header.moe_layer, rows, compute_us);
    const double cpu_done = process_cpu_us();
    send_control(0, WorkReply{header.step, header.moe_layer, header.micro_batch, compute_us,
                              t_compute - t_arrived, cpu_compute - cpu_at_reply});
    cpu_at_reply = cpu_done;
    const double t_return = now_us();
    transport.exchange({{0, rows_out.data(), size_t(rows) * d}}, {}, deadline, "returning " + where);
    recorder.report().bytes_sent += uint64_t(rows) * d * sizeof(float);
    recorder.event("return L" + std::to_string(header.moe_layer), t_return);
  }
  recorder.report().resident_bytes = resident_bytes();  // after serving: the touched weights count
  send_control(0, recorder.report());
}

}  // namespace

int run_expert_rank(const World& world, const RunPlan& plan) {
  try {
    serve(world, plan);
    return 0;
  } catch (const std::exception& e) {
    // Tell the coordinator, which names this rank in its one-line error and ends the run; if it
    // does not within the deadline, end the run from here.
    try {
      send_control(0, ErrorMessage{world.rank(), world.host(), e.what()});
    } catch (...) {
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(plan.deadline_seconds));
    std::fprintf(stderr, "moe: error: rank %d (host %s): %s\n", world.rank(), world.host().c_str(),
                 e.what());
    world.abort(1);
  }
}

}  // namespace moe
