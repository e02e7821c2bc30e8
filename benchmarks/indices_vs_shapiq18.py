"""Every index torchspex computes vs shapiq 1.8.0's ``ExactComputer`` on the same random games.

shapiq 1.8 needs Python >= 3.12 and no torch, so it runs as a subprocess in its own venv
(``--shapiq18-python``, default ``/work/venv312/bin/python``) on the games' ``2^n`` values
(``_indices_shapiq18_child.py``). torchspex's side is the exported object
(``Interactions.to_shapiq(index, order)``: same names, ``()`` entries and baselines as
``ExactComputer``), built from the game's exact Fourier spectrum; Fourier, which the py3.11
shapiq (1.4.1) cannot hold, is compared as the ``fourier_to_index`` view. The largest
difference over all interactions (a missing entry is 0), games and orders is printed per index,
with the baseline difference and whether index names and orders agree.

ELC is not expected to match: shapiq minimizes ``||x||_2 + e`` over ``(x, e)`` in one SLSQP run,
torchspex (Yan and Procaccia 2021) minimizes the subsidy ``e`` first (HiGHS LP) and then
``||x||_2`` over that least core. The ELC rows therefore also check that relation: torchspex's
subsidy is the smaller (it is the least-core value) and shapiq's ``||x||_2 + e`` is the smaller
(it is what shapiq minimizes), up to SLSQP's tolerance; and they compare shapiq with
``egalitarian_least_core(objective="shapiq")``, torchspex's exact solution of shapiq's objective
(the vector to SLSQP's accuracy on a flat objective; the objective value itself, where exact
is never above shapiq's).

    python benchmarks/indices_vs_shapiq18.py            # n = 1, 2, 3, 5, 7, 9; two games each
    python benchmarks/indices_vs_shapiq18.py --quick    # n = 2, 4
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from torchspex import Interactions, SparseSpectrum
from torchspex.fourier import dense_to_spectrum, fourier_to_index, fwht
from torchspex.fourier.elc import egalitarian_least_core

HERE = Path(__file__).resolve().parent
ORDERLESS = {"SV": 1, "BV": 1, "ELC": 1}
INDICES = [
    # new in torchspex (shapiq 1.8's ExactComputer indices)
    "Co-Moebius", "CHII", "kADD-SHAP", "SGV", "BGV", "CHGV", "IGV", "EGV", "JointSV", "Fourier",
    "ELC",
    # already there, rechecked against 1.8
    "Moebius", "SII", "k-SII", "BII", "STII", "FSII", "FBII", "SV", "BV",
]  # fmt: skip


def games(ns: list[int], seed: int) -> list[SparseSpectrum]:
    """Per ``n``: a dense random spectrum (every coalition) and a sparse one (8 terms, order 3)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in ns:
        out.append(dense_to_spectrum(torch.randn(1 << n, generator=g, dtype=torch.float64), n,
                                     "Fourier"))  # fmt: skip
        sets = [()]
        for _ in range(8):
            k = int(torch.randint(1, min(3, n) + 1, (1,), generator=g))
            sets.append(tuple(sorted(torch.randperm(n, generator=g)[:k].tolist())))
        coef = torch.randn(len(sets), generator=g, dtype=torch.float64)
        out.append(SparseSpectrum.from_sets(sets, coef, n))
    return out


def ours(spec: SparseSpectrum, index: str, order: int) -> dict:
    """torchspex's value in shapiq's form: name, orders, baseline, interactions."""
    if index == "Fourier":  # shapiq 1.4.1 (this venv) has no "Fourier": the view itself
        view = fourier_to_index(spec, "Fourier", order)
        inter = {(): 0.0, **{(i,): 0.0 for i in range(spec.n_features)}}
        inter.update(zip(view.sets(), view.coefficients.tolist()))
        return {"index": "Fourier", "max_order": order, "min_order": 0,
                "baseline": float(spec.coefficients.sum()), "interactions": inter}  # fmt: skip
    result = Interactions(spec, index=index, max_order=None if index in ORDERLESS else order,
                          method="exhaustive")  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        iv = result.to_shapiq()
    return {"index": iv.index, "max_order": int(iv.max_order), "min_order": int(iv.min_order),
            "baseline": float(iv.baseline_value),
            "interactions": {tuple(k): float(v) for k, v in iv.interactions.items()}}  # fmt: skip


EFFICIENT = ("FSII", "kADD-SHAP")


def _efficiency_gap(spec: SparseSpectrum, index: str, inter: dict) -> float:
    """``|sum - (f(N) - f(empty))|``: over every nonempty set (FSII), the singletons (kADD-SHAP)."""
    f_empty = float(spec.coefficients.sum())
    f_full = float(spec.evaluate(torch.ones(1, spec.n_features, dtype=torch.bool))[0])
    keep = (lambda k: len(k) >= 1) if index == "FSII" else (lambda k: len(k) == 1)
    return abs(sum(v for k, v in inter.items() if keep(k)) - (f_full - f_empty))


def run_shapiq18(python: str, specs: list[SparseSpectrum], jobs: list) -> dict:
    payload = {
        "games": [
            {"n": s.n_features, "values": fwht(_dense(s)).tolist()} for s in specs
        ],
        "jobs": jobs,
    }
    proc = subprocess.run(
        [python, str(HERE / "_indices_shapiq18_child.py")],
        input=json.dumps(payload), capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"the shapiq 1.8 child failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout)


def _dense(spec: SparseSpectrum) -> torch.Tensor:
    from torchspex.fourier import spectrum_to_dense

    return spectrum_to_dense(spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--shapiq18-python", default="/work/venv312/bin/python")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ns = [2, 4] if args.quick else [1, 2, 3, 5, 7, 9]
    name = "indices_vs_shapiq18_quick.json" if args.quick else "indices_vs_shapiq18.json"
    out = args.out or str(HERE / "results" / name)
    specs = games(ns, args.seed)
    jobs = []
    for gid, spec in enumerate(specs):
        n = spec.n_features
        for index in INDICES:
            orders = [1] if index in ORDERLESS else sorted({o for o in (1, 2, 3, n) if o <= n})
            if index == "Moebius":  # ExactComputer's Moebius ignores the order: all of it
                orders = [n]
            jobs.extend([gid, index, o] for o in orders)
    reply = run_shapiq18(args.shapiq18_python, specs, jobs)
    rows: dict[str, dict] = {}
    elc_rows = []
    for (gid, index, order), theirs in zip(jobs, reply["results"]):
        row = rows.setdefault(index, {"index": index, "cases": 0, "max_abs_diff": 0.0,
                                      "max_baseline_diff": 0.0, "names_and_orders_agree": True,
                                      "errors": []})  # fmt: skip
        if "error" in theirs:
            row["errors"].append(f"n={specs[gid].n_features} order={order}: {theirs['error']}")
            continue
        mine = ours(specs[gid], index, order)
        their_inter = {tuple(k): v for k, v in theirs["interactions"]}
        keys = set(mine["interactions"]) | set(their_inter)
        diff = max((abs(mine["interactions"].get(k, 0.0) - their_inter.get(k, 0.0))
                    for k in keys), default=0.0)  # fmt: skip
        row["cases"] += 1
        row["max_abs_diff"] = max(row["max_abs_diff"], diff)
        row["max_baseline_diff"] = max(row["max_baseline_diff"],
                                       abs(mine["baseline"] - theirs["baseline"]))  # fmt: skip
        same = all(mine[k] == theirs[k] for k in ("index", "max_order", "min_order"))
        row["names_and_orders_agree"] &= same
        if index in EFFICIENT:  # shapiq's regression puts weight 1e8 on () and N, not equality
            gap_t, gap_s = (_efficiency_gap(specs[gid], index, inter)
                            for inter in (mine["interactions"], their_inter))  # fmt: skip
            row["max_efficiency_gap_torchspex"] = max(row.get("max_efficiency_gap_torchspex",
                                                              0.0), gap_t)  # fmt: skip
            row["max_efficiency_gap_shapiq"] = max(row.get("max_efficiency_gap_shapiq", 0.0),
                                                   gap_s)  # fmt: skip
        if index == "ELC":
            values, subsidy = egalitarian_least_core(specs[gid])
            x = values.coefficients.numpy()
            xs = np.array([their_inter.get((i,), 0.0) for i in range(specs[gid].n_features)])
            joint, joint_e = egalitarian_least_core(specs[gid], objective="shapiq")
            xj = joint.coefficients.numpy()
            shapiq_obj = float(np.linalg.norm(xs) + (theirs["subsidy"] or 0.0))
            elc_rows.append({
                "n": specs[gid].n_features,
                "max_abs_diff": diff,
                "subsidy_torchspex": float(subsidy),
                "subsidy_shapiq": float(theirs["subsidy"] or 0.0),
                "norm_plus_subsidy_torchspex": float(np.linalg.norm(x) + float(subsidy)),
                "norm_plus_subsidy_shapiq": shapiq_obj,
                "shapiq_objective_max_abs_diff": float(np.abs(xj - xs).max()),
                "shapiq_objective_value_gap": shapiq_obj - float(np.linalg.norm(xj) + joint_e),
            })  # fmt: skip
    print(f"shapiq {reply['shapiq']} ExactComputer vs torchspex; games: n = {ns}, two each "
          "(dense and sparse spectrum), orders 1, 2, 3, n")  # fmt: skip
    print("| index | cases | max abs diff | max baseline diff | names/orders agree | errors |")
    print("|---|---|---|---|---|---|")
    for index in INDICES:
        r = rows[index]
        print(f"| {index} | {r['cases']} | {r['max_abs_diff']:.1e} | "
              f"{r['max_baseline_diff']:.1e} | {r['names_and_orders_agree']} | "
              f"{len(r['errors'])} |")  # fmt: skip
    if elc_rows:
        tol = 1e-6  # SLSQP's default ftol
        least_core = all(r["subsidy_torchspex"] <= r["subsidy_shapiq"] + tol for r in elc_rows)
        joint = all(r["norm_plus_subsidy_shapiq"] <= r["norm_plus_subsidy_torchspex"] + tol
                    for r in elc_rows)  # fmt: skip
        print(f"ELC relation: torchspex subsidy <= shapiq's in every game: {least_core}; "
              f"shapiq's ||x|| + e <= torchspex's in every game: {joint}")
        worst = max(r["shapiq_objective_max_abs_diff"] for r in elc_rows)
        gap = min(r["shapiq_objective_value_gap"] for r in elc_rows)
        top = max(r["shapiq_objective_value_gap"] for r in elc_rows)
        print(f"ELC with objective='shapiq' vs shapiq: max abs diff {worst:.1e}; shapiq's "
              f"||x|| + e minus the exact optimum's in [{gap:.1e}, {top:.1e}]")
        for r in elc_rows:
            print(f"  n={r['n']}: diff {r['max_abs_diff']:.1e}, subsidy "
                  f"{r['subsidy_torchspex']:.6f} (torchspex) vs {r['subsidy_shapiq']:.6f} "
                  f"(shapiq), ||x|| + e {r['norm_plus_subsidy_torchspex']:.6f} vs "
                  f"{r['norm_plus_subsidy_shapiq']:.6f}")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(
        {"shapiq": reply["shapiq"], "ns": ns, "seed": args.seed,
         "rows": [rows[i] for i in INDICES], "elc": elc_rows}, indent=2))  # fmt: skip
    print(f"wrote {out}")
    for index in EFFICIENT:
        r = rows[index]
        print(f"{index}: efficiency gap |sum - (f(N) - f(empty))| torchspex "
              f"{r.get('max_efficiency_gap_torchspex', 0):.1e}, shapiq "
              f"{r.get('max_efficiency_gap_shapiq', 0):.1e} (shapiq's weight-1e8 regression)")
    # FSII / kADD-SHAP: within 1e-9 or within shapiq's own efficiency error (documented)
    def off(i: str) -> bool:
        r = rows[i]
        limit = max(1e-9, 10 * r.get("max_efficiency_gap_shapiq", 0.0))
        return r["max_abs_diff"] > limit or bool(r["errors"]) or not r["names_and_orders_agree"]

    bad = [i for i in INDICES if i != "ELC" and off(i)]
    if bad:
        print(f"NOT within 1e-9 (or shapiq's efficiency error): {bad}")
        sys.exit(1)


if __name__ == "__main__":
    main()
