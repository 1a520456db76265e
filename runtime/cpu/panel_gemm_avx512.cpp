// panel_gemm at the avx512 level: 16 floats per vector, blocks of 8 rows × 48 columns.
#define PANEL_NAMESPACE panel_avx512
#define PANEL_LANES 16
#define PANEL_MR 8
#define PANEL_V 3
#include "runtime/cpu/panel_gemm_kernel.inc"
