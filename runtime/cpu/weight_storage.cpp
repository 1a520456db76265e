#include "runtime/cpu/weight_storage.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <new>

namespace moe {
namespace {

constexpr size_t kHugePage = size_t(2) << 20;  // x86-64's PMD size (aarch64 with 4 KiB pages too)
constexpr size_t kCacheLine = 64;

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

size_t small_page() {
  static const size_t page = size_t(sysconf(_SC_PAGESIZE));
  return page;
}

}  // namespace

void* allocate_weight_bytes(size_t bytes) {
  if (bytes < kHugePage) return ::operator new(bytes, std::align_val_t(kCacheLine));
  const size_t length = round_up(bytes, small_page());
  // Map one huge page more than needed, then cut the mapping down to [aligned start, + length).
  char* raw = static_cast<char*>(mmap(nullptr, length + kHugePage, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (raw == MAP_FAILED) throw std::bad_alloc();
  char* start = reinterpret_cast<char*>(round_up(reinterpret_cast<uintptr_t>(raw), kHugePage));
  if (start > raw) munmap(raw, size_t(start - raw));
  char* end = start + length;
  if (raw + length + kHugePage > end) munmap(end, size_t(raw + length + kHugePage - end));
  madvise(start, length, MADV_HUGEPAGE);  // a hint: without transparent huge pages, small pages
  return start;
}

void free_weight_bytes(void* p, size_t bytes) {
  if (!p) return;
  if (bytes < kHugePage) {
    ::operator delete(p, std::align_val_t(kCacheLine));
    return;
  }
  munmap(p, round_up(bytes, small_page()));
}

}  // namespace moe
