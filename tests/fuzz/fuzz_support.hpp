// What the fuzz targets share: untrusted bytes as a file (some parsers take paths), and the rule
// that a parser may refuse its input only with an exception that says why. An allocation that
// fails (std::bad_alloc, std::length_error: a size taken from the input and not checked) is a
// finding, like a crash.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>

namespace moe::fuzz {

// The bytes as an in-memory file, reachable by path for as long as it lives.
class MemoryFile {
 public:
  MemoryFile(const uint8_t* data, size_t size) : fd_(::memfd_create("fuzz", 0)) {
    if (fd_ < 0) std::abort();
    for (size_t done = 0; done < size;) {
      const ssize_t n = ::write(fd_, data + done, size - done);
      if (n <= 0) std::abort();
      done += size_t(n);
    }
  }
  ~MemoryFile() { ::close(fd_); }
  MemoryFile(const MemoryFile&) = delete;
  MemoryFile& operator=(const MemoryFile&) = delete;
  std::string path() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  int fd_;
};

// Runs `parse`: a refusal (any exception but a failed allocation) is the expected outcome of bad
// input; a failed allocation aborts, so the fuzzer reports it.
template <class F>
void expect_clean_refusal(F&& parse) {
  try {
    parse();
  } catch (const std::bad_alloc&) {
    std::abort();
  } catch (const std::length_error&) {
    std::abort();
  } catch (const std::exception&) {
  }
}

}  // namespace moe::fuzz
