#!/usr/bin/env python3
"""Writes a random checkpoint with switch-base-8's widths (d_model 768, d_ff 3072, 12 heads of 64)
and switch-tiny's layer/expert structure (4+4 blocks, sparse every other block, 8 experts), so a
routing trace recorded with the trained switch-tiny model can be replayed with realistic expert
costs; with --base8, switch-base-8's whole shape (12+12 blocks, vocabulary 32128), for benchmarks.
With --base8 the lm_head is a random matrix of its own (tie_word_embeddings false; the same work):
tied to a random embedding of scale 1, a step's final state is nearly the input token's own row,
so every step would pick the token it was fed (the pad id 0, forever), and a check that runs
agree would compare nothing but zeros.
Needs numpy and safetensors (pip)."""
import argparse, json, os, sys

import numpy as np
from safetensors.numpy import save_file


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--like", default=os.path.join(os.path.dirname(__file__), "../../configs/models/switch-tiny"))
    ap.add_argument("--base8", action="store_true", help="switch-base-8's layers and vocabulary too")
    a = ap.parse_args()
    print(f"+ make_wide_model.py --out {a.out} --like {a.like}{' --base8' if a.base8 else ''}")
    cfg = json.load(open(os.path.join(a.like, "config.json")))
    cfg.update(d_model=768, d_ff=3072, d_kv=64, num_heads=12)
    if a.base8:
        cfg.update(num_layers=12, num_decoder_layers=12, num_sparse_encoder_layers=6,
                   num_sparse_decoder_layers=6, vocab_size=32128, tie_word_embeddings=False)
    d, ff, inner, E, V = 768, 3072, 768, cfg["num_experts"], cfg["vocab_size"]
    rng = np.random.default_rng(0)
    t = {}
    def w(name, *shape, scale=0.02):
        t[name] = (rng.standard_normal(shape, dtype=np.float32) * scale).astype(np.float32)
    w("shared.weight", V, d, scale=1.0)
    if not cfg.get("tie_word_embeddings", True):
        w("lm_head.weight", V, d, scale=1.0)
    for stack, layers, step, ff_idx in (("encoder", cfg["num_layers"], cfg["encoder_sparse_step"], 1),
                                        ("decoder", cfg["num_decoder_layers"], cfg["decoder_sparse_step"], 2)):
        w(f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight", cfg["relative_attention_num_buckets"], 12)
        t[f"{stack}.final_layer_norm.weight"] = np.ones(d, np.float32)
        for i in range(layers):
            p = f"{stack}.block.{i}"
            atts = ["layer.0.SelfAttention"] + (["layer.1.EncDecAttention"] if stack == "decoder" else [])
            for k, att in enumerate(atts):
                for m in "qkv":
                    w(f"{p}.{att}.{m}.weight", inner, d)
                w(f"{p}.{att}.o.weight", d, inner)
                t[f"{p}.layer.{k}.layer_norm.weight"] = np.ones(d, np.float32)
            t[f"{p}.layer.{ff_idx}.layer_norm.weight"] = np.ones(d, np.float32)
            sparse = step > 0 and (i % step == 1 or step == 1)
            if sparse:
                w(f"{p}.layer.{ff_idx}.mlp.router.classifier.weight", E, d)
                for e in range(E):
                    w(f"{p}.layer.{ff_idx}.mlp.experts.expert_{e}.wi.weight", ff, d)
                    w(f"{p}.layer.{ff_idx}.mlp.experts.expert_{e}.wo.weight", d, ff)
            else:
                w(f"{p}.layer.{ff_idx}.mlp.wi.weight", ff, d)
                w(f"{p}.layer.{ff_idx}.mlp.wo.weight", d, ff)
    os.makedirs(a.out, exist_ok=True)
    json.dump(cfg, open(os.path.join(a.out, "config.json"), "w"), indent=1)
    save_file(t, os.path.join(a.out, "model.safetensors"))
    print(f"wrote {len(t)} tensors to {a.out}")


if __name__ == "__main__":
    sys.exit(main())
