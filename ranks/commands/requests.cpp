#include "ranks/commands/requests.hpp"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>

#include "runtime/atomic_file.hpp"
#include "runtime/error.hpp"

namespace moe {
namespace {

std::vector<int> read_ids(const nlohmann::json& j, const char* field, const std::string& where,
                          int vocab_size) {
  MOE_CHECK(j.is_array(), where, ": field '", field, "' must be an array of token ids");
  MOE_CHECK(!j.empty(), where, ": field '", field, "' is empty");
  std::vector<int> ids;
  for (const auto& v : j) {
    MOE_CHECK(v.is_number_integer(), where, ": field '", field, "' holds a non-integer ", v.dump());
    const long long id = v.get<long long>();
    MOE_CHECK(id >= 0 && id < vocab_size, where, ": field '", field, "' has token id ", id,
              " outside the vocabulary [0, ", vocab_size, ")");
    ids.push_back(static_cast<int>(id));
  }
  return ids;
}

}  // namespace

std::vector<Request> read_requests(const std::string& path, const ModelConfig& config,
                                   const Tokenizer* tokenizer) {
  std::ifstream file;
  if (path != "-") {
    file.open(path);
    MOE_CHECK(file.good(), path, ": cannot open input file");
  }
  std::istream& in = path == "-" ? std::cin : file;
  std::vector<Request> requests;
  std::map<std::string, int> line_of_id;  // answers are matched to prompts by id: one each
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(number);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      MOE_FAIL(where, ": not valid JSON: ", e.what());
    }
    MOE_CHECK(j.is_object(), where, ": expected a JSON object");
    Request r;
    r.line = number;
    r.id = j.contains("id") ? j["id"] : nlohmann::json(requests.size());
    const auto [seen, fresh] = line_of_id.emplace(r.id.dump(), number);
    MOE_CHECK(fresh, where, ": id ", r.id.dump(), " was given on line ", seen->second,
              " too (a missing id is the request's position, from 0)");
    if (j.contains("input_ids")) {
      r.input_ids = read_ids(j["input_ids"], "input_ids", where, config.vocab_size);
    } else {
      MOE_CHECK(j.contains("text") && j["text"].is_string(), where,
                ": needs 'input_ids' or a string 'text'");
      MOE_CHECK(tokenizer != nullptr, where,
                ": has 'text' but the model directory has no spiece.model; give input_ids");
      r.text = j["text"].get<std::string>();
      r.input_ids = tokenizer->encode(r.text);
      for (int id : r.input_ids)
        MOE_CHECK(id < config.vocab_size, where, ": the tokenizer produced id ", id,
                  " >= vocab_size ", config.vocab_size);
    }
    if (j.contains("decoder_input_ids"))
      r.decoder_input_ids =
          read_ids(j["decoder_input_ids"], "decoder_input_ids", where, config.vocab_size);
    requests.push_back(std::move(r));
  }
  MOE_CHECK(!requests.empty(), path, ": no requests");
  return requests;
}

}  // namespace moe
