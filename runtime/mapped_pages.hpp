// The pages of memory-mapped file data (a checkpoint's float32 tensors): mapped into the process
// now, or given back to the kernel. Contents never change; given-back pages are read again from
// the file if ever touched. Only whole pages inside a range are given back (a page shared with a
// neighbouring tensor stays).
#pragma once

#include <cstddef>

namespace moe {

// Maps in every page that holds part of [p, p + bytes) (MADV_POPULATE_READ; touching one value
// per page where the kernel lacks it), from the page cache or the file.
void map_in_pages(const void* p, size_t bytes);

// MADV_PAGEOUT: the pages leave this process and, where no other process maps them, the page
// cache too (a later touch reads the file). Where nothing can be reclaimed, nothing changes.
void page_out(const void* p, size_t bytes);

// page_out, then MADV_DONTNEED for what could not be reclaimed (pages another process maps too):
// either way they no longer count in this process's resident memory.
void give_back_pages(const void* p, size_t bytes);

}  // namespace moe
