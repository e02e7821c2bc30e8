"""``method="auto"`` against its own parts, and where SPEX's hybrid should start (issue 28).

For each game and budget: the default (``auto``: the regression below
``torchspex.decoders.auto.SPEX_FEATURES`` features), ``hybrid`` (``auto`` with the threshold
lowered to ``--hybrid-from`` features, so SPEX spends ``SPEX_SHARE`` of the budget and the
better of SPEX and the regression on the rest is kept) and ``spex`` alone on the whole budget;
SV error against the exact values (planted games) or the reference (the digits CNN over 64
pixels), decode seconds (the value queries' time excluded), and what auto chose.

    python benchmarks/auto_vs_parts.py                       # about 6 minutes on one core
    python benchmarks/auto_vs_parts.py --games "sparse (n=64" --budgets 1024 --seeds 1

Writes ``results/auto_vs_parts.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import accuracy_vs_sampling as avs
import numpy as np
import torch

import torchspex
from torchspex.decoders import auto

GAMES = ("planted sparse (n=64", "planted hierarchical (n=64)", "planted sparse (n=256",
         "planted hierarchical (n=256)", "CNN digits pixels")  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", default=",".join(GAMES), help="comma list of label parts")
    parser.add_argument("--budgets", default="512,1024,4096")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--hybrid-from", type=int, default=32,
                        help="SPEX_FEATURES for the 'hybrid' variant")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "auto_vs_parts.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    default = auto.SPEX_FEATURES
    rows: list[dict] = []
    for pattern in args.games.split(","):
        game = avs._games(False, torch.Generator().manual_seed(0), [pattern])[0]
        for budget in [int(b) for b in args.budgets.split(",")]:
            for variant in ("auto", "hybrid", "spex"):
                errs, secs, chose = [], [], []
                for seed in range(args.seeds):
                    auto.SPEX_FEATURES = args.hybrid_from if variant == "hybrid" else default
                    game.eval_s = 0.0
                    start = time.perf_counter()
                    try:
                        res = torchspex.explain(
                            game, game.n, method="spex" if variant == "spex" else "auto",
                            n_samples=budget, generator=seed, index="SV", mask_format="numpy")
                    except Exception as err:  # a method failing at a budget is a result
                        chose.append(type(err).__name__)
                        continue
                    finally:
                        auto.SPEX_FEATURES = default
                    secs.append(time.perf_counter() - start - game.eval_s)
                    errs.append(avs._rel(res.first_order("SV").numpy(), game.sv))
                    chose.append(str((res.info.get("auto") or {}).get("choice", variant)))
                row = {"game": game.name, "budget": budget, "variant": variant,
                       "sv_err": float(np.mean(errs)) if errs else None,
                       "decode_s": float(np.median(secs)) if secs else None, "chose": chose}
                rows.append(row)
                err = "n/a" if row["sv_err"] is None else f"{row['sv_err']:.3g}"
                dec = "n/a" if row["decode_s"] is None else f"{row['decode_s']:.2f} s"
                print(f"{game.name:40s} {budget:5d} {variant:7s} SV error {err:>9s}  decode "
                      f"{dec}  {chose}", flush=True)  # fmt: skip
            args.out.parent.mkdir(exist_ok=True)
            args.out.write_text(json.dumps({"seeds": args.seeds, "hybrid_from": args.hybrid_from,
                                            "rows": rows}, indent=1))  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
