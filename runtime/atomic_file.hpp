// Writing a file so that it is complete or absent, and never damaging anything else: the content
// goes to a temporary file of a unique name beside the target (created exclusively, so two runs
// writing the same path never share one), is flushed to disk, and is renamed onto the target only
// when every byte is written. A target that exists but is not a regular file (a symlink, a device,
// a directory, a pipe) is refused before anything is written, and a failure leaves no temporary
// behind.
#pragma once

#include <functional>
#include <ostream>
#include <string>

namespace moe {

// Throws naming `path` when it exists and is not a regular file.
void check_output_path(const std::string& path);

// As check_output_path, and throws naming `path` when its directory cannot take a new file.
void check_output_path_writable(const std::string& path);

// Throws naming both when `output` is the same file as `input` (which must not be overwritten).
void check_output_is_not(const std::string& output, const std::string& input);

// write(out) fills the file's content; what it throws passes on, the target left as it was.
void write_file_atomically(const std::string& path,
                           const std::function<void(std::ostream&)>& write);

}  // namespace moe
