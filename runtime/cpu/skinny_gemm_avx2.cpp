// skinny_gemm at the avx2 level: 8 floats per vector, blocks of 3 rows × 4 weight rows.
#define SKINNY_NAMESPACE skinny_avx2
#define SKINNY_LANES 8
#define SKINNY_MR 3
#define SKINNY_NR 4
#define SKINNY_FEW_ROWS 1
#define SKINNY_FEW_NR 8
#include "runtime/cpu/skinny_gemm_kernel.inc"
