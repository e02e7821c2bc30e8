"""shapiq 1.8's ``ExactComputer`` on given games, for ``indices_vs_shapiq18.py`` (Python >= 3.12).

Reads one JSON object from stdin, ``{"games": [{"n": n, "values": [2^n floats]}, ...],
"jobs": [[game, index, order], ...]}`` where ``values[mask]`` is the game's value on the
coalition whose bit ``i`` is player ``i``; writes one JSON object to stdout:
``{"shapiq": version, "results": [{"index", "max_order", "min_order", "baseline",
"interactions": [[[players...], value], ...], "subsidy", "seconds"} or {"error": ...}, ...]}``.
Needs no torch (shapiq 1.8 and numpy only).
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import numpy as np


def main() -> None:
    import shapiq

    request = json.load(sys.stdin)
    computers = []
    for game in request["games"]:
        n = int(game["n"])
        table = np.asarray(game["values"], dtype=float)
        weights = 1 << np.arange(n)

        def value(coalitions: np.ndarray, table=table, weights=weights) -> np.ndarray:
            return table[(np.asarray(coalitions, dtype=np.int64) * weights).sum(axis=1)]

        computers.append(shapiq.ExactComputer(value, n_players=n))
    results = []
    for game_id, index, order in request["jobs"]:
        computer = computers[game_id]
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # CHII's and ELC's notes about the empty set
                iv = computer(index, order)
        except Exception as err:  # report, do not stop the other jobs
            results.append({"error": f"{type(err).__name__}: {err}"})
            continue
        seconds = time.perf_counter() - start
        results.append(
            {
                "index": iv.index,
                "max_order": int(iv.max_order),
                "min_order": int(iv.min_order),
                "baseline": float(iv.baseline_value),
                "interactions": [[list(map(int, k)), float(v)] for k, v in iv.interactions.items()],
                "subsidy": computer._elc_stability_subsidy if index == "ELC" else None,
                "seconds": seconds,
            }
        )
    json.dump({"shapiq": shapiq.__version__, "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
