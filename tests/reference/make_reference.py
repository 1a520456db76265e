#!/usr/bin/env python3
"""Build the Hugging Face reference fixtures for the Switch Transformer model.

For each fixture this script builds a small, randomly initialised
SwitchTransformersForConditionalGeneration (or a dense T5ForConditionalGeneration,
v1.0 relu: a Switch model without sparse layers) with a fixed seed, saves it with
save_pretrained (safetensors), reloads it in float32 and writes what HF computes
into expected.safetensors: encoder output, logits, per-sparse-layer router logits,
expert index and kept flags, and greedy generation. Seeds whose router or greedy
decisions are too close to call (so a float32 re-implementation could flip them)
are skipped. See tests/reference/README.md and HF_SEMANTICS.md.

Needs torch, transformers and safetensors already installed; installs nothing.
"""

import argparse
import json
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from transformers import (SwitchTransformersConfig, SwitchTransformersForConditionalGeneration,
                          T5Config, T5ForConditionalGeneration)

ROUTER_MARGIN = 1e-3   # top-1 minus top-2 router logit, every token of every sparse layer (logits are ~10)
GREEDY_MARGIN = 1e-3   # top-1 minus top-2 vocabulary logit, every greedy step of an unfinished row
ENC_LENGTHS = (7, 12, 4)  # real encoder lengths of the batch (each ends with eos), right-padded
MAX_SEED_TRIES = 5000

SMALL = dict(vocab_size=128, d_model=32, d_ff=64, d_kv=8, num_heads=4,
             num_layers=4, num_decoder_layers=4,
             num_sparse_encoder_layers=2, num_sparse_decoder_layers=2,  # -> sparse step 2: blocks 1, 3
             num_experts=8, expert_capacity=64, router_bias=False, tie_word_embeddings=True)

FIXTURES = [
    dict(name="switch8_f32", seed=1000, dtype=torch.float32, shard=None, cfg=SMALL,
         dec_len=6, new_tokens=10, want_drops=False, want_eos=True, random_router_bias=False, embed_scale=0.3),
    dict(name="switch4_drop_f32", seed=2000, dtype=torch.float32, shard=None,
         cfg=dict(vocab_size=100, d_model=48, d_ff=96, d_kv=16, num_heads=2,  # inner dim 32 != d_model
                  num_layers=3, num_decoder_layers=2,
                  num_sparse_encoder_layers=3, num_sparse_decoder_layers=2,  # -> sparse step 1: all blocks
                  num_experts=4, expert_capacity=2, router_bias=False, tie_word_embeddings=False),
         dec_len=7, new_tokens=9, want_drops=True, want_eos=False, random_router_bias=False, embed_scale=1.0),
    dict(name="switch8_bf16_sharded", seed=3000, dtype=torch.bfloat16, shard="150KB", cfg=SMALL,
         dec_len=6, new_tokens=12, want_drops=False, want_eos=False, random_router_bias=False, embed_scale=0.3),
    dict(name="switch8_f16", seed=4000, dtype=torch.float16, shard=None,
         cfg=dict(SMALL, router_bias=True),
         dec_len=5, new_tokens=8, want_drops=False, want_eos=False, random_router_bias=True, embed_scale=0.3),
    # Dense T5 (v1.0, relu): every block's FFN is `DenseReluDense`, no router.
    dict(name="t5_dense_f32", arch="t5", seed=5000, dtype=torch.float32, shard=None,
         cfg=dict(vocab_size=128, d_model=32, d_ff=64, d_kv=8, num_heads=4,
                  num_layers=4, num_decoder_layers=4, tie_word_embeddings=True),
         dec_len=6, new_tokens=10, want_drops=False, want_eos=True, random_router_bias=False, embed_scale=0.2),
    # Untied T5: transformers 5.x saves tie_word_embeddings true beside scale_decoder_outputs false
    # (no rescale) and keeps a stored lm_head.weight that differs from shared.weight.
    dict(name="t5_untied_f32", arch="t5", seed=6000, dtype=torch.float32, shard=None,
         cfg=dict(vocab_size=100, d_model=48, d_ff=64, d_kv=16, num_heads=2,  # inner dim 32 != d_model
                  num_layers=2, num_decoder_layers=2, tie_word_embeddings=False),
         dec_len=7, new_tokens=9, want_drops=False, want_eos=False, random_router_bias=False, embed_scale=1.0,
         separate_lm_head=True),
]

COMMON = dict(relative_attention_num_buckets=32, relative_attention_max_distance=128,
              dropout_rate=0.0, router_jitter_noise=0.0, layer_norm_epsilon=1e-6,
              dense_act_fn="relu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
T5_COMMON = dict(relative_attention_num_buckets=32, relative_attention_max_distance=128,
                 dropout_rate=0.0, layer_norm_epsilon=1e-6, feed_forward_proj="relu",
                 pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)


def model_class(spec):
    return T5ForConditionalGeneration if spec.get("arch") == "t5" else SwitchTransformersForConditionalGeneration


class RouterTaps:
    """Forward hooks on every sparse layer's router and sparse MLP, recording each call."""

    def __init__(self, model):
        self.calls = {}  # (stack, block) -> list of (kept [B,S], expert_index [B,S], logits, mlp_out)
        self.handles = []
        for stack in ("encoder", "decoder"):
            for i, block in enumerate(getattr(model, stack).block):
                if not getattr(block, "is_sparse", False):  # T5 blocks are all dense
                    continue
                mlp = block.layer[-1].mlp
                key = (stack, i)
                self.calls[key] = []
                self.handles.append(mlp.router.register_forward_hook(self._router_hook(key)))
                self.handles.append(mlp.register_forward_hook(self._mlp_hook(key)))

    def _router_hook(self, key):
        def hook(_module, _inputs, out):
            mask, _probs, logits = out  # mask: capacity-filtered one-hot [B,S,E]
            kept = mask.sum(-1).to(torch.int64)
            index = torch.argmax(mask, dim=-1).to(torch.int64)  # 0 for a dropped token
            self.calls[key].append([kept, index, logits.detach().float().clone(), None])
        return hook

    def _mlp_hook(self, key):
        def hook(_module, _inputs, out):
            self.calls[key][-1][3] = out.detach().float().clone()
        return hook

    def reset(self):
        for v in self.calls.values():
            v.clear()

    def remove(self):
        for h in self.handles:
            h.remove()


def make_inputs(seed, vocab, dec_len):
    g = torch.Generator().manual_seed(seed)
    seq = max(ENC_LENGTHS)
    input_ids = torch.zeros(len(ENC_LENGTHS), seq, dtype=torch.int64)
    attention_mask = torch.zeros_like(input_ids)
    for b, n in enumerate(ENC_LENGTHS):
        input_ids[b, :n - 1] = torch.randint(2, vocab, (n - 1,), generator=g)
        input_ids[b, n - 1] = 1  # eos
        attention_mask[b, :n] = 1
    decoder_input_ids = torch.randint(2, vocab, (len(ENC_LENGTHS), dec_len + 1), generator=g)
    decoder_input_ids[:, 0] = 0  # decoder_start_token_id
    return input_ids, attention_mask, decoder_input_ids


def top2_gap(x):
    t = torch.topk(x.float(), 2, dim=-1).values
    return t[..., 0] - t[..., 1]


def build_model(spec, seed):
    if spec.get("arch") == "t5":
        cfg = T5Config(**T5_COMMON, **spec["cfg"])
    else:
        cfg = SwitchTransformersConfig(**COMMON, **spec["cfg"])
    torch.manual_seed(seed)
    model = model_class(spec)(cfg).eval()
    if spec.get("separate_lm_head"):  # T5 ties lm_head to shared at init; give it its own values
        model.lm_head.weight = torch.nn.Parameter(torch.randn(cfg.vocab_size, cfg.d_model))
    if spec["embed_scale"] != 1.0:
        # A random model with std-1 tied embeddings just repeats its input token; shrinking the
        # embedding lets the blocks matter, so greedy output varies (still just a random model).
        with torch.no_grad():
            model.shared.weight.mul_(spec["embed_scale"])
    if spec["random_router_bias"]:  # HF initialises router biases to zero; make them matter
        with torch.no_grad():
            for stack in (model.encoder, model.decoder):
                for block in stack.block:
                    if block.is_sparse:
                        block.layer[-1].mlp.router.classifier.bias.normal_(0.0, 0.5)
    if spec["dtype"] != torch.float32:
        # What a float32 implementation sees when it upcasts the saved half-precision checkpoint.
        model = model.to(spec["dtype"]).to(torch.float32)
    return model


@torch.no_grad()
def run_reference(model, spec, seed):
    """One forward + greedy generation with all checks. Returns (tensors, problem or None, stats)."""
    vocab = model.config.vocab_size
    input_ids, attention_mask, decoder_input_ids = make_inputs(seed, vocab, spec["dec_len"])
    n_new = spec["new_tokens"]
    taps = RouterTaps(model)
    try:
        routed = {} if spec.get("arch") == "t5" else {"output_router_logits": True}
        out = model(input_ids=input_ids, attention_mask=attention_mask,
                    decoder_input_ids=decoder_input_ids, **routed)
        fwd = {k: list(v[0]) for k, v in taps.calls.items()}
        taps.reset()
        gen = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=n_new,
                             do_sample=False, num_beams=1, return_dict_in_generate=True,
                             output_logits=True)
        gen_calls = {k: list(v) for k, v in taps.calls.items()}
    finally:
        taps.remove()

    t = {"input_ids": input_ids, "attention_mask": attention_mask,
         "decoder_input_ids": decoder_input_ids,
         "encoder_last_hidden_state": out.encoder_last_hidden_state.float(),
         "logits": out.logits.float()}
    stats = {"dropped_real": {"encoder": 0, "decoder": 0}, "dropped_all": {"encoder": 0, "decoder": 0}}
    hf_logits = {s: list(getattr(out, f"{s}_router_logits", None) or ()) for s in ("encoder", "decoder")}
    for stack in ("encoder", "decoder"):
        keys = sorted(k for k in fwd if k[0] == stack)
        assert len(keys) == len(hf_logits[stack]), "sparse layer count mismatch"
        real = attention_mask.bool() if stack == "encoder" else torch.ones_like(decoder_input_ids, dtype=torch.bool)
        for (s, i), hf in zip(keys, hf_logits[stack]):
            kept, index, logits, mlp_out = fwd[(s, i)]
            assert torch.equal(logits, hf.float()), "hooked router logits differ from HF output"
            top1 = logits.argmax(-1)
            assert torch.equal(index[kept.bool()], top1[kept.bool()]), "kept token not on its top-1 expert"
            assert torch.all(mlp_out[~kept.bool()] == 0), "dropped token has a non-zero MLP output"
            gap = top2_gap(logits).min().item()
            if gap <= ROUTER_MARGIN:
                return None, f"{stack} block {i} router margin {gap:.2e}", stats
            t[f"{stack}_router_logits.{i}"] = logits
            t[f"{stack}_expert_index.{i}"] = index
            t[f"{stack}_router_kept.{i}"] = kept
            stats["dropped_all"][stack] += int((kept == 0).sum())
            stats["dropped_real"][stack] += int(((kept == 0) & real).sum())

    # Router decisions inside cached generation (one token per row and step).
    for (s, i), calls in gen_calls.items():
        for kept, _index, logits, _ in calls:
            gap = top2_gap(logits).min().item()
            if gap <= ROUTER_MARGIN:
                return None, f"generate: {s} block {i} router margin {gap:.2e}", stats

    seqs = gen.sequences
    if seqs.shape[1] != 1 + n_new:
        return None, f"every row finished early ({seqs.shape[1] - 1} < {n_new} new tokens)", stats
    unfinished = torch.ones(seqs.shape[0], dtype=torch.bool)
    for step, step_logits in enumerate(gen.logits):
        gaps = top2_gap(step_logits)[unfinished]
        if gaps.numel() and gaps.min().item() <= GREEDY_MARGIN:
            return None, f"greedy step {step} margin {gaps.min().item():.2e}", stats
        unfinished &= seqs[:, step + 1] != model.config.eos_token_id
    stats["finished_rows"] = int((~unfinished).sum())
    # first eos position among the new tokens of each finished row (1-based); 0 if none
    stats["eos_at"] = [int((row[1:] == model.config.eos_token_id).nonzero()[0]) + 1
                       if (row[1:] == model.config.eos_token_id).any() else 0 for row in seqs]

    for row in seqs[:, 1:].tolist():
        if 1 in row:
            row = row[:row.index(1) + 1]
        if 0 in row:
            return None, "pad id generated before eos", stats
        if len(set(row)) < 2:
            return None, "a row repeats one token", stats
    if spec["want_drops"]:
        if not all(stats["dropped_real"][s] > 0 for s in ("encoder", "decoder")):
            return None, f"no real token dropped in both stacks {stats['dropped_real']}", stats
    elif sum(stats["dropped_all"].values()):
        return None, f"unexpected drops {stats['dropped_all']}", stats
    if spec["want_eos"] and not any(p >= 3 for p in stats["eos_at"]):
        return None, "no row reached eos after two or more new tokens", stats

    t["generated_ids"] = seqs.to(torch.int64)
    t["max_new_tokens"] = torch.tensor([n_new], dtype=torch.int64)
    return t, None, stats


def save_model(model, spec, model_dir):
    kwargs = {}
    if spec["shard"]:
        kwargs["max_shard_size"] = spec["shard"]
    to_save = model if spec["dtype"] == torch.float32 else model.to(spec["dtype"])
    to_save.save_pretrained(model_dir, safe_serialization=True, **kwargs)


def save_expected(tensors, path, metadata):
    """save_file, with the metadata's keys sorted: safetensors writes them in hash-map order, which
    changes from run to run, and a rerun must give the same bytes."""
    save_file(tensors, str(path), metadata=metadata)
    raw = bytearray(path.read_bytes())
    size = int.from_bytes(raw[:8], "little")
    written = json.loads(raw[8:8 + size])["__metadata__"]
    compact = lambda m: json.dumps({"__metadata__": m}, separators=(",", ":"))[1:-1].encode()
    at = raw.find(compact(written), 8, 8 + size)
    assert at > 0, "metadata not found in the safetensors header"
    raw[at:at + len(compact(written))] = compact(dict(sorted(written.items())))
    path.write_bytes(raw)


def make_fixture(spec, out_dir):
    name = spec["name"]
    print(f"== {name}: {spec['dtype']}, config {spec['cfg']}")
    rejected = Counter()
    for seed in range(spec["seed"], spec["seed"] + MAX_SEED_TRIES):
        model = build_model(spec, seed)
        tensors, problem, stats = run_reference(model, spec, seed)
        if problem:
            rejected[re.sub(r"\s[-+.\de]+\b|\s\(.*\)|\s\{.*\}", "", problem)] += 1
            continue
        break
    else:
        sys.exit(f"{name}: no acceptable seed in {MAX_SEED_TRIES} tries: {dict(rejected)}")
    print(f"   seeds rejected before {seed}: {dict(rejected) or 'none'}")

    fdir = out_dir / name
    if fdir.exists():
        shutil.rmtree(fdir)
    model_dir = fdir / "model"
    # Save the float32 model, cast to the fixture's dtype by save_model.
    save_model(build_model(dict(spec, dtype=torch.float32), seed), spec, model_dir)
    # Reference numbers come from the saved files, reloaded in float32.
    reloaded = model_class(spec).from_pretrained(model_dir, dtype=torch.float32).eval()
    if spec.get("separate_lm_head"):
        assert not torch.equal(reloaded.lm_head.weight, reloaded.shared.weight), "lm_head was tied on reload"
    tensors2, problem, _ = run_reference(reloaded, spec, seed)
    assert problem is None, f"reloaded model fails the checks: {problem}"
    for k, v in tensors.items():  # floats may differ in the last bits (memory layout of loaded weights)
        same = torch.allclose(v, tensors2[k], rtol=0, atol=1e-5) if v.is_floating_point() else torch.equal(v, tensors2[k])
        assert same, f"{name}: reloaded model differs on {k}"
    if spec["shard"]:
        assert (model_dir / "model.safetensors.index.json").exists(), "expected a sharded checkpoint"

    meta = {"seed": str(seed), "torch": torch.__version__, "transformers": transformers.__version__,
            "saved_dtype": str(spec["dtype"]).replace("torch.", "")}
    save_expected({k: v.contiguous() for k, v in tensors2.items()}, fdir / "expected.safetensors", meta)
    shapes = {k: list(v.shape) for k, v in tensors2.items()
              if not k.split(".")[0].endswith(("expert_index", "router_kept"))}
    print(f"   seed {seed}: accepted; dropped (real tokens) {stats['dropped_real']}, "
          f"eos position per row {stats['eos_at']}")
    print(f"   files: {sorted(p.name for p in model_dir.iterdir())}")
    print(f"   shapes: {json.dumps(shapes)}")
    print(f"   generated_ids: {tensors2['generated_ids'].tolist()}")
    return seed


def main():
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=here / "fixtures",
                    help="output directory (default: %(default)s)")
    ap.add_argument("--only", action="append", choices=[f["name"] for f in FIXTURES],
                    help="build only this fixture (repeatable)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}; writing to {args.out}")
    args.out.mkdir(parents=True, exist_ok=True)
    for spec in FIXTURES:
        if args.only and spec["name"] not in args.only:
            continue
        make_fixture(spec, args.out)


if __name__ == "__main__":
    main()
