#include "ranks/expert_rank.hpp"

#include <optional>
#include <sstream>
#include <thread>

#include "ranks/expert_server.hpp"
#include "runtime/error.hpp"
#include "runtime/mpi/control_plane.hpp"
#include "runtime/rank_stats.hpp"

namespace moe {
namespace {

// The attention ranks went silent while serving: nobody is left to report to, so the rank ends
// the run itself at once.
struct AttentionSilent : Error {
  using Error::Error;
};

// Serves requests until rank 0 says shut down, then sends the report.
void serve(const World& world, const RunPlan& plan, ExpertServer& server) {
  const int rank = world.rank();
  bool serving = false;  // from the first work header on, while an attention rank may send more
  for (;;) {
    const double t_idle = now_us();
    // While `moe generate` serves, exchanges follow each other within a layer's attention: an
    // attention rank silent for the deadline has stopped or hung. Before the first one (loading)
    // and in other commands (profiling takes the ranks in turns) long idle is normal, and only a
    // vanished rank is caught.
    serving = serving && plan.serves && !server.attention_ranks_done();
    // An attention rank that loses another expert rank waits one deadline for it before it sends
    // again (--on-rank-failure continue). Half a second more: an attention rank starts waiting
    // for an exchange after its own work (its part of the lm_head, the other lane's blocks), so
    // its deadline for a stopped expert rank ends after this rank's last answer plus the
    // deadline, and it must be the one to report, naming the rank it waited for (on a loaded
    // machine this rank's silence had ended first, 1 run in 6, naming the attention rank).
    constexpr double kMargin = 0.5;
    const double silence =
        plan.deadline_seconds * (plan.continue_on_rank_failure ? 2 : 1) + kMargin;
    const double limit = serving ? silence : plan.deadline_seconds * 10;
    const Deadline deadline = Deadline::after(limit);
    std::optional<Envelope> got;
    try {
      got = receive_control(world, kAnySource, deadline,
                            "expert rank " + std::to_string(rank) + " waiting for work");
    } catch (const Error&) {
      if (!serving || !deadline.expired()) throw;
      const std::string silent = world.ranks_with_hosts([&](int r) { return server.active(r); });
      std::ostringstream what;
      what << "no work from attention rank(s) " << silent << " for " << silence
           << " s while serving: stopped or hung";
      throw AttentionSilent(what.str());
    }
    const Envelope& e = *got;
    if (e.type == static_cast<uint32_t>(MessageType::kWorkHeader)) serving = true;
    server.recorder().report().wait_us += now_us() - t_idle;
    if (!server.take(e)) break;
    server.serve_ready_exchanges();
  }
  server.finish();
  send_control(0, server.recorder().report());
}

}  // namespace

int run_expert_rank(const World& world, const RunPlan& plan) {
  try {
    ExpertServer server(world, plan);
    serve(world, plan, server);
    return 0;
  } catch (const AttentionSilent& e) {
    std::fprintf(stderr, "moe: error: rank %d (host %s): %s\n", world.rank(), world.host().c_str(),
                 e.what());
    world.abort(1);
  } catch (const std::exception& e) {
    // Tell rank 0, which names this rank in its one-line error and ends the run; if it does not
    // within the deadline, end the run from here.
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
