// safetensors reading and writing, and the errors for corrupt files.
#include "model/safetensors.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "model/checkpoint.hpp"
#include "runtime/error.hpp"
#include "test_files.hpp"

namespace moe {
namespace {

std::string open_error(const std::filesystem::path& p) {
  try {
    SafetensorsFile f(p.string());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A file with the given JSON header text and `data_bytes` zero bytes of data.
std::string raw_file(const std::string& header, size_t data_bytes) {
  std::string bytes(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(bytes.data(), &n, 8);
  return bytes + header + std::string(data_bytes, '\0');
}

// A copy of the sharded fixture whose index has `from` replaced by `to`; the checkpoint's error.
std::string sharded_index_error(const std::string& from, const std::string& to) {
  const auto dir = test::temp_dir() / "model";
  std::filesystem::copy(test::fixture_dir("switch8_bf16_sharded") + "/model", dir);
  const auto index = dir / "model.safetensors.index.json";
  std::string text = test::read_bytes(index);
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  text.replace(at, from.size(), to);
  test::write_bytes(index, text);
  try {
    Checkpoint checkpoint(dir.string());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Safetensors, ShardIndexPathsStayInTheModelDirectory) {
  const std::string entry = R"("decoder.block.0.layer.0.SelfAttention.k.weight": )";
  for (const char* outside : {"../../../../etc/passwd", "/etc/passwd", ".."}) {
    const std::string error = sharded_index_error(entry + R"("model-00002-of-00003.safetensors")",
                                                  entry + '"' + outside + '"');
    EXPECT_NE(error.find("names '" + std::string(outside) +
                         "', which is not a file name in the model directory"),
              std::string::npos)
        << error;
  }
}

TEST(Safetensors, ShardIndexNamingTheWrongShardIsRefused) {
  const std::string entry = R"("decoder.block.0.layer.0.SelfAttention.k.weight": )";
  const std::string error = sharded_index_error(entry + R"("model-00002-of-00003.safetensors")",
                                                entry + R"("model-00001-of-00003.safetensors")");
  EXPECT_NE(error.find("puts tensor 'decoder.block.0.layer.0.SelfAttention.k.weight' in"),
            std::string::npos)
      << error;
}

TEST(Safetensors, WrittenTensorsReadBackExactly) {
  const auto path = test::temp_dir() / "t.safetensors";
  write_safetensors(path.string(), {{"a", {2, 3}, {1, 2, 3, 4, 5, 6}, {}, false},
                                    {"b", {3}, {}, {7, -8, 9}, true}});
  SafetensorsFile f(path.string());
  std::vector<float> storage;
  const float* a = f.as_float32(f.info("a"), storage);
  EXPECT_EQ(std::vector<float>(a, a + 6), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(f.as_int64(f.info("b")), (std::vector<int64_t>{7, -8, 9}));
  EXPECT_FALSE(std::filesystem::exists(path.string() + ".partial"));
}

TEST(Safetensors, HalfPrecisionConvertsExactly) {
  EXPECT_EQ(bf16_to_float(0x3f80), 1.0f);
  EXPECT_EQ(bf16_to_float(0xc040), -3.0f);
  EXPECT_EQ(f16_to_float(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_float(0xc500), -5.0f);
  EXPECT_EQ(f16_to_float(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(f16_to_float(0x7bff), 65504.0f);
}

TEST(Safetensors, TruncatedFileIsNamed) {
  const auto dir = test::temp_dir();
  write_safetensors((dir / "ok.safetensors").string(),
                    {{"w", {4, 4}, std::vector<float>(16, 1.0f), {}, false}});
  const std::string bytes = test::read_bytes(dir / "ok.safetensors");
  test::write_bytes(dir / "cut.safetensors", bytes.substr(0, bytes.size() - 10));
  const std::string err = open_error(dir / "cut.safetensors");
  EXPECT_NE(
      err.find("cut.safetensors: tensor 'w': data_offsets [0, 64] lie beyond the data section"),
      std::string::npos)
      << err;
  test::write_bytes(dir / "stub.safetensors", bytes.substr(0, 5));
  EXPECT_NE(open_error(dir / "stub.safetensors").find("truncated"), std::string::npos);
  test::write_bytes(dir / "header.safetensors", bytes.substr(0, 20));
  EXPECT_NE(open_error(dir / "header.safetensors").find("exceeds the file size"),
            std::string::npos);
}

TEST(Safetensors, OffsetsBeyondTheFileAreNamed) {
  const auto p = test::temp_dir() / "far.safetensors";
  test::write_bytes(p, raw_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4096]}})", 8));
  EXPECT_NE(open_error(p).find("tensor 'w': data_offsets [0, 4096] lie beyond"), std::string::npos);
}

TEST(Safetensors, SizeThatDisagreesWithShapeAndDtypeIsNamed) {
  const auto p = test::temp_dir() / "size.safetensors";
  test::write_bytes(p, raw_file(R"({"w":{"dtype":"BF16","shape":[3],"data_offsets":[0,8]}})", 8));
  EXPECT_NE(open_error(p).find("tensor 'w': holds 8 bytes but dtype BF16 and its shape need 6"),
            std::string::npos);
}

TEST(Safetensors, UnknownDtypeIsNamed) {
  const auto p = test::temp_dir() / "dtype.safetensors";
  test::write_bytes(p,
                    raw_file(R"({"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", 2));
  EXPECT_NE(open_error(p).find("tensor 'w': unsupported dtype 'F8_E4M3'"), std::string::npos);
}

TEST(Safetensors, OverlappingTensorsAreRejected) {
  const auto p = test::temp_dir() / "overlap.safetensors";
  test::write_bytes(p, raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                12));
  EXPECT_NE(open_error(p).find("overlap"), std::string::npos);
}

TEST(Safetensors, ShapeWhoseSizeOverflowsIsNamed) {
  // 2^62 + 1024 rows of 4 bytes wrap to 4096 bytes in 64 bits: exactly the data given.
  const auto p = test::temp_dir() / "overflow.safetensors";
  test::write_bytes(p, raw_file(R"({"w":{"dtype":"F32","shape":[4611686018427388928,1],)"
                                R"("data_offsets":[0,4096]}})",
                                4096));
  EXPECT_NE(open_error(p).find("tensor 'w': shape [4611686018427388928,1] needs more bytes"),
            std::string::npos)
      << open_error(p);
}

TEST(Safetensors, TensorNamedTwiceIsRefused) {
  const auto p = test::temp_dir() / "twice.safetensors";
  test::write_bytes(p, raw_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                8));
  EXPECT_NE(open_error(p).find("header names 'w' twice"), std::string::npos) << open_error(p);
}

TEST(Safetensors, HeaderThatIsNotJsonIsNamed) {
  const auto p = test::temp_dir() / "junk.safetensors";
  test::write_bytes(p, raw_file("{not json", 0));
  EXPECT_NE(open_error(p).find("header is not valid JSON"), std::string::npos);
}

}  // namespace moe
