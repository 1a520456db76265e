// panel_gemm at the baseline level: 4 floats per vector, blocks of 4 rows × 12 columns.
#define PANEL_NAMESPACE panel_baseline
#define PANEL_LANES 4
#define PANEL_MR 4
#define PANEL_V 3
#include "runtime/cpu/panel_gemm_kernel.inc"
