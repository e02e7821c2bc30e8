"""The default index against the index a user reads: Shapley values with no ``index`` argument.

``torchspex.explain`` / ``SpectralInteraction.attribute`` pick the design of ``method="auto"``
from the index's family. This script measures what a user who passes no ``index`` gets when
they read ``result.first_order("SV")`` (the tensor Captum's visualization and metrics consume),
against passing ``index="SV"`` and against the old default ``index="FBII"`` (a Banzhaf design),
on the model games of ``benchmarks/accuracy_vs_sampling.py`` (the same games, built by its own
code from the same ``--seed``): the MLP on wine, MiniLM on a 14-word sentence and the digits CNN
over 2x2 patches (exact references from every mask), and the digits CNN over its 64 pixels (a
~50,000-call permutation reference, its own noise stated).

Metric: relative L2 error of the Shapley values, median over seeds; ``default / SV`` is the
ratio of the medians (the issue's bar: within 1.10), ``FBII / SV`` the old default's.

    python benchmarks/default_index.py                          # 4 games, 256 / 1,024, 3 seeds
    python benchmarks/default_index.py --games MLP --budgets 1024 --seeds 1 --out /tmp/d.json
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import accuracy_vs_sampling as avs  # the games, built by the accuracy benchmark's own code

import torchspex

HERE = Path(__file__).parent
GAMES = ("MLP wine", "MiniLM sentence", "CNN digits 2x2", "CNN digits pixels")
VARIANTS = {"default": {}, "SV": {"index": "SV"}, "FBII": {"index": "FBII"}}


def _run(game: avs.Game, budget: int, seed: int, options: dict) -> dict:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = torchspex.explain(game, game.n, n_samples=budget, generator=seed,
                                mask_format="numpy", **options)  # fmt: skip
        sv = res.first_order("SV").numpy()
    return {"sv": sv, "sv_err": avs._rel(sv, game.sv), "index": res.index,
            "seconds": time.perf_counter() - start}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--games", type=avs._csv, default=list(GAMES))
    parser.add_argument("--budgets", type=lambda s: [int(b) for b in avs._csv(s)],
                        default=[256, 1024])  # fmt: skip
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="game seed (as accuracy_vs_sampling)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "default_index.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    games = avs._games(False, torch.Generator().manual_seed(args.seed), args.games)
    rows, table = [], []
    for game in games:
        for budget in args.budgets:
            errs: dict[str, list[float]] = {v: [] for v in VARIANTS}
            identical = True
            for seed in range(args.seeds):
                outs = {v: _run(game, budget, seed, o) for v, o in VARIANTS.items()}
                identical &= bool(np.array_equal(outs["default"]["sv"], outs["SV"]["sv"]))
                for v, out in outs.items():
                    errs[v].append(out["sv_err"])
                    rows.append({"game": game.name, "budget": budget, "seed": seed,
                                 "variant": v, "index": out["index"], "sv_err": out["sv_err"],
                                 "seconds": out["seconds"]})  # fmt: skip
            med = {v: float(np.median(e)) for v, e in errs.items()}
            table.append({"game": game.name, "n": game.n, "budget": budget,
                          "reference": game.reference, "ref_sv_rel_se": game.ref_sv_rel_se,
                          **{f"sv_err_{v}": m for v, m in med.items()},
                          "default_over_sv": med["default"] / med["SV"],
                          "fbii_over_sv": med["FBII"] / med["SV"],
                          "default_bitwise_sv": identical})  # fmt: skip
            t = table[-1]
            print(f"{game.name:32s} {budget:5d}  default {med['default']:.4f}  SV {med['SV']:.4f}"
                  f"  FBII {med['FBII']:.4f}  default/SV {t['default_over_sv']:.2f}  FBII/SV "
                  f"{t['fbii_over_sv']:.2f}  bitwise {identical}", flush=True)  # fmt: skip
    print("\n| game | calls | default (k-SII) | index=\"SV\" | old default (FBII) | default / SV "
          "| FBII / SV |\n|---|---:|---:|---:|---:|---:|---:|")
    for t in table:
        print(f"| {t['game']} | {t['budget']:,} | {t['sv_err_default']:.4f} | {t['sv_err_SV']:.4f}"
              f" | {t['sv_err_FBII']:.4f} | {t['default_over_sv']:.2f} | "
              f"{t['fbii_over_sv']:.2f} |")  # fmt: skip
    meta = {"seeds": args.seeds, "budgets": args.budgets, "seed": args.seed,
            "torch": torch.__version__, "torchspex": torchspex.__version__}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "summary": table, "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
