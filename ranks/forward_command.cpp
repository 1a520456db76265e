// moe forward: one teacher-forced pass per batch, written as safetensors so any tool can compare
// encoder states, logits and router choices with a reference; alone or under mpirun.
#include <iostream>

#include <boost/program_options.hpp>

#include "model/decoder.hpp"
#include "model/safetensors.hpp"
#include "ranks/command_line.hpp"
#include "ranks/commands.hpp"
#include "ranks/requests.hpp"
#include "ranks/session.hpp"
#include "runtime/error.hpp"

namespace moe {
namespace po = boost::program_options;

namespace {

// Where each sparse layer sits, in HF's numbering: the stack and the block index.
struct SparseLayerPlace {
  std::string stack;
  int block;
  std::string tensor(const std::string& what) const {
    return stack + "_router_" + what + "." + std::to_string(block);
  }
};

std::vector<SparseLayerPlace> sparse_layer_places(const ModelConfig& c) {
  std::vector<SparseLayerPlace> places;
  for (int i = 0; i < c.num_layers; ++i)
    if (c.encoder_block_is_sparse(i)) places.push_back({"encoder", i});
  for (int i = 0; i < c.num_decoder_layers; ++i)
    if (c.decoder_block_is_sparse(i)) places.push_back({"decoder", i});
  return places;
}

}  // namespace

int run_forward(World& world, const std::vector<std::string>& args) {
  SessionOptions session_options;
  std::string input, output;
  int batch_size = 0;
  po::options_description opts("moe forward options");
  opts.add_options()("help,h", "show this help");
  session_options.add_to(opts);
  opts.add_options()
      ("input", po::value(&input)->required(),
       "JSONL: {\"id\", \"input_ids\"|\"text\", \"decoder_input_ids\"} per line")
      ("output", po::value(&output)->required(), "safetensors file to write")
      ("batch-size", po::value(&batch_size)->default_value(0), "requests per batch (0: all in one)");
  if (!parse_command_line(world, opts, args)) return 0;

  std::vector<Request> requests;
  session_options.check_inputs = [&](const ModelConfig& c) {
    auto tokenizer = load_tokenizer_if_present(session_options.model_dir, c.eos_token_id, c.pad_token_id);
    requests = read_requests(input, c, tokenizer.get());
    const size_t per_batch = batch_size > 0 ? size_t(batch_size) : requests.size();
    for (size_t i = 0; i < requests.size(); ++i) {
      const auto& first = requests[i - i % per_batch];
      MOE_CHECK(!requests[i].decoder_input_ids.empty() &&
                    requests[i].decoder_input_ids.size() == first.decoder_input_ids.size(),
                input, ": request ", requests[i].id.dump(),
                " needs decoder_input_ids of the same length as the others in its batch");
    }
  };
  Session session(world, session_options);
  if (!session.is_coordinator()) return session.exit_code();
  const ModelConfig& c = session.config();
  const size_t per_batch = batch_size > 0 ? size_t(batch_size) : requests.size();
  const auto places = sparse_layer_places(c);

  std::vector<OutputTensor> tensors;
  const auto start = Clock::now();
  for (size_t first = 0, k = 0; first < requests.size(); first += per_batch, ++k) {
    const size_t last = std::min(requests.size(), first + per_batch);
    const std::string prefix = per_batch < requests.size() ? "batch" + std::to_string(k) + "." : "";
    std::vector<std::vector<int>> inputs;
    std::vector<int> decoder_tokens;
    for (size_t i = first; i < last; ++i) {
      inputs.push_back(requests[i].input_ids);
      decoder_tokens.insert(decoder_tokens.end(), requests[i].decoder_input_ids.begin(),
                            requests[i].decoder_input_ids.end());
    }
    const Batch batch = make_batch(inputs, c.pad_token_id);
    const int B = batch.sequences, S = batch.seq_len, Sd = int(requests[first].decoder_input_ids.size());

    session.model().on_route = [&](int layer, int sequences, int seq_len,
                                   const std::vector<float>& logits, const GateResult& gate) {
      const std::vector<int64_t> shape{sequences, seq_len};
      const SparseLayerPlace& place = places.at(layer);
      OutputTensor index{prefix + place.tensor("expert_index"), shape, {}, {}, true};
      OutputTensor kept{prefix + place.tensor("kept"), shape, {}, {}, true};
      for (size_t t = 0; t < gate.expert.size(); ++t) {
        index.i64.push_back(gate.expert[t]);
        kept.i64.push_back(gate.kept[t]);
      }
      const size_t n = size_t(sequences) * seq_len * c.num_experts;
      tensors.push_back(std::move(index));
      tensors.push_back(std::move(kept));
      tensors.push_back({prefix + place.tensor("logits"), {sequences, seq_len, c.num_experts},
                         std::vector<float>(logits.begin(), logits.begin() + n), {}, false});
    };
    const EncoderOutput enc = encode(session.model(), batch);
    DecoderCache cache = start_decoder(session.model(), enc, Sd);
    std::vector<float> logits;
    decode(session.model(), cache, enc, decoder_tokens, Sd, /*last_only=*/false, logits);
    session.model().on_route = nullptr;

    tensors.push_back({prefix + "input_ids", {B, S}, {}, std::vector<int64_t>(batch.ids.begin(), batch.ids.end()), true});
    tensors.push_back({prefix + "attention_mask", {B, S}, {}, std::vector<int64_t>(batch.valid.begin(), batch.valid.end()), true});
    tensors.push_back({prefix + "encoder_last_hidden_state", {B, S, c.d_model}, enc.hidden, {}, false});
    tensors.push_back({prefix + "logits", {B, Sd, c.vocab_size}, logits, {}, false});
  }
  write_safetensors(output, tensors);
  std::cout << "wrote " << tensors.size() << " tensors to " << output << "\n";
  session.finish(0, seconds_since(start));
  return 0;
}

}  // namespace moe
