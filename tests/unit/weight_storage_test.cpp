// Weight blocks: aligned, exactly as large as asked in resident memory, and marked for huge pages
// where the kernel gives transparent huge pages to those who ask (its "madvise" and "always"
// modes).
#include "runtime/cpu/weight_storage.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

namespace moe {
namespace {

// The smaps fields (in kB) of the mapping that starts at p; empty when none starts there.
std::string smaps_of_mapping_at(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  std::ostringstream start;
  start << std::hex << reinterpret_cast<uintptr_t>(p) << '-';
  std::string line, found;
  bool inside = false;
  while (std::getline(smaps, line)) {
    const bool header = line.find('-') < line.find(' ') && line.find(':') > line.find(' ');
    if (header)
      inside = line.rfind(start.str(), 0) == 0;
    else if (inside)
      found += line + '\n';
  }
  return found;
}

long field_kb(const std::string& fields, const std::string& name) {
  const size_t at = fields.find(name + ':');
  if (at == std::string::npos) return -1;
  return std::stol(fields.substr(at + name.size() + 1));
}

bool huge_pages_on_request() {
  std::ifstream mode("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string text;
  std::getline(mode, text);
  return text.find("[always]") != std::string::npos || text.find("[madvise]") != std::string::npos;
}

}  // namespace

TEST(WeightStorage, SmallBlocksAreCacheLineAligned) {
  for (size_t bytes : {size_t(1), size_t(100), size_t(4096), (size_t(2) << 20) - 4}) {
    auto* p = static_cast<unsigned char*>(allocate_weight_bytes(bytes));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u) << bytes;
    std::memset(p, 0x5a, bytes);
    EXPECT_EQ(p[bytes - 1], 0x5a);
    free_weight_bytes(p, bytes);
  }
}

// 2.25 MiB + 100 bytes (an attention projection of d_model 768 is 2.25 MiB): one huge page, then
// small pages to the block's last page, and nothing mapped past it.
TEST(WeightStorage, LargeBlocksHaveAMappingOfTheirOwnOnHugePagesWithoutSlack) {
  const size_t bytes = (size_t(9) << 18) + 100, page = 4096;
  auto* p = static_cast<unsigned char*>(allocate_weight_bytes(bytes));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % (size_t(2) << 20), 0u);
  for (size_t i = 0; i < bytes; ++i) p[i] = static_cast<unsigned char>(i * 7);
  for (size_t i = 0; i < bytes; i += 4099) ASSERT_EQ(p[i], static_cast<unsigned char>(i * 7)) << i;
  const std::string fields = smaps_of_mapping_at(p);
  ASSERT_FALSE(fields.empty()) << "no mapping starts at the block";
  const long length_kb = long((bytes + page - 1) / page * page / 1024);
  EXPECT_EQ(field_kb(fields, "Size"), length_kb);
  EXPECT_EQ(field_kb(fields, "Rss"), length_kb);
  // Marked for huge pages (VmFlags "hg"); whether the kernel found a free huge page for it depends
  // on how fragmented memory is, so AnonHugePages is only shown.
  if (huge_pages_on_request()) {
    EXPECT_NE(fields.substr(fields.find("VmFlags:")).find(" hg"), std::string::npos) << fields;
  }
  std::printf("huge pages in the block: %ld kB\n", field_kb(fields, "AnonHugePages"));
  free_weight_bytes(p, bytes);
  EXPECT_TRUE(smaps_of_mapping_at(p).empty()) << "the mapping outlived the block";
}

}  // namespace moe
