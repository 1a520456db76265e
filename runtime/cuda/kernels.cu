// Row permutation, router gate, RMS norm and elementwise kernels (attention is in attention.cu).
// Shapes and contracts are in kernels.hpp; each kernel mirrors its CPU reference's arithmetic
// order where that matters for bitwise-close results (softmax sums, argmax ties, norm scale).
#include "runtime/cuda/cuda_check.hpp"
#include "runtime/cuda/device_math.cuh"
#include "runtime/cuda/kernels.hpp"

namespace moe::gpu {
namespace {

constexpr unsigned kRowThreads = 128;  // one block per row: d_model 512..4096 → 4..32 per thread

// ---- permute / un-permute ----

template <typename In, typename Out>
__global__ void gather_rows_kernel(const In* x, const int* token_of_row, int d, Out* rows) {
  const size_t i = blockIdx.x;
  const In* src = x + size_t(token_of_row[i]) * d;
  Out* dst = rows + i * d;
  for (int j = threadIdx.x; j < d; j += blockDim.x) store(dst + j, load(src + j));
}

template <typename Rows>
__global__ void scatter_add_rows_kernel(const Rows* rows, const int* token_of_row,
                                        const float* probability, int d, float* x) {
  const size_t i = blockIdx.x;
  const int t = token_of_row[i];
  const float p = probability[t];
  const Rows* src = rows + i * d;
  float* dst = x + size_t(t) * d;
  // Product then sum, rounded separately as on the CPU (no fused multiply-add).
  for (int j = threadIdx.x; j < d; j += blockDim.x)
    dst[j] = __fadd_rn(dst[j], __fmul_rn(load(src + j), p));
}

template <typename In, typename Out>
void launch_gather(const In* x, const int* token_of_row, int n, int d, Out* rows, Stream stream) {
  MOE_CHECK(n >= 0 && d >= 0, "gpu::gather_rows: bad shape n=", n, " d=", d);
  if (n == 0 || d == 0) return;
  gather_rows_kernel<<<unsigned(n), kRowThreads, 0, stream>>>(x, token_of_row, d, rows);
  CUDA_CHECK_LAUNCH();
}

template <typename Rows>
void launch_scatter(const Rows* rows, const int* token_of_row, const float* probability, int n,
                    int d, float* x, Stream stream) {
  MOE_CHECK(n >= 0 && d >= 0, "gpu::scatter_add_rows: bad shape n=", n, " d=", d);
  if (n == 0 || d == 0) return;
  scatter_add_rows_kernel<<<unsigned(n), kRowThreads, 0, stream>>>(rows, token_of_row, probability,
                                                                   d, x);
  CUDA_CHECK_LAUNCH();
}

// ---- router gate ----

constexpr unsigned kGateThreads = 256;

// One block per sequence. Tokens are taken in chunks of blockDim positions; within a chunk each
// token's rank among same-expert tokens before it is counted from shared memory, and `used[e]`
// carries the count of earlier chunks — so capacity is applied in position order, as on the CPU.
__global__ void top1_gate_kernel(const float* logits, int seq_len, int E, int capacity, int* expert,
                                 float* probability, uint8_t* kept) {
  extern __shared__ int gate_shared[];
  int* used = gate_shared;              // [E]
  int* chunk_expert = gate_shared + E;  // [blockDim.x]
  for (int e = threadIdx.x; e < E; e += blockDim.x) used[e] = 0;
  const size_t first = size_t(blockIdx.x) * seq_len;
  for (int chunk = 0; chunk < seq_len; chunk += blockDim.x) {
    const int p = chunk + int(threadIdx.x);
    int best = -1;
    if (p < seq_len) {
      const float* row = logits + (first + p) * E;
      float max_logit = row[0];
      for (int e = 1; e < E; ++e) max_logit = fmaxf(max_logit, row[e]);
      float sum = 0.0f;
      for (int e = 0; e < E; ++e) sum += expf(row[e] - max_logit);
      // Argmax over the probabilities themselves (first maximum), recomputed exactly as stored.
      best = 0;
      float best_p = expf(row[0] - max_logit) / sum;
      for (int e = 1; e < E; ++e) {
        const float pe = expf(row[e] - max_logit) / sum;
        if (pe > best_p) best = e, best_p = pe;
      }
      expert[first + p] = best;
      probability[first + p] = best_p;
    }
    chunk_expert[threadIdx.x] = best;
    __syncthreads();
    if (p < seq_len) {
      int rank = 0;
      for (unsigned q = 0; q < threadIdx.x; ++q) rank += chunk_expert[q] == best;
      kept[first + p] = used[best] + rank + 1 <= capacity ? 1 : 0;
    }
    __syncthreads();
    if (p < seq_len) atomicAdd(&used[best], 1);
    __syncthreads();
  }
}

// ---- RMS norm ----

constexpr unsigned kNormThreads = 256;

template <typename In, typename Out>
__global__ void rms_norm_kernel(const In* x, const float* weight, float eps, int d, Out* out) {
  __shared__ float scratch[32];
  const In* row = x + size_t(blockIdx.x) * d;
  float sum_sq = 0.0f;
  for (int i = threadIdx.x; i < d; i += blockDim.x) {
    const float v = load(row + i);
    sum_sq += v * v;
  }
  sum_sq = block_reduce<false>(sum_sq, scratch);
  const float scale = 1.0f / sqrtf(sum_sq / float(d) + eps);
  Out* o = out + size_t(blockIdx.x) * d;
  for (int i = threadIdx.x; i < d; i += blockDim.x)
    store(o + i, __fmul_rn(weight[i], __fmul_rn(load(row + i), scale)));
}

template <typename In, typename Out>
void launch_rms_norm(const In* x, const float* weight, float eps, int T, int d, Out* out,
                     Stream stream) {
  MOE_CHECK(T >= 0 && d > 0, "gpu::rms_norm: bad shape T=", T, " d=", d);
  if (T == 0) return;
  rms_norm_kernel<<<unsigned(T), kNormThreads, 0, stream>>>(x, weight, eps, d, out);
  CUDA_CHECK_LAUNCH();
}

// ---- elementwise ----

constexpr unsigned kElementThreads = 256;

template <typename T>
__global__ void relu_kernel(T* x, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    store(x + i, fmaxf(load(x + i), 0.0f));
}

template <typename In, typename Out>
__global__ void convert_kernel(const In* in, Out* out, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    store(out + i, load(in + i));
}

template <typename T>
void launch_relu(T* x, size_t n, Stream stream) {
  if (n == 0) return;
  relu_kernel<<<grid_for(n, kElementThreads), kElementThreads, 0, stream>>>(x, n);
  CUDA_CHECK_LAUNCH();
}

template <typename In, typename Out>
void launch_convert(const In* in, Out* out, size_t n, Stream stream) {
  if (n == 0) return;
  convert_kernel<<<grid_for(n, kElementThreads), kElementThreads, 0, stream>>>(in, out, n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void gather_rows(const float* x, const int* token_of_row, int n, int d, float* rows, Stream s) {
  launch_gather(x, token_of_row, n, d, rows, s);
}
void gather_rows(const float* x, const int* token_of_row, int n, int d, bf16* rows, Stream s) {
  launch_gather(x, token_of_row, n, d, rows, s);
}
void gather_rows(const bf16* x, const int* token_of_row, int n, int d, bf16* rows, Stream s) {
  launch_gather(x, token_of_row, n, d, rows, s);
}

void scatter_add_rows(const float* rows, const int* token_of_row, const float* probability, int n,
                      int d, float* x, Stream s) {
  launch_scatter(rows, token_of_row, probability, n, d, x, s);
}
void scatter_add_rows(const bf16* rows, const int* token_of_row, const float* probability, int n,
                      int d, float* x, Stream s) {
  launch_scatter(rows, token_of_row, probability, n, d, x, s);
}

void top1_gate(const float* logits, int sequences, int seq_len, int num_experts, int capacity,
               int* expert, float* probability, uint8_t* kept, Stream stream) {
  MOE_CHECK(sequences >= 0 && seq_len >= 0 && num_experts > 0 && capacity >= 0,
            "gpu::top1_gate: bad arguments (sequences=", sequences, " seq_len=", seq_len,
            " experts=", num_experts, " capacity=", capacity, ")");
  if (sequences == 0 || seq_len == 0) return;
  const size_t shared = sizeof(int) * (size_t(num_experts) + kGateThreads);
  MOE_CHECK(shared <= 48 * 1024, "gpu::top1_gate: ", num_experts, " experts exceed shared memory");
  top1_gate_kernel<<<unsigned(sequences), kGateThreads, shared, stream>>>(
      logits, seq_len, num_experts, capacity, expert, probability, kept);
  CUDA_CHECK_LAUNCH();
}

void rms_norm(const float* x, const float* weight, float eps, int T, int d, float* out, Stream s) {
  launch_rms_norm(x, weight, eps, T, d, out, s);
}
void rms_norm(const float* x, const float* weight, float eps, int T, int d, bf16* out, Stream s) {
  launch_rms_norm(x, weight, eps, T, d, out, s);
}
void rms_norm(const bf16* x, const float* weight, float eps, int T, int d, bf16* out, Stream s) {
  launch_rms_norm(x, weight, eps, T, d, out, s);
}

void relu_inplace(float* x, size_t n, Stream s) { launch_relu(x, n, s); }
void relu_inplace(bf16* x, size_t n, Stream s) { launch_relu(x, n, s); }
void convert(const float* in, bf16* out, size_t n, Stream s) { launch_convert(in, out, n, s); }
void convert(const bf16* in, float* out, size_t n, Stream s) { launch_convert(in, out, n, s); }

}  // namespace moe::gpu
