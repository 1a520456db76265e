#include "runtime/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ext/stdio_filebuf.h>
#include <filesystem>

#include "runtime/error.hpp"

namespace moe {
namespace {

const char* kind_of(mode_t mode) {
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  if (S_ISFIFO(mode)) return "a pipe";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

// Removes the temporary file unless it was renamed onto the target.
struct Temporary {
  std::string path;
  bool renamed = false;
  ~Temporary() {
    if (!renamed) ::unlink(path.c_str());
  }
};

}  // namespace

void check_output_path(const std::string& path) {
  MOE_CHECK(!path.empty(), "the output path is empty");
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    MOE_CHECK(errno == ENOENT, path, ": cannot check the output path: ", std::strerror(errno));
    return;
  }
  MOE_CHECK(S_ISREG(st.st_mode), path, ": refusing to write the output over ", kind_of(st.st_mode),
            "; give the path of a regular file");
}

void check_output_path_writable(const std::string& path) {
  check_output_path(path);
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  const std::string dir = parent.empty() ? "." : parent.string();
  MOE_CHECK(::access(dir.c_str(), W_OK | X_OK) == 0, path, ": cannot write into ", dir, ": ",
            std::strerror(errno));
}

void check_output_is_not(const std::string& output, const std::string& input) {
  std::error_code ec;
  MOE_CHECK(!std::filesystem::equivalent(output, input, ec), output,
            ": is the input file too; refusing to overwrite it");
}

void write_file_atomically(const std::string& path,
                           const std::function<void(std::ostream&)>& write) {
  check_output_path(path);
  std::string name = path + ".partial.XXXXXX";
  const int fd = ::mkstemp(name.data());  // created exclusively, mode 0600
  MOE_CHECK(fd >= 0, path, ": cannot create a temporary file beside it: ", std::strerror(errno));
  Temporary temporary{name};
  {
    // The buffer owns fd from here and closes it.
    __gnu_cxx::stdio_filebuf<char> buffer(fd, std::ios::out | std::ios::binary);
    std::ostream out(&buffer);
    write(out);
    out.flush();
    MOE_CHECK(out.good() && ::fsync(fd) == 0, temporary.path,
              ": write failed: ", std::strerror(errno));
  }
  // mkstemp's 0600 would hide the output from other users; give it what a new file gets.
  const mode_t mask = ::umask(0);
  ::umask(mask);
  ::chmod(temporary.path.c_str(), 0666 & ~mask);
  MOE_CHECK(std::rename(temporary.path.c_str(), path.c_str()) == 0, path, ": cannot rename from ",
            temporary.path, ": ", std::strerror(errno));
  temporary.renamed = true;
}

}  // namespace moe
