"""Exact tree-ensemble interactions: torchspex TreeInteraction vs shapiq's TreeExplainer.

Same fitted model, same rows, same index and order (path-dependent masking, which is what
shapiq's TreeExplainer computes); values are compared term by term (non-empty interactions
plus the baseline). shapiq 1.4.1's TreeExplainer is exact only when no feature repeats on a
root-to-leaf path, so the equal-value comparison uses models on median-binarized features;
models on the raw features are timed too, with their (shapiq-side) differences reported.
shapiq explains one row per call; torchspex explains the whole batch in
one call (the time includes parsing the model). First-order values are also checked against
shap's TreeExplainer.

    python benchmarks/tree_vs_shapiq.py            # 100 rows per model
    python benchmarks/tree_vs_shapiq.py --quick    # 10 rows, smaller models
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch


def _models(quick: bool) -> list[tuple[str, str, object, np.ndarray, int | None]]:
    """(name, data, fitted model, rows, target) for each benchmarked model."""
    import lightgbm as lgb
    from sklearn.datasets import load_breast_cancer, load_diabetes
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    xd, yd = load_diabetes(return_X_y=True)
    xc, yc = load_breast_cancer(return_X_y=True)
    # median-binarized features: no feature is split twice on a path, where shapiq is exact
    xd01 = (xd > np.median(xd, axis=0)).astype(np.float64)
    xc01 = (xc > np.median(xc, axis=0)).astype(np.float64)
    n_lgb, n_rf = (20, 4) if quick else (100, 20)
    lgb_args = {"n_estimators": n_lgb, "num_leaves": 15, "verbose": -1, "n_jobs": 1,
                "random_state": 0}
    rf_args = {"n_estimators": n_rf, "max_depth": 5, "random_state": 0}
    return [
        (f"LGBMRegressor({n_lgb} trees, 15 leaves)", "diabetes 0/1",
         lgb.LGBMRegressor(**lgb_args).fit(xd01, yd), xd01, None),
        (f"LGBMClassifier({n_lgb} trees, 15 leaves)", "breast_cancer 0/1",
         lgb.LGBMClassifier(**lgb_args).fit(xc01, yc), xc01, None),
        (f"RandomForestRegressor({n_rf} trees, depth 5)", "diabetes 0/1",
         RandomForestRegressor(**rf_args).fit(xd01, yd), xd01, None),
        (f"RandomForestClassifier({n_rf} trees, depth 5)", "breast_cancer 0/1",
         RandomForestClassifier(**rf_args).fit(xc01, yc), xc01, 1),
        # raw features: features repeat on paths; shapiq differs there, ours equals shap
        (f"LGBMRegressor({n_lgb} trees, 15 leaves)", "diabetes raw",
         lgb.LGBMRegressor(**lgb_args).fit(xd, yd), xd, None),
        (f"RandomForestRegressor({n_rf} trees, depth 5)", "diabetes raw",
         RandomForestRegressor(**rf_args).fit(xd, yd), xd, None),
    ]


def _max_diff(ours: dict, iv, baseline_ours: float) -> float:
    want = {k: v for k, v in iv.dict_values.items() if len(k) > 0}
    got = {k: v for k, v in ours.items() if len(k) > 0}
    diff = max((abs(got.get(k, 0.0) - want.get(k, 0.0)) for k in set(want) | set(got)),
               default=0.0)
    return max(diff, abs(baseline_ours - iv.baseline_value))


def run(quick: bool, cases: list[tuple[str, int]], out: Path) -> list[dict]:
    import shap
    import shapiq

    from torchspex import TreeInteraction

    n_rows = 10 if quick else 100
    results = []
    for name, data, model, x, target in _models(quick):
        rows = x[:n_rows]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sv_shap = np.asarray(shap.TreeExplainer(model).shap_values(rows))
        if sv_shap.ndim == 3:  # shap: [rows, features, classes]
            sv_shap = sv_shap[..., target]
        for index, order in cases:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                start = time.perf_counter()
                reference = shapiq.TreeExplainer(model, max_order=order, index=index,
                                                 min_order=0)
                ivs = [reference.explain(row) for row in rows]
                t_shapiq = time.perf_counter() - start
            start = time.perf_counter()
            result = TreeInteraction(model).attribute(rows, index=index, max_order=order,
                                                      target=target)
            values = result.values  # the index for all rows at once: [terms, rows]
            t_ours = time.perf_counter() - start
            sets = values.sets()
            table = values.coefficients.numpy()
            baselines = result.spectrum.coefficients.sum(dim=0).numpy()  # f(all removed)
            diff = max(_max_diff(dict(zip(sets, table[:, b].tolist())), iv, float(baselines[b]))
                       for b, iv in enumerate(ivs))
            sv_ours = result.first_order("SV").numpy()
            diff_shap = float(np.abs(sv_ours - sv_shap).max())
            results.append({
                "model": name, "data": data, "index": index, "max_order": order,
                "rows": n_rows, "shapiq_s": t_shapiq, "torchspex_s": t_ours,
                "speedup": t_shapiq / t_ours, "max_abs_diff_vs_shapiq": diff,
                "sv_max_abs_diff_vs_shap": diff_shap,
            })
            out.write_text(json.dumps({"quick": quick, "results": results}, indent=2))
            print(f"{name} {index}/{order}: shapiq {t_shapiq:.2f}s, torchspex {t_ours:.3f}s, "
                  f"diff {diff:.1e}, SV vs shap {diff_shap:.1e}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 rows, smaller models")
    parser.add_argument("--cases", default="k-SII:2,SII:2",
                        help="comma-separated index:order pairs (default k-SII:2,SII:2)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # shapiq is single-threaded; OpenMP spinning hurts on busy machines
    cases = [(c.split(":")[0], int(c.split(":")[1])) for c in args.cases.split(",")]
    out = Path(__file__).parent / "results" / ("tree_vs_shapiq_quick.json" if args.quick
                                               else "tree_vs_shapiq.json")
    out.parent.mkdir(exist_ok=True)
    results = run(args.quick, cases, out)
    print()
    print("| model | data | index | order | rows | shapiq (s) | torchspex (s) | speed-up "
          "| max abs diff vs shapiq | SV diff vs shap |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['model']} | {r['data']} | {r['index']} | {r['max_order']} | {r['rows']} "
              f"| {r['shapiq_s']:.2f} | {r['torchspex_s']:.3f} | {r['speedup']:.0f}x "
              f"| {r['max_abs_diff_vs_shapiq']:.1e} | {r['sv_max_abs_diff_vs_shap']:.1e} |")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
