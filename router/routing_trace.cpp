#include "router/routing_trace.hpp"

#include <fstream>
#include <nlohmann/json.hpp>

#include "runtime/error.hpp"

namespace moe {

std::string routing_record_to_json_line(const RoutingRecord& r) {
  return nlohmann::json{{"batch", r.batch},
                        {"step", r.step},
                        {"layer", r.layer},
                        {"sequences", r.sequences},
                        {"seq_len", r.seq_len},
                        {"expert", r.expert},
                        {"probability", r.probability},
                        {"kept", r.kept},
                        {"entropy", r.entropy}}
      .dump();
}

std::vector<RoutingRecord> load_routing_trace(const std::string& path) {
  std::ifstream in(path);
  MOE_CHECK(in.good(), path, ": cannot open routing trace");
  std::vector<RoutingRecord> out;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.empty()) continue;
    try {
      const auto j = nlohmann::json::parse(line);
      RoutingRecord r;
      r.batch = j.at("batch");
      r.step = j.at("step");
      r.layer = j.at("layer");
      r.sequences = j.at("sequences");
      r.seq_len = j.at("seq_len");
      r.expert = j.at("expert").get<std::vector<int>>();
      r.probability = j.at("probability").get<std::vector<float>>();
      r.kept = j.at("kept").get<std::vector<uint8_t>>();
      r.entropy = j.at("entropy").get<std::vector<float>>();
      const size_t T = size_t(r.sequences) * r.seq_len;
      MOE_CHECK(r.expert.size() == T && r.probability.size() == T && r.kept.size() == T &&
                    r.entropy.size() == T,
                path, ":", number, ": arrays must hold sequences*seq_len = ", T, " values");
      out.push_back(std::move(r));
    } catch (const nlohmann::json::exception& e) {
      MOE_FAIL(path, ":", number, ": not a routing record: ", e.what());
    }
  }
  MOE_CHECK(!out.empty(), path, ": empty routing trace");
  return out;
}

std::vector<std::vector<double>> mean_expert_load(const std::vector<RoutingRecord>& trace,
                                                  int num_layers, int num_experts) {
  std::vector<std::vector<double>> load(num_layers, std::vector<double>(num_experts, 0));
  std::vector<int> calls(num_layers, 0);
  for (const auto& r : trace) {
    MOE_CHECK(r.layer >= 0 && r.layer < num_layers, "routing trace names sparse layer ", r.layer,
              " but the model has ", num_layers);
    ++calls[r.layer];
    for (size_t t = 0; t < r.expert.size(); ++t) {
      MOE_CHECK(r.expert[t] >= 0 && r.expert[t] < num_experts, "routing trace names expert ",
                r.expert[t], " but the model has ", num_experts);
      if (r.kept[t]) load[r.layer][r.expert[t]] += 1;
    }
  }
  for (int l = 0; l < num_layers; ++l)
    for (auto& v : load[l]) v /= std::max(calls[l], 1);
  return load;
}

}  // namespace moe
