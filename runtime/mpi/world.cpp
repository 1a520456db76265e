#include "runtime/mpi/world.hpp"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "runtime/mpi/mpi_check.hpp"
#include "runtime/mpi/rank_fence.hpp"

namespace moe {
namespace {

bool launched_by_mpi() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"})
    if (std::getenv(var) != nullptr) return true;
  return false;
}

int env_int(std::initializer_list<const char*> names, int fallback) {
  for (const char* name : names)
    if (const char* v = std::getenv(name)) return std::atoi(v);
  return fallback;
}

std::string this_host() {
  char name[256] = {};
  gethostname(name, sizeof(name) - 1);
  return name;
}

}  // namespace

World::World(int* argc, char*** argv) {
  mpi_ = launched_by_mpi();
  if (!mpi_) {
    hosts_ = {this_host()};
    pids_ = {long(getpid())};
    start_ticks_ = {process_start_ticks(getpid())};
    return;
  }
  int provided = 0;
  // Serialized: the micro-batch lanes of an attention rank are threads that take turns.
  MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided));
  MOE_CHECK(
      provided >= MPI_THREAD_SERIALIZED,
      "the MPI library does not allow calls from more than one thread (MPI_THREAD_SERIALIZED)");
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size_));
  local_rank_ = env_int(
      {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "PMIX_LOCAL_RANK", "MPI_LOCALRANKID"}, 0);
  // Every rank learns every host name, so errors can name the host of a silent rank.
  char mine[64] = {};
  std::strncpy(mine, this_host().c_str(), sizeof(mine) - 1);
  std::vector<char> all(size_t(size_) * sizeof(mine));
  MPI_CHECK(MPI_Allgather(mine, sizeof(mine), MPI_CHAR, all.data(), sizeof(mine), MPI_CHAR,
                          MPI_COMM_WORLD));
  for (int r = 0; r < size_; ++r) hosts_.emplace_back(all.data() + size_t(r) * sizeof(mine));
  const long me[2] = {long(getpid()), process_start_ticks(getpid())};
  std::vector<long> all_ids(size_t(size_) * 2);
  MPI_CHECK(MPI_Allgather(me, 2, MPI_LONG, all_ids.data(), 2, MPI_LONG, MPI_COMM_WORLD));
  for (int r = 0; r < size_; ++r) {
    pids_.push_back(all_ids[size_t(r) * 2]);
    start_ticks_.push_back(all_ids[size_t(r) * 2 + 1]);
  }
}

World::~World() {
  if (mpi_ && finalize_) MPI_Finalize();
}

void World::abort(int code) const {
  if (mpi_) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

}  // namespace moe
