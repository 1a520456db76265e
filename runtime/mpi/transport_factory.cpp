#include "runtime/mpi/transport_factory.hpp"

#include "runtime/device.hpp"
#include "runtime/mpi/mpi_check.hpp"
#include "runtime/mpi/mpi_transport.hpp"
#ifdef MOE_WITH_CUDA
#include "runtime/cuda/nccl_transport.hpp"
#endif

namespace moe {

std::string transport_for(const std::vector<std::string>& devices) {
#ifdef MOE_WITH_CUDA
  bool all_gpu = !devices.empty();
  for (const auto& d : devices) all_gpu = all_gpu && d.rfind("cuda:", 0) == 0;
  if (all_gpu) return "nccl";
#endif
  return "mpi";
}

std::unique_ptr<DataTransport> make_transport(const World& world, const std::string& kind,
                                              const std::string& device, double deadline_seconds,
                                              DataTags tags) {
  if (kind == "nccl") {
#ifdef MOE_WITH_CUDA
    const std::string spec = resolve_local_device(device, world.local_rank());
    const int index = std::stoi(spec.substr(5));
    return std::make_unique<NcclTransport>(
        world.rank(), world.size(), index, deadline_seconds, [&](void* bytes, size_t n) {
          if (world.uses_mpi()) MPI_CHECK(MPI_Bcast(bytes, int(n), MPI_BYTE, 0, MPI_COMM_WORLD));
        });
#else
    MOE_FAIL("the run plan asks for NCCL but this build has no CUDA support");
#endif
  }
  return std::make_unique<MpiTransport>(world, tags.send, tags.recv);
}

}  // namespace moe
