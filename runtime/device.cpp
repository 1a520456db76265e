#include "runtime/device.hpp"

#include <algorithm>
#include <thread>

#include "runtime/cpu/cpu_device.hpp"
#include "runtime/cpu/cpu_quota.hpp"
#include "runtime/error.hpp"
#ifdef MOE_WITH_CUDA
#include "runtime/cuda/cuda_device.hpp"
#endif

namespace moe {
namespace {

int parse_index(const std::string& spec, size_t prefix, const char* what) {
  try {
    size_t used = 0;
    const int value = std::stoi(spec.substr(prefix), &used);
    if (used == spec.size() - prefix) return value;
  } catch (const std::exception&) {
  }
  MOE_FAIL("device '", spec, "': expected ", what);
}

struct CpuSpec {
  int threads = 1;
  WeightFormat format = WeightFormat::kF32;
};

// "cpu", "cpu:THREADS" or "cpu:THREADS:FORMAT".
CpuSpec parse_cpu_spec(const std::string& spec) {
  CpuSpec parsed;
  if (spec == "cpu") return parsed;
  const size_t colon = spec.find(':', 4);
  parsed.threads = parse_index(spec.substr(0, colon), 4, "cpu:THREADS[:f32|bf16|int8]");
  if (colon != std::string::npos)
    parsed.format = parse_weight_format(spec.substr(colon + 1), "device '" + spec + "'");
  return parsed;
}

// cpu:THREADS means that many busy cores: more than the machine has only fight each other.
std::unique_ptr<Device> make_cpu_device(const std::string& spec) {
  const CpuSpec parsed = parse_cpu_spec(spec);
  const int cpus = int(std::thread::hardware_concurrency());
  MOE_CHECK(parsed.threads >= 1 && (cpus == 0 || parsed.threads <= cpus), "device '", spec,
            "': ", parsed.threads, " thread(s), but this machine has ", cpus, " CPU(s)");
  return std::make_unique<CpuDevice>(parsed.threads, parsed.format);
}

}  // namespace

std::unique_ptr<Device> make_device(const std::string& spec_with_quota) {
  double quota = 0;
  const std::string spec = strip_cpu_quota(spec_with_quota, &quota);
  if (spec == "cpu" || spec.rfind("cpu:", 0) == 0) return make_cpu_device(spec);
  if (spec.rfind("cuda:", 0) == 0) {
#ifdef MOE_WITH_CUDA
    const size_t colon = spec.find(':', 5);
    const std::string suffix = colon == std::string::npos ? "" : spec.substr(colon + 1);
    return make_cuda_device(parse_index(spec.substr(0, colon), 5, "cuda:INDEX[:bf16]"),
                            parse_cuda_precision(suffix));
#else
    MOE_FAIL("device '", spec,
             "': this build has no CUDA support (configure with MOE_WITH_CUDA=ON)");
#endif
  }
  MOE_FAIL("device '", spec, "': unknown device (expected cpu:THREADS[:FORMAT] or cuda:INDEX)");
}

}  // namespace moe

namespace moe {
std::string resolve_local_device(const std::string& spec, int local_rank) {
  if (spec.rfind("cuda:local", 0) != 0) return spec;
  return "cuda:" + std::to_string(local_rank) + spec.substr(10);
}

void make_device_spec_check(const std::string& spec_with_quota) {
  double quota = 0;
  const std::string spec = resolve_local_device(strip_cpu_quota(spec_with_quota, &quota), 0);
  if (spec == "cpu" || spec.rfind("cpu:", 0) == 0) {
    // The thread count is checked on the rank's own machine (make_device): nodes may differ.
    parse_cpu_spec(spec);
    return;
  }
  if (spec.rfind("cuda:", 0) == 0) {
#ifdef MOE_WITH_CUDA
    const size_t colon = spec.find(':', 5);
    parse_index(spec.substr(0, colon), 5, "cuda:INDEX[:bf16]");
    parse_cuda_precision(colon == std::string::npos ? "" : spec.substr(colon + 1));
    return;
#else
    MOE_FAIL("device '", spec,
             "': this build has no CUDA support (configure with MOE_WITH_CUDA=ON)");
#endif
  }
  MOE_FAIL("device '", spec,
           "': unknown device (expected cpu:THREADS[:FORMAT][@CORES] or cuda:INDEX)");
}

std::string named_weight_format(const std::string& spec) {
  const std::string base = spec.substr(0, spec.find('@'));
  return std::count(base.begin(), base.end(), ':') >= 2 ? base.substr(base.rfind(':') + 1) : "";
}

std::string with_weight_format(const std::string& spec, const std::string& format) {
  if (format == "f32" || !named_weight_format(spec).empty()) return spec;
  const size_t at = spec.find('@');
  const std::string base = spec.substr(0, at),
                    quota = at == std::string::npos ? "" : spec.substr(at);
  return (base == "cpu" ? "cpu:1" : base) + ":" + format + quota;
}
}  // namespace moe
