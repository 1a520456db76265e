#!/usr/bin/env python3
"""Train the small default Switch Transformer model (configs/models/switch-tiny).

The model learns three text tasks whose answers can be checked at a glance, chosen by the
first word of the prompt:

    reverse: cat dog sun      ->  sun dog cat        (3-6 distinct words, order reversed)
    sort: 5 2 9 1             ->  1 2 5 9            (3-7 distinct digits, ascending)
    next: 3 0 7               ->  4 1 8              (3-6 digits 0-8, each plus one)

Steps:
  1. write a text corpus of the tasks and train a SentencePiece unigram model on it with T5's id
     conventions (pad=0, eos=1, unk=2, no bos) -> spiece.model;
  2. build a small SwitchTransformersConfig (8 experts, every second layer sparse) and train
     SwitchTransformersForConditionalGeneration with AdamW on freshly generated examples, using
     Hugging Face's loss (cross entropy + router z-loss + load-balancing loss);
  3. evaluate exact match on held-out examples with greedy `generate`, measure how the routers
     spread held-out tokens over experts, and save config.json + model.safetensors (float32),
     spiece.model, prompts.jsonl and README.md into --out.

Encoder inputs are the SentencePiece ids of the prompt followed by eos (1), as T5Tokenizer does;
labels are the answer's ids followed by eos; the decoder starts from pad (0).
"""
import argparse
import io
import json
import os
import platform
import random
import sys
import time

# The tasks and their generator, shared with launch/experiments/make_prompts.py.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../launch/experiments"))
from tiny_tasks import TASKS, WORDS, heldout_examples, make_example  # noqa: E402

# Kept small so that the whole directory stays under 3 MB (float32).
D_MODEL, D_FF, D_KV, NUM_HEADS = 64, 96, 16, 4


def parse_args():
    p = argparse.ArgumentParser(
        description="Train the tiny Switch Transformer default model (reverse / sort / next tasks) "
                    "and save it in the Hugging Face layout with a SentencePiece spiece.model.")
    p.add_argument("--out", default="configs/models/switch-tiny",
                   help="output directory (default: %(default)s)")
    p.add_argument("--steps", type=int, default=2000, help="training steps (default: %(default)s)")
    p.add_argument("--seed", type=int, default=1234, help="random seed (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="examples per step (default: %(default)s)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    p.add_argument("--vocab-size", type=int, default=128, help="SentencePiece vocab size, an upper bound: the unigram trainer keeps only the pieces "
                        "the task text supports (default: %(default)s)")
    p.add_argument("--heldout", type=int, default=200, help="held-out examples per task (default: %(default)s)")
    p.add_argument("--layers", type=int, default=4, help="encoder and decoder layers (default: %(default)s)")
    return p.parse_args()


def main():
    args = parse_args()
    t_start = time.time()
    import numpy as np
    import sentencepiece as spm
    import torch
    import transformers
    from transformers import SwitchTransformersConfig, SwitchTransformersForConditionalGeneration

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    print(f"[train_tiny_model] torch {torch.__version__}, transformers {transformers.__version__}, "
          f"sentencepiece {spm.__version__}, python {platform.python_version()}")
    print(f"[train_tiny_model] out={args.out} steps={args.steps} seed={args.seed} "
          f"batch={args.batch_size} lr={args.lr} threads={args.threads}")

    # ---- held-out set (fixed by the seed, never trained on) ----------------------------------
    heldout = heldout_examples(args.seed, args.heldout)  # (task, prompt, answer)
    heldout_prompts = {prompt for _, prompt, _ in heldout}

    # ---- 1. SentencePiece ------------------------------------------------------------------
    rng_corpus = random.Random(args.seed + 2)
    lines = []
    for _ in range(3000):
        prompt, answer = make_example(rng_corpus, rng_corpus.choice(TASKS))
        lines += [prompt, answer]
    model_io = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model_io, vocab_size=args.vocab_size,
        model_type="unigram", character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>", hard_vocab_limit=False,
        normalization_rule_name="identity",
        num_threads=1, seed_sentencepiece_size=10000, minloglevel=2)
    spm_bytes = model_io.getvalue()
    with open(os.path.join(args.out, "spiece.model"), "wb") as f:
        f.write(spm_bytes)
    sp = spm.SentencePieceProcessor(model_proto=spm_bytes)
    vocab = sp.get_piece_size()
    print(f"[train_tiny_model] sentencepiece unigram vocab={vocab}; "
          f"'{heldout[0][1]}' -> {sp.encode(heldout[0][1], out_type=str)}")
    for task, prompt, answer in heldout:  # the text must round-trip exactly
        assert sp.decode(sp.encode(prompt)) == prompt and sp.decode(sp.encode(answer)) == answer

    EOS, PAD = 1, 0

    def enc(text):
        return sp.encode(text) + [EOS]

    def pad_batch(seqs, value):
        n = max(len(s) for s in seqs)
        return torch.tensor([s + [value] * (n - len(s)) for s in seqs], dtype=torch.long)

    # ---- 2. model -----------------------------------------------------------------------------
    config = SwitchTransformersConfig(
        vocab_size=vocab, d_model=D_MODEL, d_ff=D_FF, d_kv=D_KV, num_heads=NUM_HEADS,
        num_layers=args.layers, num_decoder_layers=args.layers, num_experts=8,
        # every second block (odd index) sparse; HF derives the step from num_sparse_*_layers, so
        # both are given and agree (as in google/switch-base-8: 12 layers, 6 sparse, step 2)
        num_sparse_encoder_layers=args.layers // 2, num_sparse_decoder_layers=args.layers // 2,
        encoder_sparse_step=2, decoder_sparse_step=2, expert_capacity=64,
        router_bias=False, router_jitter_noise=0.01, router_dtype="float32",
        router_ignore_padding_tokens=False, router_z_loss_coef=0.001, router_aux_loss_coef=0.001,
        relative_attention_num_buckets=32, relative_attention_max_distance=128,
        dropout_rate=0.0, layer_norm_epsilon=1e-6, initializer_factor=1.0,
        dense_act_fn="relu", tie_word_embeddings=True, is_encoder_decoder=True, use_cache=True,
        pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=PAD)
    model = SwitchTransformersForConditionalGeneration(config)
    n_params = sum(p.numel() for p in model.parameters())
    sparse = [n for n, m in model.named_modules() if n.endswith("mlp") and hasattr(m, "router")]
    assert config.encoder_sparse_step == 2 and config.decoder_sparse_step == 2
    print(f"[train_tiny_model] model: {n_params} parameters, d_model={D_MODEL} d_ff={D_FF} "
          f"d_kv={D_KV} heads={NUM_HEADS} "
          f"layers={args.layers}+{args.layers}, 8 experts, sparse layers: {sparse}")

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    warmup = max(1, min(200, args.steps // 10))

    def lr_at(step):
        if step < warmup:
            return args.lr * (step + 1) / warmup
        frac = (step - warmup) / max(1, args.steps - warmup)
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * frac)))

    rng_train = random.Random(args.seed + 3)
    model.train()
    t0 = time.time()
    for step in range(args.steps):
        prompts, answers = [], []
        while len(prompts) < args.batch_size:
            prompt, answer = make_example(rng_train, TASKS[len(prompts) % len(TASKS)])
            if prompt in heldout_prompts:
                continue
            prompts.append(prompt)
            answers.append(answer)
        input_ids = pad_batch([enc(t) for t in prompts], PAD)
        labels = pad_batch([enc(t) for t in answers], -100)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        out = model(input_ids=input_ids, attention_mask=(input_ids != PAD).long(), labels=labels,
                    output_router_logits=True)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            with torch.no_grad():
                pred = out.logits.argmax(-1)
                mask = labels != -100
                tok_acc = ((pred == labels) & mask).sum().item() / mask.sum().item()
                seq_acc = ((pred == labels) | ~mask).all(-1).float().mean().item()
            print(f"[train_tiny_model] step {step:5d}  loss {out.loss.item():.4f}  "
                  f"token acc {tok_acc:.3f}  seq acc (teacher forced) {seq_acc:.3f}  "
                  f"lr {lr_at(step):.2e}  {time.time() - t0:.0f}s", flush=True)
    train_s = time.time() - t0
    print(f"[train_tiny_model] trained {args.steps} steps in {train_s:.0f}s")

    # ---- 3. evaluation ------------------------------------------------------------------------
    model.eval()

    def generate(prompts):
        ids = pad_batch([enc(t) for t in prompts], PAD)
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=(ids != PAD).long(),
                                 max_new_tokens=20, do_sample=False, num_beams=1)
        return [sp.decode([i for i in row.tolist() if i not in (PAD, EOS)]) for row in out]

    results = []
    for i in range(0, len(heldout), 50):
        chunk = heldout[i:i + 50]
        for (task, prompt, answer), got in zip(chunk, generate([p for _, p, _ in chunk])):
            results.append((task, prompt, answer, got))
    acc = {t: np.mean([g == a for tk, _, a, g in results if tk == t]) for t in TASKS}
    acc_all = np.mean([g == a for _, _, a, g in results])
    for t in TASKS:
        print(f"[train_tiny_model] held-out exact match {t:8s}: {acc[t]:.3f}")
    print(f"[train_tiny_model] held-out exact match overall : {acc_all:.3f} ({len(results)} examples)")
    wrong = [r for r in results if r[2] != r[3]][:5]
    for task, prompt, answer, got in wrong:
        print(f"[train_tiny_model]   miss: '{prompt}' -> '{got}' (want '{answer}')")

    # Router usage: the expert each non-pad held-out token picks (top-1, no capacity drop at this
    # size), per sparse layer, per task; decoder tokens are teacher-forced with the reference answer.
    routers = {n: m.router for n, m in model.named_modules() if hasattr(m, "router")}
    captured = {}
    hooks = [r.register_forward_hook(
        lambda mod, inp, outp, name=name: captured.setdefault(name, []).append(outp[2].argmax(-1)))
        for name, r in routers.items()]
    usage = {name: {t: [0] * 8 for t in TASKS} for name in routers}
    for task in TASKS:
        items = [(p, a) for tk, p, a in heldout if tk == task]
        ids = pad_batch([enc(p) for p, _ in items], PAD)
        labels = pad_batch([enc(a) for _, a in items], -100)
        captured.clear()
        with torch.no_grad():
            model(input_ids=ids, attention_mask=(ids != PAD).long(), labels=labels)
        for name, chosen in captured.items():
            mask = (ids != PAD) if name.startswith("encoder") else (labels != -100)
            for e in chosen[0][mask].tolist():
                usage[name][task][e] += 1
    for h in hooks:
        h.remove()
    print("[train_tiny_model] router usage on held-out tokens (tokens per expert 0..7):")
    hist_lines = []
    for name in routers:
        total = [sum(usage[name][t][e] for t in TASKS) for e in range(8)]
        line = f"{name:28s} all     {total}"
        hist_lines.append(line)
        for t in TASKS:
            hist_lines.append(f"{'':28s} {t:7s} {usage[name][t]}")
    for line in hist_lines:
        print("[train_tiny_model]   " + line)

    # ---- save ---------------------------------------------------------------------------------
    model.generation_config.decoder_start_token_id = PAD
    model.generation_config.pad_token_id = PAD
    model.generation_config.eos_token_id = EOS
    model.to(torch.float32).save_pretrained(args.out, safe_serialization=True)
    # 8 held-out prompts, the first ones of each task, interleaved (skipping prompts whose answer
    # equals their input, e.g. an already sorted list, which would check nothing).
    picks = []
    per_task = {t: [r for r in results if r[0] == t and r[1].split(": ", 1)[1] != r[2]]
                for t in TASKS}
    for k in range(3):
        for t in TASKS:
            if len(picks) < 8:
                picks.append(per_task[t][k])
    with open(os.path.join(args.out, "prompts.jsonl"), "w") as f:
        for k, (task, prompt, answer, got) in enumerate(picks):
            f.write(json.dumps({"id": f"{task}-{k}", "text": prompt}) + "\n")
    print("[train_tiny_model] prompts.jsonl (prompt -> HF greedy output | expected):")
    for task, prompt, answer, got in picks:
        print(f"[train_tiny_model]   {prompt!r} -> {got!r} | {answer!r}")

    # The saved directory must reproduce the same greedy outputs when loaded back.
    model = SwitchTransformersForConditionalGeneration.from_pretrained(args.out).eval()
    assert model.config.encoder_sparse_step == 2 and model.config.decoder_sparse_step == 2
    reloaded = generate([p for _, p, _, _ in picks])
    assert reloaded == [g for _, _, _, g in picks], (reloaded, picks)
    print("[train_tiny_model] reloaded the saved model: same greedy outputs")

    total_s = time.time() - t_start
    cmd = " ".join(["python3 tests/reference/train_tiny_model.py"] + sys.argv[1:])
    readme = f"""# switch-tiny — the small default Switch Transformer model

A tiny `SwitchTransformersForConditionalGeneration` (Hugging Face layout: `config.json` +
`model.safetensors`, float32) with a SentencePiece `spiece.model`, trained from scratch by
`tests/reference/train_tiny_model.py` so that the runtime has a real, small, *trained* MoE model
whose routers make uneven, meaningful choices and whose answers can be checked at a glance.

## Task
Three text tasks, chosen by the first word of the prompt:

| prompt | answer | what |
|---|---|---|
| `reverse: cat dog sun` | `sun dog cat` | 3-6 distinct words from a 24-word list, order reversed |
| `sort: 5 2 9 1` | `1 2 5 9` | 3-7 distinct digits, ascending |
| `next: 3 0 7` | `4 1 8` | 3-6 digits 0-8, each plus one |

Words: {" ".join(WORDS)}.

## Tokenizer and ids
`spiece.model`: SentencePiece unigram, vocab {vocab}, trained on the task text, T5 conventions:
pad=0, eos=1, unk=2, no bos. Encoder input = `sp.encode(prompt) + [1]` (as `T5Tokenizer`);
labels = `sp.encode(answer) + [1]`; `decoder_start_token_id` = 0. Decode = `sp.decode` of the
generated ids without pad/eos.

## Model
d_model {D_MODEL}, d_ff {D_FF}, d_kv {D_KV}, {NUM_HEADS} heads, {args.layers} encoder + {args.layers} decoder layers,
8 experts, encoder_sparse_step = decoder_sparse_step = 2 (sparse blocks: odd block indices),
expert_capacity 64 (per sequence; no token is dropped for prompts of this size),
tied embeddings (decoder output scaled by d_model^-0.5), relative attention 32 buckets / max
distance 128, {n_params} parameters.

## Training
```
{cmd}
```
{args.steps} steps of batch {args.batch_size} (freshly generated, held-out prompts excluded), AdamW
(lr {args.lr}, betas 0.9/0.98, weight decay 0.01, {warmup} warm-up steps, cosine to 5%), gradient
clip 1.0, Hugging Face loss with `output_router_logits=True` (cross entropy + 0.001 router z-loss
+ 0.001 load-balancing loss), dropout 0, router jitter 0.01, seed {args.seed},
{args.threads} CPU threads. Training took {train_s:.0f} s (whole script {total_s:.0f} s) on
{platform.processor() or platform.machine()}.
Versions: python {platform.python_version()}, torch {torch.__version__}, transformers
{transformers.__version__}, sentencepiece {spm.__version__}.

## Held-out exact match (greedy `generate`, max_new_tokens 20, {args.heldout} prompts per task)
| task | exact match |
|---|---|
""" + "".join(f"| {t} | {acc[t]:.3f} |\n" for t in TASKS) + f"""| all | {acc_all:.3f} |

## Router usage on held-out tokens
Top-1 expert chosen by each sparse layer's router for every non-pad held-out token (encoder:
prompt tokens + eos; decoder: teacher-forced reference answer). Columns are experts 0..7.
```
""" + "\n".join(hist_lines) + """
```

## prompts.jsonl
Eight held-out prompts. Hugging Face greedy outputs:

| id | prompt | output |
|---|---|---|
""" + "".join(f"| {t}-{k} | `{p}` | `{g}` |\n" for k, (t, p, a, g) in enumerate(picks)) + """
Regenerate everything with the command above (the result depends on the torch version and
thread count only through floating-point rounding).
"""
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write(readme)
    for name in sorted(os.listdir(args.out)):
        print(f"[train_tiny_model] wrote {os.path.join(args.out, name)} "
              f"({os.path.getsize(os.path.join(args.out, name))} bytes)")
    print(f"[train_tiny_model] done in {total_s:.0f}s; held-out exact match {acc_all:.3f}")


if __name__ == "__main__":
    main()
