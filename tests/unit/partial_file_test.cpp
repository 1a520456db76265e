// Outputs written as they are produced and resumable: lines reach PATH.partial, renamed onto PATH
// at the end; a partial file left by a stopped run is refused without resume, continued with it
// (its torn last line cut off), and never written by two runs at once.
#include "runtime/partial_file.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/unit/test_files.hpp"

namespace moe {
namespace {

namespace fs = std::filesystem;
using test::read_bytes;
using test::temp_dir;
using test::write_bytes;

std::string refusal(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(PartialFile, LinesGoToThePartialFileAndAreRenamedOntoTheTargetAtTheEnd) {
  const fs::path dir = temp_dir(), target = dir / "out.jsonl";
  PartialFile out(target, false);
  out.append("{\"id\": 1}");
  out.flush();
  EXPECT_EQ(read_bytes(dir / "out.jsonl.partial"), "{\"id\": 1}\n");
  EXPECT_FALSE(fs::exists(target));
  out.append("{\"id\": 2}");
  out.finish();
  EXPECT_EQ(read_bytes(target), "{\"id\": 1}\n{\"id\": 2}\n");
  EXPECT_FALSE(fs::exists(dir / "out.jsonl.partial"));
}

TEST(PartialFile, APartialFileLeftBehindIsRefusedWithoutResume) {
  const fs::path dir = temp_dir(), target = dir / "out.jsonl";
  write_bytes(dir / "out.jsonl.partial", "{\"id\": 1}\n");
  const std::string why = refusal([&] { PartialFile(target, false); });
  EXPECT_NE(why.find("out.jsonl.partial: exists"), std::string::npos) << why;
  EXPECT_NE(why.find("--resume"), std::string::npos) << why;
  EXPECT_EQ(read_bytes(dir / "out.jsonl.partial"), "{\"id\": 1}\n");  // untouched
}

TEST(PartialFile, ResumeKeepsTheCompleteLinesCutsATornOneAndGoesOn) {
  const fs::path dir = temp_dir(), target = dir / "out.jsonl";
  write_bytes(dir / "out.jsonl.partial", "a\nb\nhalf a li");
  std::vector<std::string> kept;
  PartialFile out(target, true, [&](std::string_view line, long n) {
    kept.emplace_back(line);
    EXPECT_EQ(n, long(kept.size()));
  });
  EXPECT_EQ(kept, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(out.lines_kept(), 2);
  out.append("c");
  out.finish();
  EXPECT_EQ(read_bytes(target), "a\nb\nc\n");
}

TEST(PartialFile, ResumeWithoutAPartialFileStartsAnew) {
  const fs::path dir = temp_dir(), target = dir / "out.jsonl";
  PartialFile out(target, true);
  EXPECT_EQ(out.lines_kept(), 0);
  out.append("x");
  out.finish();
  EXPECT_EQ(read_bytes(target), "x\n");
}

TEST(PartialFile, ALineTheCallerRefusesStopsTheResume) {
  const fs::path dir = temp_dir(), target = dir / "out.jsonl";
  write_bytes(dir / "out.jsonl.partial", "good\nbad\n");
  const std::string why = refusal([&] {
    PartialFile(target, true, [](std::string_view line, long n) {
      if (line == "bad") throw std::runtime_error("line " + std::to_string(n) + " is bad");
    });
  });
  EXPECT_EQ(why, "line 2 is bad");
  EXPECT_EQ(read_bytes(dir / "out.jsonl.partial"), "good\nbad\n");
}

TEST(PartialFile, TwoRunsNeverWriteOneFileTogether) {
  const fs::path dir = temp_dir(), target = dir / "out.jsonl";
  PartialFile first(target, false);
  first.append("1");
  first.flush();
  const std::string why = refusal([&] { PartialFile(target, true); });
  EXPECT_NE(why.find("another run is writing it"), std::string::npos) << why;
  first.finish();
  EXPECT_EQ(read_bytes(target), "1\n");
}

TEST(PartialFile, AnUnfinishedFileStaysWithItsLinesAndAnEmptyOneGoes) {
  const fs::path dir = temp_dir(), target = dir / "out.jsonl";
  { PartialFile empty(target, false); }
  EXPECT_FALSE(fs::exists(dir / "out.jsonl.partial"));
  {
    PartialFile stopped(target, false);
    stopped.append("kept");  // buffered: written when the run ends
  }
  EXPECT_EQ(read_bytes(dir / "out.jsonl.partial"), "kept\n");
  EXPECT_FALSE(fs::exists(target));
}

TEST(PartialFile, ATargetThatIsNotARegularFileIsRefused) {
  const fs::path dir = temp_dir();
  fs::create_directories(dir / "a-directory");
  const std::string why = refusal([&] { PartialFile(dir / "a-directory", false); });
  EXPECT_NE(why.find("refusing to write the output over a directory"), std::string::npos) << why;
  EXPECT_FALSE(fs::exists(dir / "a-directory.partial"));
}

}  // namespace
}  // namespace moe
