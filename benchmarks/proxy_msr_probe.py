"""Probe: the default's Shapley values against a tree proxy's own, with and without an MSR
correction, on the very masks the default evaluated.

A lead for issue 31 (not a decoder of the library). On each game, budget and seed the default
(``torchspex.explain``, ``index="SV"``) runs on the real value function; its distinct masks and
values are then handed to

* ``proxy``: a LightGBM regressor (200 trees, rate 0.05, 15 leaves, 5 rows per leaf; fixed
  settings, not tuned) fitted on all of them, whose exact Shapley values (the game of the proxy
  on 0/1 masks: interventional TreeSHAP of the all-ones row against the all-zeros row) are read
  by :class:`torchspex.TreeInteraction`;
* ``proxy+msr``: those plus an MSR (maximum sample reuse) estimate of the Shapley values of the
  proxy's in-sample residual ``r = f - proxy`` (``r(empty) = 0``): ``phi_i = sum_S r(S) (1[i in
  S] a(|S|) - 1[i not in S] b(|S|))`` with ``a(s) = 1 / (n C(n-1, s-1))``, ``b(s) = 1 / (n
  C(n-1, s))``, each sampled size class scaled up to all its coalitions by its count
  (Horvitz-Thompson with the empirical inclusion rate); shapiq 1.8's RegressionMSR does this with
  an XGBoost proxy and its own design (``k_folds=1``).

The relative L2 error of each against the game's reference is printed per (game, budget), mean
over the seeds, and written to JSON. Games: the exact-table games of
``accuracy_vs_sampling.py`` (``--games MLP,MiniLM,2x2,pixels``: exact references) and the large-n
games of ``large_n.py`` (``--large "MiniLM sentences,MiniLM ~100 words"``), whose references
are read from ``large_n.py``'s cache (``--ref-cache``, ``--ref-calls`` as that run used) and
whose forward passes run here (MiniLM over sentences: about 0.15 s per call on this CPU), or
replayed from values recorded earlier (``--recorded``: an npz of packed masks ``keys``, their
``vals``, ``n`` and the reference ``sv``).

    python benchmarks/proxy_msr_probe.py --games MLP,MiniLM,2x2 --budgets 128,256,512,1024
    python benchmarks/proxy_msr_probe.py --large "MiniLM sentences" --budgets 250,500 \\
        --ref-calls 5000 --seeds 4
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np
import torch

import torchspex
from torchspex import TreeInteraction

PROXY = {"n_estimators": 200, "learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 5}


def msr_shapley(masks: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """The MSR estimate of the Shapley values of a game known at ``masks [m, n]`` (distinct,
    the empty one among them, its value 0) from its values ``residual [m]``."""
    n = masks.shape[1]
    log_fact = [math.lgamma(k + 1) for k in range(n + 2)]

    def log_comb(a: int, b: int) -> float:
        return log_fact[a] - log_fact[b] - log_fact[a - b]

    sizes = masks.sum(axis=1)
    phi = np.zeros(n)
    for size in np.unique(sizes).tolist():
        if size == 0:
            continue
        rows = sizes == size
        scale = math.exp(log_comb(n, size)) / int(rows.sum())
        kept, r = masks[rows].astype(np.float64), residual[rows]
        if size == n:
            phi += scale * r.sum() / n
            continue
        a = math.exp(-math.log(n) - log_comb(n - 1, size - 1))
        b = math.exp(-math.log(n) - log_comb(n - 1, size))
        phi += scale * (a * (kept * r[:, None]).sum(0) - b * ((1 - kept) * r[:, None]).sum(0))
    return phi


def proxy_shapley(masks: np.ndarray, values: np.ndarray, seed: int) -> tuple[np.ndarray, ...]:
    """``(proxy, proxy + msr)`` Shapley values from the masks and values (centred at empty)."""
    import lightgbm as lgb

    n = masks.shape[1]
    empty = ~masks.any(axis=1)
    centred = values - values[empty][0]
    x = masks.astype(np.float32)
    model = lgb.LGBMRegressor(verbose=-1, n_jobs=1, random_state=seed, **PROXY).fit(x, centred)
    explainer = TreeInteraction(model, masking="interventional", background=np.zeros((1, n)))
    own = explainer.attribute(np.ones((1, n)), index="SV").first_order("SV").numpy().ravel()
    residual = centred - model.predict(x).astype(np.float64)
    residual -= residual[empty][0]
    return own, own + msr_shapley(masks, residual)


def _games(args: argparse.Namespace) -> list[tuple[str, int, object, np.ndarray]]:
    games = []
    if args.games:
        import decode_variants as dv

        for pattern in args.games.split(","):
            game = dv._game(pattern)
            games.append((game.name, game.n, game, np.asarray(game.sv, dtype=np.float64)))
    if args.large:
        import large_n as ln

        for label in args.large.split(","):
            n, f, _ = ln._build(label.strip())
            name = f"{label.strip()} (n={n})"
            tag = "".join(c if c.isalnum() else "_" for c in name)
            path = Path(args.ref_cache) / f"{tag}_{args.ref_calls}.npz"
            if not path.exists():
                raise SystemExit(f"no reference at {path}: run large_n.py for {label!r} first")
            with np.load(path) as z:
                sv = 0.5 * (z["a"].mean(0) + z["b"].mean(0))

            def value(masks: np.ndarray, f=f) -> np.ndarray:
                return np.asarray(f(torch.from_numpy(np.asarray(masks, dtype=bool))))

            games.append((name, n, value, sv))
    for path in filter(None, args.recorded.split(",")):
        with np.load(path) as z:
            table = dict(zip([k.tobytes() for k in z["keys"]], z["vals"].tolist()))
            n, sv = int(z["n"]), np.asarray(z["sv"], dtype=np.float64)

        def replay(masks: np.ndarray, table=table) -> np.ndarray:
            packed = np.packbits(np.asarray(masks, dtype=bool), axis=1)
            return np.array([table[k.tobytes()] for k in packed])

        games.append((f"{Path(path).stem} (n={n}, recorded)", n, replay, sv))
    return games


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", default="", help="exact-table games (decode_variants names)")
    parser.add_argument("--large", default="", help="large_n.py game labels, comma-separated")
    parser.add_argument("--recorded", default="",
                        help="npz files of recorded values (keys: packed masks, vals, n, sv): "
                             "the default's masks must all be there (same budgets and seeds)")
    parser.add_argument("--budgets", default="128,256,512,1024")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--ref-cache", default="/tmp/torchspex_bench/large_n")
    parser.add_argument("--ref-calls", type=int, default=5000)
    parser.add_argument("--out", default=str(HERE / "results" / "proxy_msr_probe.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    rows = []
    for name, n, function, sv in _games(args):
        store: dict[bytes, float] = {}

        def game(masks: np.ndarray, function=function, store=store) -> np.ndarray:
            x = np.atleast_2d(np.asarray(masks)).astype(bool)
            keys = [k.tobytes() for k in np.packbits(x, axis=1)]
            todo = [i for i, k in enumerate(keys) if k not in store]
            if todo:
                new = np.asarray(function(x[todo]), dtype=np.float64).reshape(len(todo))
                store.update({keys[i]: v for i, v in zip(todo, new.tolist())})
            return np.array([store[k] for k in keys])

        for budget in [int(b) for b in args.budgets.split(",")]:
            errors: dict[str, list[float]] = {"default": [], "proxy": [], "proxy+msr": []}
            for seed in range(args.seeds):
                asked: list[np.ndarray] = []

                def recorded(masks: np.ndarray, asked=asked) -> np.ndarray:
                    asked.append(np.atleast_2d(np.asarray(masks)).astype(bool))
                    return game(masks)

                start = time.perf_counter()
                result = torchspex.explain(recorded, n, n_samples=budget, generator=seed,
                                           index="SV", mask_format="numpy")  # fmt: skip
                default = result.first_order("SV").numpy()
                seconds = time.perf_counter() - start
                masks = np.unique(np.concatenate(asked), axis=0)
                own, corrected = proxy_shapley(masks, game(masks), seed)
                for key, est in (("default", default), ("proxy", own), ("proxy+msr", corrected)):
                    errors[key].append(float(np.linalg.norm(est - sv) / np.linalg.norm(sv)))
                rows.append({"game": name, "budget": budget, "seed": seed, "masks": len(masks),
                             "default_s": seconds,
                             **{k: v[-1] for k, v in errors.items()}})  # fmt: skip
            means = {k: float(np.mean(v)) for k, v in errors.items()}
            print(f"{name:34s} {budget:6d}  default {means['default']:.4f}  proxy "
                  f"{means['proxy']:.4f}  proxy+msr {means['proxy+msr']:.4f}",
                  flush=True)  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": " ".join(sys.argv), "proxy": PROXY, "rows": rows},
                              indent=1))  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
