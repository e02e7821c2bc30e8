"""LightGBM's row-wise against its column-wise histograms for the proxies' 0/1 masks.

The regression's and ProxySPEX's proxies (``torchspex.decoders._proxy``) fix LightGBM's
histogram layout so that it does not pick one by timing itself (which would make the trees
depend on the machine's load). Both layouts add each bin's gradients in the same row order, so
they grow the same trees; this script checks that (the model text up to its parameters, and the
predictions) and times one boosting round of each, one thread, on random 0/1 masks of the sizes
the decoders see (10-256 features, 200-3,300 training rows, depth 5 below 2,000 rows and 8 from
there, 32 leaves).

    python benchmarks/lgb_row_wise.py
    python benchmarks/lgb_row_wise.py --decoders   # the decoders' results, both layouts

Prints one line per size and writes ``results/lgb_row_wise.json`` (``--out``). ``--decoders``
instead runs the regression (``auto``) and ProxySPEX on the accuracy benchmark's games (19
cells, 10-256 features, 128-4,096 calls, 2 seeds) with each layout and checks that every
spectrum is bitwise the same (the decode seconds it prints are one run each: a hint only).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import lightgbm as lgb
import numpy as np

from torchspex.decoders import _proxy

HERE = Path(__file__).resolve().parent


def _booster(x: np.ndarray, y: np.ndarray, layout: str, depth: int) -> lgb.Booster:
    base = _proxy._base_params(x.shape[0], 1)
    for key in ("force_col_wise", "force_row_wise"):
        base.pop(key, None)
    data = {k: base[k] for k in ("verbosity", "max_bin", "min_data_in_bin",
                                 "feature_pre_filter", "num_threads")}  # fmt: skip
    train = lgb.Dataset(x, y, params=data, free_raw_data=False)
    train.construct()
    params = {**base, f"force_{layout}_wise": True, "max_depth": depth, "num_leaves": 32,
              "learning_rate": 0.1}  # fmt: skip
    return lgb.Booster(params=params, train_set=train)


def _decoders() -> int:
    """Both layouts through the decoders; returns the number of cells whose spectra differ."""
    import sys
    import warnings

    import torch

    sys.path.insert(0, str(HERE))
    import decode_variants as dv

    import torchspex

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    real = _proxy._base_params

    def layout_params(layout: str):
        def params(n_train: int, seed: int) -> dict:
            p = {k: v for k, v in real(n_train, seed).items() if not k.startswith("force_")}
            return {**p, f"force_{layout}_wise": True}

        return params

    cells = [("MLP", b, m) for b in (128, 512, 2048, 4096) for m in ("auto", "proxyspex")]
    cells += [("2x2", b, "auto") for b in (256, 1024, 4096)] + [("MiniLM", 1024, "auto")]
    cells += [("pixels", b, m) for b in (512, 2048) for m in ("auto", "proxyspex")]
    cells += [("hierarchical (n=64", 1024, "auto"), ("sparse (n=256", 512, "auto"),
              ("LightGBM", 256, "auto")]  # fmt: skip
    games: dict = {}
    differ = 0
    try:
        for name, budget, method in cells:
            game = games.setdefault(name, dv._game(name))
            spectra, secs = {}, {}
            for layout in ("col", "row"):
                _proxy._base_params = layout_params(layout)
                start = time.perf_counter()
                spectra[layout] = [
                    torchspex.explain(game, game.n, n_samples=budget, generator=seed,
                                      index="SV", mask_format="numpy", method=method).spectrum
                    for seed in range(2)]  # fmt: skip
                secs[layout] = time.perf_counter() - start
            same = all(torch.equal(a.indices, b.indices)
                       and torch.equal(a.coefficients, b.coefficients)
                       for a, b in zip(spectra["col"], spectra["row"]))  # fmt: skip
            differ += not same
            print(f"{game.name:40s} {budget:5d} {method:9s} bitwise equal: {same}  "
                  f"(column-wise {secs['col']:.2f} s, row-wise {secs['row']:.2f} s)", flush=True)
    finally:
        _proxy._base_params = real
    print(f"cells whose spectra differ: {differ} of {len(cells)}")
    return differ


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--decoders", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "lgb_row_wise.json")
    args = parser.parse_args(argv)
    if args.decoders:
        _decoders()
        return []
    rng = np.random.default_rng(0)
    rows = []
    for n in (10, 16, 64, 256):
        for m in (200, 800, 1600, 3300):
            x = (rng.random((m, n)) < 0.5).astype(np.float32)
            y = np.sin(x @ rng.standard_normal(n)) + x[:, 0] * x[:, 1] * x[:, 2]
            depth = 5 if m < 2000 else 8
            ms, trees, preds = {}, {}, {}
            for layout in ("col", "row"):
                booster = _booster(x, y, layout, depth)
                for _ in range(20):  # warm-up rounds, not timed
                    booster.update()
                start = time.perf_counter()
                for _ in range(args.rounds):
                    booster.update()
                ms[layout] = (time.perf_counter() - start) / args.rounds * 1e3
                trees[layout] = booster.model_to_string().split("\nparameters:")[0]
                preds[layout] = booster.predict(x)
            same = trees["col"] == trees["row"] and np.array_equal(preds["col"], preds["row"])
            row = {"n_features": n, "rows": m, "depth": depth, "col_ms": ms["col"],
                   "row_ms": ms["row"], "ratio": ms["row"] / ms["col"],
                   "same_trees": same}  # fmt: skip
            rows.append(row)
            print(f"{n:4d} features {m:5d} rows: column-wise {ms['col']:.3f} ms, row-wise "
                  f"{ms['row']:.3f} ms per round ({row['ratio']:.2f}x), same trees: {same}",
                  flush=True)  # fmt: skip
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps({"rounds": args.rounds, "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
