#include "runtime/partial_file.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "runtime/atomic_file.hpp"
#include "runtime/error.hpp"

namespace moe {
namespace {

constexpr size_t kBufferBytes = 1 << 16;

// Reads the whole file; passes each complete line to `kept`; returns the bytes they take.
off_t read_complete_lines(int fd, const std::string& path,
                          const std::function<void(std::string_view, long)>& kept, long& lines) {
  std::string pending;
  off_t complete = 0;
  char chunk[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof(chunk));
    MOE_CHECK(n >= 0, path, ": cannot read: ", std::strerror(errno));
    if (n == 0) break;
    pending.append(chunk, size_t(n));
    size_t start = 0;
    for (size_t end; (end = pending.find('\n', start)) != std::string::npos; start = end + 1) {
      ++lines;
      if (kept) kept(std::string_view(pending).substr(start, end - start), lines);
      complete += off_t(end - start + 1);
    }
    pending.erase(0, start);
  }
  return complete;
}

}  // namespace

PartialFile::PartialFile(std::string path, bool resume,
                         const std::function<void(std::string_view, long)>& kept)
    : path_(std::move(path)), partial_(path_ + ".partial") {
  check_output_path(path_);
  check_output_path(partial_);
  const mode_t mask = ::umask(0);
  ::umask(mask);
  fd_ =
      ::open(partial_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | (resume ? 0 : O_EXCL), 0666 & ~mask);
  MOE_CHECK(fd_ >= 0 || errno != EEXIST, partial_,
            ": exists: another run is writing it, or a run that stopped left it; add --resume to "
            "continue that run, or remove the file");
  MOE_CHECK(fd_ >= 0, partial_, ": cannot create: ", std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd_);
    MOE_FAIL(partial_, ": another run is writing it (it holds the file's lock)");
  }
  try {
    const off_t complete = read_complete_lines(fd_, partial_, kept, kept_);
    // A line cut short by a kill is dropped: it is generated again.
    MOE_CHECK(::ftruncate(fd_, complete) == 0 && ::lseek(fd_, complete, SEEK_SET) == complete,
              partial_, ": cannot cut its last, incomplete line: ", std::strerror(errno));
  } catch (...) {
    ::close(fd_);
    throw;
  }
  last_flush_ = std::chrono::steady_clock::now();
}

PartialFile::~PartialFile() {
  if (fd_ < 0) return;
  if (!finished_ && kept_ == 0 && written_ == 0) ::unlink(partial_.c_str());  // holds nothing
  try {
    if (!finished_) write_buffer();
  } catch (...) {  // the lines not written are generated again on resume
  }
  ::close(fd_);
}

void PartialFile::append(std::string_view line) {
  buffer_.append(line);
  buffer_.push_back('\n');
  ++written_;
  if (buffer_.size() >= kBufferBytes ||
      std::chrono::steady_clock::now() - last_flush_ >= kFlushInterval)
    flush();
}

void PartialFile::write_buffer() {
  size_t done = 0;
  while (done < buffer_.size()) {
    const ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    MOE_CHECK(n > 0, partial_, ": write failed: ", std::strerror(errno));
    done += size_t(n);
  }
  buffer_.clear();
}

void PartialFile::flush() {
  write_buffer();
  const auto now = std::chrono::steady_clock::now();
  if (now - last_flush_ >= kFlushInterval) {
    MOE_CHECK(::fdatasync(fd_) == 0, partial_, ": sync failed: ", std::strerror(errno));
    last_flush_ = now;
  }
}

void PartialFile::finish() {
  write_buffer();
  MOE_CHECK(::fsync(fd_) == 0, partial_, ": sync failed: ", std::strerror(errno));
  check_output_path(path_);
  MOE_CHECK(std::rename(partial_.c_str(), path_.c_str()) == 0, path_, ": cannot rename from ",
            partial_, ": ", std::strerror(errno));
  finished_ = true;
}

}  // namespace moe
