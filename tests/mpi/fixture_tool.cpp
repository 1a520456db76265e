// Helpers for the distributed tests: turn a reference fixture into a requests file, write expert
// maps with replicas, and compare two runs' outputs (safetensors within a tolerance times each
// tensor's largest magnitude, JSONL ids exactly). Usage:
//   fixture_tool requests FIXTURE_DIR > requests.jsonl
//   fixture_tool replicated-map MODEL_DIR WORLD_SIZE [FIRST_EXPERT_RANK] > map.json
//       (every expert on every expert rank; the expert ranks start at 1 unless given)
//   fixture_tool compare A B TOLERANCE   (exit 1 and say what differs)
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "model/config.hpp"
#include "model/safetensors.hpp"
#include "model/weights.hpp"
#include "router/expert_map.hpp"

using namespace moe;

namespace {

int requests(const std::string& dir) {
  SafetensorsFile f(dir + "/expected.safetensors");
  const auto ids = f.as_int64(f.info("input_ids"));
  const auto mask = f.as_int64(f.info("attention_mask"));
  const auto dec = f.as_int64(f.info("decoder_input_ids"));
  const auto shape = f.info("input_ids").shape, dec_shape = f.info("decoder_input_ids").shape;
  for (int64_t b = 0; b < shape[0]; ++b) {
    std::vector<int64_t> in, d;
    for (int64_t s = 0; s < shape[1]; ++s)
      if (mask[b * shape[1] + s]) in.push_back(ids[b * shape[1] + s]);
    for (int64_t s = 0; s < dec_shape[1]; ++s) d.push_back(dec[b * dec_shape[1] + s]);
    std::cout << nlohmann::json{{"id", b}, {"input_ids", in}, {"decoder_input_ids", d}}.dump()
              << "\n";
  }
  return 0;
}

int replicated_map(const std::string& model_dir, int world_size, int first) {
  const ModelConfig c = load_model_config(model_dir + "/config.json");
  ExpertMap map;
  map.replicas.assign(count_moe_layers(c), std::vector<std::vector<int>>(c.num_experts));
  const int n = world_size - first;
  for (auto& layer : map.replicas)
    for (size_t e = 0; e < layer.size(); ++e)
      for (int r = 1; r <= n; ++r) layer[e].push_back(first + int(e + r) % n);
  std::cout << expert_map_to_json(map).dump() << "\n";
  return 0;
}

int compare_safetensors(const std::string& a_path, const std::string& b_path, double tolerance) {
  SafetensorsFile a(a_path), b(b_path);
  int failures = 0;
  double largest = 0;  // of worst / scale over the tensors
  if (a.names() != b.names()) {
    std::cout << "tensor names differ\n";
    return 1;
  }
  for (const auto& name : a.names()) {
    const auto &ia = a.info(name), &ib = b.info(name);
    if (ia.shape != ib.shape || ia.dtype != ib.dtype) {
      std::cout << name << ": shape or dtype differs\n";
      ++failures;
      continue;
    }
    if (ia.dtype == DType::I64) {
      if (a.as_int64(ia) != b.as_int64(ib)) {
        std::cout << name << ": integer values differ\n";
        ++failures;
      }
      continue;
    }
    std::vector<float> sa, sb;
    const float *pa = a.as_float32(ia, sa), *pb = b.as_float32(ib, sb);
    // Relative to the tensor's largest magnitude (at least 1): float32 kernels that sum in a
    // different order (another row count per expert, sgemv vs sgemm) differ by rounding, which
    // grows with the values; a wrong expert or row differs by their own size.
    double worst = 0, scale = 1;
    for (int64_t i = 0; i < ia.numel(); ++i) {
      const double d = std::fabs(double(pa[i]) - double(pb[i]));
      worst = std::isnan(d) ? INFINITY : std::max(worst, d);  // a NaN on either side fails
      scale = std::max(scale, double(std::fabs(pa[i])));
    }
    largest = std::max(largest, worst / scale);
    if (!(worst <= tolerance * scale)) {
      std::cout << name << ": max abs difference " << worst << " > " << tolerance << " x " << scale
                << " (the largest magnitude)\n";
      ++failures;
    }
  }
  std::cout << a.names().size() - failures << " tensors equal, " << failures
            << " differ (largest difference / magnitude: " << largest << ")\n";
  return failures ? 1 : 0;
}

int compare_jsonl(const std::string& a_path, const std::string& b_path) {
  std::ifstream a(a_path), b(b_path);
  std::string la, lb;
  int line = 0, failures = 0;
  while (std::getline(a, la)) {
    ++line;
    if (!std::getline(b, lb)) {
      std::cout << b_path << " has fewer lines\n";
      return 1;
    }
    const auto ja = nlohmann::json::parse(la), jb = nlohmann::json::parse(lb);
    if (ja["id"] != jb["id"] || ja["output_ids"] != jb["output_ids"]) {
      std::cout << "line " << line << ": " << ja["output_ids"].dump() << " vs "
                << jb["output_ids"].dump() << "\n";
      ++failures;
    }
  }
  if (std::getline(b, lb)) {
    std::cout << b_path << " has more lines\n";
    return 1;
  }
  std::cout << line - failures << " generations equal, " << failures << " differ\n";
  return failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "requests" && argc == 3) return requests(argv[2]);
    if (cmd == "replicated-map" && (argc == 4 || argc == 5))
      return replicated_map(argv[2], std::stoi(argv[3]), argc == 5 ? std::stoi(argv[4]) : 1);
    if (cmd == "compare" && argc == 5) {
      const std::string a = argv[2];
      if (a.size() > 6 && a.substr(a.size() - 6) == ".jsonl") return compare_jsonl(a, argv[3]);
      return compare_safetensors(a, argv[3], std::stod(argv[4]));
    }
    std::cerr
        << "usage: fixture_tool requests DIR | replicated-map MODEL_DIR N | compare A B TOL\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "fixture_tool: " << e.what() << "\n";
    return 1;
  }
}
