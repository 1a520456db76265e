#include "runtime/cpu/cpu_quota.hpp"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "runtime/error.hpp"

namespace moe {
namespace fs = std::filesystem;

namespace {

std::string g_cgroup;  // removed at exit
std::string g_parent_procs;

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.flush();
  MOE_CHECK(out.good(), path.string(), ": cannot write '", text,
            "' (is the cgroup CPU controller writable?)");
}

void remove_cgroup() {
  if (g_cgroup.empty()) return;
  std::ofstream(g_parent_procs) << getpid();  // leave it, then remove it
  fs::remove(g_cgroup);
}

}  // namespace

std::string strip_cpu_quota(const std::string& spec, double* cores) {
  *cores = 0;
  const auto at = spec.find('@');
  if (at == std::string::npos) return spec;
  try {
    size_t used = 0;
    *cores = std::stod(spec.substr(at + 1), &used);
    MOE_CHECK(used == spec.size() - at - 1, "");
  } catch (const std::exception&) {
    MOE_FAIL("device '", spec, "': expected cpu:THREADS@CORES, e.g. cpu:1@0.5");
  }
  MOE_CHECK(*cores > 0 && *cores <= 1024, "device '", spec, "': the quota must be > 0 cores");
  MOE_CHECK(spec.rfind("cpu", 0) == 0, "device '", spec, "': a quota applies to cpu devices only");
  return spec.substr(0, at);
}

void apply_cpu_quota(double cores, int rank) {
  const std::string name = "moe-rank" + std::to_string(rank) + "-" + std::to_string(getpid());
  const long period = kCpuQuotaPeriodUs, quota = long(cores * period);
  if (fs::exists("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") || fs::exists("/sys/fs/cgroup/cpu/tasks")) {
    const fs::path dir = fs::path("/sys/fs/cgroup/cpu") / name;
    fs::create_directories(dir);
    write_file(dir / "cpu.cfs_period_us", std::to_string(period));
    write_file(dir / "cpu.cfs_quota_us", std::to_string(quota));
    write_file(dir / "cgroup.procs", std::to_string(getpid()));
    g_cgroup = dir.string();
    g_parent_procs = "/sys/fs/cgroup/cpu/cgroup.procs";
  } else if (fs::exists("/sys/fs/cgroup/cgroup.controllers")) {
    const fs::path dir = fs::path("/sys/fs/cgroup") / name;
    fs::create_directories(dir);
    write_file(dir / "cpu.max", std::to_string(quota) + " " + std::to_string(period));
    write_file(dir / "cgroup.procs", std::to_string(getpid()));
    g_cgroup = dir.string();
    g_parent_procs = "/sys/fs/cgroup/cgroup.procs";
  } else {
    MOE_FAIL("rank ", rank, ": a CPU quota was asked for but no cgroup CPU controller is mounted");
  }
  std::atexit(remove_cgroup);
}

}  // namespace moe
