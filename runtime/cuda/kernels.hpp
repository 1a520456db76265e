// The GPU kernels of one Switch layer, as launchers on DEVICE pointers and a stream. Each one has
// the contract of its CPU reference (named beside it) and is tested against it in tests/cuda.
// Every launcher is asynchronous on `stream`, checks its launch, and accepts empty shapes.
// Plain C++: no CUDA header, so the rank code can call these without nvcc.
#pragma once

#include <cstddef>
#include <cstdint>

#include "runtime/cuda/cuda_types.hpp"

namespace moe::gpu {

// ---- permute / un-permute (CPU: model/experts.hpp gather_rows, scatter_add_rows) ----

// rows[i, d] = x[token_of_row[i], d] for i < n, converted to the output type.
void gather_rows(const float* x, const int* token_of_row, int n, int d, float* rows, Stream stream);
void gather_rows(const float* x, const int* token_of_row, int n, int d, bf16* rows, Stream stream);
void gather_rows(const bf16* x, const int* token_of_row, int n, int d, bf16* rows, Stream stream);

// x[token_of_row[i], d] += probability[token_of_row[i]] * rows[i, d] for i < n. The residual
// stream x stays float32. A token appears at most once in token_of_row (a permutation of the
// kept tokens), so no two rows write the same x row and no atomics are needed.
void scatter_add_rows(const float* rows, const int* token_of_row, const float* probability, int n,
                      int d, float* x, Stream stream);
void scatter_add_rows(const bf16* rows, const int* token_of_row, const float* probability, int n,
                      int d, float* x, Stream stream);

// ---- router (CPU: router/gate.hpp top1_gate) ----

// logits[sequences * seq_len, E] → expert[T], probability[T], kept[T] (1 within capacity).
// float32 softmax, first maximum on ties, capacity counted per sequence in position order.
void top1_gate(const float* logits, int sequences, int seq_len, int num_experts, int capacity,
               int* expert, float* probability, uint8_t* kept, Stream stream);

// ---- T5 RMS norm (CPU: model/layers.hpp rms_norm) ----

// out[T, d] = weight ⊙ x / sqrt(mean(x²) + eps); sums in float32, weight always float32.
void rms_norm(const float* x, const float* weight, float eps, int T, int d, float* out,
              Stream stream);
void rms_norm(const float* x, const float* weight, float eps, int T, int d, bf16* out,
              Stream stream);
void rms_norm(const bf16* x, const float* weight, float eps, int T, int d, bf16* out,
              Stream stream);

// ---- T5 attention (CPU: model/attention.hpp attend) ----

// Same fields as moe::AttentionShape (kept separate so runtime/ does not include model/).
struct AttentionShape {
  int heads, d_kv, queries, keys, first_query;
  bool causal;
};
// One sequence, all heads, no 1/sqrt(d) scaling. q/k/v/ctx rows are [*, heads*d_kv] with the
// given row strides (in floats). bias[H, Q, K] may be null; key_valid[K] may be null (all valid);
// when causal, query i (absolute position first_query + i) sees keys 0..first_query+i.
// d_kv ≤ 128; keys limited by shared memory (≈ 50k).
void attend(const AttentionShape& shape, const float* q, int q_stride, const float* k,
            const float* v, int kv_stride, const float* bias, const uint8_t* key_valid, float* ctx,
            int ctx_stride, Stream stream);

// ---- elementwise ----

void relu_inplace(float* x, size_t n, Stream stream);
void relu_inplace(bf16* x, size_t n, Stream stream);
void convert(const float* in, bf16* out, size_t n, Stream stream);
void convert(const bf16* in, float* out, size_t n, Stream stream);

}  // namespace moe::gpu
