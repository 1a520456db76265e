#!/usr/bin/env python3
"""End-to-end greedy generation: `build/moe generate` (ours) vs Hugging Face `model.generate` (peer).

For each model (a randomly initialised switch-base-8-shaped checkpoint, built once and cached
under --work, and the trained default model configs/models/switch-tiny) and each batch size, runs
ours and HF side by side in one run, alternating ours / HF per repeat so that machine noise hits
both alike: same prompts (token ids, so no tokenizer is timed), same max_new_tokens, greedy, same
thread count (`--threads T` for ours, torch.set_num_threads(T) for HF; each T of --threads).
Prints tokens/s for both (median of --repeats repeats after one warm-up repeat that is not
counted), the ratio ours / HF, and whether the generated ids agree.

What is timed, for both: generation only (encoder + greedy decoder), not loading. Ours is a fresh
process per repeat; its time is the serving time `moe generate` prints (loading excluded). HF is one warm process (model loaded once), timed around each generate() call.
Tokens counted: every generated id up to and including eos (the decoder start token is not one).

Needs torch and transformers (CPU); sentencepiece for the default model's prompts. Installs
nothing. Every command run is printed with a leading '+'.
"""

import argparse
import json
import os
import random
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "models" / "switch-tiny"
EOS, PAD = 1, 0

# google/switch-base-8's shapes (its config.json): SwitchTransformersConfig with these overrides.
BASE8 = dict(vocab_size=32128, d_model=768, d_ff=3072, d_kv=64, num_heads=12, num_layers=12,
             num_decoder_layers=12, num_sparse_encoder_layers=6, num_sparse_decoder_layers=6,
             num_experts=8, expert_capacity=64, router_bias=False, tie_word_embeddings=True,
             relative_attention_num_buckets=32, relative_attention_max_distance=128,
             dropout_rate=0.1, router_jitter_noise=0.01, layer_norm_epsilon=1e-6,
             dense_act_fn="relu", pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=PAD)
BASE8_SEED = 8


def say(cmd):
    print("+ " + (cmd if isinstance(cmd, str) else shlex.join(str(c) for c in cmd)), flush=True)


def build_base8(out: Path):
    """A random switch-base-8-shaped checkpoint in float32 safetensors, once (marker: .complete)."""
    if (out / ".complete").exists():
        print(f"[e2e] cached checkpoint {out}")
        return
    import torch
    from transformers import SwitchTransformersConfig, SwitchTransformersForConditionalGeneration
    say(f"python: SwitchTransformersForConditionalGeneration(SwitchTransformersConfig(**{BASE8})) "
        f"seed {BASE8_SEED}, float32, save_pretrained('{out}', safe_serialization=True)")
    t0 = time.time()
    torch.manual_seed(BASE8_SEED)
    model = SwitchTransformersForConditionalGeneration(SwitchTransformersConfig(**BASE8)).float().eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    (out / ".complete").write_text(json.dumps(BASE8) + "\n")
    print(f"[e2e] built {out} in {time.time() - t0:.0f} s "
          f"({sum(p.numel() for p in model.parameters()) / 1e6:.0f} M parameters)")


def prompts_for(name: str, count: int, model_dir: Path):
    """Token-id prompts (each ends with eos, as T5Tokenizer does)."""
    if name == "switch-tiny":
        import sentencepiece as spm
        sp = spm.SentencePieceProcessor(model_file=str(model_dir / "spiece.model"))
        texts = [json.loads(line)["text"] for line in open(model_dir / "prompts.jsonl")]
        return [sp.encode(texts[i % len(texts)]) + [EOS] for i in range(count)]
    rng = random.Random(1234)  # random ids of random length: the weights are random too
    return [[rng.randrange(3, BASE8["vocab_size"]) for _ in range(rng.randint(12, 40))] + [EOS]
            for _ in range(count)]


def write_jsonl(path: Path, prompts):
    with open(path, "w") as f:
        for i, ids in enumerate(prompts):
            f.write(json.dumps({"id": i, "input_ids": ids}) + "\n")


def run_ours(args, model_dir, prompts, batch, max_new, threads, tag):
    """One `moe generate` process over the prompts (continuous batching). → (tokens/s, ids).
    The rate is the one `moe generate` prints: serving time, model loading excluded."""
    work = Path(args.work)
    inp, out = work / f"{tag}.in.jsonl", work / f"{tag}.out.jsonl"
    write_jsonl(inp, prompts)
    cmd = [args.moe, "generate", "--model", model_dir, "--input", inp, "--output", out,
           "--max-new-tokens", max_new, "--batch-size", batch, "--threads", threads, "--quiet"]
    env = dict(os.environ, **dict(kv.split("=", 1) for kv in args.ours_env.split()))
    say((["env", *args.ours_env.split()] if args.ours_env else []) + cmd)
    text = subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, env=env).stdout
    rate = float(text.split(" tokens/s")[0].rsplit(" ", 1)[1])
    return rate, [json.loads(line)["output_ids"] for line in open(out)]


def run_hf(model, prompts, batch, max_new):
    """HF greedy generate over the prompts in batches (right-padded, attention mask). → (tokens/s, ids)."""
    import torch
    ids_out, seconds = [], 0.0
    for first in range(0, len(prompts), batch):
        chunk = prompts[first:first + batch]
        width = max(len(p) for p in chunk)
        ids = torch.tensor([p + [PAD] * (width - len(p)) for p in chunk])
        with torch.inference_mode():
            t0 = time.perf_counter()
            out = model.generate(input_ids=ids, attention_mask=(ids != PAD).long(),
                                 max_new_tokens=max_new, do_sample=False, num_beams=1)
            seconds += time.perf_counter() - t0
        for row in out.tolist():
            row = row[1:]  # the decoder start token
            ids_out.append(row[:row.index(EOS) + 1] if EOS in row else row)
    return sum(len(r) for r in ids_out) / seconds, ids_out


def agreement(ours, hf):
    same = sum(a == b for a, b in zip(ours, hf))
    # Tokens up to the first difference: after one flips, the rest legitimately diverge.
    prefix = 0
    for a, b in zip(ours, hf):
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        prefix += n
    total = sum(max(len(a), len(b)) for a, b in zip(ours, hf))
    return same, len(ours), prefix, total


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--moe", default=str(ROOT / "build" / "moe"), help="the moe binary (default: build/moe)")
    p.add_argument("--work", default="/tmp/moe-e2e-bench", help="cache of the random checkpoint and run files")
    p.add_argument("--threads", default="1,2", help="thread counts, each for ours and for torch (default 1,2)")
    p.add_argument("--repeats", type=int, default=3, help="measured repeats per row (median); plus one warm-up")
    p.add_argument("--batches", default="1,8", help="batch sizes (default 1,8)")
    p.add_argument("--models", default="switch-base-8,switch-tiny", help="which models (default both)")
    p.add_argument("--prompts", type=int, default=8, help="prompts per repeat at batch > 1 (default 8)")
    p.add_argument("--prompts-batch1", type=int, default=2, help="prompts per repeat at batch 1 (default 2)")
    p.add_argument("--prompts-tiny", type=int, default=16, help="prompts per repeat for switch-tiny, any batch (default 16)")
    p.add_argument("--max-new-tokens-base", type=int, default=32, help="for switch-base-8 (default 32)")
    p.add_argument("--max-new-tokens-tiny", type=int, default=24, help="for switch-tiny (default 24)")
    p.add_argument("--ours-env", default="", help="extra environment for ours only, e.g. OMP_WAIT_POLICY=passive")
    p.add_argument("--build-only", action="store_true", help="only build the random checkpoint")
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    base8_dir = work / "switch-base-8-random"
    build_base8(base8_dir)
    if args.build_only:
        return 0
    if not Path(args.moe).exists():
        sys.exit(f"{args.moe} not found: build first with launch/setup.sh build")

    import torch
    import transformers
    from transformers import SwitchTransformersForConditionalGeneration
    print(f"[e2e] torch {torch.__version__}, transformers {transformers.__version__}, nproc {os.cpu_count()}, "
          f"repeats {args.repeats} + 1 warm-up; load average {os.getloadavg()[0]:.2f}")

    rows = []
    for name in args.models.split(","):
        model_dir = base8_dir if name == "switch-base-8" else TINY
        max_new = args.max_new_tokens_base if name == "switch-base-8" else args.max_new_tokens_tiny
        say(f"python: SwitchTransformersForConditionalGeneration.from_pretrained('{model_dir}', dtype=float32)")
        model = SwitchTransformersForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
        for threads in [int(t) for t in args.threads.split(",")]:
            torch.set_num_threads(threads)
            for batch in [int(b) for b in args.batches.split(",")]:
                count = args.prompts_tiny if name == "switch-tiny" else args.prompts_batch1 if batch == 1 else args.prompts
                prompts = prompts_for(name, count, model_dir)
                ours_rates, hf_rates = [], []
                for rep in range(args.repeats + 1):
                    tag = f"{name}.t{threads}.b{batch}.r{rep}"
                    o_rate, o_ids = run_ours(args, model_dir, prompts, batch, max_new, threads, tag)
                    h_rate, h_ids = run_hf(model, prompts, batch, max_new)
                    kind = "warm-up" if rep == 0 else f"repeat {rep}"
                    print(f"[e2e] {name} threads {threads} batch {batch} {kind}: ours {o_rate:.1f} tok/s, "
                          f"HF {h_rate:.1f} tok/s", flush=True)
                    if rep > 0:
                        ours_rates.append(o_rate)
                        hf_rates.append(h_rate)
                same, n, prefix, total = agreement(o_ids, h_ids)
                tokens = sum(len(r) for r in o_ids)
                rows.append((name, threads, batch, len(prompts), max_new, tokens, statistics.median(ours_rates),
                             statistics.median(hf_rates), same, n, prefix, total, ours_rates, hf_rates))
        del model

    print(f"\ntokens/s = generated ids (to eos, at most max_new per prompt) / generation seconds; "
          f"median of {args.repeats}; load average now {os.getloadavg()[0]:.2f}")
    print("| model | threads | batch | prompts x max_new | tokens | ours tok/s | HF tok/s | ours/HF "
          "| same sequences | same-prefix tokens |")
    print("|" + "---|" * 10)
    for name, threads, batch, n_prompts, max_new, tokens, o, h, same, n, prefix, total, _, _ in rows:
        print(f"| {name} | {threads} | {batch} | {n_prompts} x {max_new} | {tokens} | {o:.1f} | {h:.1f} | "
              f"{o / h:.2f} | {same}/{n} | {prefix}/{total} |")
    print("\nall repeats (tok/s):")
    for name, threads, batch, *_, ours_rates, hf_rates in rows:
        print(f"  {name} threads {threads} batch {batch}: ours {[round(x, 1) for x in ours_rates]}  "
              f"HF {[round(x, 1) for x in hf_rates]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
