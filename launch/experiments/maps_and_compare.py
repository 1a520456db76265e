#!/usr/bin/env python3
"""Two helpers for the experiment scripts (standard library only):

  maps_and_compare.py replicated-map MODEL_DIR WORLD_SIZE > map.json
      an expert map with every expert of every sparse layer on every expert rank 1..WORLD_SIZE-1
      (expert e's replicas start at rank 1 + (e + 1) % (WORLD_SIZE - 1)); the layer and expert
      counts come from MODEL_DIR/config.json, sparse blocks counted as the runtime counts them.
  maps_and_compare.py compare A.jsonl B.jsonl
      two `moe generate` outputs: the same ids and output_ids line by line; prints each line that
      differs and a summary, exits 1 when any does."""
import argparse
import json
import os
import sys


def sparse_layers(cfg):
    """Encoder then decoder blocks that are sparse, as model/config.cpp and count_moe_layers decide."""
    def step(step_field, count_field, layers):
        if step_field in cfg:
            return cfg[step_field]
        sparse = cfg.get(count_field)
        sparse = 3 if sparse is None else sparse
        return layers // sparse if sparse > 0 else layers

    enc = cfg["num_layers"]
    dec = cfg.get("num_decoder_layers")
    dec = enc if dec is None else dec
    n = 0
    for layers, s in ((enc, step("encoder_sparse_step", "num_sparse_encoder_layers", enc)),
                      (dec, step("decoder_sparse_step", "num_sparse_decoder_layers", dec))):
        n += sum(1 for i in range(layers) if s > 0 and (i % s == 1 or s == 1))
    return n


def replicated_map(model_dir, world_size):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    ranks = world_size - 1
    if ranks < 1:
        sys.exit("maps_and_compare.py: replicated-map: WORLD_SIZE must be at least 2")
    experts = [[1 + (e + r) % ranks for r in range(1, world_size)] for e in range(cfg["num_experts"])]
    print(json.dumps({"layers": [{"layer": l, "experts": experts} for l in range(sparse_layers(cfg))]}))
    return 0


def compare(a_path, b_path):
    with open(a_path) as fa, open(b_path) as fb:
        a, b = fa.read().splitlines(), fb.read().splitlines()
    failures = 0
    for line, (la, lb) in enumerate(zip(a, b), 1):
        ja, jb = json.loads(la), json.loads(lb)
        if ja.get("id") != jb.get("id") or ja.get("output_ids") != jb.get("output_ids"):
            ids = [json.dumps(j.get("output_ids"), separators=(",", ":")) for j in (ja, jb)]
            print(f"line {line}: {ids[0]} vs {ids[1]}")
            failures += 1
    if len(a) != len(b):
        print(f"{b_path} has {'fewer' if len(b) < len(a) else 'more'} lines")
        return 1
    print(f"{len(a) - failures} generations equal, {failures} differ")
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("replicated-map", help="every expert on every expert rank, as JSON on stdout")
    m.add_argument("model_dir")
    m.add_argument("world_size", type=int)
    c = sub.add_parser("compare", help="equal ids and output_ids, line by line; exit 1 where not")
    c.add_argument("a")
    c.add_argument("b")
    a = ap.parse_args()
    return replicated_map(a.model_dir, a.world_size) if a.cmd == "replicated-map" else compare(a.a, a.b)


if __name__ == "__main__":
    sys.exit(main())
