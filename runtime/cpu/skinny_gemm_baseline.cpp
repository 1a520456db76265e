// skinny_gemm at the baseline level: 4 floats per vector, blocks of 3 rows × 4 weight rows.
#define SKINNY_NAMESPACE skinny_baseline
#define SKINNY_LANES 4
#define SKINNY_MR 3
#define SKINNY_NR 4
#define SKINNY_FEW_ROWS 1
#define SKINNY_FEW_NR 4
#include "runtime/cpu/skinny_gemm_kernel.inc"
