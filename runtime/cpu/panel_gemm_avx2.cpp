// panel_gemm at the avx2 level: 8 floats per vector, blocks of 4 rows × 24 columns.
#define PANEL_NAMESPACE panel_avx2
#define PANEL_LANES 8
#define PANEL_MR 4
#define PANEL_V 3
#include "runtime/cpu/panel_gemm_kernel.inc"
