"""Optimizing a learned spectrum: torchspex's parity MILP vs the Möbius linearization, same solver.

The spectrum has n = 500 features and 2000 Fourier terms of order <= 4 (500 of order 1, 900 of
order 2, 400 of order 3, 200 of order 4, random supports), coefficients N(0, 1) * decay^(k-1)
for order k: learned spectra shrink with the order. Both formulations go to HiGHS through
scipy.optimize.milp:

* torchspex (`torchspex.optimize`): one parity variable per Fourier term, tied to the mask by
  the parity-polytope facets on the side the objective pushes.
* Möbius: spectralexplain's ExactSolver model (one product variable per Möbius term of order
  >= 2, product linearization) with the binding side only; spectralexplain itself needs Gurobi
  (not installed), so its model is rebuilt here for HiGHS.

Scenarios: unconstrained max / min, "remove 3 features to lower the value most"
(n_kept = n - 3, minimize), and "keep at most 10 features" (max_kept = 10, maximize).
A greedy one-at-a-time search is shown for the value it reaches. Run:

    python benchmarks/optimize_bench.py            # n=500, 2000 terms
    python benchmarks/optimize_bench.py --quick    # n=100, 400 terms (smoke test)

Prints a Markdown table and writes benchmarks/results/optimize_bench.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import scipy
import scipy.sparse as sparse
import torch
from scipy.optimize import Bounds, LinearConstraint, milp

from torchspex import SparseSpectrum
from torchspex.fourier import fourier_to_moebius
from torchspex.optimize import optimize


def make_spectrum(n: int, counts: list[int], decay: float, seed: int) -> SparseSpectrum:
    g = torch.Generator().manual_seed(seed)
    rows, coef = [], []
    for k, count in enumerate(counts, start=1):
        if k == 1:
            keys = torch.randperm(n, generator=g)[:count, None]
        else:
            keys = torch.rand(count * 2, n, generator=g).argsort(dim=1)[:, :k].sort(dim=1).values
            keys = torch.unique(keys, dim=0)
            keys = keys[torch.randperm(keys.shape[0], generator=g)[:count]]
        rows.append(torch.nn.functional.pad(keys, (0, len(counts) - k), value=-1))
        coef.append(torch.randn(keys.shape[0], generator=g, dtype=torch.float64) * decay ** (k - 1))
    spec = SparseSpectrum(torch.cat(rows), torch.cat(coef), n)
    return spec.coalesce()


def moebius_milp(spec: SparseSpectrum, maximize: bool, lo: int, hi: int, time_limit: float):
    """spectralexplain's ExactSolver model (binding side only), solved by HiGHS."""
    mob = fourier_to_moebius(spec)
    idx, a = mob.indices.numpy(), mob.coefficients.numpy()
    n = spec.n_features
    size = (idx >= 0).sum(axis=1)
    sign = 1.0 if maximize else -1.0
    c_x = np.zeros(n)
    np.add.at(c_x, idx[size == 1, 0], a[size == 1])
    high = np.nonzero((size >= 2) & (a != 0))[0]
    n_y = high.shape[0]
    rows, cols, vals, rlo, rhi = [], [], [], [], []
    r = 0
    for j, term in enumerate(high):
        feats = idx[term, : size[term]]
        y = n + j
        if a[term] * sign > 0:  # y <= x_i
            k = feats.shape[0]
            ids = r + np.arange(k)
            rows += [ids, ids]
            cols += [np.full(k, y), feats]
            vals += [np.ones(k), -np.ones(k)]
            rlo.append(np.full(k, -np.inf))
            rhi.append(np.zeros(k))
            r += k
        else:  # y >= sum x - |S| + 1
            rows += [np.full(feats.shape[0] + 1, r)]
            cols += [np.r_[feats, y]]
            vals += [np.r_[-np.ones(feats.shape[0]), 1.0]]
            rlo.append(np.array([1.0 - feats.shape[0]]))
            rhi.append(np.array([np.inf]))
            r += 1
    if lo > 0 or hi < n:
        rows.append(np.full(n, r))
        cols.append(np.arange(n))
        vals.append(np.ones(n))
        rlo.append(np.array([float(lo)]))
        rhi.append(np.array([float(hi)]))
        r += 1
    matrix = sparse.csr_array(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(r, n + n_y)
    )
    start = time.perf_counter()
    res = milp(
        -sign * np.r_[c_x, a[high]],
        constraints=[LinearConstraint(matrix, np.concatenate(rlo), np.concatenate(rhi))],
        integrality=np.r_[np.ones(n), np.zeros(n_y)],
        bounds=Bounds(0, 1),
        options={"time_limit": time_limit, "mip_rel_gap": 0.0},
    )
    seconds = time.perf_counter() - start
    mask = torch.from_numpy(res.x[:n] > 0.5)
    value = float(spec.evaluate(mask[None])[0])
    return value, seconds, res.status == 0, n + n_y, r


def greedy(spec: SparseSpectrum, maximize: bool, lo: int, hi: int) -> float:
    """One feature at a time: from all kept, remove the best one while that improves the value
    or the count is above ``hi``; when ``hi < n / 2``, add from none kept instead."""
    n = spec.n_features
    adding = hi < n / 2
    mask = torch.full((n,), not adding, dtype=torch.bool)
    sign = 1.0 if maximize else -1.0
    current = sign * float(spec.evaluate(mask[None])[0])
    while True:
        count = int(mask.sum())
        movable = torch.nonzero(~mask if adding else mask).squeeze(1)
        if movable.numel() == 0 or (adding and count >= hi) or (not adding and count <= lo):
            return sign * current
        cand = mask.unsqueeze(0).repeat(movable.numel(), 1)
        cand[torch.arange(movable.numel()), movable] = adding
        values = sign * spec.evaluate(cand)
        best = int(values.argmax())
        forced = count > hi if not adding else count < lo
        if float(values[best]) <= current and not forced:
            return sign * current
        mask, current = cand[best], float(values[best])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n=100, 400 terms")
    parser.add_argument("--decay", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=120.0)
    args = parser.parse_args()
    n, counts = (100, [100, 180, 80, 40]) if args.quick else (500, [500, 900, 400, 200])
    spec = make_spectrum(n, counts, args.decay, args.seed)
    scenarios = [
        ("maximize", True, {}),
        ("minimize", False, {}),
        ("remove 3, minimize", False, {"n_kept": n - 3}),
        ("keep <= 10, maximize", True, {"max_kept": 10}),
    ]
    rows = []
    for name, maximize, kw in scenarios:
        lo = kw.get("n_kept", 0)
        hi = kw.get("n_kept", kw.get("max_kept", n))
        start = time.perf_counter()
        ours = optimize(spec, maximize, method="milp", time_limit=args.time_limit, **kw)
        ours_s = time.perf_counter() - start
        mob_value, mob_s, mob_opt, mob_vars, mob_rows = moebius_milp(
            spec, maximize, lo, hi, args.time_limit
        )
        rows.append({
            "scenario": name,
            "torchspex_value": ours.value, "torchspex_seconds": ours_s,
            "torchspex_optimal": ours.optimal,
            "torchspex_size": [ours.info["n_variables"], ours.info["n_constraints"]],
            "moebius_value": mob_value, "moebius_seconds": mob_s, "moebius_optimal": mob_opt,
            "moebius_size": [mob_vars, mob_rows],
            "greedy_value": greedy(spec, maximize, lo, hi),
            "speedup": mob_s / ours_s,
        })
    print(f"n={n}, {spec.n_terms} Fourier terms of order <= {spec.max_size}, decay={args.decay}, "
          f"time limit {args.time_limit:g} s, scipy {scipy.__version__} (HiGHS)\n")
    print("| scenario | torchspex s | optimal | Möbius s | optimal | Möbius/torchspex | "
          "value | Möbius value | greedy value | vars/rows (ours) | vars/rows (Möbius) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['scenario']} | {r['torchspex_seconds']:.2f} | {r['torchspex_optimal']} | "
              f"{r['moebius_seconds']:.2f} | {r['moebius_optimal']} | {r['speedup']:.1f}x | "
              f"{r['torchspex_value']:.4f} | {r['moebius_value']:.4f} | "
              f"{r['greedy_value']:.4f} | {r['torchspex_size'][0]}/{r['torchspex_size'][1]} | "
              f"{r['moebius_size'][0]}/{r['moebius_size'][1]} |")
    out = Path(__file__).parent / "results" / "optimize_bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "n_features": n, "n_terms": spec.n_terms, "decay": args.decay, "seed": args.seed,
        "time_limit": args.time_limit, "scipy": scipy.__version__,
        "machine": platform.platform(), "quick": args.quick, "rows": rows,
    }, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
