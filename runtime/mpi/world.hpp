// The MPI world of one run: rank, size, every rank's host name, and the role each rank plays.
// Rank 0 is the coordinator; ranks 1..N-1 are expert ranks.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

namespace moe {

class World {
 public:
  // Initialises MPI when the process was started by mpirun/srun (or a PMI/PMIx launcher);
  // otherwise the world is this one process and MPI is never touched.
  World(int* argc, char*** argv);
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  bool distributed() const { return size_ > 1; }
  bool uses_mpi() const { return mpi_; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  const std::string& host() const { return hosts_[rank_]; }
  const std::string& host_of(int rank) const { return hosts_.at(rank); }
  // The process of `rank` on its host: id and start time (clock ticks after boot, so that a
  // reused id is told apart), to stop a rank declared lost (see rank_fence.hpp).
  long pid_of(int rank) const { return pids_.at(rank); }
  long start_ticks_of(int rank) const { return start_ticks_.at(rank); }
  // "1 (host a), 3 (host b)": the ranks for which named(rank) holds, for messages.
  template <class Named>
  std::string ranks_with_hosts(const Named& named) const {
    std::string out;
    for (int r = 0; r < size_; ++r)
      if (named(r))
        out += (out.empty() ? "" : ", ") + std::to_string(r) + " (host " + host_of(r) + ")";
    return out;
  }
  // The same for the ranks in a list (named in rank order, each once).
  std::string ranks_with_hosts(const std::vector<int>& ranks) const {
    return ranks_with_hosts(
        [&](int r) { return std::find(ranks.begin(), ranks.end(), r) != ranks.end(); });
  }
  // This process's index among the ranks on its node (Open MPI, SLURM or PMIx variables).
  int local_rank() const { return local_rank_; }
  // Ends every rank of the run at once (after a one-line error has been printed).
  [[noreturn]] void abort(int code) const;
  // A rank was declared lost (--on-rank-failure continue): this process will end without
  // MPI_Finalize, which waits for every peer (over TCP, a vanished one forever).
  void note_rank_lost() const { finalize_ = false; }

 private:
  bool mpi_ = false;
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  std::vector<std::string> hosts_;
  std::vector<long> pids_, start_ticks_;
  mutable bool finalize_ = true;  // a lost rank is learnt of while the world is shared read-only
};

}  // namespace moe
