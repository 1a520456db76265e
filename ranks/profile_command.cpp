// moe profile: under mpirun, every expert rank times the expert FFN it may host over token counts
// 1..1024, and rank 0 times the data transport to each rank (latency and bandwidth). Written as
// profile.json, which records each rank's device; --merge folds in an earlier profile.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include "model/weights.hpp"
#include "ranks/command_line.hpp"
#include "ranks/commands.hpp"
#include "ranks/session.hpp"
#include "router/profile.hpp"
#include "runtime/control_plane.hpp"
#include "runtime/atomic_file.hpp"
#include "runtime/error.hpp"

namespace moe {
namespace po = boost::program_options;

namespace {

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// One-way time t(bytes) = latency + bytes / bandwidth, fitted by least squares to half round trips.
void time_link(Session& s, int rank, int d_model, int repeats, RankProfile& out) {
  std::vector<double> xs, ys;
  for (int rows : {1, 16, 128, 1024}) {
    const size_t floats = size_t(rows) * d_model;
    std::vector<float> block(floats, 1.0f), back(floats);
    std::vector<double> times;
    for (int r = 0; r <= repeats; ++r) {
      const double start = now_us();
      send_control(rank, Echo{floats});
      const Deadline deadline = Deadline::after(s.plan().deadline_seconds);
      s.transport().exchange({{rank, block.data(), floats}}, {}, deadline, "profiling the link to rank " + std::to_string(rank));
      s.transport().exchange({}, {{rank, back.data(), floats}}, deadline, "profiling the link to rank " + std::to_string(rank));
      if (r > 0) times.push_back((now_us() - start) / 2);  // the first is a warm-up
    }
    xs.push_back(double(floats * sizeof(float)));
    ys.push_back(median_of(times));
  }
  const double n = double(xs.size());
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    sx += xs[i];
    sy += ys[i];
    sxx += xs[i] * xs[i];
    sxy += xs[i] * ys[i];
  }
  const double slope = std::max((n * sxy - sx * sy) / (n * sxx - sx * sx), 1e-9);
  out.link_latency_us = std::max((sy - slope * sx) / n, 0.0);
  out.link_bytes_per_us = 1.0 / slope;
}

}  // namespace

int run_profile(World& world, const std::vector<std::string>& args) {
  SessionOptions session_options;
  std::string out_path, merge_path, counts_text = "1,2,4,8,16,32,64,128,256,512,1024";
  int repeats = 5, max_experts = 4;
  po::options_description opts("moe profile options (run under mpirun with expert ranks)");
  opts.add_options()("help,h", "show this help");
  session_options.add_to(opts);
  opts.add_options()
      ("out", po::value(&out_path)->required(), "profile.json to write")
      ("token-counts", po::value(&counts_text)->default_value(counts_text), "token counts to time")
      ("repeats", po::value(&repeats)->default_value(5), "timed repeats per point (median)")
      ("max-experts", po::value(&max_experts)->default_value(4), "experts timed per rank (median over them)")
      ("merge", po::value(&merge_path), "an earlier profile.json to merge into the result");
  if (!parse_command_line(world, opts, args)) return 0;
  ProfileRequest request;
  request.repeats = repeats;
  request.max_experts = max_experts;
  session_options.check_inputs = [&](const ModelConfig&) {
    MOE_CHECK(world.size() >= 2, "moe profile needs expert ranks: run it under mpirun -np 2 or more");
    MOE_CHECK(repeats >= 1 && max_experts >= 1, "--repeats and --max-experts must be >= 1");
    for (const auto& v : split_commas(counts_text)) request.token_counts.push_back(std::stoi(v));
    for (size_t i = 0; i < request.token_counts.size(); ++i)
      MOE_CHECK(request.token_counts[i] >= 1 && (i == 0 || request.token_counts[i] > request.token_counts[i - 1]),
                "--token-counts must be increasing positive integers");
    if (!merge_path.empty()) load_profile(merge_path);
  };
  Session session(world, session_options);
  if (!session.is_coordinator()) return session.exit_code();

  const ModelConfig& c = session.config();
  Profile profile;
  profile.d_model = c.d_model;
  profile.d_ff = c.d_ff;
  profile.num_experts = c.num_experts;
  profile.num_moe_layers = count_moe_layers(c);
  const auto start = Clock::now();
  for (int r = 1; r < world.size(); ++r) {
    std::fprintf(stderr, "profiling rank %d (%s): experts, then the link\n", r, session.plan().devices[r].c_str());
    send_control(r, request);
    const Envelope e = receive_control(world, r, Deadline::after(session.plan().deadline_seconds * 20),
                                       "waiting for rank " + std::to_string(r) + "'s expert timings");
    const auto result = decode_message<ProfileResult>(e);
    RankProfile rp;
    rp.rank = r;
    rp.host = world.host_of(r);
    rp.device = result.device;
    rp.memory_bytes = result.memory_bytes;
    rp.expert.tokens.assign(request.token_counts.begin(), request.token_counts.end());
    rp.expert.median_us = result.median_us;
    time_link(session, r, c.d_model, repeats, rp);
    profile.ranks.push_back(rp);
  }
  if (!merge_path.empty()) profile = merge_profiles(load_profile(merge_path), profile);
  write_file_atomically(out_path, [&](std::ostream& out) { out << profile_to_json(profile).dump(2) << "\n"; });
  std::printf("%-5s %-12s %12s %12s %12s %14s\n", "rank", "device", "1 tok us", "64 tok us", "link us", "link MB/s");
  for (const auto& r : profile.ranks)
    std::printf("%-5d %-12s %12.1f %12.1f %12.1f %14.1f\n", r.rank, r.device.c_str(), r.expert.at(1),
                r.expert.at(64), r.link_latency_us, r.link_bytes_per_us);
  std::printf("profile written to %s\n", out_path.c_str());
  session.finish(0, seconds_since(start));
  return 0;
}

}  // namespace moe
