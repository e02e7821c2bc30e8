"""The cross-validation's best error per ridge penalty: the measurement behind ``PENALTY_WALK``.

Runs the default decoder with every penalty scored (no walk) and, for every part it fits (the
odd and the even part; several with the cross-fitted proxy), records the best cross-validated
error over the prefixes at each penalty of ``_PENALTIES``. Prints them relative to the part's
best, whether they fall then rise along the ladder (unimodal: the walk then finds the best),
and which penalty the walk would have stopped at.

    python benchmarks/cv_penalty_profile.py                 # 3 games x 512-4,096 calls x 2 seeds
    python benchmarks/cv_penalty_profile.py --games MLP --budgets 1024 --seeds 4

Writes ``results/cv_penalty_profile.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import decode_variants as dv
import torch

import torchspex
from torchspex.decoders import _part_fit as pf


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", default="MLP,MiniLM,2x2")
    parser.add_argument("--budgets", default="512,1024,4096")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "cv_penalty_profile.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    original = pf._cross_validate
    parts: list[tuple[int, list[float]]] = []

    def recording(*a, **k):  # every scored setting, then the caller's `keep`
        keep = k.pop("keep", a[12] if len(a) > 12 else 1)
        normal = k.pop("normal", a[13] if len(a) > 13 else None)
        scored = original(*a[:12], keep=1 << 30, normal=normal)
        best = [min((t[0] for t in scored if t[2] == pen and t[1] > 0), default=math.inf)
                for pen in pf._PENALTIES]  # fmt: skip
        parts.append((a[0].shape[1], best))
        return scored[:keep]

    pf._cross_validate = recording
    pf.PENALTY_WALK, tol = False, pf.AVG_TOL
    pf.AVG_TOL = math.inf  # every scored setting comes back (the caller keeps its `keep`)
    rows = []
    try:
        for pattern in args.games.split(","):
            game = dv._game(pattern)
            for budget in [int(b) for b in args.budgets.split(",")]:
                for seed in range(args.seeds):
                    parts.clear()
                    torchspex.explain(game, game.n, n_samples=budget, generator=seed,
                                      index="SV", mask_format="numpy")  # fmt: skip
                    for size, best in parts:
                        low = min(best)
                        walk = pf._penalty_walk(
                            lambda i, first, best=best: [(best[i], 1, 0.0, 0.0)], len(best))
                        stop = min(walk, key=lambda i: walk[i][0][0])
                        down = [b for b in best if math.isfinite(b)]
                        turn = down.index(min(down))
                        unimodal = (all(x >= y for x, y in itertools.pairwise(down[:turn + 1]))
                                    and all(x <= y for x, y in itertools.pairwise(down[turn:])))
                        rows.append({"game": game.name, "budget": budget, "seed": seed,
                                     "terms": size, "best_per_penalty": best,
                                     "unimodal": unimodal, "walk_finds_best": best[stop] == low,
                                     "penalties_scored": len(walk)})  # fmt: skip
                        rel = " ".join(f"{p:g}:{b / low:.3f}" for p, b in zip(pf._PENALTIES, best))
                        print(f"{game.name:30s} {budget:5d} seed {seed} {size:5d} terms  {rel}  "
                              f"unimodal {unimodal}  walk finds it {best[stop] == low} "
                              f"({len(walk)} scored)", flush=True)  # fmt: skip
    finally:
        pf._cross_validate, pf.PENALTY_WALK, pf.AVG_TOL = original, True, tol
    found = sum(r["walk_finds_best"] for r in rows)
    print(f"the walk finds the best penalty in {found} of {len(rows)} parts, scoring "
          f"{sum(r['penalties_scored'] for r in rows)} penalties instead of "
          f"{len(rows) * len(pf._PENALTIES)}")
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps({"penalties": list(pf._PENALTIES), "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
