"""Conversion speed of the new linear indices vs the existing ones (n = 1000, 10^4 terms).

The same random Fourier spectrum as ``conversions_vs_spectralexplain.py`` (n features, s terms
of order <= 5); every index converted with ``fourier_to_index`` (best of 3 after a warm-up that
fills the cached rational weight tables; single thread). The ratio is each index's time over
the slowest existing index's. The generalized values (SGV ... JointSV) list every coalition up
to the order (order 2: ``n + C(n, 2)`` values, dense by nature), the interaction indices only the
nonzero interactions. ELC is not linear (an LP over ``2^n`` coalitions) and is not timed here.

    python benchmarks/new_indices_speed.py            # n = 1000, 10^4 terms
    python benchmarks/new_indices_speed.py --quick    # n = 100, 10^3 terms
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conversions_vs_spectralexplain import random_spectrum

from torchspex.fourier import fourier_to_index

EXISTING = [("Moebius", None), ("SII", None), ("BII", None), ("k-SII", 2), ("STII", 2),
            ("FSII", 2), ("FBII", 2)]  # fmt: skip
NEW = [("Co-Moebius", None), ("CHII", None), ("kADD-SHAP", 2), ("SGV", 2), ("BGV", 2),
       ("CHGV", 2), ("IGV", 2), ("EGV", 2), ("JointSV", 2), ("Fourier", None),
       ("SGV", 1), ("JointSV", 1)]  # fmt: skip


def timed(spec, index: str, order: int | None) -> tuple[float, float, int]:
    start = time.perf_counter()
    fourier_to_index(spec, index, order)  # warm-up: weight tables are computed and cached
    first = time.perf_counter() - start
    reps = []
    for _ in range(3):
        start = time.perf_counter()
        out = fourier_to_index(spec, index, order)
        reps.append(time.perf_counter() - start)
    return min(reps), first, out.n_terms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    n, terms = (100, 1000) if args.quick else (1000, 10_000)
    out = args.out or str(Path(__file__).resolve().parent / "results" /
                          ("new_indices_speed_quick.json" if args.quick else
                           "new_indices_speed.json"))  # fmt: skip
    spec = random_spectrum(n, terms, 5, seed=0)
    rows = []
    for group, items in (("existing", EXISTING), ("new", NEW)):
        for index, order in items:
            best, first, n_out = timed(spec, index, order)
            rows.append({"group": group, "index": index, "order": "all" if order is None
                         else order, "terms_out": n_out, "seconds": best,
                         "first_call_seconds": first})  # fmt: skip
    slowest = max(r["seconds"] for r in rows if r["group"] == "existing")
    print(f"n = {n}, {spec.n_terms} Fourier terms of order <= 5; seconds, best of 3 (first call "
          "incl. weight tables); ratio = time / slowest existing index")
    print("| group | index | order | values out | seconds | first call | ratio |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        r["ratio_to_slowest_existing"] = r["seconds"] / slowest
        print(f"| {r['group']} | {r['index']} | {r['order']} | {r['terms_out']} | "
              f"{r['seconds']:.3f} | {r['first_call_seconds']:.3f} | "
              f"{r['ratio_to_slowest_existing']:.2f} |")
    worst = max(r["ratio_to_slowest_existing"] for r in rows if r["group"] == "new")
    print(f"largest new/slowest-existing ratio: {worst:.2f} (target <= 3)")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"n": n, "terms": spec.n_terms,
                                     "slowest_existing_seconds": slowest,
                                     "largest_ratio": worst, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
