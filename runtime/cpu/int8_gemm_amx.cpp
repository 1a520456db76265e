// The AMX kernel behind int8_gemm.hpp's int8_gemm_amx_panels, compiled with AMX-TILE/INT8 and
// AVX-512 (runtime/CMakeLists.txt) and called only where int8_amx_available() says so.
//
// The int8 panels (16 outputs × 4 k per 64 bytes) are already the layout of a B tile: 16 rows of
// 64 bytes, one row per group of four k, so 64 k of a panel are one contiguous kilobyte that a tile
// load takes as it is. An A tile holds up to 16 rows × 64 bytes of the quantised activations, and
// one tdpbusd adds their 16 × 16 exact int32 dot products over those 64 k into a C tile. The sums
// are the same exact integers as vpdpbusd's, and the float epilogue is int8_gemm_vnni_panels', so
// the results equal that kernel's to the bit.
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "runtime/cpu/int8_gemm.hpp"
#include "runtime/cpu/int8_panel_store.hpp"

namespace moe {
namespace {

constexpr int kTileRows = 16;  // rows of an A or C tile
constexpr int kChunk = 64;     // k per tile step (bytes of an A tile row)
constexpr int kPanelsPerPass = 3;

// Tiles 0..2 accumulate three panels' outputs, 3 holds the activations, 4..6 the three panels'
// weights (palette 1's layout of the tile configuration, as ldtilecfg reads it).
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t bytes_per_row[16] = {};
  uint8_t rows[16] = {};
};

// Every tile at full height: the last rows of a call come from a padded copy (padded_tail), so
// one configuration serves the whole call.
void configure() {
  TileConfig c;
  for (int t = 0; t < 3; ++t) c.rows[t] = kTileRows, c.bytes_per_row[t] = 64;  // 16 int32
  c.rows[3] = kTileRows, c.bytes_per_row[3] = kChunk;
  for (int t = 4; t < 7; ++t) c.rows[t] = kChunk / 4, c.bytes_per_row[t] = 64;
  _tile_loadconfig(&c);
}

// One pass: 16 rows of activations from xq (x.stride apart) against `count` panels from `panel`
// (panel_bytes apart), K a multiple of 64; of them rows [m0, m0 + rows) of y, its first `columns`
// outputs, written as int8_gemm_vnni_panels writes them.
template <int count>
void pass(const QuantizedRows& x, const uint8_t* xq, int m0, int rows, const int8_t* panel,
          size_t panel_bytes, const float* w_scales, const int32_t* w_sums, float* y, int N,
          int columns, bool accumulate, bool relu) {
  _tile_zero(0);
  if (count > 1) _tile_zero(1);
  if (count > 2) _tile_zero(2);
  for (int k = 0; k < x.K; k += kChunk) {
    const int8_t* w = panel + size_t(k) * 16;  // 16 outputs × 4 bytes per group of 4 k
    _tile_loadd(3, xq + k, x.stride);
    _tile_loadd(4, w, 64);
    _tile_dpbusd(0, 3, 4);
    if (count > 1) {
      _tile_loadd(5, w + panel_bytes, 64);
      _tile_dpbusd(1, 3, 5);
    }
    if (count > 2) {
      _tile_loadd(6, w + 2 * panel_bytes, 64);
      _tile_dpbusd(2, 3, 6);
    }
  }
  alignas(64) int32_t sums[kPanelsPerPass][kTileRows][16];
  _tile_stored(0, sums[0], 64);
  if (count > 1) _tile_stored(1, sums[1], 64);
  if (count > 2) _tile_stored(2, sums[2], 64);
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < count && 16 * j < columns; ++j) {
      const int c0 = 16 * j;
      store_int8_outputs(_mm512_load_si512(sums[j][i]), x.scale[m0 + i], w_scales + c0, w_sums + c0,
                         y + size_t(m0 + i) * N + c0, columns - c0, accumulate, relu);
    }
}

// CPUID itself: clang 14's __builtin_cpu_supports knows no AMX feature, and GCC 12's said false on
// a CPU with the tiles.
bool cpu_has_amx_int8() {
  unsigned a, b, c, d;
  __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
  return (d >> 24 & 1) && (d >> 25 & 1);  // AMX-TILE, AMX-INT8
}

}  // namespace

bool int8_amx_available() {
  // Linux hands out the tile state only to a process that asks (arch_prctl, once); a kernel or
  // hypervisor that refuses keeps the VNNI kernel.
  static const bool available = [] {
    constexpr int kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return int8_vnni_available() && cpu_has_amx_int8() &&
           syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return available;
}

void int8_gemm_amx_panels(const QuantizedRows& x, const int8_t* panels, const float* w_scales,
                          const int32_t* w_sums, float* y, int N, bool accumulate, bool relu,
                          int n_begin, int n_end) {
  const size_t panel_bytes = size_t(kInt8PanelColumns) * x.K;
  // The last rows, fewer than 16, padded with the zero point (their products are not written).
  thread_local std::vector<uint8_t> padded_tail;
  const int full = x.M / kTileRows * kTileRows;
  if (full < x.M) {
    padded_tail.assign(size_t(kTileRows) * x.stride, 128);
    std::memcpy(padded_tail.data(), x.q.data() + size_t(full) * x.stride,
                size_t(x.M - full) * x.stride);
  }
  configure();
  // Panels outer, rows inner: a pass's three panels stay in the cache for every block of rows.
  for (int n = n_begin; n < n_end; n += kPanelsPerPass * kInt8PanelColumns) {
    const int columns = std::min(kPanelsPerPass * kInt8PanelColumns, n_end - n);
    const int8_t* panel = panels + size_t(n / kInt8PanelColumns) * panel_bytes;
    for (int m0 = 0; m0 < x.M; m0 += kTileRows) {
      const int rows = std::min(kTileRows, x.M - m0);
      const uint8_t* xq = m0 < full ? x.q.data() + size_t(m0) * x.stride : padded_tail.data();
      const auto run = [&](auto count) {
        pass<decltype(count)::value>(x, xq, m0, rows, panel, panel_bytes, w_scales + n, w_sums + n,
                                     y + n, N, columns, accumulate, relu);
      };
      // Only the panels that exist: the last of a matrix may hold one or two.
      if (columns > 2 * kInt8PanelColumns)
        run(std::integral_constant<int, 3>());
      else if (columns > kInt8PanelColumns)
        run(std::integral_constant<int, 2>());
      else
        run(std::integral_constant<int, 1>());
    }
  }
  _tile_release();
}

}  // namespace moe
