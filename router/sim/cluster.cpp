#include "router/sim/cluster.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "runtime/error.hpp"

namespace moe::sim {

double ContentionCurve::at(double n, bool same_experts) const {
  const auto& v = same_experts ? same : different;
  if (n <= tokens.front()) return v.front();
  if (n >= tokens.back()) return v.back();
  size_t i = 1;
  while (tokens[i] < n) ++i;
  return v[i - 1] + (v[i] - v[i - 1]) * (n - tokens[i - 1]) / (tokens[i] - tokens[i - 1]);
}

bool ContentionCurve::none() const {
  for (size_t i = 0; i < tokens.size(); ++i)
    if (different[i] != 0 || same[i] != 0) return false;
  return true;
}

namespace {

using nlohmann::json;

LinkSpec parse_link(const json& j, const std::string& where, bool* from_profile) {
  *from_profile = j.value("from_profile", false);
  LinkSpec link;
  if (*from_profile) return link;
  link.latency_us = j.at("latency_us").get<double>();
  const double gbytes_per_s = j.at("gbytes_per_s").get<double>();
  MOE_CHECK(link.latency_us >= 0, where, ": latency_us must be >= 0");
  MOE_CHECK(gbytes_per_s > 0, where, ": gbytes_per_s must be > 0");
  link.bytes_per_us = gbytes_per_s * 1e3;  // 1 GB/s = 1e9 B / 1e6 µs
  return link;
}

ContentionCurve parse_contention(const json& j, const std::string& where) {
  ContentionCurve c;
  if (j.is_number()) {
    c.different = c.same = {j.get<double>()};
  } else {
    MOE_CHECK(j.is_object(), where,
              ": must be a number or {\"tokens\", \"different_experts\", \"same_experts\"}");
    c.tokens = j.at("tokens").get<std::vector<double>>();
    c.different = j.at("different_experts").get<std::vector<double>>();
    c.same = j.at("same_experts").get<std::vector<double>>();
    MOE_CHECK(!c.tokens.empty() && c.different.size() == c.tokens.size() &&
                  c.same.size() == c.tokens.size(),
              where, ": tokens, different_experts and same_experts need the same, non-zero length");
    for (size_t i = 1; i < c.tokens.size(); ++i)
      MOE_CHECK(c.tokens[i] > c.tokens[i - 1], where, ": tokens must increase");
  }
  // On the same expert the other rank may warm the shared cache: a speedup, above -1.
  for (size_t i = 0; i < c.tokens.size(); ++i)
    MOE_CHECK(c.different[i] >= 0 && c.same[i] > -1, where,
              ": different_experts values must be >= 0 and same_experts values > -1");
  return c;
}

DeviceClass parse_class(const std::string& name, const json& j, const std::string& source,
                        const Profile& profile) {
  const std::string where = source + ": class '" + name + "'";
  DeviceClass c;
  c.name = name;
  c.speed = j.value("speed", 1.0);
  MOE_CHECK(c.speed > 0, where, ": speed must be > 0");
  double call_cpu_us = 0;  // the profile rank's, where there is one
  if (j.contains("expert_tokens")) {
    c.expert.tokens = j.at("expert_tokens").get<std::vector<double>>();
    c.expert.median_us = j.at("expert_median_us").get<std::vector<double>>();
    c.device = j.value("device", name);
  } else {
    MOE_CHECK(j.contains("profile_rank"), where,
              ": needs profile_rank (a rank of the profile) or expert_tokens/expert_median_us");
    const int rank = j.at("profile_rank").get<int>();
    Profile other;
    const Profile* from = &profile;
    if (j.contains("profile")) {
      std::filesystem::path path = j.at("profile").get<std::string>();
      if (path.is_relative()) path = std::filesystem::path(source).parent_path() / path;
      other = load_profile(path.string());
      MOE_CHECK(other.d_model == profile.d_model && other.d_ff == profile.d_ff, where, ": profile ",
                path.string(), " is of d_model ", other.d_model, ", d_ff ", other.d_ff,
                " but --profile is of ", profile.d_model, ", ", profile.d_ff);
      from = &other;
    }
    MOE_CHECK(from->has(rank), where, ": the profile has no rank ", rank);
    const RankProfile& r = from->of(rank);
    c.expert = r.expert;
    c.full_speed = r.expert_cpu;
    call_cpu_us = r.call_cpu_us;
    c.receive_us = r.receive_us;
    c.device = j.value("device", r.device);
    c.memory_bytes = r.memory_bytes;
    c.has_profiled_link = true;
    c.profiled_link = {r.link_latency_us, r.link_bytes_per_us};
  }
  MOE_CHECK(!c.expert.tokens.empty() && c.expert.tokens.size() == c.expert.median_us.size(), where,
            ": expert_tokens and expert_median_us must be non-empty and of equal length");
  for (size_t i = 1; i < c.expert.tokens.size(); ++i)
    MOE_CHECK(c.expert.tokens[i] > c.expert.tokens[i - 1], where, ": expert_tokens must increase");
  for (auto& us : c.expert.median_us) {
    MOE_CHECK(us >= 0, where, ": expert_median_us must be >= 0");
    us /= c.speed;
  }
  c.receive_us = j.value("receive_us", c.receive_us);
  MOE_CHECK(c.receive_us >= 0, where, ": receive_us must be >= 0");
  if (j.contains("memory_gib"))
    c.memory_bytes = size_t(j.at("memory_gib").get<double>() * (1ull << 30));
  // "cpu:THREADS@CORES": with the profile's CPU-time curve the quota's stalls are simulated
  // (CpuQuota); without it the rank runs CORES / THREADS of the time, which its wall-time curve
  // already holds, and occupies the memory system that fraction of it.
  const auto at = c.device.find('@');
  if (c.device.rfind("cpu:", 0) == 0 && at != std::string::npos) {
    try {
      const double threads = std::stod(c.device.substr(4, at - 4)),
                   cores = std::stod(c.device.substr(at + 1));
      if (threads > 0 && cores > 0 && !c.full_speed.median_us.empty() &&
          j.value("model_quota", true)) {
        c.quota.cores = cores;
        c.quota.threads = threads;
        c.quota.call_cpu_us = call_cpu_us;
        for (auto& us : c.full_speed.median_us) us /= threads * c.speed;
      } else if (threads > 0 && cores > 0) {
        c.memory_share = std::min(1.0, cores / threads);
      }
    } catch (const std::exception&) {
    }
  }
  c.memory_share = j.value("memory_share", c.memory_share);
  MOE_CHECK(c.memory_share > 0 && c.memory_share <= 1, where, ": memory_share must be in (0, 1]");
  return c;
}

}  // namespace

double PollModel::notice(double since, double at) const {
  if (at <= since + yield_us) return std::max(since, at);
  double t = since + yield_us;
  for (double nap = first_nap_us; nap < max_nap_us; nap = std::min(2 * nap, max_nap_us)) {
    t += nap + nap_slack_us;
    if (t >= at) return t;
  }
  const double period = max_nap_us + nap_slack_us;
  if (at <= t + period) return t + period;  // the first maximal nap: still in phase
  return at + period / 2;
}

LinkSpec ClusterConfig::link(int a, int b) const {
  const bool intra = same_node(a, b);
  if (intra && nodes[ranks[a].node].has_intra_link) return nodes[ranks[a].node].intra_link;
  if (!links_from_profile[intra ? 0 : 1]) return intra ? intra_node : inter_node;
  const int expert = ranks.at(a).coordinator ? b : a;
  return class_of(expert).profiled_link;
}

std::vector<int> ClusterConfig::expert_ranks() const {
  std::vector<int> out;
  for (int r = coordinators; r < world_size(); ++r) out.push_back(r);
  return out;
}

ClusterConfig parse_cluster(const json& j, const std::string& source, const Profile& profile) {
  ClusterConfig c;
  c.source = source;
  try {
    MOE_CHECK(j.value("format", "") == "moe-cluster/1", source,
              ": expected \"format\": \"moe-cluster/1\"");
    c.description = j.value("description", "");
    std::map<std::string, int> class_index;
    for (const auto& [name, spec] : j.at("classes").items()) {
      class_index[name] = int(c.classes.size());
      c.classes.push_back(parse_class(name, spec, source, profile));
    }
    const auto& links = j.at("links");
    c.intra_node =
        parse_link(links.at("intra_node"), source + ": links.intra_node", &c.links_from_profile[0]);
    c.inter_node =
        parse_link(links.at("inter_node"), source + ": links.inter_node", &c.links_from_profile[1]);
    c.message_overhead_us = j.value("message_overhead_us", 0.0);
    c.coordinator_gap_us = j.value("coordinator_gap_us", 0.0);
    const std::string combine = j.value("combine", "pull");
    MOE_CHECK(combine == "pull" || combine == "push", source,
              ": combine must be \"pull\" or \"push\"");
    c.combine_push = combine == "push";
    c.cfs_tick_us = j.value("cfs_tick_us", c.cfs_tick_us);
    MOE_CHECK(c.cfs_tick_us > 0, source, ": cfs_tick_us must be > 0");
    const double copy_gbytes_per_s = j.value("coordinator_copy_gbytes_per_s", 0.0);
    MOE_CHECK(copy_gbytes_per_s >= 0, source, ": coordinator_copy_gbytes_per_s must be >= 0");
    c.copy_bytes_per_us = copy_gbytes_per_s * 1e3;
    if (j.contains("poll")) {
      const auto& p = j.at("poll");
      c.has_poll = true;
      c.poll.yield_us = p.value("yield_us", 0.0);
      c.poll.first_nap_us = p.value("first_nap_us", 10.0);
      c.poll.max_nap_us = p.value("max_nap_us", 500.0);
      c.poll.nap_slack_us = p.value("nap_slack_us", 0.0);
      MOE_CHECK(c.poll.yield_us >= 0 && c.poll.first_nap_us > 0 &&
                    c.poll.max_nap_us >= c.poll.first_nap_us && c.poll.nap_slack_us >= 0,
                source,
                ": poll: needs yield_us >= 0, 0 < first_nap_us <= max_nap_us, nap_slack_us >= 0");
    }
    MOE_CHECK(c.message_overhead_us >= 0 && c.coordinator_gap_us >= 0, source,
              ": message_overhead_us and coordinator_gap_us must be >= 0");

    // Nodes expand by their count; coordinators are numbered first, then expert ranks.
    std::vector<std::pair<int, int>> expert_slots;  // (node, class)
    std::vector<int> coordinator_nodes;
    for (const auto& spec : j.at("nodes")) {
      const int count = spec.value("count", 1);
      MOE_CHECK(count >= 1, source, ": a node's count must be >= 1");
      for (int k = 0; k < count; ++k) {
        Node node;
        node.name = spec.value("name", "node") + (count > 1 ? std::to_string(k) : "");
        node.cores = spec.value("cores", 0);
        MOE_CHECK(node.cores >= 0, source, ": node ", node.name, ": cores must be >= 0");
        if (spec.contains("contention"))
          node.contention = parse_contention(spec.at("contention"),
                                             source + ": node " + node.name + ": contention");
        if (spec.contains("intra_node")) {
          bool from_profile = false;
          node.intra_link =
              parse_link(spec.at("intra_node"), source + ": node " + node.name + ": intra_node",
                         &from_profile);
          MOE_CHECK(!from_profile, source, ": node ", node.name,
                    ": a node's own intra_node link needs numbers");
          node.has_intra_link = true;
        }
        const int index = int(c.nodes.size());
        c.nodes.push_back(node);
        for (int i = 0; i < spec.value("coordinators", 0); ++i) coordinator_nodes.push_back(index);
        for (const auto& group : spec.value("experts", json::array())) {
          const std::string cls = group.at("class").get<std::string>();
          MOE_CHECK(class_index.count(cls), source, ": node ", node.name, " names class '", cls,
                    "', which is not among the classes");
          for (int i = 0; i < group.value("count", 1); ++i)
            expert_slots.push_back({index, class_index[cls]});
        }
      }
    }
    c.coordinators = int(coordinator_nodes.size());
    c.experts = int(expert_slots.size());
    MOE_CHECK(c.coordinators >= 1, source, ": no node has a coordinator");
    MOE_CHECK(c.experts >= 1, source, ": no node has expert ranks");
    for (int node : coordinator_nodes) c.ranks.push_back({int(c.ranks.size()), node, true, -1});
    for (const auto& [node, cls] : expert_slots)
      c.ranks.push_back({int(c.ranks.size()), node, false, cls});
    for (int i = 0; i < 2; ++i)
      if (c.links_from_profile[i])
        for (int r = c.coordinators; r < c.world_size(); ++r)
          MOE_CHECK(c.class_of(r).has_profiled_link, source, ": links.", i ? "inter" : "intra",
                    "_node come from the profile, but class '", c.class_of(r).name,
                    "' has no profile rank");
  } catch (const nlohmann::json::exception& e) {
    MOE_FAIL(source, ": not a cluster config: ", e.what());
  }
  return c;
}

ClusterConfig load_cluster(const std::string& path, const Profile& profile) {
  std::ifstream in(path);
  MOE_CHECK(in.good(), path, ": cannot open cluster config");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::parse_error& e) {
    MOE_FAIL(path, ": not valid JSON: ", e.what());
  }
  return parse_cluster(j, path, profile);
}

Profile cluster_profile(const ClusterConfig& c, const Profile& measured) {
  Profile p;
  p.d_model = measured.d_model;
  p.d_ff = measured.d_ff;
  p.num_experts = measured.num_experts;
  p.num_moe_layers = measured.num_moe_layers;
  for (int r = c.first_expert_rank(); r < c.world_size(); ++r) {
    const DeviceClass& cls = c.class_of(r);
    RankProfile rp;
    rp.rank = r;
    rp.host = c.nodes[c.ranks[r].node].name;
    rp.device = cls.device;
    rp.expert = cls.expert;
    const LinkSpec link = c.link(0, r);
    rp.link_latency_us = link.latency_us;
    rp.link_bytes_per_us = link.bytes_per_us;
    rp.memory_bytes = cls.memory_bytes;
    p.ranks.push_back(std::move(rp));
  }
  return p;
}

}  // namespace moe::sim
