// moe forward: one teacher-forced pass per batch, written as safetensors so any tool can compare
// encoder states, logits and router choices with a reference; alone or under mpirun.
#include <boost/program_options.hpp>
#include <iostream>

#include "model/decoder.hpp"
#include "model/safetensors.hpp"
#include "ranks/commands/commands.hpp"
#include "ranks/commands/requests.hpp"
#include "runtime/atomic_file.hpp"
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

class ForwardCommand final : public DistributedCommand {
 public:
  void add_options(po::options_description& opts) override {
    // clang-format off
    opts.add_options()
        ("input", po::value(&input_)->required(),
         "JSONL: {\"id\", \"input_ids\"|\"text\", \"decoder_input_ids\"} per line")
        ("output", po::value(&output_)->required(), "safetensors file to write")
        ("batch-size", po::value(&batch_size_)->default_value(0), "requests per batch (0: all in one)");
    // clang-format on
  }

  void prepare(const World&, const ModelConfig& c) override {
    check_output_path(output_);
    check_output_is_not(output_, input_);
    auto tokenizer =
        load_tokenizer_if_present(run_options_.model_dir, c.eos_token_id, c.pad_token_id);
    requests_ = read_requests(input_, c, tokenizer.get());
    const size_t per_batch = this->per_batch();
    for (size_t i = 0; i < requests_.size(); ++i) {
      const auto& first = requests_[i - i % per_batch];
      MOE_CHECK(!requests_[i].decoder_input_ids.empty(), input_, ":", requests_[i].line,
                ": moe forward needs 'decoder_input_ids' (the decoder's inputs to score)");
      MOE_CHECK(requests_[i].decoder_input_ids.size() == first.decoder_input_ids.size(), input_,
                ": request ", requests_[i].id.dump(),
                " needs decoder_input_ids of the same length as the others in its batch");
    }
  }

  int coordinate(Coordinator& coordinator) override {
    std::vector<OutputTensor> tensors;
    const auto start = Clock::now();
    const size_t per_batch = this->per_batch();
    for (size_t first = 0, k = 0; first < requests_.size(); first += per_batch, ++k) {
      const std::string prefix =
          per_batch < requests_.size() ? "batch" + std::to_string(k) + "." : "";
      run_batch(coordinator, first, std::min(requests_.size(), first + per_batch), prefix, tensors);
    }
    write_safetensors(output_, tensors);
    std::cout << "wrote " << tensors.size() << " tensors to " << output_ << "\n";
    coordinator.finish(0, seconds_since(start));
    return 0;
  }

 private:
  size_t per_batch() const { return batch_size_ > 0 ? size_t(batch_size_) : requests_.size(); }
  void run_batch(Coordinator& coordinator, size_t first, size_t last, const std::string& prefix,
                 std::vector<OutputTensor>& tensors);

  std::string input_, output_;
  int batch_size_ = 0;
  std::vector<Request> requests_;
};

// One teacher-forced pass over requests [first, last): the router's choices of every sparse
// layer as it runs, then the encoder states and the logits.
void ForwardCommand::run_batch(Coordinator& coordinator, size_t first, size_t last,
                               const std::string& prefix, std::vector<OutputTensor>& tensors) {
  const ModelConfig& c = coordinator.config();
  const auto places = sparse_layer_places(c);
  std::vector<std::vector<int>> inputs;
  std::vector<int> decoder_tokens;
  for (size_t i = first; i < last; ++i) {
    inputs.push_back(requests_[i].input_ids);
    decoder_tokens.insert(decoder_tokens.end(), requests_[i].decoder_input_ids.begin(),
                          requests_[i].decoder_input_ids.end());
  }
  const Batch batch = make_batch(inputs, c.pad_token_id);
  const int B = batch.sequences, S = batch.seq_len;
  const int Sd = int(requests_[first].decoder_input_ids.size());
  SwitchModel& model = coordinator.model();
  model.compute_padding = true;  // every position as HF computes it, padding included
  model.on_route = [&](int layer, int sequences, int seq_len, const std::vector<float>& logits,
                       const GateResult& gate) {
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
    tensors.push_back({prefix + place.tensor("logits"),
                       {sequences, seq_len, c.num_experts},
                       std::vector<float>(logits.begin(), logits.begin() + n),
                       {},
                       false});
  };
  const EncoderOutput enc = encode(model, batch);
  std::vector<SequenceCache> caches = start_decoder(model, enc, Sd);
  std::vector<float> logits;
  decode(model, all_of(caches), decoder_tokens, Sd, /*last_only=*/false, logits);
  model.on_route = nullptr;

  const auto as_i64 = [](const auto& v) { return std::vector<int64_t>(v.begin(), v.end()); };
  tensors.push_back({prefix + "input_ids", {B, S}, {}, as_i64(batch.ids), true});
  tensors.push_back({prefix + "attention_mask", {B, S}, {}, as_i64(batch.valid), true});
  tensors.push_back(
      {prefix + "encoder_last_hidden_state", {B, S, c.d_model}, enc.hidden, {}, false});
  tensors.push_back({prefix + "logits", {B, Sd, c.vocab_size}, logits, {}, false});
}

}  // namespace

std::unique_ptr<DistributedCommand> make_forward_command() {
  return std::make_unique<ForwardCommand>();
}

}  // namespace moe
