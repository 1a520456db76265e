// An output written line by line as it is produced, so that a long job holds none of it in
// memory and a killed one can be continued: lines go to PATH.partial, which is renamed onto PATH
// only when the job finishes. The partial file is created exclusively and locked while written,
// so two runs never write one together; after a failure or a kill it stays, holding every line
// handed to the kernel before, and a later run may resume it: its complete lines are read back,
// a torn last line is cut off, and writing goes on after them.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>

namespace moe {

class PartialFile {
 public:
  // Starts PATH.partial; with `resume`, continues the one there (or starts one when there is
  // none), passing each complete line it holds, in order, to `kept` (which may throw to refuse
  // the file). PATH must be a regular file or absent.
  PartialFile(std::string path, bool resume,
              const std::function<void(std::string_view line, long number)>& kept = {});
  ~PartialFile();  // an unfinished file stays for a later resume (unless it holds nothing)
  PartialFile(const PartialFile&) = delete;
  PartialFile& operator=(const PartialFile&) = delete;

  const std::string& partial_path() const { return partial_; }
  long lines_kept() const { return kept_; }        // read back when resuming
  long lines_written() const { return written_; }  // by this run

  // One line (without its newline). Buffered: reaches the kernel within `kFlushInterval`, or
  // sooner when the buffer is full; fdatasync runs at most once per that interval.
  void append(std::string_view line);
  // Everything appended so far to the kernel (a killed process then loses none of it).
  void flush();
  // Flushes, syncs and renames the file onto PATH.
  void finish();

  static constexpr std::chrono::milliseconds kFlushInterval{500};

 private:
  void write_buffer();

  std::string path_, partial_;
  int fd_ = -1;
  std::string buffer_;
  long kept_ = 0, written_ = 0;
  std::chrono::steady_clock::time_point last_flush_;
  bool finished_ = false;
};

}  // namespace moe
