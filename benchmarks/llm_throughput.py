"""LLM forward throughput: torchspex's padded, batched path vs Captum's ``LLMAttribution``.

Same tiny random GPT-2 (built from a config; a byte-level BPE tokenizer trained in-process),
same prompt, same target. Each side explains the target's log-probability with the prompt's
words as features; we count *masked prompts evaluated per second* (one "forward pass" in
Captum's batch-1 path). torchspex evaluates all 2^n word masks (method="exhaustive") in
left-padded batches of ``--batch`` prompts; Captum runs FeatureAblation (n + 1 prompts, one
model call each; also with its default token-by-token decoding) and KernelShap
(``n_samples`` prompts). Both sides get the same Captum ``TextTemplateInput``; torchspex's
own ``text_features`` input is timed too. Values are checked to agree (FeatureAblation read
off our spectrum).

A second table times a long prompt (``--long-tokens``, default 1,000 tokens; 0 skips it) with
the words as features: ``--long-masks`` random word masks evaluated by torchspex with
``perturbations_per_eval="auto"`` (prompts per pass chosen from the length) and with one
prompt per pass, and the largest logits tensor the model materialized.

    python benchmarks/llm_throughput.py            # 10 words, 1024 masks
    python benchmarks/llm_throughput.py --quick    # 6 words
"""

from __future__ import annotations

import argparse
import functools
import json
import time
import warnings
from pathlib import Path

import torch

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France and Rome is the capital of Italy.",
    "In the morning the old fisherman walked slowly down to the harbour.",
] * 20
WORDS = ["In", "the", "morning", "the", "old", "fisherman", "walked", "slowly", "down", "to", "the"]
TARGET = " harbour."


class Counter:
    """Counts model calls and rows (prompts); wraps ``model.forward`` because Captum calls
    ``model.forward(...)`` directly, which bypasses module hooks. ``functools.wraps`` keeps the
    signature visible, so torchspex still passes ``position_ids`` and ``logits_to_keep``."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.calls = self.rows = 0
        forward = model.forward

        @functools.wraps(forward)
        def counted(*args, **kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            self.calls += 1
            self.rows += int(ids.shape[0])
            return forward(*args, **kwargs)

        model.forward = counted

    def reset(self) -> None:
        self.calls = self.rows = 0


def build(n_layer: int, n_embd: int, n_positions: int = 128):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=500, min_frequency=1, show_progress=False,
                            special_tokens=["<|endoftext|>"])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>")
    eos = tok.eos_token_id
    config = GPT2Config(vocab_size=len(tok), n_positions=n_positions, n_embd=n_embd,
                        n_layer=n_layer, n_head=4, bos_token_id=eos, eos_token_id=eos)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = GPT2LMHeadModel(config).eval()
    return model, tok


def timed(fn, counter: Counter, repeat: int):
    best, out, rows, calls = float("inf"), None, 0, 0
    for _ in range(repeat):
        counter.reset()
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
        rows, calls = counter.rows, counter.calls
    return out, best, rows, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="6 words instead of 10")
    parser.add_argument("--batch", type=int, default=64, help="torchspex prompts per forward")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats (best is kept)")
    parser.add_argument("--long-tokens", type=int, default=1000,
                        help="tokens of the long prompt (0: skip that table)")
    parser.add_argument("--long-masks", type=int, default=64, help="masks on the long prompt")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"
                                             / "llm_throughput.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")

    from captum.attr import FeatureAblation, KernelShap, LLMAttribution, TextTemplateInput

    from torchspex.grouping import text_features
    from torchspex.llm import LLMSpectralInteraction

    n_words = 6 if args.quick else 10
    model, tok = build(n_layer=2, n_embd=64)
    counter = Counter(model)
    words = WORDS[-n_words:]
    prefix = "Q: "
    template = prefix + " ".join(["{}"] * n_words)
    inp = TextTemplateInput(template, values=words)
    feats = text_features(prefix + " ".join(words), tok, regions=[" ".join(words)])
    assert feats.labels == words
    explainer = LLMSpectralInteraction(model, tok)
    common = {"method": "exhaustive", "perturbations_per_eval": args.batch}

    rows = []

    def record(name, seconds, n_rows, n_calls, note=""):
        rows.append({"method": name, "prompts": n_rows, "model_calls": n_calls,
                     "seconds": seconds, "prompts_per_s": n_rows / seconds, "note": note})

    ours_tt, s, r, c = timed(lambda: explainer.attribute(inp, TARGET, **common), counter,
                             args.repeat)
    record("torchspex (Captum TextTemplateInput)", s, r, c, f"2^{n_words} masks")
    _, s, r, c = timed(lambda: explainer.attribute(feats, TARGET, **common), counter, args.repeat)
    record("torchspex (text_features)", s, r, c, f"2^{n_words} masks")

    fa = LLMAttribution(FeatureAblation(model), tok)
    fa_out, s, r, c = timed(lambda: fa.attribute(inp, TARGET, forward_in_tokens=False), counter,
                            args.repeat)
    record("Captum FeatureAblation", s, r, c, "forward_in_tokens=False")
    _, s, r, c = timed(lambda: fa.attribute(inp, TARGET), counter, args.repeat)
    record("Captum FeatureAblation (token by token)", s, n_words + 1, c,
           "default forward_in_tokens=True: one call per target token")
    ks = LLMAttribution(KernelShap(model), tok)
    n_ks = 64 if args.quick else 128
    _, s, r, c = timed(lambda: ks.attribute(inp, TARGET, forward_in_tokens=False,
                                            n_samples=n_ks), counter, args.repeat)
    record("Captum KernelShap", s, r, c, f"n_samples={n_ks}, forward_in_tokens=False")

    # Same numbers: Captum's feature ablation read off our spectrum (no new model calls).
    drop_one = ~torch.eye(n_words, dtype=torch.bool)
    ablation = (torch.as_tensor(ours_tt.full_value) - ours_tt.predict(drop_one)).T
    max_diff = float((ablation[0].float() - fa_out.seq_attr).abs().max())

    ours = rows[1]["prompts_per_s"]
    print(f"\nLLM throughput: tiny GPT-2 (2 layers, d=64), {n_words} word features, target "
          f"{TARGET!r}, {args.threads} CPU thread(s), torchspex batch {args.batch}\n")
    print("| method | prompts | model calls | seconds | prompts/s | torchspex speed-up | note |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for row in rows:
        speedup = ours / row["prompts_per_s"]
        row["torchspex_speedup"] = speedup
        print(f"| {row['method']} | {row['prompts']} | {row['model_calls']} | "
              f"{row['seconds']:.3f} | {row['prompts_per_s']:.0f} | {speedup:.1f}x | "
              f"{row['note']} |")
    print(f"\nmax |FA(Captum) - FA(torchspex spectrum)| = {max_diff:.2e}")
    long_rows = long_prompt(args) if args.long_tokens > 0 else []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "llm_throughput", "n_words": n_words, "threads": args.threads,
        "batch": args.batch, "rows": rows, "fa_max_abs_diff": max_diff,
        "long_prompt_rows": long_rows, "torch": torch.__version__,
    }, indent=2))
    print(f"wrote {out}")


def long_prompt(args) -> list[dict]:
    """Masked prompts per second on a ``--long-tokens`` prompt, words as features."""
    from torchspex.grouping import text_features
    from torchspex.llm import LLMSpectralInteraction

    model, tok = build(n_layer=2, n_embd=64, n_positions=args.long_tokens + 64)
    sentence = " ".join(CORPUS[:3])
    per = len(tok.encode(" " + sentence))
    text = " ".join([sentence] * max(1, round(args.long_tokens / per)))
    feats = text_features("Q: " + text, tok, regions=[text])
    explainer = LLMSpectralInteraction(model, tok)
    target = explainer.target_ids(feats, TARGET)
    n_tokens = int(feats.input_ids.numel()) + target.numel()
    masks = torch.rand(args.long_masks, feats.n_features,
                       generator=torch.Generator().manual_seed(0)) < 0.5
    largest = []
    model.lm_head.register_forward_hook(lambda m, a, out: largest.append(tuple(out.shape)))
    counter = Counter(model)
    out = []
    reference = None
    for batch in ("auto", 1):
        largest.clear()
        values, s, r, c = timed(lambda b=batch: explainer.values(feats, masks, target, b),
                                counter, args.repeat)
        reference = values if reference is None else reference
        size = explainer._auto_size(feats, target) if batch == "auto" else batch
        logits = max(largest, key=lambda shape: shape[0] * shape[1] * shape[2])
        out.append({"perturbations_per_eval": str(batch), "prompts_per_pass": size,
                    "prompts": r, "model_calls": c, "seconds": s, "prompts_per_s": r / s,
                    "largest_logits": list(logits),
                    "max_abs_diff": float((values - reference).abs().max())})
    print(f"\nLong prompt: {n_tokens} tokens (prompt + target), {feats.n_features} word "
          f"features, {args.long_masks} random masks, same tiny GPT-2, {args.threads} thread(s)\n")
    print("| perturbations_per_eval | prompts per pass | model calls | seconds | prompts/s | "
          "largest logits [b, T, V] | max diff vs auto |")
    print("|---|---:|---:|---:|---:|---|---:|")
    for row in out:
        print(f"| {row['perturbations_per_eval']} | {row['prompts_per_pass']} | "
              f"{row['model_calls']} | {row['seconds']:.3f} | {row['prompts_per_s']:.0f} | "
              f"{row['largest_logits']} | {row['max_abs_diff']:.1e} |")
    for row in out:
        row["n_tokens"], row["n_features"] = n_tokens, int(feats.n_features)
    return out


if __name__ == "__main__":
    main()
