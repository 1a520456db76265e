#!/usr/bin/env python3
"""Writes the seed corpus of each fuzz target (tests/fuzz/corpus/TARGET/seed-*): small valid
inputs and near misses, from which the fuzzer starts. The corpus the fuzzer grows from them is
committed beside them (tests/sanitize.sh runs every target over its corpus)."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"seed-{name}"), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape, raw bytes)]"""
    header, data = ({"__metadata__": metadata} if metadata else {}), b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


write("safetensors", "f32", safetensors([("w", "F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4))]))
write("safetensors", "bf16-f16-i64", safetensors([("a", "BF16", [2], b"\x80\x3f\x00\x40"),
                                                   ("b", "F16", [1, 2], b"\x00\x3c\x00\x40"),
                                                   ("c", "I64", [1], struct.pack("<q", 7))]))
write("safetensors", "metadata", safetensors([("x", "F32", [1], struct.pack("<f", 1))], {"format": "pt"}))
write("safetensors", "truncated", safetensors([("w", "F32", [4], struct.pack("<4f", 1, 2, 3, 4))])[:-3])

index = os.path.join(ROOT, "tests/reference/fixtures/switch8_bf16_sharded/model/model.safetensors.index.json")
write("checkpoint_index", "fixture", open(index, "rb").read())
write("checkpoint_index", "outside", json.dumps({"weight_map": {"shared.weight": "../model-00001-of-00003.safetensors"}}))

write("config", "switch-tiny", open(os.path.join(ROOT, "configs/models/switch-tiny/config.json"), "rb").read())
write("config", "fixture", open(os.path.join(ROOT, "tests/reference/fixtures/switch8_f32/model/config.json"), "rb").read())
write("config", "t5", open(os.path.join(ROOT, "tests/reference/fixtures/t5_dense_f32/model/config.json"), "rb").read())

layers = [{"layer": l, "experts": [[1 + (l * 8 + e) % 4] for e in range(8)]} for l in range(4)]
write("expert_map", "round-robin", json.dumps({"layers": layers}))
layers[0]["experts"][0] = [1, 2]
write("expert_map", "replicas", json.dumps({"layers": layers}))


def message(mtype, payload):
    return struct.pack("<II", 2, mtype) + payload


vec_int = lambda xs: struct.pack("<Q", len(xs)) + b"".join(struct.pack("<i", x) for x in xs)
write("messages", "echo", message(10, struct.pack("<Q", 768)))
write("messages", "request-share", message(12, struct.pack("<Q", 2) + struct.pack("<q", 0) + vec_int([5, 6, 1])
                                           + struct.pack("<q", 1) + vec_int([7, 1])))
write("messages", "result-share", message(13, struct.pack("<Q", 1) + struct.pack("<q", 3) + vec_int([9, 1])
                                          + struct.pack("<3d", 1.0, 2.0, 0.5) + b"\x01"))
write("messages", "shutdown", message(5, b""))
reason = b"no answer within the 3 s deadline"
write("messages", "rank-lost", message(14, struct.pack("<i", 2) + struct.pack("<Q", len(reason)) + reason))
write("messages", "short", b"\x02\x00\x00")

write("requests", "texts", open(os.path.join(ROOT, "configs/models/switch-tiny/prompts.jsonl"), "rb").read())
write("requests", "ids", '{"id": 1, "input_ids": [5, 6, 7, 1]}\n{"id": "b", "input_ids": [8, 1]}\n')
write("requests", "mixed", '{"id": 1, "text": "sort: 3 1 2"}\n\n{"id": 2, "input_ids": [5]}\n')
print("seeds written under", os.path.join(HERE, "corpus"))
