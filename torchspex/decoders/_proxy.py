"""The LightGBM proxy that ProxySPEX and the regression's support search both fit.

Each output gets gradient-boosted trees fitted to uniform (or paired) masks, early-stopped on
held-out rows; :func:`~torchspex.decoders.trees.tree_ensemble_to_fourier` then reads the
ensemble's exact Fourier spectrum. ``proxyspex.py`` builds its decoder on these steps and
``regression.py`` ranks candidate terms with them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["ProxyRows", "as_tuple", "draw_seed", "fit_proxy", "holdout_rows", "proxy_configs"]


def as_tuple(name: str, value: Any, kind: type, low: float, high: float | None = None) -> tuple:
    """``value`` (one or several) as a tuple of ``kind`` in ``[low, high]``; raises otherwise."""
    values = tuple(value) if isinstance(value, Sequence) else (value,)
    for v in values:
        ok = isinstance(v, (int, float) if kind is float else int) and not isinstance(v, bool)
        if not ok or v < low or (high is not None and v > high):
            bound = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise ValueError(f"`{name}` must be {kind.__name__}s {bound}; got {value!r}.")
    if not values:
        raise ValueError(f"`{name}` must name at least one value; got {value!r}.")
    return values


def draw_seed(generator: torch.Generator) -> int:
    """A LightGBM seed drawn from ``generator`` (one draw)."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


def holdout_rows(m: int, fraction: float, generator: torch.Generator) -> np.ndarray:
    """``bool [m]``: ``max(1, round(fraction * m))`` rows held out, chosen by ``generator``."""
    n_valid = max(1, round(fraction * m))
    valid = np.zeros(m, dtype=bool)
    valid[torch.randperm(m, generator=generator)[:n_valid].numpy()] = True
    return valid


def proxy_configs(max_depth: Any, learning_rate: Any) -> list[tuple[int, float]]:
    """The ``(depth, learning rate)`` candidates: default depths ``{3, 5}``.

    ``max_order`` never caps them: it limits what a result reports, not what the proxy may
    fit (a depth-2 proxy of a 12-feature MLP at 600 calls gave Shapley values with error 0.13
    against 0.05 for the default depths, ``tests/decoders/test_proxyspex.py``)."""
    if max_depth is None:
        depths: tuple[int, ...] = (3, 5)
    else:
        depths = as_tuple("max_depth", max_depth, int, 1, 20)
    rates = as_tuple("learning_rate", learning_rate, float, 1e-6, 1.0)
    return [(d, float(r)) for d in depths for r in rates]


def _base_params(n_train: int, seed: int) -> dict[str, Any]:
    """LightGBM settings for 0/1 masks: two bins per feature, small leaves, one thread.

    The histogram layout is fixed (LightGBM would otherwise time both and pick, so the trees
    could depend on the machine's load) and row-wise: both layouts add each bin's gradients in
    the same row order and grow the same trees, and row-wise took 0.90-0.94x the time per round
    at 10 features, 0.77-0.90x at 16, 0.46-0.71x at 64 and 0.32-0.58x at 256 (200-3,300 rows,
    one thread; ``python benchmarks/lgb_row_wise.py``, results/lgb_row_wise.json, which also
    checks the trees). The decoders' results are bitwise those of the column-wise layout used
    before (19 cells of the regression and ProxySPEX, 10-256 features, 128-4,096 calls:
    ``python benchmarks/lgb_row_wise.py --decoders``)."""
    return {
        "objective": "regression",
        "verbosity": -1,
        "num_threads": 1,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "max_bin": 2,
        "min_data_in_bin": 1,
        "feature_pre_filter": False,
        "min_data_in_leaf": max(1, min(20, n_train // 50)),
        "min_sum_hessian_in_leaf": 0.0,
    }


def _leaves(depth: int, leaves: int | None) -> int:
    """LightGBM's ``num_leaves``: ``leaves``, or every leaf a tree of ``depth`` can have."""
    return max(2, 2**depth if leaves is None else leaves)


#: The Dataset settings (binning) of every proxy: the booster settings' that are not per fit.
_DATA_KEYS = ("verbosity", "max_bin", "min_data_in_bin", "feature_pre_filter", "num_threads")


class ProxyRows:
    """0/1 masks and one output's values as one LightGBM ``Dataset``, binned once: the proxies
    fitted to some of the rows (the held-out split of :func:`fit_proxy`, the folds of a
    cross-fit, the jackknife's refits) train on subsets of it instead of binning their rows
    again. Binning all 327 features of 1,000 masks took 14 ms, a subset 1 ms (one thread); the
    regression at 327 features builds six to eleven boosters per decode. A subset keeps the
    bins of all rows, which for 0/1 masks are the two values wherever both occur: a feature
    constant on a subset gets no valid split either way, so the trees are the ones a fresh
    ``Dataset`` of those rows gives (``tests/decoders/test_proxy.py``; 56 decodes of the
    regression and ProxySPEX, 10-128 features, bitwise as before). Decode -5% to -10% at 64-327
    features (GPT-2 over 327 words at 1,000 calls 0.48-0.50 -> 0.46-0.47 s, the CNN over 64
    pixels at 500 calls 0.29-0.30 -> 0.25-0.27 s, two runs of 4 decodes each).

    Args:
        x: ``float32 [m, n]`` masks.
        y: ``[m]`` values of one output.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = x, y
        self._data: Any = None

    def subset(self, rows: np.ndarray) -> Any:
        """The rows ``rows`` (indices, ascending) as a ``Dataset`` that shares the bins."""
        if self._data is None:
            import lightgbm as lgb

            base = _base_params(self.x.shape[0], 0)
            self._data = lgb.Dataset(self.x, self.y, params={k: base[k] for k in _DATA_KEYS},
                                     free_raw_data=False).construct()  # fmt: skip
        return self._data.subset(np.asarray(rows, dtype=np.int32))


def refit_proxy(
    x: np.ndarray, y: np.ndarray, depth: int, rate: float, rounds: int, seed: int,
    leaves: int | None = None, rows: tuple[ProxyRows, np.ndarray] | None = None,
) -> Any:
    """A LightGBM booster of a chosen ``(depth, rate, leaves)`` and number of trees on all of
    ``(x, y)`` (no held-out rows: the settings come from an earlier :func:`fit_proxy`;
    ``leaves=None``: ``2^depth``). ``rows``: ``(pool, used)``, the same rows as the subset
    ``used`` (ascending) of a :class:`ProxyRows` (``x``, ``y`` are then not read)."""
    import lightgbm as lgb

    base = _base_params(x.shape[0] if rows is None else len(rows[1]), seed)
    params = {**base, "max_depth": depth, "num_leaves": _leaves(depth, leaves),
              "learning_rate": rate}  # fmt: skip
    if rows is None:
        train = lgb.Dataset(x, y, params={k: base[k] for k in _DATA_KEYS}, free_raw_data=False)
    else:
        train = rows[0].subset(rows[1])
    return lgb.train(params, train, num_boost_round=max(1, rounds), keep_training_booster=True)


#: The regression's deep proxies (from ``DEEP_ROWS`` samples) boost their configs side by side
#: for this many rounds; then only the one with the lowest held-out error goes on (to its
#: early stop). The leader at 100 rounds was the final winner in 12 of 12 fits (depths 5 and
#: 8 at 4,096 calls, 4 seeds each of the MLP on wine, MiniLM and the digits CNN over 2x2
#: patches: ``python benchmarks/proxy_race.py``, results/proxy_race.json; their held-out
#: errors at 300 rounds stood in the ratio of the final ones), and the race leaves the loser's
#: remaining rounds unpaid (both ran to the 1,000-round cap). A/B against no race, 4 seeds
#: (``python benchmarks/decode_variants.py low,low+norace``, results/decode_variants_race.json
#: and ``_n64.json``): every SV and k-SII pair error at 2,048 and 4,096 calls equal or lower,
#: the planted n = 64 games exact at 4,000, the decode 7-30% shorter. Below ``DEEP_ROWS``
#: (depths 3 and 5, early-stopped on a minimum gain) it lost LightGBM on diabetes at 256 calls
#: (SV error 0.0012 -> 0.0030) for 2-10% of the seconds, so there every config runs to its own
#: stop.
RACE_ROUNDS = 100


def _held_l2(booster: Any) -> Callable[[], float]:
    """The booster's held-out mean squared error (its one metric, ``l2``, on its one validation
    set) as a function of no arguments, read straight from LightGBM's C entry point into one
    buffer: ``Booster.eval_valid`` returns the same number through a wrapper that builds its
    result list anew every round, 22 of ~100 us per round at 200 rows (cProfile of the
    regression decoder, 256 and 2,048 calls; 8 and 10 ms of the decode). Where LightGBM's
    internals are not where this expects them, or the booster has other metrics, the wrapper's
    method is used."""
    import ctypes

    def wrapped() -> float:
        return float(booster.eval_valid()[0][2])

    try:
        from lightgbm.basic import _LIB, _safe_call

        handle = booster._handle
    except (ImportError, AttributeError):  # pragma: no cover - another LightGBM layout
        return wrapped
    out = np.empty(1, dtype=np.float64)
    pointer = out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
    length, valid = ctypes.c_int(0), ctypes.c_int(1)
    count = ctypes.c_int(0)
    _safe_call(_LIB.LGBM_BoosterGetEvalCounts(handle, ctypes.byref(count)))
    if count.value != 1:  # pragma: no cover - the proxies set one metric
        return wrapped

    def direct() -> float:
        _safe_call(_LIB.LGBM_BoosterGetEval(handle, valid, ctypes.byref(length), pointer))
        return float(out[0])

    return direct


class _EarlyStopped:
    """One config's booster, boosted a round per :meth:`step` with LightGBM's early stopping
    (a round improves when its held-out error is below the best one's minus ``min_delta``;
    the run ends ``patience`` rounds after its best round, or at ``max_rounds``)."""

    def __init__(self, booster: Any, held: Any, config: tuple[int, float, int], max_rounds: int,
                 patience: int, min_delta: float) -> None:  # fmt: skip
        booster.add_valid(held, "valid_0")
        self.booster, self.config = booster, config
        self.max_rounds, self.patience, self.min_delta = max_rounds, patience, min_delta
        self.best, self.best_round, self.rounds, self.done = math.inf, 0, 0, False
        self._held_l2 = _held_l2(booster)

    def step(self) -> None:
        self.booster.update()
        mse = self._held_l2()
        if self.rounds == 0 or mse < self.best - self.min_delta:
            self.best, self.best_round = mse, self.rounds
        self.rounds += 1
        self.done = (self.rounds - 1 - self.best_round >= self.patience
                     or self.rounds >= self.max_rounds)  # fmt: skip


def fit_proxy(
    x: np.ndarray,
    y: np.ndarray,
    valid: np.ndarray,
    configs: Sequence[tuple[int, float] | tuple[int, float, int]],
    max_rounds: int,
    patience: int,
    seed: int,
    min_gain: float = 0.0,
    race: int | None = None,
    rows: ProxyRows | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Early-stopped LightGBM per config on one binned dataset; the best one, cut at its best
    iteration. Only the training rows are used, so the held-out rows stay clean for choosing
    the energy level later.

    Args:
        x: ``float32 [m, n]`` masks.
        y: ``[m]`` values of one output.
        valid: ``bool [m]`` held-out rows (early stopping and the choice of config).
        configs: ``(depth, learning rate)`` candidates (:func:`proxy_configs`), or ``(depth,
            learning rate, leaves)`` for trees of fewer leaves than ``2^depth``.
        max_rounds: most trees.
        patience: rounds without improvement before a fit stops.
        seed: LightGBM's seed (:func:`draw_seed`).
        min_gain: a round counts as an improvement only when it lowers the held-out mean
            squared error by more than ``min_gain`` times the held-out values' variance.
        race: after this many rounds only the config with the lowest held-out error goes
            on (``None``: every config boosts to its own early stop); see :data:`RACE_ROUNDS`.
        rows: ``x`` and ``y`` already binned (:class:`ProxyRows`; ``None``: binned here).

    Returns:
        ``(booster, info)``: the LightGBM booster (its ``best_iteration`` set to the trees kept,
        which ``predict`` and ``model_to_string`` honour) and its depth, leaves, rate, trees,
        held-out R^2.
    """
    try:
        import lightgbm as lgb
    except ImportError as err:  # pragma: no cover - exercised only without lightgbm
        raise ImportError(
            'method="proxyspex" needs LightGBM: pip install "torchspex[proxyspex]"'
        ) from err
    m = x.shape[0]
    base = _base_params(m - int(valid.sum()), seed)
    pool = ProxyRows(x, y) if rows is None else rows
    train = pool.subset(np.flatnonzero(~valid)).construct()
    held = pool.subset(np.flatnonzero(valid)).construct()
    min_delta = float(min_gain * np.var(y[valid]))
    runs = []
    for config in configs:
        depth, rate = config[0], config[1]
        leaves = _leaves(depth, config[2] if len(config) > 2 else None)
        params = {**base, "max_depth": depth, "num_leaves": leaves, "learning_rate": rate,
                  "metric": "l2", "num_iterations": max_rounds}  # fmt: skip
        runs.append(_EarlyStopped(lgb.Booster(params=params, train_set=train), held,
                                  (depth, rate, leaves), max_rounds, patience, min_delta))
    # every config boosts round by round; after `race` rounds only the leader goes on
    for round_ in range(max_rounds):
        if round_ == race and len(runs) > 1:
            runs = [min(runs, key=lambda r: r.best)]
        active = [r for r in runs if not r.done]
        if not active:
            break
        for run in active:
            run.step()
    best = min(runs, key=lambda r: r.best)  # the first of equals, as configs are listed
    booster, mse, (depth, rate, leaves) = best.booster, best.best, best.config
    rounds = best.best_round + 1
    # the trees up to the best validation score only: LightGBM's predict and model_to_string
    # (which the tree read-out parses) stop at `best_iteration`; no copy of the booster
    booster.best_iteration = rounds
    variance = float(np.var(y[valid]))
    info = {
        "max_depth": depth,
        "num_leaves": leaves,
        "learning_rate": rate,
        "n_trees": rounds,
        "validation_r2": 1.0 - mse / variance if variance > 0 else float("nan"),
        "n_fits": len(configs),
    }
    return booster, info
