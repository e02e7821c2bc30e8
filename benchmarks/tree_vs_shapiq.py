"""Exact tree Shapley values and interactions: torchspex vs shapiq 1.8, shap and Woodelf.

Models (raw margin / prediction): LightGBM boosters (100 trees, 31 leaves) on diabetes (10
features) and breast cancer (30 features), an XGBoost classifier (100 trees, depth 6) on breast
cancer, a scikit-learn random forest regressor (200 trees, depth 6) on diabetes. Explained rows:
the dataset's rows drawn with replacement plus 10% of each feature's standard deviation of
noise; 100, 10,000 and (for a subset of cells) 100,000 of them. Cases: Shapley values and k-SII
of order 2, path-dependent and interventional (the first 100 data rows as background), and
k-SII of order 3 on the LightGBM diabetes booster (torchspex through the full Fourier spectrum;
only shapiq gives order 3). Every library runs on one thread and is timed from the loaded model
to the values as arrays (explainer construction, model parsing and the index read-out
included), best of 5 runs for 100 rows. Above, every library runs once; where torchspex and
the fastest peer both took under ``REPEAT_BELOW_S``, torchspex and every peer under it run twice
more and keep their best (so the two times a ratio compares are always best of the same number
of runs; single runs of the 10,000- and 100,000-row cells moved by 10-30% from run to run). The
JSON records each library's runs.

Each peer runs in a child process per case (``_tree_shapiq18_child.py``), stopped after
``--timeout`` seconds (recorded as ``n/a (timeout)``): shapiq >= 1.8 (QuadratureTreeSHAP;
interventional inputs go to Woodelf inside shapiq) and woodelf-explainer need Python >= 3.12
and run under ``--python`` (default /work/venv312/bin/python, with shapiq, woodelf-explainer,
lightgbm, xgboost and scikit-learn installed); shap runs under this interpreter. Every peer's
values are compared with torchspex's: max |difference| / max |value| (1e-9 or less counts as
agreement). Woodelf computes in float32 (differences of about 1e-6 relative); for order 2 shap
and Woodelf give ``shap_interaction_values``, whose off-diagonal entries are half the pairs'
k-SII: the pairs are compared, the diagonal is not.

The Rust ``treeshap`` package (PyPI ``treeshap`` 0.1.2) is not in the table: it ships only a
source distribution whose build (maturin) fetches its Rust crates from crates.io, which this
machine cannot reach (``pip install treeshap``: "failed to get `rayon` as a dependency").

    python benchmarks/tree_vs_shapiq.py            # the full grid (about 40 minutes)
    python benchmarks/tree_vs_shapiq.py --quick    # 100 rows, Shapley values, three models
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"  # one thread everywhere (before numpy / torch load their pools)

import argparse
import itertools
import json
import pickle
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHILD = Path(__file__).with_name("_tree_shapiq18_child.py")
LIBRARIES = ("shapiq", "shap", "woodelf")
#: Largest max |difference| / max |value| that counts as the same values.
AGREE = 1e-9
MASKINGS = ("path_dependent", "interventional")


@dataclass
class Model:
    """A fitted model, its file for the child processes, and its data rows."""

    name: str
    kind: str  # lightgbm, xgboost or sklearn
    model: Any
    file: str
    x: np.ndarray


def _models(folder: Path) -> dict[str, Model]:
    """The benchmark's models, saved under ``folder`` (and reloaded from there)."""
    import lightgbm as lgb
    import xgboost as xgb
    from sklearn.datasets import load_breast_cancer, load_diabetes
    from sklearn.ensemble import RandomForestRegressor

    out = {}
    for name, loader, cls in (("LightGBM diabetes", load_diabetes, lgb.LGBMRegressor),
                              ("LightGBM breast cancer", load_breast_cancer,
                               lgb.LGBMClassifier)):
        x, y = loader(return_X_y=True)
        model = cls(n_estimators=100, num_leaves=31, n_jobs=1, verbose=-1, random_state=0)
        path = folder / f"{len(out)}.txt"
        path.write_text(model.fit(x, y).booster_.model_to_string())
        out[name] = Model(name, "lightgbm", lgb.Booster(model_file=str(path)), path.name, x)
    x, y = load_breast_cancer(return_X_y=True)
    clf = xgb.XGBClassifier(n_estimators=100, max_depth=6, n_jobs=1, random_state=0).fit(x, y)
    path = folder / "xgb.json"
    clf.get_booster().save_model(str(path))
    booster = xgb.Booster(model_file=str(path))
    booster.set_param({"nthread": 1})
    out["XGBoost breast cancer"] = Model("XGBoost breast cancer", "xgboost", booster,
                                         path.name, x)
    x, y = load_diabetes(return_X_y=True)
    forest = RandomForestRegressor(n_estimators=200, max_depth=6, n_jobs=1, random_state=0)
    path = folder / "forest.pkl"
    path.write_bytes(pickle.dumps(forest.fit(x, y)))
    out["sklearn forest diabetes"] = Model("sklearn forest diabetes", "sklearn",
                                           pickle.loads(path.read_bytes()), path.name, x)
    return out


def _rows(x: np.ndarray, n_rows: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return x[rng.integers(0, len(x), n_rows)] + rng.normal(0, 0.1, (n_rows, x.shape[1])) * x.std(0)


def _cases(quick: bool) -> list[tuple[str, str, str, int, int]]:
    """(model, masking, index, order, rows)."""
    if quick:
        return [(m, mask, "SV", 1, 100) for m in ("LightGBM diabetes", "XGBoost breast cancer",
                                                  "sklearn forest diabetes") for mask in MASKINGS]
    models = ("LightGBM diabetes", "LightGBM breast cancer", "XGBoost breast cancer",
              "sklearn forest diabetes")
    cases = [(m, mask, index, order, rows) for m in models for rows in (100, 10_000)
             for index, order in (("SV", 1), ("k-SII", 2)) for mask in MASKINGS]
    # 100,000 rows: Shapley values on three models, k-SII order 2 on the 10-feature booster
    cases += [(m, mask, "SV", 1, 100_000) for m in ("LightGBM breast cancer",
                                                    "XGBoost breast cancer",
                                                    "sklearn forest diabetes")
              for mask in MASKINGS]
    cases += [("LightGBM diabetes", "path_dependent", "k-SII", 2, 100_000)]
    cases += [("LightGBM diabetes", "path_dependent", "k-SII", 3, 100)]
    return cases


#: Above 1,000 rows: the runs of a case where torchspex and the fastest peer both took under
#: ``REPEAT_BELOW_S`` seconds once (then torchspex and every peer under it run
#: ``LARGE_REPEATS - 1`` times more), so that the cheap large cells are best of three and the
#: slow ones single runs (three runs of them would take minutes and pass the peers' timeout).
LARGE_REPEATS, REPEAT_BELOW_S = 3, 5.0


def _best(fn, repeats: int, *args):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - start)
    return min(times), out


def _subsets(n: int, order: int) -> list[tuple[int, ...]]:
    return [s for k in range(1, order + 1) for s in itertools.combinations(range(n), k)]


def _torchspex(model, rows, background, index: str, order: int) -> np.ndarray:
    from torchspex import TreeInteraction

    masking = "path_dependent" if background is None else "interventional"
    result = TreeInteraction(model, masking, background=background).attribute(
        rows, index=index, max_order=order)
    if order == 1:
        return result.first_order("SV").numpy()  # [R, n]
    values = result.values  # k-SII: [terms, R]
    n = result.n_features
    idx, coef = values.indices, values.coefficients.T
    if order == 3:  # [R, S] over the sets of size 1 to 3
        pos = {s: i for i, s in enumerate(_subsets(n, 3))}
        out = np.zeros((rows.shape[0], len(pos)))
        for term, row in enumerate(idx.tolist()):
            key = tuple(i for i in row if i >= 0)
            if key in pos:
                out[:, pos[key]] = coef[:, term].numpy()
        return out
    # rows last, a transposed view returned, as for shapiq: every term's row of values copied
    # whole (the parent compares values, whatever their memory layout)
    dense = torch.zeros(n, n, rows.shape[0], dtype=torch.float64)
    single, pair = values.orders == 1, values.orders == 2
    by_term = values.coefficients  # [terms, R]
    dense[idx[single, 0], idx[single, 0]] = by_term[single]
    dense[idx[pair, 0], idx[pair, 1]] = by_term[pair]
    dense[idx[pair, 1], idx[pair, 0]] = by_term[pair]
    return dense.permute(2, 0, 1).numpy()


def _peer(python: str, model: Model, models_dir: Path, rows: np.ndarray,
          background: np.ndarray | None, library: str, index: str, order: int, repeats: int,
          timeout: float, below: float | None = None
          ) -> tuple[float | None, np.ndarray | None, str | None]:
    """(seconds, values, error) of one peer on one case, in a child process."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / model.file).symlink_to(models_dir / model.file)
        np.save(folder / "rows.npy", rows)
        np.save(folder / "background.npy",
                background if background is not None else np.zeros((0, rows.shape[1])))
        job = {"kind": model.kind, "model": model.file, "library": library, "index": index,
               "order": order, "repeats": repeats, "repeat_below_s": below,
               "interventional": background is not None}
        (folder / "job.json").write_text(json.dumps(job))
        try:
            proc = subprocess.run([python, str(CHILD), str(folder / "job.json")],
                                  capture_output=True, text=True, env={**os.environ},
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return None, None, f"timeout (> {timeout:.0f} s)"
        if proc.returncode or not (folder / "result.json").exists():
            return None, None, f"child process failed: {proc.stderr[-300:]}"
        result = json.loads((folder / "result.json").read_text())
        if result["error"] is not None:
            return None, None, result["error"]
        return result["seconds"], np.load(folder / "values.npy"), None


def _difference(ours: np.ndarray, theirs: np.ndarray, pairs_only: bool) -> float:
    theirs = theirs.reshape(ours.shape)
    diff = np.abs(ours - theirs)
    scale = np.abs(ours)
    if pairs_only:
        off = ~np.eye(ours.shape[-1], dtype=bool)
        diff, scale = diff[..., off], scale[..., off]
    return float(diff.max() / max(scale.max(), 1e-300))


def _not_offered(library: str, order: int, masking: str) -> str | None:
    """Why a peer does not offer a case, or None. shap's ``shap_interaction_values`` are
    path-dependent only: with an interventional explainer they return other values (off by
    100% of the largest value on the LightGBM diabetes booster), so they are not timed."""
    if order == 3 and library != "shapiq":
        return "not offered (order 3)"
    if library == "shap" and order == 2 and masking == "interventional":
        return "not offered (shap's interaction values are path-dependent only)"
    return None


def _case_key(row: dict) -> tuple:
    return (row["model"], row["masking"], row["index"], row["max_order"], row["rows"])


def run(quick: bool, python: str, out: Path, timeout: float, only: str | None) -> list[dict]:
    """Runs the cases (those of the models named by ``only``) and writes ``out``; with
    ``only``, the other cases' rows already in ``out`` are kept (the rerun replaces its own)."""
    torch.set_num_threads(1)
    kept: list[dict] = []
    if only is not None and out.exists():
        kept = [r for r in json.loads(out.read_text())["results"] if only not in r["model"]]
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as models_tmp:
        models_dir = Path(models_tmp)
        models = _models(models_dir)
        for name, masking, index, order, n_rows in _cases(quick):
            if only is not None and only not in name:
                continue
            model = models[name]
            rows = _rows(model.x, n_rows)
            background = model.x[:100] if masking == "interventional" else None
            # small cells: millisecond times, best of 5 for every library; large ones once
            # each, then (below) best of LARGE_REPEATS where they are cheap
            repeats = 5 if n_rows <= 1_000 else 1
            row: dict[str, Any] = {"model": name, "n_features": model.x.shape[1],
                                   "masking": masking, "index": index, "max_order": order,
                                   "rows": n_rows, "repeats": repeats}
            args = (model.model, rows, background, index, order)
            _torchspex(model.model, rows[:10], background, index, order)  # untimed warm-up,
            # as every peer's in its child (_tree_shapiq18_child.WARM_ROWS)
            row["torchspex_s"], ours = _best(_torchspex, repeats, *args)
            row["torchspex_runs"] = repeats
            for lib in LIBRARIES:
                reason = _not_offered(lib, order, masking)
                if reason is not None:
                    secs, values, error = None, None, reason
                else:
                    interpreter = sys.executable if lib == "shap" else python
                    secs, values, error = _peer(interpreter, model, models_dir, rows,
                                                background, lib, index, order, repeats,
                                                timeout)
                row[f"{lib}_s"] = secs
                row[f"{lib}_runs"] = repeats if secs is not None else 0
                row[f"{lib}_values"] = values  # compared below, then dropped
                row[f"{lib}_error"] = error
            first = [row[f"{lib}_s"] for lib in LIBRARIES if row[f"{lib}_s"] is not None]
            if repeats == 1 and first and max(row["torchspex_s"], min(first)) < REPEAT_BELOW_S:
                # both sides of the ratio cheap: best of LARGE_REPEATS for torchspex and for
                # every peer under REPEAT_BELOW_S (the fastest peer among them)
                more, _ = _best(_torchspex, LARGE_REPEATS - 1, *args)
                row["torchspex_s"] = min(row["torchspex_s"], more)
                row["torchspex_runs"] = LARGE_REPEATS
                for lib in LIBRARIES:
                    if row[f"{lib}_s"] is None or row[f"{lib}_s"] >= REPEAT_BELOW_S:
                        continue
                    interpreter = sys.executable if lib == "shap" else python
                    secs, _, _ = _peer(interpreter, model, models_dir, rows, background, lib,
                                       index, order, LARGE_REPEATS - 1, timeout)
                    if secs is not None:
                        row[f"{lib}_s"] = min(row[f"{lib}_s"], secs)
                        row[f"{lib}_runs"] = LARGE_REPEATS
            for lib in LIBRARIES:
                secs, values = row[f"{lib}_s"], row.pop(f"{lib}_values")
                row[f"{lib}_ratio"] = None if secs is None else secs / row["torchspex_s"]
                row[f"{lib}_rel_diff"] = None if values is None else _difference(
                    ours, values, pairs_only=(order == 2 and lib != "shapiq"))
                row[f"{lib}_agrees_1e-9"] = None if values is None else bool(
                    row[f"{lib}_rel_diff"] <= AGREE)
            finished = [row[f"{lib}_s"] for lib in LIBRARIES if row[f"{lib}_s"] is not None]
            row["fastest_peer_ratio"] = (min(finished) / row["torchspex_s"]) if finished else None
            results.append(row)
            order = {_case_key(r): i for i, r in enumerate(
                {"model": c[0], "masking": c[1], "index": c[2], "max_order": c[3], "rows": c[4]}
                for c in _cases(quick))}  # fmt: skip
            merged = sorted(kept + results, key=lambda r: order.get(_case_key(r), len(order)))
            out.write_text(json.dumps({"quick": quick, "threads": 1, "timeout_s": timeout,
                                       "versions": _versions(python), "results": merged},
                                      indent=2))
            print(_line(row), flush=True)
    return results


def _versions(python: str) -> dict[str, str]:
    import shap

    code = ("import json, shapiq, woodelf, lightgbm, xgboost, sklearn, importlib.metadata as m;"
            "print(json.dumps({'shapiq': shapiq.__version__, 'woodelf-explainer': "
            "m.version('woodelf-explainer'), 'lightgbm (3.12)': lightgbm.__version__, "
            "'xgboost (3.12)': xgboost.__version__}))")
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    child = json.loads(proc.stdout) if proc.returncode == 0 else {}
    import lightgbm
    import sklearn
    import xgboost

    return {"shap": shap.__version__, "torch": torch.__version__,
            "lightgbm": lightgbm.__version__, "xgboost": xgboost.__version__,
            "scikit-learn": sklearn.__version__, **child}


def _fmt(secs: float | None, error: str | None = None) -> str:
    if secs is not None:
        return f"{secs:.3f}"
    if error is not None and error.startswith("timeout"):
        return "n/a (timeout)"
    return "n/a"


def _case(r: dict) -> str:
    masking = r["masking"].replace("_", "-")
    if r["max_order"] == 1:
        return f"SV {masking}"
    return f"k-SII order {r['max_order']} {masking}"


def _line(r: dict) -> str:
    cells = [r["model"], _case(r), f"{r['rows']:,}", _fmt(r["torchspex_s"])]
    cells += [_fmt(r[f"{lib}_s"], r[f"{lib}_error"]) for lib in LIBRARIES]
    ratio = r.get("fastest_peer_ratio")
    cells.append("n/a" if ratio is None else f"{ratio:.2f}")
    cells.append(", ".join("n/a" if r[f"{lib}_rel_diff"] is None
                           else f"{r[f'{lib}_rel_diff']:.0e}" for lib in LIBRARIES))
    return "| " + " | ".join(cells) + " |"


HEADER = ("| model | case | rows | torchspex (s) | shapiq (s) | shap (s) | Woodelf (s) "
          "| fastest peer / torchspex | max rel. diff vs torchspex (shapiq, shap, Woodelf) |\n"
          "|---|---|---:|---:|---:|---:|---:|---:|---|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="100 rows, Shapley values, three models")
    parser.add_argument("--python", default="/work/venv312/bin/python",
                        help="interpreter with shapiq >= 1.8 and woodelf-explainer")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds a peer may take on one case (all its repeats)")
    parser.add_argument("--only", default=None,
                        help="run only the models whose name has this (the JSON keeps the "
                             "other models' rows)")
    parser.add_argument("--out", type=Path, default=None, help="the JSON (default: results/)")
    parser.add_argument("--table", action="store_true",
                        help="print the table of the saved results instead of running")
    args = parser.parse_args()
    out = args.out or Path(__file__).parent / "results" / (
        "tree_vs_shapiq_quick.json" if args.quick else "tree_vs_shapiq.json")
    out.parent.mkdir(exist_ok=True)
    print(HEADER)
    if args.table:
        for row in json.loads(out.read_text())["results"]:
            print(_line(row))
        return
    run(args.quick, args.python, out, args.timeout, args.only)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
