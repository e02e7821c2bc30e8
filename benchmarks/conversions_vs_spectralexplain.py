"""Index conversion speed: torchspex vs spectralexplain's dict-based conversions.

Same random Fourier spectrum for both (n features, s terms of order <= 5), every index both
libraries compute; values are checked to agree. spectralexplain keys its dicts by length-n 0/1
tuples; each of its conversions runs in a subprocess with a time limit (a timeout is reported
as a lower bound on the speed-up).

    python benchmarks/conversions_vs_spectralexplain.py            # n = 1000, 10^4 terms
    python benchmarks/conversions_vs_spectralexplain.py --quick    # n = 100, 10^3 terms
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import torch

from torchspex.fourier import SparseSpectrum, fourier_to_index

# (torchspex index, spectralexplain function name, order argument)
INDICES = [
    ("Moebius", None, None),
    ("SII", "mobius_to_shapley_ii", None),
    ("BII", "mobius_to_banzhaf_ii", None),
    ("STII", "mobius_to_shapley_taylor_ii", 2),
    ("FSII", "mobius_to_faith_shapley_ii", 2),
    ("FBII", "mobius_to_faith_banzhaf_ii", 2),
]


def random_spectrum(n: int, s: int, max_size: int, seed: int) -> SparseSpectrum:
    """``s`` distinct random Fourier terms: the constant, then sets of size 1..max_size."""
    g = torch.Generator().manual_seed(seed)
    rows: set[tuple[int, ...]] = {()}
    while len(rows) < s:
        k = int(torch.randint(1, max_size + 1, (1,), generator=g))
        rows.add(tuple(sorted(torch.randperm(n, generator=g)[:k].tolist())))
    sets = sorted(rows, key=lambda r: (len(r), r))
    coef = torch.randn(len(sets), generator=g, dtype=torch.float64)
    return SparseSpectrum.from_sets(sets, coef, n)


def to_reference_dict(spec: SparseSpectrum) -> dict:
    out = {}
    for row, c in zip(spec.sets(), spec.coefficients.tolist()):
        key = np.zeros(spec.n_features, dtype=int)
        key[list(row)] = 1
        out[tuple(key)] = c
    return out


def _reference_worker(fourier: dict, fname: str | None, order: int | None, queue) -> None:
    import os
    import sys

    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - silence tqdm for the worker's lifetime
    from spectralexplain import utils

    start = time.perf_counter()
    moebius = utils.fourier_to_mobius(fourier)
    out = moebius
    if fname is not None:
        fn = getattr(utils, fname)
        out = fn(moebius, order) if order is not None else fn(moebius)
    seconds = time.perf_counter() - start
    sparse = {tuple(np.nonzero(k)[0].tolist()): float(v) for k, v in out.items()}
    queue.put((seconds, sparse))


def run_reference(fourier: dict, fname, order, timeout: float):
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_reference_worker, args=(fourier, fname, order, queue))
    proc.start()
    try:
        seconds, values = queue.get(timeout=timeout)
    except Exception:
        proc.kill()
        proc.join()
        return None, None
    proc.join()
    return seconds, values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--terms", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--out", default="benchmarks/results/conversions_vs_spectralexplain.json")
    args = parser.parse_args()
    torch.set_num_threads(1)  # both sides single-threaded; avoids OpenMP spinning on busy machines
    n = args.n or (100 if args.quick else 1000)
    terms = args.terms or (1000 if args.quick else 10_000)
    spec = random_spectrum(n, terms, 5, seed=0)
    reference_input = to_reference_dict(spec)
    rows = []
    print(f"n = {n}, {spec.n_terms} Fourier terms of order <= 5; times in seconds "
          "(Fourier -> index, spectralexplain includes its fourier_to_mobius step)")
    print("| index | order | terms out | torchspex | spectralexplain | speed-up | max abs diff |")
    print("|---|---|---|---|---|---|---|", flush=True)
    for index, fname, order in INDICES:
        max_order = order
        fourier_to_index(spec, index, max_order)  # warm-up (weight tables are cached)
        reps = []
        for _ in range(3):
            start = time.perf_counter()
            ours = fourier_to_index(spec, index, max_order)
            reps.append(time.perf_counter() - start)
        ours_s = min(reps)
        ref_s, ref_vals = run_reference(reference_input, fname, order, args.timeout)
        max_diff = None
        if ref_vals is not None:
            mine = ours.to_dict()
            keys = set(mine) | set(ref_vals)
            max_diff = max(abs(mine.get(k, 0.0) - ref_vals.get(k, 0.0)) for k in keys)
        rows.append(
            {
                "index": index,
                "order": "all" if order is None else order,
                "n_terms_out": ours.n_terms,
                "torchspex_s": ours_s,
                "spectralexplain_s": ref_s,
                "speedup": None if ref_s is None else ref_s / ours_s,
                "speedup_lower_bound": None if ref_s is not None else args.timeout / ours_s,
                "max_abs_diff": max_diff,
            }
        )
        r = rows[-1]
        ref_txt = f"{ref_s:.2f}" if ref_s is not None else f"> {args.timeout:.0f} (timeout)"
        ratio = (
            f"{r['speedup']:.0f}x" if ref_s is not None else f"> {r['speedup_lower_bound']:.0f}x"
        )
        diff = f"{max_diff:.1e}" if max_diff is not None else "-"
        print(f"| {index} | {r['order']} | {ours.n_terms} | {ours_s:.4f} | {ref_txt} | {ratio} "
              f"| {diff} |", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"n": n, "terms": spec.n_terms, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
