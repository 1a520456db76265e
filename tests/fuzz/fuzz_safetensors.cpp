// A safetensors file from untrusted bytes: the header's JSON, dtypes, shapes and offsets are
// checked before any tensor is read; every tensor then reads within the file.
#include "model/safetensors.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  moe::fuzz::MemoryFile file(data, size);
  moe::fuzz::expect_clean_refusal([&] {
    moe::SafetensorsFile st(file.path());
    std::vector<float> storage;
    for (const auto& name : st.names()) {
      const auto& info = st.info(name);
      if (info.dtype == moe::DType::I64)
        st.as_int64(info);
      else
        st.as_float32(info, storage);
    }
  });
  return 0;
}
