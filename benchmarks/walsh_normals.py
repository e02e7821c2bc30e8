"""When the fold normal equations come from Walsh sums: seconds of both ways, one thread.

The regression's cross-validation needs every fold's training share of ``A'WA`` and ``A'Wy``
for a Walsh design ``A`` of ``s`` terms at ``p`` pair rows over ``n`` features. Two exact ways
(equal up to round-off): products over the rows (``_fold_normals``, about ``s^2 p``
multiply-adds) or one Walsh-Hadamard transform of each fold's weighted histogram over the
``2^n`` masks and gathers from it (``_walsh_normals``, about ``F n 2^n`` for the transforms
plus ``F s^2`` gathered entries). This times both over the sizes the decoder meets (random
rows, triples as terms; ``F`` = 3 folds and float32 fold matrices from 512 terms, else 5 and
float64, as the decoder) and checks the rule that picks between them
(``pf._walsh_normals_pay``).

    python benchmarks/walsh_normals.py

Prints one line per size and writes ``results/walsh_normals.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from functools import partial
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import torch

from torchspex.decoders import _part_fit as pf
from torchspex.decoders.refit import walsh_design

SIZES = [(13, 1023, 781), (14, 2047, 781), (16, 255, 200), (16, 511, 400), (16, 511, 600),
         (16, 1023, 781), (16, 2047, 781), (18, 1023, 781), (18, 2047, 781),
         (20, 2047, 1100), (20, 4095, 781)]  # fmt: skip


def _seconds(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "walsh_normals.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for n, p, s in SIZES:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(p, n, generator=g) < 0.5
        support = torch.stack([torch.randperm(n, generator=g)[:3] for _ in range(s)])
        support = support.sort(dim=1).values
        w = torch.rand(p, generator=g, dtype=torch.float64)
        y = torch.randn(p, 1, generator=g, dtype=torch.float64)
        folds = pf.LARGE_PART_FOLDS if s >= pf.CV_SINGLE_FROM else pf.N_FOLDS
        dtype = torch.float32 if s >= pf.CV_SINGLE_FROM else torch.float64
        fold = torch.randperm(p, generator=g) % folds
        a = walsh_design(x, support, n)
        aw = w.unsqueeze(1) * a
        walsh = _seconds(partial(pf._walsh_normals, x, support, w, y, fold, folds, n, dtype),
                         args.repeats)  # fmt: skip
        products = _seconds(partial(pf._fold_normals, a, aw, y, fold, folds), args.repeats)
        rule = pf._walsh_normals_pay(n, s, p, folds)
        row = {"n": n, "rows": p, "terms": s, "folds": folds, "walsh_s": walsh,
               "products_s": products, "ratio": walsh / products, "rule_picks_walsh": rule,
               "rule_right": rule == (walsh < products)}  # fmt: skip
        rows.append(row)
        print(f"n = {n:2d}  rows {p:5d}  terms {s:5d}  folds {folds}  walsh {walsh:.4f} s  "
              f"products {products:.4f} s  ratio {walsh / products:5.2f}  rule: "
              f"{'walsh' if rule else 'products'}{'' if row['rule_right'] else '  (slower)'}",
              flush=True)  # fmt: skip
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
