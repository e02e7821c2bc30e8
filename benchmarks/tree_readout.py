"""Which read-out of a LightGBM proxy's Fourier spectrum is faster, by the number of features.

``tree_ensemble_to_fourier`` reads a booster trained on 0/1 masks in one of two exact ways:
the leaf read-out (``trees._binary_leaf_spectrum``: the leaves that fix the same bits as one
table, Walsh-Hadamard transformed) or the node expansion (``trees.tree_spectrum``:
each leaf's ``2^k`` terms at once, one coalesce). ``trees._LEAF_KEY_FEATURES`` picks the leaf
read-out up to that many features. This times both, one thread, on boosters of the shapes the
decoders build (depth 8 with 32 leaves, the regression's deep proxy; depth 8 with 256 leaves;
depth 6 with 64 leaves) fitted for a fixed number of rounds to 4,000 uniform masks of a planted
function (every feature linear, ten products each of 2 to 6 features, noise), and checks that
both give the same terms with coefficients equal to round-off.

    python benchmarks/tree_readout.py
    python benchmarks/tree_readout.py --features 16,20,30 --rounds 400

Prints one line per (features, booster) and writes ``results/tree_readout.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np
import torch

from torchspex.decoders import _proxy, trees
from torchspex.decoders._tree_parsers import parse_tree_ensemble

#: (max_depth, num_leaves, learning rate, share of --rounds): the regression's deep proxy, a
#: full depth-8 tree, a depth-6 one
BOOSTERS = ((8, 32, 0.15, 1.0), (8, 256, 0.15, 0.5), (6, 64, 0.15, 1.0))


def _best_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def _planted(n: int, rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = (rng.random((rows, n)) < 0.5).astype(np.float32)
    y = x @ rng.normal(size=n)
    for k in (2, 3, 4, 5, 6):
        for _ in range(10):
            y = y + rng.normal() * np.prod(x[:, rng.choice(n, min(k, n), replace=False)], axis=1)
    return x, y + 0.3 * rng.normal(size=rows)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", default="14,16,20,24,30")
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "tree_readout.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    rows: list[dict] = []
    for n in [int(v) for v in args.features.split(",")]:
        x, y = _planted(n, 4000, rng)
        for depth, leaves, rate, share in BOOSTERS:
            rounds = max(1, int(args.rounds * share))
            booster = _proxy.refit_proxy(x, y, depth, rate, rounds, 1, leaves)
            ens = parse_tree_ensemble(booster)
            routes = ens.goes_left(np.stack([np.ones(n), np.zeros(n)]))

            def leaf(ens=ens, routes=routes, n=n):
                return trees._binary_leaf_spectrum(ens, routes[:, 0], routes[:, 1], n)

            def expand(ens=ens, routes=routes, n=n):
                return trees.tree_spectrum(ens, routes[:, :1], routes[:, 1:].astype(np.float64),
                                           n)  # fmt: skip

            (li, lc), (ei, ec) = leaf(), expand()
            same = bool(torch.equal(li, ei)) and bool(torch.allclose(lc, ec, rtol=1e-9,
                                                                       atol=1e-12))  # fmt: skip
            row = {"n": n, "depth": depth, "leaves": leaves, "trees": rounds,
                   "leaf_ms": _best_ms(leaf, args.repeats),
                   "expansion_ms": _best_ms(expand, args.repeats), "same_terms": same,
                   "chosen": "leaf" if n <= trees._LEAF_KEY_FEATURES else "expansion"}  # fmt: skip
            rows.append(row)
            print(f"n={n:3d} depth {depth} leaves {leaves:3d} trees {rounds:3d}: leaf "
                  f"{row['leaf_ms']:7.1f} ms, expansion {row['expansion_ms']:7.1f} ms "
                  f"(chosen: {row['chosen']}; same terms: {same})", flush=True)  # fmt: skip
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps({"leaf_key_features": trees._LEAF_KEY_FEATURES,
                                    "rows": rows}, indent=1))  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
