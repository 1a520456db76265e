#!/usr/bin/env python3
"""Writes the same switch-base-8-wide checkpoint layout as launch/experiments/make_wide_model.py
(switch-tiny's blocks, d_model 768, d_ff 3072, 12 heads) with nothing but the Python standard
library, for machines without numpy/safetensors: every tensor is one 1 MiB block of Gaussian
values (std 0.02; shared.weight std 1) repeated. Expert timing does not depend on the values;
use it for timing runs only."""
import argparse
import array
import json
import os
import random
import struct
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--like", default=os.path.join(os.path.dirname(__file__), "../../configs/models/switch-tiny"))
    a = ap.parse_args()
    print(f"+ make_wide_checkpoint.py --out {a.out} --like {a.like}")
    cfg = json.load(open(os.path.join(a.like, "config.json")))
    cfg.update(d_model=768, d_ff=3072, d_kv=64, num_heads=12)
    d, ff, E, V = 768, 3072, cfg["num_experts"], cfg["vocab_size"]
    shapes = {}  # name -> (shape, std)
    ones = set()

    def w(name, *shape, scale=0.02):
        shapes[name] = (shape, scale)

    w("shared.weight", V, d, scale=1.0)
    for stack, layers, step, ff_idx in (("encoder", cfg["num_layers"], cfg["encoder_sparse_step"], 1),
                                        ("decoder", cfg["num_decoder_layers"], cfg["decoder_sparse_step"], 2)):
        w(f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight", cfg["relative_attention_num_buckets"], 12)
        w(f"{stack}.final_layer_norm.weight", d)
        ones.add(f"{stack}.final_layer_norm.weight")
        for i in range(layers):
            p = f"{stack}.block.{i}"
            atts = ["layer.0.SelfAttention"] + (["layer.1.EncDecAttention"] if stack == "decoder" else [])
            for k, att in enumerate(atts):
                for m in "qkv":
                    w(f"{p}.{att}.{m}.weight", d, d)
                w(f"{p}.{att}.o.weight", d, d)
                w(f"{p}.layer.{k}.layer_norm.weight", d)
                ones.add(f"{p}.layer.{k}.layer_norm.weight")
            w(f"{p}.layer.{ff_idx}.layer_norm.weight", d)
            ones.add(f"{p}.layer.{ff_idx}.layer_norm.weight")
            if step > 0 and (i % step == 1 or step == 1):
                w(f"{p}.layer.{ff_idx}.mlp.router.classifier.weight", E, d)
                for e in range(E):
                    w(f"{p}.layer.{ff_idx}.mlp.experts.expert_{e}.wi.weight", ff, d)
                    w(f"{p}.layer.{ff_idx}.mlp.experts.expert_{e}.wo.weight", d, ff)
            else:
                w(f"{p}.layer.{ff_idx}.mlp.wi.weight", ff, d)
                w(f"{p}.layer.{ff_idx}.mlp.wo.weight", d, ff)
    rng = random.Random(0)
    block = {s: array.array("f", [rng.gauss(0, s) for _ in range(1 << 18)]).tobytes() for s in (0.02, 1.0)}
    header, offset = {}, 0
    for name, (shape, _) in shapes.items():
        n = 4
        for s in shape:
            n *= s
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    os.makedirs(a.out, exist_ok=True)
    json.dump(cfg, open(os.path.join(a.out, "config.json"), "w"), indent=1)
    with open(os.path.join(a.out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for name, (shape, scale) in shapes.items():
            n = header[name]["data_offsets"][1] - header[name]["data_offsets"][0]
            if name in ones:
                f.write(array.array("f", [1.0] * (n // 4)).tobytes())
                continue
            b = block[scale]
            for _ in range(n // len(b)):
                f.write(b)
            f.write(b[: n % len(b)])
    print(f"wrote {len(shapes)} tensors ({offset / 2**20:.0f} MiB) to {a.out}")


if __name__ == "__main__":
    sys.exit(main())
