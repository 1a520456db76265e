// A sharded checkpoint's model.safetensors.index.json from untrusted bytes, beside the three real
// shards of the switch8_bf16_sharded fixture: entries must name files inside the model folder,
// each tensor must be in the shard its entry names, and every tensor must be found.
#include <filesystem>
#include <fstream>

#include "model/checkpoint.hpp"
#include "tests/fuzz/fuzz_support.hpp"

namespace fs = std::filesystem;

namespace {

// A model folder of the fixture's files but the index, made once per process.
fs::path model_dir() {
  static const fs::path dir = [] {
    const fs::path fixture =
        fs::path(MOE_SOURCE_DIR) / "tests/reference/fixtures/switch8_bf16_sharded/model";
    const fs::path d = fs::temp_directory_path() / ("moe-fuzz-index-" + std::to_string(::getpid()));
    fs::create_directories(d);
    for (const auto& e : fs::directory_iterator(fixture))
      if (e.path().filename() != "model.safetensors.index.json")
        fs::copy_file(e.path(), d / e.path().filename(), fs::copy_options::overwrite_existing);
    std::atexit([] {
      fs::remove_all(fs::temp_directory_path() / ("moe-fuzz-index-" + std::to_string(::getpid())));
    });
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const fs::path dir = model_dir();
  std::ofstream(dir / "model.safetensors.index.json", std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), std::streamsize(size));
  moe::fuzz::expect_clean_refusal([&] {
    moe::Checkpoint checkpoint(dir.string());
    checkpoint.stored_bytes();
  });
  return 0;
}
