#include "runtime/mapped_pages.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>

namespace moe {
namespace {

uintptr_t page_bytes() { return uintptr_t(sysconf(_SC_PAGESIZE)); }

// The whole pages inside [p, p + bytes): [begin, end), empty when none.
void inner_pages(const void* p, size_t bytes, uintptr_t& begin, uintptr_t& end) {
  const uintptr_t page = page_bytes();
  begin = (uintptr_t(p) + page - 1) / page * page;
  end = (uintptr_t(p) + bytes) / page * page;
}

}  // namespace

void map_in_pages(const void* p, size_t bytes) {
  if (bytes == 0) return;
  const uintptr_t page = page_bytes();
  const uintptr_t begin = uintptr_t(p) / page * page;
  const uintptr_t end = (uintptr_t(p) + bytes + page - 1) / page * page;
#ifdef MADV_POPULATE_READ
  if (madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_READ) == 0) return;
#endif
  const volatile char* first = static_cast<const volatile char*>(p);
  char sum = 0;  // kernels without MADV_POPULATE_READ: touch a byte of every page
  for (uintptr_t at = begin; at < end; at += page)
    sum ^= first[at < uintptr_t(p) ? 0 : at - uintptr_t(p)];
  volatile char keep = sum;
  (void)keep;
}

void page_out(const void* p, size_t bytes) {
  uintptr_t begin = 0, end = 0;
  inner_pages(p, bytes, begin, end);
#ifdef MADV_PAGEOUT
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_PAGEOUT);
#endif
}

void give_back_pages(const void* p, size_t bytes) {
  uintptr_t begin = 0, end = 0;
  inner_pages(p, bytes, begin, end);
  if (end <= begin) return;
  page_out(p, bytes);
  madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

}  // namespace moe
