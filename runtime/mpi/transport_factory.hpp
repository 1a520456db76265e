// The data transport a run plan asks for: NCCL when every rank has a GPU, MPI otherwise.
// Collective: every rank calls it at the same point of the run.
#pragma once

#include <memory>

#include "runtime/mpi/control_plane.hpp"
#include "runtime/mpi/world.hpp"
#include "runtime/transport.hpp"

namespace moe {

// "nccl" when every device is cuda:N and this build has CUDA, else "mpi".
std::string transport_for(const std::vector<std::string>& devices);
// The tags of MPI blocks: one for every block, or (on a rank that both sends work to experts and
// serves experts) work on one tag and results on another, each side sending on its own.
struct DataTags {
  int send = kDataTag, recv = kDataTag;
};

// `kind` as transport_for names it; `device` is this rank's device spec.
std::unique_ptr<DataTransport> make_transport(const World& world, const std::string& kind,
                                              const std::string& device, double deadline_seconds,
                                              DataTags tags = {});

}  // namespace moe
