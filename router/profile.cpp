#include "router/profile.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "runtime/error.hpp"

namespace moe {

double LatencyCurve::at(double n) const {
  if (n <= 0 || tokens.empty()) return 0;
  if (tokens.size() == 1) return median_us[0] * n / tokens[0];
  size_t i = 1;
  while (i + 1 < tokens.size() && tokens[i] < n) ++i;
  const double x0 = tokens[i - 1], x1 = tokens[i], y0 = median_us[i - 1], y1 = median_us[i];
  const double y = y0 + (y1 - y0) * (n - x0) / (x1 - x0);
  return std::max(y, 0.0);
}

double Contention::at(double tokens) const {
  if (by_tokens.tokens.empty()) return std::max(value, 0.0);
  return by_tokens.at(
      std::clamp(std::max(tokens, 1.0), by_tokens.tokens.front(), by_tokens.tokens.back()));
}

const RankProfile& Profile::of(int rank) const {
  for (const auto& r : ranks)
    if (r.rank == rank) return r;
  MOE_FAIL("the profile has no entry for rank ", rank);
}

bool Profile::has(int rank) const {
  for (const auto& r : ranks)
    if (r.rank == rank) return true;
  return false;
}

namespace {

LatencyCurve parse_curve(const nlohmann::json& j, const char* x, const char* y,
                         const std::string& where) {
  LatencyCurve c;
  c.tokens = j.at(x).get<std::vector<double>>();
  c.median_us = j.at(y).get<std::vector<double>>();
  MOE_CHECK(!c.tokens.empty() && c.tokens.size() == c.median_us.size(), where, ": ", x, " and ", y,
            " must be non-empty and of one length");
  for (size_t i = 0; i < c.tokens.size(); ++i) {
    MOE_CHECK(c.tokens[i] > 0 && (i == 0 || c.tokens[i] > c.tokens[i - 1]), where, ": ", x,
              " must be positive and increasing");
    MOE_CHECK(c.median_us[i] >= 0, where, ": ", y, " must be >= 0 (has ", c.median_us[i], ")");
  }
  return c;
}

ServingCurves parse_serving(const nlohmann::json& j, const std::string& source) {
  const std::string where = source + ": serving";
  ServingCurves s;
  s.decode_attention = parse_curve(j, "decode_sequences", "decode_attention_us", where);
  s.decode_experts = parse_curve(j, "decode_sequences", "decode_experts_us", where);
  s.encode_attention = parse_curve(j, "encode_tokens", "encode_attention_us", where);
  s.encode_experts = parse_curve(j, "encode_tokens", "encode_experts_us", where);
  s.decode_dense = parse_curve(j, "decode_sequences", "decode_dense_us", where);
  s.encode_dense = parse_curve(j, "encode_tokens", "encode_dense_us", where);
  s.decode_lm_head = parse_curve(j, "decode_sequences", "decode_lm_head_us", where);
  s.decode_lm_head_exchanges = j.at("decode_lm_head_exchanges").get<double>();
  s.decode_dense_exchanges = j.at("decode_dense_exchanges").get<double>();
  s.encode_dense_exchanges = j.at("encode_dense_exchanges").get<double>();
  s.decode_exchanges = j.at("decode_exchanges").get<double>();
  s.encode_exchanges = j.at("encode_exchanges").get<double>();
  s.input_tokens = j.at("input_tokens").get<int>();
  s.threads = j.at("threads").get<int>();
  s.dense_ffn = j.at("dense_ffn").get<std::string>();
  s.lm_head_on_experts = j.at("lm_head_on_experts").get<double>();
  MOE_CHECK(s.decode_dense_exchanges >= 0 && s.decode_lm_head_exchanges >= 0 &&
                s.decode_dense_exchanges + s.decode_lm_head_exchanges <= s.decode_exchanges &&
                s.encode_dense_exchanges >= 0 && s.encode_dense_exchanges <= s.encode_exchanges,
            where, ": dense and lm_head exchanges must be from 0 to the exchanges");
  MOE_CHECK(s.input_tokens >= 1 && s.threads >= 1, where,
            ": input_tokens and threads must be >= 1");
  constexpr double kMostExchanges = 1e6;  // far above any model's, far below int's range
  MOE_CHECK(s.decode_exchanges <= kMostExchanges && s.encode_exchanges <= kMostExchanges, where,
            ": more exchanges per pass than any model makes");
  MOE_CHECK(s.lm_head_on_experts >= 0 && s.lm_head_on_experts < 1, where,
            ": lm_head_on_experts must be from 0 to below 1");
  return s;
}

nlohmann::json serving_to_json(const ServingCurves& s) {
  return {{"decode_sequences", s.decode_attention.tokens},
          {"decode_attention_us", s.decode_attention.median_us},
          {"decode_experts_us", s.decode_experts.median_us},
          {"encode_tokens", s.encode_attention.tokens},
          {"encode_attention_us", s.encode_attention.median_us},
          {"encode_experts_us", s.encode_experts.median_us},
          {"decode_dense_us", s.decode_dense.median_us},
          {"decode_lm_head_us", s.decode_lm_head.median_us},
          {"decode_lm_head_exchanges", s.decode_lm_head_exchanges},
          {"encode_dense_us", s.encode_dense.median_us},
          {"decode_exchanges", s.decode_exchanges},
          {"decode_dense_exchanges", s.decode_dense_exchanges},
          {"encode_dense_exchanges", s.encode_dense_exchanges},
          {"encode_exchanges", s.encode_exchanges},
          {"input_tokens", s.input_tokens},
          {"threads", s.threads},
          {"dense_ffn", s.dense_ffn},
          {"lm_head_on_experts", s.lm_head_on_experts}};
}

}  // namespace

Profile parse_profile(const nlohmann::json& j, const std::string& source) {
  Profile p;
  try {
    const auto& m = j.at("model");
    p.d_model = m.at("d_model").get<int>();
    p.d_ff = m.at("d_ff").get<int>();
    p.num_experts = m.at("num_experts").get<int>();
    p.num_moe_layers = m.at("num_moe_layers").get<int>();
    MOE_CHECK(p.d_model >= 1 && p.num_experts >= 1, source,
              ": model: d_model and num_experts must be >= 1");
    for (const auto& r : j.at("ranks")) {
      RankProfile rp;
      rp.rank = r.at("rank").get<int>();
      rp.host = r.value("host", "");
      rp.device = r.at("device").get<std::string>();
      rp.expert.tokens = r.at("expert_tokens").get<std::vector<double>>();
      rp.expert.median_us = r.at("expert_median_us").get<std::vector<double>>();
      if (r.contains("expert_cpu_us")) {
        rp.expert_cpu.tokens = rp.expert.tokens;
        rp.expert_cpu.median_us = r.at("expert_cpu_us").get<std::vector<double>>();
        MOE_CHECK(rp.expert_cpu.median_us.size() == rp.expert.tokens.size(), source, ": rank ",
                  rp.rank, ": expert_cpu_us and expert_tokens differ in length");
        for (double us : rp.expert_cpu.median_us)
          MOE_CHECK(us >= 0, source, ": rank ", rp.rank, ": expert_cpu_us must be >= 0 (has ", us,
                    ")");
      }
      rp.link_latency_us = r.at("link_latency_us").get<double>();
      rp.link_bytes_per_us = r.at("link_bytes_per_us").get<double>();
      rp.memory_bytes = r.value("memory_bytes", size_t(0));
      rp.call_cpu_us = r.value("call_cpu_us", 0.0);
      MOE_CHECK(rp.call_cpu_us >= 0, source, ": rank ", rp.rank, ": call_cpu_us must be >= 0 (has ",
                rp.call_cpu_us, ")");
      rp.receive_us = r.value("receive_us", 0.0);
      MOE_CHECK(rp.receive_us >= 0, source, ": rank ", rp.rank, ": receive_us must be >= 0 (has ",
                rp.receive_us, ")");
      rp.expert_load_us = r.value("expert_load_us", 0.0);
      MOE_CHECK(rp.expert_load_us >= 0, source, ": rank ", rp.rank,
                ": expert_load_us must be >= 0 (has ", rp.expert_load_us, ")");
      MOE_CHECK(rp.expert.tokens.size() == rp.expert.median_us.size() && !rp.expert.tokens.empty(),
                source, ": rank ", rp.rank,
                ": expert_tokens and expert_median_us differ in length");
      for (size_t i = 1; i < rp.expert.tokens.size(); ++i)
        MOE_CHECK(rp.expert.tokens[i] > rp.expert.tokens[i - 1], source, ": rank ", rp.rank,
                  ": expert_tokens must increase");
      MOE_CHECK(rp.link_bytes_per_us > 0, source, ": rank ", rp.rank,
                ": link_bytes_per_us must be > 0");
      p.ranks.push_back(std::move(rp));
    }
    if (j.contains("serving")) p.serving = parse_serving(j.at("serving"), source);
    if (j.contains("contention")) {
      const auto& c = j.at("contention");
      Contention& k = p.contention;
      k.value = c.at("value").get<double>();
      MOE_CHECK(std::isfinite(k.value), source, ": contention: value must be a number");
      for (const auto& point : c.value("by_tokens", nlohmann::json::array())) {
        const double tokens = point.at("tokens").get<double>();
        const double value = point.at("value").get<double>();
        MOE_CHECK(
            tokens > 0 && std::isfinite(value) &&
                (k.by_tokens.tokens.empty() || tokens > k.by_tokens.tokens.back()),
            source,
            ": contention: by_tokens must have positive, increasing tokens and finite values");
        k.by_tokens.tokens.push_back(tokens);
        k.by_tokens.median_us.push_back(value);
      }
      k.json = c.dump();
    }
  } catch (const nlohmann::json::exception& e) {
    MOE_FAIL(source, ": not a profile: ", e.what());
  }
  return p;
}

Profile load_profile(const std::string& path) {
  std::ifstream in(path);
  MOE_CHECK(in.good(), path, ": cannot open profile");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    MOE_FAIL(path, ": not valid JSON: ", e.what());
  }
  return parse_profile(j, path);
}

nlohmann::json profile_to_json(const Profile& p) {
  nlohmann::json ranks = nlohmann::json::array();
  for (const auto& r : p.ranks) {
    ranks.push_back({{"rank", r.rank},
                     {"host", r.host},
                     {"device", r.device},
                     {"expert_tokens", r.expert.tokens},
                     {"expert_median_us", r.expert.median_us},
                     {"link_latency_us", r.link_latency_us},
                     {"link_bytes_per_us", r.link_bytes_per_us},
                     {"memory_bytes", r.memory_bytes}});
    if (!r.expert_cpu.median_us.empty()) ranks.back()["expert_cpu_us"] = r.expert_cpu.median_us;
    if (r.call_cpu_us > 0) ranks.back()["call_cpu_us"] = r.call_cpu_us;
    if (r.receive_us > 0) ranks.back()["receive_us"] = r.receive_us;
    if (r.expert_load_us > 0) ranks.back()["expert_load_us"] = r.expert_load_us;
  }
  nlohmann::json j = {{"format", "moe-profile/1"},
                      {"model",
                       {{"d_model", p.d_model},
                        {"d_ff", p.d_ff},
                        {"num_experts", p.num_experts},
                        {"num_moe_layers", p.num_moe_layers}}},
                      {"ranks", ranks}};
  if (!p.serving.empty()) j["serving"] = serving_to_json(p.serving);
  const Contention& k = p.contention;
  if (!k.json.empty()) {
    j["contention"] = nlohmann::json::parse(k.json);
  } else if (k.value >= 0) {
    j["contention"] = {{"value", k.value}};
    nlohmann::json by_tokens = nlohmann::json::array();
    for (size_t i = 0; i < k.by_tokens.tokens.size(); ++i)
      by_tokens.push_back({{"tokens", k.by_tokens.tokens[i]}, {"value", k.by_tokens.median_us[i]}});
    if (!by_tokens.empty()) j["contention"]["by_tokens"] = by_tokens;
  }
  return j;
}

Profile merge_profiles(const Profile& a, const Profile& b) {
  MOE_CHECK(a.d_model == b.d_model && a.d_ff == b.d_ff && a.num_experts == b.num_experts,
            "profiles of different model shapes cannot be merged");
  Profile out = a;
  for (const auto& r : b.ranks) {
    bool replaced = false;
    for (auto& mine : out.ranks)
      if (mine.rank == r.rank) {
        mine = r;
        replaced = true;
      }
    if (!replaced) out.ranks.push_back(r);
  }
  if (!b.serving.empty()) out.serving = b.serving;
  if (b.contention.value >= 0) out.contention = b.contention;
  return out;
}

}  // namespace moe
