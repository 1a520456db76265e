#include "runtime/exit_status.hpp"

#include <cstdio>
#include <cstdlib>

namespace moe {

void record_exit_status(int code) {
  const char* path = std::getenv("MOE_EXIT_STATUS_FILE");
  if (path == nullptr || *path == '\0') return;
  std::FILE* f = std::fopen(path, "w");
  bool written = f != nullptr && std::fprintf(f, "%d\n", code) > 0;
  if (f != nullptr && std::fclose(f) != 0) written = false;
  if (!written) std::fprintf(stderr, "moe: warning: %s: cannot write the exit status\n", path);
}

}  // namespace moe
