"""Factorization seconds at the matrix sides where torch's CPU LAPACK (MKL) is slow.

Sets the padding rule of ``torchspex/decoders/_linalg.py``: a batch of five symmetric positive
definite float64 matrices (the regression decoder's five cross-validation folds) is factored at
side ``s`` (plain torch), at ``s + 1`` and ``s + 8``, and through the padded helpers (which pad
to ``nice_side(s)``, a multiple of 8 and not of 128); one LU factor likewise, and the batch of
Cholesky factors in float32 (plain, at ``nice_side(s)``, and helper). One thread, best of
``--reps``. The helper's time is a copy and a factor, as
the decoder spends it per ridge penalty (it padded the matrix once before): where the side is
not padded, its ratio below 1 is that copy, which the decoder made before the helper too.

    python benchmarks/linalg_sizes.py

Prints one line per side and writes ``results/linalg_sizes.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
HERE = Path(__file__).resolve().parent

import torch

from torchspex.decoders import _linalg

SIDES = (362, 383, 384, 511, 512, 525, 640, 703, 767, 768, 781, 831, 960, 1000, 1001, 1024,
         1152, 1280, 1536, 2048)


def _best(fn, arg, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        fn(arg)
        best = min(best, time.perf_counter() - start)
    return best


def _spd(s: int, batch: int, gen: torch.Generator) -> torch.Tensor:
    a = torch.randn(batch, s + 64, s, dtype=torch.float64, generator=gen)
    return a.mT @ a


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "linalg_sizes.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    rows = []
    print(f"{'side':>5s} {'chol s':>8s} {'s+1':>8s} {'s+8':>8s} {'helper':>8s} {'ratio':>6s}"
          f" {'lu s':>8s} {'helper':>8s} {'ratio':>6s} {'f32 s':>8s} {'f32 nice':>8s}"
          f" {'helper':>8s} {'ratio':>6s}")
    for s in SIDES:
        g, g1, g8 = _spd(s, 5, gen), _spd(s + 1, 5, gen), _spd(s + 8, 5, gen)
        # the helper as the decoder uses it: padded once, then a copy and a factor per penalty
        shifted = _linalg.ShiftedCholesky(g)
        zero = torch.zeros(5, s, dtype=torch.float64)
        # float32, as the cross-validation factors parts of CV_SINGLE_FROM terms or more
        g32 = g.float()
        row = {"side": s,
               "chol32": _best(torch.linalg.cholesky_ex, g32, args.reps),
               "chol32_helper": _best(_linalg.ShiftedCholesky(g32), zero.float(), args.reps),
               "chol32_nice": _best(torch.linalg.cholesky_ex,
                                    _spd(_linalg.nice_side(s), 5, gen).float(), args.reps),
               "chol": _best(torch.linalg.cholesky_ex, g, args.reps),
               "chol_plus1": _best(torch.linalg.cholesky_ex, g1, args.reps),
               "chol_plus8": _best(torch.linalg.cholesky_ex, g8, args.reps),
               "chol_helper": _best(shifted, zero, args.reps),
               "lu": _best(torch.linalg.lu_factor, g[0], args.reps),
               "lu_helper": _best(_linalg.lu_factor, g[0], args.reps)}  # fmt: skip
        rows.append(row)
        print(f"{s:5d} {row['chol']:8.4f} {row['chol_plus1']:8.4f} {row['chol_plus8']:8.4f} "
              f"{row['chol_helper']:8.4f} {row['chol'] / row['chol_helper']:5.2f}x "
              f"{row['lu']:8.4f} {row['lu_helper']:8.4f} {row['lu'] / row['lu_helper']:5.2f}x "
              f"{row['chol32']:8.4f} {row['chol32_nice']:8.4f} {row['chol32_helper']:8.4f} "
              f"{row['chol32'] / row['chol32_helper']:5.2f}x", flush=True)  # fmt: skip
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps({"threads": 1, "torch": torch.__version__, "rows": rows},
                                   indent=1))  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
