#!/usr/bin/env python3
"""End-to-end greedy generation: `build/moe generate` (ours) vs Hugging Face `model.generate` (peer),
and, on the dense T5 model, CTranslate2 (`ctranslate2.Translator`, float32 and int8) as a second peer.

Models (--models): a randomly initialised switch-base-8-shaped checkpoint and a randomly initialised
t5-base-shaped one (T5ForConditionalGeneration v1.0: relu, tied, no sparse layer; which `moe`
loads as a Switch model with every block dense), each built once and cached under --work, and the
trained default model configs/models/switch-tiny. For t5-base the same saved checkpoint is
converted once with `ctranslate2.converters.TransformersConverter` to float32 and to int8 (a
word-level tokenizer whose token i is id i is saved beside it, as the converter needs a vocabulary;
CTranslate2 is given those token strings, so every engine sees the same ids).

For each model, thread count and batch size, every engine runs side by side in one run, in turn
per repeat (ours for each --weights, HF, CT2 float32, CT2 int8) so that machine noise hits all
alike: same prompts (token ids, so no tokenizer is timed), same max_new_tokens, greedy, same thread
count (`--threads T` for ours, torch.set_num_threads(T) for HF, intra_threads=T and
inter_threads=1 for CT2). --weights W (a list, default f32) runs ours once per W, given to the
binary as `--weights W` unless W is f32; its rows are labelled by W.

Prints, per engine, tokens/s (median of --repeats repeats after one warm-up repeat that is not
counted), the ratio to HF, and whether the generated ids agree with HF's (whole sequences, and
tokens up to the first difference).

What is timed: generation only (encoder + greedy decoder), not loading. Ours is a fresh process per
repeat; its time is the serving time `moe generate` prints (loading excluded). HF and CT2 are warm
in this process (model loaded once), timed around each generate() / translate_batch() call, one
call per batch of prompts, in prompt order. Tokens counted: every generated id up to and including
eos (the decoder start token is not one); CT2 is asked for the end token and min_decoding_length 0,
as HF's defaults are. Loading is listed apart, after the table: the load time each `moe generate`
process prints, HF's from_pretrained and CT2's Translator() (the checkpoint in the page cache).

The limit: at a few rows a decode step is bound by streaming its weights from memory. Before the
runs (and after, best of both) the read bandwidth is probed (bench_skinny_gemm's read_bandwidth:
one thread summing 512 MiB, beside the moe binary; and read_bandwidth_all_cores: one thread per
core, each summing its share at once, the limit of rows run on every core); a step reads the decoder's
attention projections (self q, k, v, o and cross q, o: the cross keys and values are computed once
per prompt), its FFNs (dense, or per sparse layer the experts the batch's tokens pick: with B tokens
routed uniformly over E experts, E·(1 - (1 - 1/E)^B) of them on average) and the lm_head, at the
engine's bytes per weight (f32 4, bf16 2, int8 1). "of limit" = tok/s / (B × bandwidth / bytes per
step), with the bandwidth probed at the row's thread count (one, or one per core), printed for the
random models (switch-tiny fits in the cache).

--prefill N measures the prefill instead: prompts of N tokens, one new token each, and the rate is
prompt tokens per second up to the last prompt's first token (ours: its ttft_ms; HF and CT2: the
generate() / translate_batch() call).

Needs torch and transformers (CPU); sentencepiece for the default model's prompts; ctranslate2
for the CT2 rows (with t5-base). Installs nothing. Every command run is printed with a leading '+'.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
from read_bandwidth import probe_bandwidth  # noqa: E402
IDLE_BETWEEN_ENGINES_S = 1.0
LOAD_SECONDS = {}  # (model, engine label) -> seconds each load took (ours: every process)
TINY = ROOT / "configs" / "models" / "switch-tiny"
EOS, PAD = 1, 0

# google/switch-base-8's shapes (its config.json): SwitchTransformersConfig with these overrides.
BASE8 = dict(vocab_size=32128, d_model=768, d_ff=3072, d_kv=64, num_heads=12, num_layers=12,
             num_decoder_layers=12, num_sparse_encoder_layers=6, num_sparse_decoder_layers=6,
             num_experts=8, expert_capacity=64, router_bias=False, tie_word_embeddings=True,
             relative_attention_num_buckets=32, relative_attention_max_distance=128,
             dropout_rate=0.1, router_jitter_noise=0.01, layer_norm_epsilon=1e-6,
             dense_act_fn="relu", pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=PAD)
# google-t5/t5-base's shapes (its config.json): T5Config, v1.0 (relu, tied).
T5BASE = dict(vocab_size=32128, d_model=768, d_ff=3072, d_kv=64, num_heads=12, num_layers=12,
              num_decoder_layers=12, feed_forward_proj="relu", tie_word_embeddings=True,
              relative_attention_num_buckets=32, relative_attention_max_distance=128,
              dropout_rate=0.1, layer_norm_epsilon=1e-6,
              pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=PAD)
# The random checkpoints: name -> (transformers config and model classes, overrides, seed, scale of
# shared.weight). With std-1 tied embeddings a random T5 only repeats the pad it starts from;
# shrunk, the blocks matter and the ids vary (as the reference fixtures do).
RANDOM = {"switch-base-8": ("SwitchTransformersConfig", "SwitchTransformersForConditionalGeneration", BASE8, 8, 1.0),
          "t5-base": ("T5Config", "T5ForConditionalGeneration", T5BASE, 5, 0.01)}
CT2_TYPES = ("float32", "int8")


def say(cmd):
    print("+ " + (cmd if isinstance(cmd, str) else shlex.join(str(c) for c in cmd)), flush=True)


def token(i):
    """The token string of id i in the word-level vocabulary saved for CTranslate2."""
    return {PAD: "<pad>", EOS: "</s>", 2: "<unk>"}.get(i, f"w{i}")


def cached(out: Path, marker: str):
    """Whether `out` was built from what `marker` says (its .complete file holds the marker)."""
    if (out / ".complete").exists() and (out / ".complete").read_text() == marker:
        print(f"[e2e] cached {out}")
        return True
    return False


def build_random(name: str, out: Path):
    """A random checkpoint of `name`'s shape in float32 safetensors, once (marker: .complete)."""
    config_class, model_class, overrides, seed, embed_scale = RANDOM[name]
    marker = json.dumps(overrides) + (f" shared.weight * {embed_scale}" if embed_scale != 1 else "") + "\n"
    if cached(out, marker):
        return
    import torch
    import transformers
    say(f"python: {model_class}({config_class}(**{overrides})) seed {seed}, shared.weight * {embed_scale}, "
        f"float32, save_pretrained('{out}', safe_serialization=True)")
    t0 = time.time()
    torch.manual_seed(seed)
    config = getattr(transformers, config_class)(**overrides)
    model = getattr(transformers, model_class)(config).float().eval()
    if embed_scale != 1:
        with torch.no_grad():
            model.shared.weight.mul_(embed_scale)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    if name == "t5-base":  # a vocabulary for CTranslate2's converter: token i <-> id i
        from tokenizers import Tokenizer, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast
        vocab = {token(i): i for i in range(overrides["vocab_size"])}
        tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                unk_token="<unk>").save_pretrained(out)
    (out / ".complete").write_text(marker)
    print(f"[e2e] built {out} in {time.time() - t0:.0f} s "
          f"({sum(p.numel() for p in model.parameters()) / 1e6:.0f} M parameters)")


def convert_ct2(model_dir: Path, out: Path, quantization: str):
    """The HF checkpoint converted by CTranslate2's converter, once (marker: .complete, which
    names the checkpoint's own marker)."""
    marker = quantization + " " + (model_dir / ".complete").read_text()
    if cached(out, marker):
        return
    import ctranslate2
    say(f"python: ctranslate2.converters.TransformersConverter('{model_dir}')"
        f".convert('{out}', quantization='{quantization}', force=True)")
    t0 = time.time()
    ctranslate2.converters.TransformersConverter(str(model_dir)).convert(
        str(out), quantization=quantization, force=True)
    (out / ".complete").write_text(marker)
    print(f"[e2e] converted {out} in {time.time() - t0:.0f} s")


def prompts_for(name: str, count: int, model_dir: Path, length: int = 0):
    """Token-id prompts (each ends with eos, as T5Tokenizer does); of `length` tokens when given."""
    if name == "switch-tiny":
        import sentencepiece as spm
        sp = spm.SentencePieceProcessor(model_file=str(model_dir / "spiece.model"))
        texts = [json.loads(line)["text"] for line in open(model_dir / "prompts.jsonl")]
        return [sp.encode(texts[i % len(texts)]) + [EOS] for i in range(count)]
    rng = random.Random(1234)  # random ids of random length: the weights are random too
    return [[rng.randrange(3, RANDOM[name][2]["vocab_size"])
             for _ in range(length - 1 if length else rng.randint(12, 40))] + [EOS]
            for _ in range(count)]


def write_jsonl(path: Path, prompts):
    with open(path, "w") as f:
        for i, ids in enumerate(prompts):
            f.write(json.dumps({"id": i, "input_ids": ids}) + "\n")


def cut_at_eos(row):
    return row[:row.index(EOS) + 1] if EOS in row else row


def run_ours(args, model_dir, prompts, batch, max_new, threads, weights, tag, moe=None, load_key=None):
    """One `moe generate` process over the prompts (continuous batching). → (tokens/s, ids).
    The rate is the one `moe generate` prints: serving time, model loading excluded. With
    --prefill, prompt tokens per second up to the last prompt's first token instead. `moe`: the
    binary (default --moe). The load time it prints is kept in LOAD_SECONDS[load_key]."""
    work = Path(args.work)
    inp, out = work / f"{tag}.in.jsonl", work / f"{tag}.out.jsonl"
    write_jsonl(inp, prompts)
    cmd = [moe or args.moe, "generate", "--model", model_dir, "--input", inp, "--output", out,
           "--max-new-tokens", max_new, "--batch-size", batch, "--threads", threads, "--quiet"]
    if weights != "f32":
        cmd += ["--weights", weights]
    env = dict(os.environ, **dict(kv.split("=", 1) for kv in args.ours_env.split()))
    say((["env", *args.ours_env.split()] if args.ours_env else []) + cmd)
    text = subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, env=env).stdout
    rate = float(text.split(" tokens/s")[0].rsplit(" ", 1)[1])
    if load_key:
        LOAD_SECONDS.setdefault(load_key, []).append(float(text.split("loaded by rank 0 in ")[1].split()[0]))
    rows = [json.loads(line) for line in open(out)]
    if args.prefill:
        rate = sum(len(p) for p in prompts) / (max(r["ttft_ms"] for r in rows) / 1e3)
    return rate, [r["output_ids"] for r in rows]


def run_hf(model, prompts, batch, max_new, prefill=False):
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
        ids_out += [cut_at_eos(row[1:]) for row in out.tolist()]  # without the decoder start token
    done = sum(len(p) for p in prompts) if prefill else sum(len(r) for r in ids_out)
    return done / seconds, ids_out


def run_ct2(translator, prompts, batch, max_new, prefill=False):
    """CTranslate2 greedy translate_batch over the prompts in batches, as HF's. → (tokens/s, ids)."""
    ids_out, seconds = [], 0.0
    for first in range(0, len(prompts), batch):
        source = [[token(i) for i in p] for p in prompts[first:first + batch]]
        t0 = time.perf_counter()
        results = translator.translate_batch(source, beam_size=1, max_decoding_length=max_new,
                                             min_decoding_length=0, return_end_token=True)
        seconds += time.perf_counter() - t0
        for r in results:
            words = r.hypotheses[0]
            ids_out.append(cut_at_eos([EOS if w == "</s>" else PAD if w == "<pad>" else int(w[1:])
                                       for w in words]))
    done = sum(len(p) for p in prompts) if prefill else sum(len(r) for r in ids_out)
    return done / seconds, ids_out


def agreement(ids, hf):
    same = sum(a == b for a, b in zip(ids, hf))
    # Tokens up to the first difference: after one flips, the rest legitimately diverge.
    prefix = 0
    for a, b in zip(ids, hf):
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        prefix += n
    total = sum(max(len(a), len(b)) for a, b in zip(ids, hf))
    return same, len(ids), prefix, total


BYTES_PER_WEIGHT = {"f32": 4, "bf16": 2, "int8": 1, "float32": 4}


def step_bytes(config, batch, bytes_per_weight):
    """Bytes of weights one decode step of `batch` rows reads (see the docstring)."""
    d, ff, inner = config["d_model"], config["d_ff"], config["num_heads"] * config["d_kv"]
    layers = config.get("num_decoder_layers") or config["num_layers"]
    experts = config.get("num_experts", 0)
    step = config.get("decoder_sparse_step")
    if step is None:  # as transformers derives it
        sparse = config.get("num_sparse_decoder_layers", 0)
        step = layers // sparse if sparse else 0
    if config.get("model_type") == "t5":
        step = 0
    weights = config["vocab_size"] * d
    for i in range(layers):
        weights += 6 * d * inner
        sparse = step > 0 and i % step == step - 1
        picked = experts * (1 - (1 - 1 / experts) ** batch) if sparse else 1
        weights += picked * 2 * d * ff
    return weights * bytes_per_weight


def engine_bytes(engine):
    return BYTES_PER_WEIGHT.get(engine.split()[-1], 4)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--moe", default=str(ROOT / "build" / "moe"), help="the moe binary (default: build/moe)")
    p.add_argument("--work", default="/tmp/moe-e2e-bench", help="cache of the random checkpoints and run files")
    p.add_argument("--threads", default="1,2", help="thread counts, each for ours and for the peers (default 1,2)")
    p.add_argument("--repeats", type=int, default=3, help="measured repeats per row (median); plus one warm-up")
    p.add_argument("--batches", default="1,8", help="batch sizes (default 1,8)")
    p.add_argument("--models", default="switch-base-8,t5-base,switch-tiny",
                   help="which models (default all three: switch-base-8,t5-base,switch-tiny)")
    p.add_argument("--weights", default="f32",
                   help="ours' weight precisions, comma-separated: each runs as `moe generate --weights W` "
                        "(not passed for f32; default f32)")
    p.add_argument("--baseline", default="",
                   help="another moe binary (e.g. an earlier commit's build) run in turns with ours, "
                        "in rows labelled 'baseline W', to compare two builds in one run")
    p.add_argument("--no-ct2", action="store_true", help="leave CTranslate2 out (it runs on t5-base only)")
    p.add_argument("--prompts", type=int, default=8, help="prompts per repeat at batch > 1 (default 8)")
    p.add_argument("--prompts-batch1", type=int, default=2, help="prompts per repeat at batch 1 (default 2)")
    p.add_argument("--prompts-tiny", type=int, default=16, help="prompts per repeat for switch-tiny, any batch (default 16)")
    p.add_argument("--max-new-tokens-base", type=int, default=32,
                   help="for switch-base-8 and t5-base (default 32)")
    p.add_argument("--max-new-tokens-tiny", type=int, default=24, help="for switch-tiny (default 24)")
    p.add_argument("--ours-env", default="", help="extra environment for ours only, e.g. OMP_WAIT_POLICY=passive")
    p.add_argument("--build-only", action="store_true", help="only build the random checkpoints (and CT2 models)")
    p.add_argument("--prefill", type=int, default=0,
                   help="measure the prefill instead: prompts of this many tokens, one new token, "
                        "rate = prompt tokens / seconds to the last first token (e.g. 128)")
    args = p.parse_args()
    models = args.models.split(",")
    for name in models:
        if name not in RANDOM and name != "switch-tiny":
            sys.exit(f"--models: unknown model '{name}' (switch-base-8, t5-base, switch-tiny)")
    weights = args.weights.split(",")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model_dirs = {name: work / f"{name}-random" for name in models if name in RANDOM}
    model_dirs["switch-tiny"] = TINY
    ct2_dirs = {}
    for name in models:
        if name in RANDOM:
            build_random(name, model_dirs[name])
        if name == "t5-base" and not args.no_ct2:
            for q in CT2_TYPES:
                ct2_dirs[q] = work / f"{name}-random-ct2-{q}"
                convert_ct2(model_dirs[name], ct2_dirs[q], q)
    if args.build_only:
        return 0
    if not Path(args.moe).exists():
        sys.exit(f"{args.moe} not found: build first with launch/setup.sh build")

    import torch
    import transformers
    versions = f"torch {torch.__version__}, transformers {transformers.__version__}"
    if ct2_dirs:
        import ctranslate2
        versions += f", ctranslate2 {ctranslate2.__version__}"
    print(f"[e2e] {versions}, nproc {os.cpu_count()}, repeats {args.repeats} + 1 warm-up; "
          f"load average {os.getloadavg()[0]:.2f}")

    bandwidth = probe_bandwidth(args.moe)
    print("[e2e] read bandwidth: " + ", ".join(f"{t} thread(s) {b:.1f} GB/s" for t, b in bandwidth.items()))
    rows = []  # (model, engine, threads, batch, prompts, max_new, tokens, rates, hf rates, agreement)
    for name in models:
        model_dir = model_dirs[name]
        max_new = args.max_new_tokens_tiny if name == "switch-tiny" else args.max_new_tokens_base
        if args.prefill:
            max_new = 1
        model_class = RANDOM.get(name, RANDOM["switch-base-8"])[1]  # switch-tiny: a Switch model
        say(f"python: {model_class}.from_pretrained('{model_dir}', dtype=float32)")
        t0 = time.perf_counter()
        model = getattr(transformers, model_class).from_pretrained(model_dir, dtype=torch.float32).eval()
        LOAD_SECONDS[(name, "HF f32")] = [time.perf_counter() - t0]
        for threads in [int(t) for t in args.threads.split(",")]:
            torch.set_num_threads(threads)
            # engine label -> run(prompts, batch, tag) -> (tokens/s, ids); HF is the reference
            engines = {f"ours {w}": (lambda pr, b, tag, w=w: run_ours(args, model_dir, pr, b, max_new,
                                                                       threads, w, f"{tag}.{w}",
                                                                       load_key=(name, f"ours {w}")))
                       for w in weights}
            if args.baseline:
                for w in weights:
                    engines[f"baseline {w}"] = (
                        lambda pr, b, tag, w=w: run_ours(args, model_dir, pr, b, max_new, threads, w,
                                                         f"{tag}.baseline.{w}", args.baseline,
                                                         (name, f"baseline {w}")))
            engines["HF f32"] = lambda pr, b, tag: run_hf(model, pr, b, max_new, args.prefill > 0)
            if name == "t5-base":
                for q, d in ct2_dirs.items():
                    say(f"python: ctranslate2.Translator('{d}', device='cpu', intra_threads={threads}, "
                        f"inter_threads=1)")
                    t0 = time.perf_counter()
                    translator = ctranslate2.Translator(str(d), device="cpu", intra_threads=threads,
                                                        inter_threads=1)
                    LOAD_SECONDS.setdefault((name, f"CT2 {q}"), []).append(time.perf_counter() - t0)
                    engines[f"CT2 {q}"] = lambda pr, b, tag, t=translator: run_ct2(t, pr, b, max_new,
                                                                                  args.prefill > 0)
            for batch in [int(b) for b in args.batches.split(",")]:
                count = args.prompts_tiny if name == "switch-tiny" else args.prompts_batch1 if batch == 1 else args.prompts
                prompts = prompts_for(name, count, model_dir, args.prefill)
                rates = {e: [] for e in engines}
                ids = {}
                for rep in range(args.repeats + 1):
                    for engine, run in engines.items():
                        # The engine before may leave OpenMP threads spinning on a core for a while
                        # after its call (measured: ours 694-936 tok/s in one run right after HF,
                        # 938-960 once they had stopped): let them go to sleep first.
                        time.sleep(IDLE_BETWEEN_ENGINES_S)
                        rate, ids[engine] = run(prompts, batch, f"{name}.t{threads}.b{batch}.r{rep}")
                        if rep > 0:
                            rates[engine].append(rate)
                    kind = "warm-up" if rep == 0 else f"repeat {rep}"
                    print(f"[e2e] {name} threads {threads} batch {batch} {kind}: " +
                          ", ".join(f"{e} {r[-1] if rep else 0:.1f}" for e, r in rates.items()) + " tok/s",
                          flush=True)
                for engine in engines:
                    rows.append((name, engine, threads, batch, len(prompts), max_new,
                                 sum(len(r) for r in ids[engine]), rates[engine], rates["HF f32"],
                                 agreement(ids[engine], ids["HF f32"])))
        del model

    after = probe_bandwidth(args.moe)
    bandwidth = {t: max(b, after.get(t, 0)) for t, b in bandwidth.items()}
    measure = (f"prompt tokens ({args.prefill} per prompt) / seconds to the last prompt's first token"
               if args.prefill else "generated ids (to eos, at most max_new per prompt) / generation seconds")
    print(f"\ntokens/s = {measure}; "
          f"median of {args.repeats}; load average now {os.getloadavg()[0]:.2f}; read bandwidth "
          + ", ".join(f"{t} thread(s) {b:.1f} GB/s" for t, b in bandwidth.items())
          + " (best of the probes before and after)")
    print("| model | engine | threads | batch | prompts x max_new | tokens | tok/s | vs HF "
          "| limit tok/s | of limit | same sequences as HF | same-prefix tokens |")
    print("|" + "---|" * 12)
    configs = {name: json.load(open(d / "config.json")) for name, d in model_dirs.items()}
    for name, engine, threads, batch, n_prompts, max_new, tokens, r, hf, (same, n, prefix, total) in rows:
        o, h = statistics.median(r), statistics.median(hf)
        limit, share = "", ""
        if name in RANDOM and threads in bandwidth and not args.prefill:  # probed thread counts
            lim = batch * bandwidth[threads] * 1e9 / step_bytes(configs[name], batch, engine_bytes(engine))
            limit, share = f"{lim:.1f}", f"{100 * o / lim:.0f}%"
        print(f"| {name} | {engine} | {threads} | {batch} | {n_prompts} x {max_new} | {tokens} | {o:.1f} | "
              f"{o / h:.2f} | {limit} | {share} | {same}/{n} | {prefix}/{total} |")
    print("\nloading, seconds (ours: the 'loaded by rank 0' that each `moe generate` prints, median "
          "and range over its processes; HF: from_pretrained; CT2: Translator(), per thread count):")
    for (name, engine), seconds in LOAD_SECONDS.items():
        print(f"  {name} {engine}: {statistics.median(seconds):.2f} ({min(seconds):.2f}-{max(seconds):.2f}, "
              f"{len(seconds)} load(s))")
    print("\nall repeats (tok/s):")
    for name, engine, threads, batch, *_, r, _, _ in rows:
        print(f"  {name} {engine} threads {threads} batch {batch}: {[round(x, 1) for x in r]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
