"""Child process of tree_vs_shapiq.py: times one peer library on one case.

shapiq >= 1.8 and woodelf-explainer need Python >= 3.12 and run under the interpreter of a venv
that has them (the parent's ``--python``); shap runs under the parent's own interpreter. Each
case runs in its own process, so that the parent can stop a peer that exceeds its time limit.
Reads a job file written by the parent and writes the values (``.npy``) and the timing
(``result.json``) next to it. Not meant to be run by hand.

    /work/venv312/bin/python benchmarks/_tree_shapiq18_child.py JOB.json
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"  # one thread everywhere

import itertools
import json
import pickle
import sys
import time
import warnings
from pathlib import Path

import numpy as np

#: Rows of the untimed warm-up run before a case is timed (also in ``tree_vs_shapiq.py``).
WARM_ROWS = 10


def load_model(kind: str, path: Path):
    """The model saved by the parent: a LightGBM text model, an XGBoost JSON model, or a
    pickled scikit-learn model."""
    if kind == "lightgbm":
        import lightgbm as lgb

        return lgb.Booster(model_file=str(path))
    if kind == "xgboost":
        import xgboost as xgb

        booster = xgb.Booster(model_file=str(path))
        booster.set_param({"nthread": 1})
        return booster
    with open(path, "rb") as fh:
        return pickle.load(fh)


def subsets(n: int, order: int) -> list[tuple[int, ...]]:
    """All feature sets of size 1 .. ``order``, in the order the order-3 arrays use."""
    return [s for k in range(1, order + 1) for s in itertools.combinations(range(n), k)]


def _shapiq(model, rows, background, index: str, order: int) -> np.ndarray:
    """``[R, n]`` Shapley values; ``[R, n, n]`` k-SII of order 2 (singletons on the diagonal);
    ``[R, S]`` for order 3 (the sets of :func:`subsets`)."""
    import shapiq

    kwargs = {"mode": "pathdependent"}
    if background is not None:
        kwargs = {"mode": "interventional", "reference_dataset": background}
    explainer = shapiq.TreeExplainer(model, index=index, max_order=order, min_order=1,
                                     **kwargs)
    values = explainer.explain_X(rows).values  # {interaction: [R]}
    n = rows.shape[1]
    if order == 3:
        pos = {s: i for i, s in enumerate(subsets(n, 3))}
        out = np.zeros((rows.shape[0], len(pos)))
        for key, col in values.items():
            if key in pos:
                out[:, pos[key]] = col
        return out
    # rows last, a transposed view returned: each column written contiguously, as torchspex's
    # values are (the parent compares values, whatever their memory layout)
    out = np.zeros((n, n, rows.shape[0])) if order == 2 else np.zeros((n, rows.shape[0]))
    for key, col in values.items():
        if len(key) == 1 and order == 1:
            out[key[0]] = col
        elif len(key) == 1:
            out[key[0], key[0]] = col
        elif len(key) == 2:
            out[key[0], key[1]] = out[key[1], key[0]] = col
    return np.moveaxis(out, -1, 0)


def _woodelf(model, rows, background, index: str, order: int) -> np.ndarray:
    import pandas as pd
    from woodelf import WoodelfExplainer

    cols = [f"f{i}" for i in range(rows.shape[1])]
    data = None if background is None else pd.DataFrame(background, columns=cols)
    explainer = WoodelfExplainer(model, data=data)
    x = pd.DataFrame(rows, columns=cols)
    if order == 1:
        return np.asarray(explainer.shap_values(x, verbose=False))
    # shap's convention: off-diagonal entries are half the pair's Shapley interaction index
    # (the diagonal is not k-SII's: the parent compares the pairs only); doubled by main()
    # after the timing (a copy of every value)
    return np.asarray(explainer.shap_interaction_values(x, verbose=False))


def _shap(model, rows, background, index: str, order: int) -> np.ndarray:
    import shap

    if background is None:
        explainer = shap.TreeExplainer(model, feature_perturbation="tree_path_dependent")
    else:
        explainer = shap.TreeExplainer(model, data=background,
                                       feature_perturbation="interventional")
    if order == 1:
        return np.asarray(explainer.shap_values(rows))
    return np.asarray(explainer.shap_interaction_values(rows))  # doubled by main()


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    folder = Path(sys.argv[1]).parent
    model = load_model(job["kind"], folder / job["model"])
    rows = np.load(folder / "rows.npy")
    background = np.load(folder / "background.npy") if job["interventional"] else None
    run = {"shapiq": _shapiq, "woodelf": _woodelf, "shap": _shap}[job["library"]]
    times = []
    try:
        with warnings.catch_warnings():
            # untimed warm-up on a few rows: imports, JIT compilation and first-call set-up
            # stay out of the timing, as for torchspex in the warm parent process (an audit
            # found shapiq's 10,000-row cells 0.7-1.5 s slower cold than warm)
            warnings.simplefilter("ignore")
            run(model, rows[:WARM_ROWS], background, job["index"], job["order"])
        for _ in range(job["repeats"]):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                start = time.perf_counter()
                values = run(model, rows, background, job["index"], job["order"])
                times.append(time.perf_counter() - start)
        if job["library"] in ("shap", "woodelf") and job["order"] == 2:
            values = 2 * values  # shap's halved pairs, outside the timing
        np.save(folder / "values.npy", values)
        result = {"seconds": min(times), "error": None}
    except Exception as err:  # a library that cannot do a case is reported, not fatal
        result = {"seconds": None, "error": f"{type(err).__name__}: {err}"[:300]}
    (folder / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
