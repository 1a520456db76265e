// Memory for weights that the kernels stream once per step. A decode step reads every weight once,
// so each 4 KiB page costs a TLB miss (two-level walks in a virtual machine); on 2 MiB pages one
// core streamed 16.3 GB/s where it read 14.2 GB/s on 4 KiB ones (docs/BENCHMARKS.md, section 15).
// Blocks of 2 MiB and more get a mapping of their own that starts on a 2 MiB boundary and ends at
// their last 4 KiB page, marked for transparent huge pages (MADV_HUGEPAGE: the kernel's default
// mode gives them only where asked). The mapping holds no slack, so a huge page never covers
// memory past the block and resident memory stays the block's size. Smaller blocks come from
// operator new, aligned to cache lines.
#pragma once

#include <cstddef>

namespace moe {

// At least 64-byte aligned; std::bad_alloc when the memory cannot be had.
void* allocate_weight_bytes(size_t bytes);
// `bytes` as given to allocate_weight_bytes.
void free_weight_bytes(void* p, size_t bytes);

}  // namespace moe
