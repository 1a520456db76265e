// skinny_gemm at the avx512 level: 16 floats per vector, blocks of 6 rows × 4 weight rows.
#define SKINNY_NAMESPACE skinny_avx512
#define SKINNY_LANES 16
#define SKINNY_MR 6
#define SKINNY_NR 4
#define SKINNY_FEW_ROWS 2
#define SKINNY_FEW_NR 8
#include "runtime/cpu/skinny_gemm_kernel.inc"
