// The project's one error type and its check macro. Every failure becomes a moe::Error carrying
// file:line and a message that names the file, field, tensor or rank at fault.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace moe {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Rank 0 rejected the run before any work started, and every rank knows it: each exits on its
// own, with no need to abort the others.
class RejectedRun : public Error {
 public:
  using Error::Error;
};

namespace detail {
template <typename... Parts>
[[noreturn]] void fail(const char* file, int line, const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  out << " [" << file << ":" << line << "]";
  throw Error(out.str());
}
}  // namespace detail

}  // namespace moe

// MOE_CHECK(cond, parts...): throw moe::Error with the streamed parts when cond is false.
#define MOE_CHECK(cond, ...)                                           \
  do {                                                                 \
    if (!(cond)) ::moe::detail::fail(__FILE__, __LINE__, __VA_ARGS__); \
  } while (0)

#define MOE_FAIL(...) ::moe::detail::fail(__FILE__, __LINE__, __VA_ARGS__)
