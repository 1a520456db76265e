// The compute device a rank runs on. The model is written against this interface; the CPU
// implementation (OpenBLAS) is always built, the CUDA one when MOE_WITH_CUDA is on.
// All matrices are row-major float32.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace moe {

// One expert's weights in Hugging Face layout: wi[d_ff, d_model], wo[d_model, d_ff].
struct ExpertWeights {
  const float* wi = nullptr;
  const float* wo = nullptr;
};

// A grouped expert FFN call: rows [offsets[g], offsets[g+1]) of the input belong to expert g.
struct ExpertGroup {
  ExpertWeights weights;
  int first_row = 0;
  int rows = 0;
};

class Device {
 public:
  virtual ~Device() = default;
  virtual std::string name() const = 0;

  // y[M, N] = x[M, K] · w[N, K]^T (+ y when accumulate): a Linear layer with HF weight layout.
  virtual void linear(const float* x, const float* w, float* y, int M, int N, int K,
                      bool accumulate = false) = 0;

  // For each group: y[rows, d_model] = relu(x[rows, d_model] · wi^T) · wo^T, rows taken at
  // first_row of x and written at first_row of y. scratch holds max_rows * d_ff floats.
  virtual void expert_ffn(const std::vector<ExpertGroup>& groups, const float* x, float* y,
                          int d_model, int d_ff) = 0;

  // Offers the device a weight matrix w[rows, cols] that later calls will pass (by this pointer,
  // or a pointer to one of its rows with fewer rows): the CPU device keeps its own copy and reads
  // that instead — converted to its compact weight format ("cpu:T:bf16", "cpu:T:int8"), or float32
  // laid out in panels for its kernel. Matrices never offered (the router's, whose choices must
  // stay exact; experts under a memory budget, whose pages stay the checkpoint's) are used in
  // float32 as they are.
  virtual void prepare_weight(const float* /*w*/, int /*rows*/, int /*cols*/) {}
  // Bytes of the converted copies prepare_weight made.
  virtual size_t prepared_weight_bytes() const { return 0; }
};

// "cpu", "cpu:THREADS" or "cpu:THREADS:FORMAT" (FORMAT f32, bf16 or int8: how the device stores
// the weights offered to prepare_weight); a CUDA device is named "cuda:INDEX[:bf16]".
std::unique_ptr<Device> make_device(const std::string& spec);

}  // namespace moe

namespace moe {
// Throws when `spec` is not a device this build can make (checked before any rank starts work).
void make_device_spec_check(const std::string& spec);
// "cuda:local[:bf16]" names the GPU of this rank's index on its node (from Open MPI, SLURM or
// PMIx): one config fits any node shape. Other specs pass unchanged.
std::string resolve_local_device(const std::string& spec, int local_rank);
// The weight format a device spec names ("cpu:1:bf16@0.5" → "bf16"), or "" where it names none.
std::string named_weight_format(const std::string& spec);
// The spec with `format` as its weight format where it names none ("cpu:1" → "cpu:1:int8",
// "cpu:1@0.5" → "cpu:1:int8@0.5", "cuda:0" → "cuda:0:bf16"); one that names one keeps it, and
// "f32" changes nothing.
std::string with_weight_format(const std::string& spec, const std::string& format);
}  // namespace moe
