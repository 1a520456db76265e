// Outputs that never damage anything: complete or absent, never over a non-regular file or the
// input, no temporary left behind, two writers of one path never mixed.
#include "runtime/atomic_file.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "runtime/error.hpp"

namespace moe {
namespace {

namespace fs = std::filesystem;

struct AtomicFile : ::testing::Test {
  fs::path dir;
  void SetUp() override {
    dir = fs::temp_directory_path() /
          ("moe-atomic-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }
  std::string read(const fs::path& p) const {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  size_t entries() const { return size_t(std::distance(fs::directory_iterator(dir), {})); }
  std::string refusal(const fs::path& target) const {
    try {
      write_file_atomically(target, [](std::ostream& out) { out << "x"; });
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }
};

TEST_F(AtomicFile, WritesTheWholeContentAndLeavesNothingElse) {
  const fs::path target = dir / "out.jsonl";
  write_file_atomically(target, [](std::ostream& out) { out << "first\n"; });
  write_file_atomically(target, [](std::ostream& out) { out << "second\n"; });
  EXPECT_EQ(read(target), "second\n");
  EXPECT_EQ(entries(), 1u);
  struct stat st {};
  ASSERT_EQ(::stat(target.c_str(), &st), 0);
  EXPECT_NE(st.st_mode & S_IRGRP, 0u) << "mode of a new file, not mkstemp's 0600";
}

TEST_F(AtomicFile, AFailingWriterLeavesTheTargetAndNoTemporary) {
  const fs::path target = dir / "out.jsonl";
  write_file_atomically(target, [](std::ostream& out) { out << "kept\n"; });
  EXPECT_THROW(write_file_atomically(target,
                                     [](std::ostream& out) {
                                       out << "half";
                                       throw std::runtime_error("stopped");
                                     }),
               std::runtime_error);
  EXPECT_EQ(read(target), "kept\n");
  EXPECT_EQ(entries(), 1u);
}

TEST_F(AtomicFile, RefusesSymlinksDirectoriesAndDevicesUntouched) {
  const fs::path real = dir / "real.txt", link = dir / "link.txt", sub = dir / "sub";
  { std::ofstream(real) << "real\n"; }
  fs::create_symlink(real, link);
  fs::create_directory(sub);
  EXPECT_NE(refusal(link).find("a symbolic link"), std::string::npos) << refusal(link);
  EXPECT_NE(refusal(sub).find("a directory"), std::string::npos) << refusal(sub);
  EXPECT_NE(refusal("/dev/null").find("a device"), std::string::npos) << refusal("/dev/null");
  EXPECT_TRUE(fs::is_symlink(link));
  EXPECT_EQ(read(real), "real\n");
  EXPECT_EQ(entries(), 3u) << "no temporary left beside them";
  EXPECT_TRUE(fs::is_character_file("/dev/null"));
}

TEST_F(AtomicFile, RefusesTheInputAsOutput) {
  const fs::path input = dir / "in.jsonl";
  { std::ofstream(input) << "{}\n"; }
  EXPECT_THROW(check_output_is_not(input.string(), (dir / "." / "in.jsonl").string()), Error);
  EXPECT_NO_THROW(check_output_is_not((dir / "out.jsonl").string(), input.string()));
  EXPECT_NO_THROW(check_output_is_not((dir / "out.jsonl").string(), "-"));
}

// Two writers of one path at once: the result is one of them whole, never a mix.
TEST_F(AtomicFile, ConcurrentWritersNeverMix) {
  const fs::path target = dir / "out.jsonl";
  const std::string a(1 << 20, 'a'), b(1 << 19, 'b');
  for (int round = 0; round < 20; ++round) {
    std::thread other([&] { write_file_atomically(target, [&](std::ostream& o) { o << b; }); });
    write_file_atomically(target, [&](std::ostream& o) { o << a; });
    other.join();
    const std::string got = read(target);
    EXPECT_TRUE(got == a || got == b) << "round " << round << ": " << got.size() << " bytes";
    EXPECT_EQ(entries(), 1u);
  }
}

}  // namespace
}  // namespace moe
