"""Child process of tree_vs_shapiq.py: times shapiq >= 1.8 and woodelf-explainer (Python >= 3.12).

Run by the parent with the interpreter of a venv that has them (``--python``); reads a job file
written by the parent and writes each task's values (``.npy``) and timings (``results.json``)
next to it. Not meant to be run by hand.

    /work/venv312/bin/python benchmarks/_tree_shapiq18_child.py JOB.json
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np


def _shapiq(booster, rows, background, index: str, order: int) -> np.ndarray:
    """``[R, n]`` Shapley values, or ``[R, n, n]`` k-SII (singletons on the diagonal)."""
    import shapiq

    kwargs = {"mode": "pathdependent"}
    if background is not None:
        kwargs = {"mode": "interventional", "reference_dataset": background}
    explainer = shapiq.TreeExplainer(booster, index=index, max_order=order, min_order=1,
                                     **kwargs)
    values = explainer.explain_X(rows).values  # {interaction: [R]}
    n = rows.shape[1]
    out = np.zeros((rows.shape[0], n, n)) if order == 2 else np.zeros((rows.shape[0], n))
    for key, col in values.items():
        if len(key) == 1 and order == 1:
            out[:, key[0]] = col
        elif len(key) == 1:
            out[:, key[0], key[0]] = col
        elif len(key) == 2:
            out[:, key[0], key[1]] = out[:, key[1], key[0]] = col
    return out


def _woodelf(booster, rows, background, index: str, order: int) -> np.ndarray:
    import pandas as pd
    from woodelf import WoodelfExplainer

    cols = [f"f{i}" for i in range(rows.shape[1])]
    data = None if background is None else pd.DataFrame(background, columns=cols)
    explainer = WoodelfExplainer(booster, data=data)
    x = pd.DataFrame(rows, columns=cols)
    if order == 1:
        return np.asarray(explainer.shap_values(x, verbose=False))
    # shap's convention: off-diagonal entries are half the pair's Shapley interaction index
    # (the diagonal is not k-SII's: the parent compares the pairs only)
    return 2 * np.asarray(explainer.shap_interaction_values(x, verbose=False))


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    folder = Path(sys.argv[1]).parent
    import lightgbm as lgb

    booster = lgb.Booster(model_file=str(folder / job["model"]))
    rows = np.load(folder / job["rows"])
    background = np.load(folder / job["background"])
    results = []
    for task in job["tasks"]:
        run = {"shapiq": _shapiq, "woodelf": _woodelf}[task["library"]]
        times = []
        try:
            for _ in range(task["repeats"]):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    start = time.perf_counter()
                    bg = background if task["interventional"] else None
                    values = run(booster, rows, bg, task["index"], task["order"])
                    times.append(time.perf_counter() - start)
            np.save(folder / task["out"], values)
            results.append({**task, "seconds": min(times), "error": None})
        except Exception as err:  # a library that cannot do a case is reported, not fatal
            results.append({**task, "seconds": None, "error": f"{type(err).__name__}: {err}"})
    (folder / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
