// Pages of a mapped file leave this process's resident memory when given back and come back,
// with the same contents, when mapped in: what a memory budget for experts stands on.
#include "runtime/mapped_pages.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <vector>

#include "runtime/rank_stats.hpp"
#include "test_files.hpp"

namespace moe {

TEST(MappedPages, GivenBackPagesLeaveResidentMemoryAndComeBackUnchanged) {
  const size_t n = size_t(64) << 20;  // 64 MiB of floats
  const auto path = test::temp_dir() / "weights.bin";
  {
    std::vector<float> values(n / sizeof(float));
    for (size_t i = 0; i < values.size(); ++i) values[i] = float(i % 1000) * 0.5f;
    test::write_bytes(path, std::string(reinterpret_cast<const char*>(values.data()), n));
  }
  const int fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  void* map = ::mmap(nullptr, n, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  ASSERT_NE(map, MAP_FAILED);
  const auto* w = static_cast<const float*>(map);

  const uint64_t before = resident_bytes();
  map_in_pages(w, n);
  const uint64_t mapped = resident_bytes();
  EXPECT_GT(mapped, before + n * 9 / 10);
  give_back_pages(w, n);
  const uint64_t given_back = resident_bytes();
  EXPECT_LT(given_back, mapped - n * 9 / 10);
  // A small range maps in its pages, not the file (the kernel may map a few around them).
  map_in_pages(w + 1000, 4096);
  EXPECT_LT(resident_bytes(), given_back + n / 8);
  for (size_t i = 0; i < n / sizeof(float); i += 4099) ASSERT_EQ(w[i], float(i % 1000) * 0.5f);
  ::munmap(map, n);
}

}  // namespace moe
