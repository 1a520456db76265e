#include "runtime/cpu/sgemm.hpp"

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include "runtime/error.hpp"

namespace moe {

// oneDNN runs on OpenMP; limited to one thread on each thread that calls it, it starts no team of
// its own, so the process's ThreadPool stays its only threads.
void sgemm_one_thread(bool b_transposed, int M, int N, int K, const float* a, int lda,
                      const float* b, int ldb, float beta, float* c, int ldc) {
  thread_local const bool one_thread = (omp_set_num_threads(1), true);
  (void)one_thread;
  const dnnl_status_t status =
      dnnl_sgemm('N', b_transposed ? 'T' : 'N', M, N, K, 1.0f, a, lda, b, ldb, beta, c, ldc);
  MOE_CHECK(status == dnnl_success, "oneDNN sgemm failed (status ", int(status), ") for M=", M,
            " N=", N, " K=", K);
}

}  // namespace moe
