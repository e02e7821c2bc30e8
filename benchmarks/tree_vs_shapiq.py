"""Exact Shapley values of tree ensembles: torchspex vs shapiq 1.8, shap and Woodelf.

LightGBM boosters (100 trees, 31 leaves) on diabetes (10 features) and breast cancer (30
features), raw margin; 100, 1,000 and 10,000 explained rows (the dataset's rows drawn with
replacement plus 10% of each feature's standard deviation of noise). Cases: Shapley values
with path-dependent and with interventional masking (the first 100 data rows as background),
and k-SII of order 2, path-dependent (100 and 1,000 rows). Every library runs on one thread
and is timed from the loaded booster to the values as arrays (explainer construction, model
parsing and the index read-out included), best of 3 runs (1 run for 10,000 rows).

shapiq >= 1.8 (QuadratureTreeSHAP; interventional inputs of 100,000 row x background pairs or
more go to Woodelf inside shapiq) and woodelf-explainer need Python >= 3.12: they run in a child
process (``--python``, default /work/venv312/bin/python, with shapiq, woodelf-explainer and
lightgbm installed); shap runs here. Every library's values are compared with torchspex's:
max |difference| / max |value| (1e-9 or less counts as agreement). Woodelf computes in float32
(differences of about 1e-6 relative); for order 2 shap and Woodelf give
``shap_interaction_values``, whose off-diagonal entries are half the pairs' k-SII: the pairs are
compared, the diagonal is not.

    python benchmarks/tree_vs_shapiq.py            # the full grid (about 10 minutes)
    python benchmarks/tree_vs_shapiq.py --quick    # 100 rows, Shapley values only
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"  # one thread everywhere (before numpy / torch load their pools)

import argparse
import json
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

CHILD = Path(__file__).with_name("_tree_shapiq18_child.py")
LIBRARIES = ("shapiq", "shap", "woodelf")
#: Largest max |difference| / max |value| that counts as the same values.
AGREE = 1e-9


def _boosters() -> list[tuple[str, str, np.ndarray]]:
    """(data name, LightGBM model string, data rows) per dataset."""
    import lightgbm as lgb
    from sklearn.datasets import load_breast_cancer, load_diabetes

    out = []
    for name, loader, cls in (("diabetes", load_diabetes, lgb.LGBMRegressor),
                              ("breast_cancer", load_breast_cancer, lgb.LGBMClassifier)):
        x, y = loader(return_X_y=True)
        model = cls(n_estimators=100, num_leaves=31, n_jobs=1, verbose=-1, random_state=0)
        out.append((name, model.fit(x, y).booster_.model_to_string(), x))
    return out


def _rows(x: np.ndarray, n_rows: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return x[rng.integers(0, len(x), n_rows)] + rng.normal(0, 0.1, (n_rows, x.shape[1])) * x.std(0)


def _cases(quick: bool) -> list[tuple[str, str, int, int]]:
    """(masking, index, order, rows)."""
    sizes = (100,) if quick else (100, 1_000, 10_000)
    cases = [(m, "SV", 1, r) for r in sizes for m in ("path_dependent", "interventional")]
    if not quick:
        cases += [("path_dependent", "k-SII", 2, r) for r in (100, 1_000)]
    return cases


def _best(fn, repeats: int, *args):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - start)
    return min(times), out


def _torchspex(booster, rows, background, index: str, order: int) -> np.ndarray:
    from torchspex import TreeInteraction

    masking = "path_dependent" if background is None else "interventional"
    result = TreeInteraction(booster, masking, background=background).attribute(
        rows, index=index, max_order=order)
    if order == 1:
        return result.first_order("SV").numpy()  # [R, n]
    values = result.values  # k-SII: [terms, R]
    n = result.n_features
    dense = torch.zeros(rows.shape[0], n, n, dtype=torch.float64)
    idx, coef = values.indices, values.coefficients.T
    single, pair = values.orders == 1, values.orders == 2
    dense[:, idx[single, 0], idx[single, 0]] = coef[:, single]
    dense[:, idx[pair, 0], idx[pair, 1]] = coef[:, pair]
    dense[:, idx[pair, 1], idx[pair, 0]] = coef[:, pair]
    return dense.numpy()


def _shap(booster, rows, background, index: str, order: int) -> np.ndarray:
    import shap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if background is None:
            explainer = shap.TreeExplainer(booster, feature_perturbation="tree_path_dependent")
        else:
            explainer = shap.TreeExplainer(booster, data=background,
                                           feature_perturbation="interventional")
        if order == 1:
            return np.asarray(explainer.shap_values(rows))
        return 2 * np.asarray(explainer.shap_interaction_values(rows))


def _child(python: str, folder: Path, model: str, rows: np.ndarray, background: np.ndarray,
           tasks: list[dict]) -> dict[int, dict]:
    (folder / "model.txt").write_text(model)
    np.save(folder / "rows.npy", rows)
    np.save(folder / "background.npy", background)
    job = {"model": "model.txt", "rows": "rows.npy", "background": "background.npy",
           "tasks": tasks}
    (folder / "job.json").write_text(json.dumps(job))
    proc = subprocess.run([python, str(CHILD), str(folder / "job.json")], capture_output=True,
                          text=True, env={**os.environ}, check=False)
    if proc.returncode:
        raise RuntimeError(f"child process failed:\n{proc.stderr[-3000:]}")
    return {r["id"]: r for r in json.loads((folder / "results.json").read_text())}


def _difference(ours: np.ndarray, theirs: np.ndarray, pairs_only: bool) -> float:
    diff = np.abs(ours - theirs)
    scale = np.abs(ours)
    if pairs_only:
        off = ~np.eye(ours.shape[-1], dtype=bool)
        diff, scale = diff[..., off], scale[..., off]
    return float(diff.max() / max(scale.max(), 1e-300))


def run(quick: bool, python: str, out: Path) -> list[dict]:
    import lightgbm as lgb

    torch.set_num_threads(1)
    results: list[dict] = []
    for data, model, x in _boosters():
        booster = lgb.Booster(model_str=model)
        background_rows = x[:100]
        for masking, index, order, n_rows in _cases(quick):
            rows = _rows(x, n_rows)
            background = background_rows if masking == "interventional" else None
            repeats = 3 if n_rows <= 1_000 else 1
            row = {"data": data, "n_features": x.shape[1], "masking": masking,
                   "index": index, "max_order": order, "rows": n_rows, "repeats": repeats}
            args = (booster, rows, background, index, order)
            row["torchspex_s"], ours = _best(_torchspex, repeats, *args)
            timed: dict[str, tuple[float | None, np.ndarray | None, str | None]] = {}
            try:
                secs, theirs = _best(_shap, repeats, *args)
                timed["shap"] = (secs, theirs, None)
            except Exception as err:
                timed["shap"] = (None, None, f"{type(err).__name__}: {err}")
            tasks = [{"id": i, "library": lib, "index": index, "order": order,
                      "repeats": repeats, "out": f"{lib}.npy",
                      "interventional": background is not None}
                     for i, lib in enumerate(("shapiq", "woodelf"))]
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                bg = background if background is not None else np.zeros((0, x.shape[1]))
                child = _child(python, folder, model, rows, bg, tasks)
                for task in tasks:
                    res = child[task["id"]]
                    values = np.load(folder / task["out"]) if res["error"] is None else None
                    timed[task["library"]] = (res["seconds"], values, res["error"])
            for lib in LIBRARIES:
                secs, values, error = timed[lib]
                row[f"{lib}_s"] = secs
                row[f"{lib}_ratio"] = None if secs is None else secs / row["torchspex_s"]
                row[f"{lib}_rel_diff"] = None if values is None else _difference(
                    ours, values, pairs_only=(order == 2 and lib != "shapiq"))
                row[f"{lib}_agrees_1e-9"] = None if values is None else bool(
                    row[f"{lib}_rel_diff"] <= AGREE)
                row[f"{lib}_error"] = error
            results.append(row)
            out.write_text(json.dumps({"quick": quick, "threads": 1, "results": results},
                                      indent=2))
            print(_line(row), flush=True)
    return results


def _fmt(secs: float | None) -> str:
    return "n/a" if secs is None else f"{secs:.3f}"


def _line(r: dict) -> str:
    case = f"{r['index']} {r['masking'].replace('_', '-')}"
    if r["max_order"] == 2:
        case = f"k-SII order 2 {r['masking'].replace('_', '-')}"
    cells = [r["data"], case, f"{r['rows']:,}", _fmt(r["torchspex_s"])]
    cells += [_fmt(r[f"{lib}_s"]) for lib in LIBRARIES]
    cells += ["n/a" if r[f"{lib}_ratio"] is None else f"{r[f'{lib}_ratio']:.2f}"
              for lib in LIBRARIES]
    cells.append(", ".join("n/a" if r[f"{lib}_rel_diff"] is None
                           else f"{r[f'{lib}_rel_diff']:.0e}" for lib in LIBRARIES))
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 rows, Shapley values only")
    parser.add_argument("--python", default="/work/venv312/bin/python",
                        help="interpreter with shapiq >= 1.8 and woodelf-explainer")
    args = parser.parse_args()
    out = Path(__file__).parent / "results" / ("tree_vs_shapiq_quick.json" if args.quick
                                               else "tree_vs_shapiq.json")
    out.parent.mkdir(exist_ok=True)
    print("| data | case | rows | torchspex (s) | shapiq 1.8 (s) | shap (s) | Woodelf (s) "
          "| shapiq / torchspex | shap / torchspex | Woodelf / torchspex "
          "| max rel. diff vs torchspex (shapiq, shap, Woodelf) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    run(args.quick, args.python, out)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
