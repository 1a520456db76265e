// Writing a file so that it is complete or absent: the content goes to PATH.partial, which is
// renamed to PATH only when every byte is written. An interrupted run never leaves a file that
// looks finished.
#pragma once

#include <cstdio>
#include <fstream>
#include <functional>
#include <string>

#include "runtime/error.hpp"

namespace moe {

inline void write_file_atomically(const std::string& path,
                                  const std::function<void(std::ostream&)>& write) {
  const std::string partial = path + ".partial";
  {
    std::ofstream out(partial, std::ios::binary | std::ios::trunc);
    MOE_CHECK(out.good(), partial, ": cannot open for writing");
    write(out);
    out.flush();
    MOE_CHECK(out.good(), partial, ": write failed");
  }
  MOE_CHECK(std::rename(partial.c_str(), path.c_str()) == 0, path, ": cannot rename from ",
            partial);
}

}  // namespace moe
