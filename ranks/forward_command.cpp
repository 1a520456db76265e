// moe forward: one teacher-forced pass per batch, written as safetensors so any tool can compare
// encoder states, logits and router choices with a reference.
#include <iostream>

#include <boost/program_options.hpp>

#include "model/decoder.hpp"
#include "model/safetensors.hpp"
#include "ranks/commands.hpp"
#include "ranks/local_model.hpp"
#include "ranks/requests.hpp"
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

int run_forward(const std::vector<std::string>& args) {
  std::string model_dir, input, output;
  int threads = 1, batch_size = 0;
  po::options_description opts("moe forward options");
  opts.add_options()("help,h", "show this help")
      ("model", po::value(&model_dir)->required(), "model directory")
      ("input", po::value(&input)->required(),
       "JSONL: {\"id\", \"input_ids\"|\"text\", \"decoder_input_ids\"} per line")
      ("output", po::value(&output)->required(), "safetensors file to write")
      ("batch-size", po::value(&batch_size)->default_value(0), "requests per batch (0: all in one)")
      ("threads", po::value(&threads)->default_value(1), "CPU threads");
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(opts).run(), vm);
  if (vm.count("help")) {
    std::cout << opts << "\n";
    return 0;
  }
  po::notify(vm);

  LocalModel lm(model_dir, "cpu:" + std::to_string(threads));
  const ModelConfig& c = lm.config();
  const auto requests = read_requests(input, c, lm.tokenizer.get());
  const size_t per_batch = batch_size > 0 ? size_t(batch_size) : requests.size();
  const auto places = sparse_layer_places(c);

  std::vector<OutputTensor> tensors;
  for (size_t first = 0, k = 0; first < requests.size(); first += per_batch, ++k) {
    const size_t last = std::min(requests.size(), first + per_batch);
    const std::string prefix =
        per_batch < requests.size() ? "batch" + std::to_string(k) + "." : "";
    std::vector<std::vector<int>> inputs;
    std::vector<int> decoder_tokens;
    const size_t dec_len = requests[first].decoder_input_ids.size();
    for (size_t i = first; i < last; ++i) {
      inputs.push_back(requests[i].input_ids);
      MOE_CHECK(requests[i].decoder_input_ids.size() == dec_len && dec_len > 0, input,
                ": request ", requests[i].id.dump(),
                " needs decoder_input_ids of the same length as the others in its batch");
      decoder_tokens.insert(decoder_tokens.end(), requests[i].decoder_input_ids.begin(),
                            requests[i].decoder_input_ids.end());
    }
    const Batch batch = make_batch(inputs, c.pad_token_id);
    const int B = batch.sequences, S = batch.seq_len, Sd = int(dec_len);

    lm.model.on_route = [&](int layer, int sequences, int seq_len, const std::vector<float>& logits,
                            const GateResult& gate) {
      const std::vector<int64_t> shape{sequences, seq_len};
      const SparseLayerPlace& place = places.at(layer);
      OutputTensor index{prefix + place.tensor("expert_index"), shape, {}, {}, true};
      OutputTensor kept{prefix + place.tensor("kept"), shape, {}, {}, true};
      for (size_t t = 0; t < gate.expert.size(); ++t) {
        index.i64.push_back(gate.expert[t]);
        kept.i64.push_back(gate.kept[t]);
      }
      OutputTensor raw{prefix + place.tensor("logits"), {sequences, seq_len, c.num_experts},
                       std::vector<float>(logits.begin(),
                                          logits.begin() + size_t(sequences) * seq_len * c.num_experts),
                       {}, false};
      tensors.push_back(std::move(index));
      tensors.push_back(std::move(kept));
      tensors.push_back(std::move(raw));
    };
    const EncoderOutput enc = encode(lm.model, batch);
    DecoderCache cache = start_decoder(lm.model, enc, Sd);
    std::vector<float> logits;
    decode(lm.model, cache, enc, decoder_tokens, Sd, /*last_only=*/false, logits);
    lm.model.on_route = nullptr;

    std::vector<int64_t> ids(batch.ids.begin(), batch.ids.end());
    std::vector<int64_t> mask(batch.valid.begin(), batch.valid.end());
    tensors.push_back({prefix + "input_ids", {B, S}, {}, ids, true});
    tensors.push_back({prefix + "attention_mask", {B, S}, {}, mask, true});
    tensors.push_back({prefix + "encoder_last_hidden_state", {B, S, c.d_model}, enc.hidden, {}, false});
    tensors.push_back({prefix + "logits", {B, Sd, c.vocab_size}, logits, {}, false});
  }
  write_safetensors(output, tensors);
  std::cout << "wrote " << tensors.size() << " tensors to " << output << "\n";
  return 0;
}

}  // namespace moe
