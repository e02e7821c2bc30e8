"""The LightGBM proxy that ProxySPEX and the regression's support search both fit.

Each output gets gradient-boosted trees fitted to uniform (or paired) masks, early-stopped on
held-out rows; :func:`~torchspex.decoders.trees.tree_ensemble_to_fourier` then reads the
ensemble's exact Fourier spectrum. ``proxyspex.py`` builds its decoder on these steps and
``regression.py`` ranks candidate terms with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["as_tuple", "draw_seed", "fit_proxy", "holdout_rows", "proxy_configs"]


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
    """LightGBM settings for 0/1 masks: two bins per feature, small leaves, one thread."""
    return {
        "objective": "regression",
        "verbosity": -1,
        "num_threads": 1,
        "seed": seed,
        "deterministic": True,
        "force_col_wise": True,
        "max_bin": 2,
        "min_data_in_bin": 1,
        "feature_pre_filter": False,
        "min_data_in_leaf": max(1, min(20, n_train // 50)),
        "min_sum_hessian_in_leaf": 0.0,
    }


def _leaves(depth: int, leaves: int | None) -> int:
    """LightGBM's ``num_leaves``: ``leaves``, or every leaf a tree of ``depth`` can have."""
    return max(2, 2**depth if leaves is None else leaves)


def refit_proxy(
    x: np.ndarray, y: np.ndarray, depth: int, rate: float, rounds: int, seed: int,
    leaves: int | None = None,
) -> Any:
    """A LightGBM booster of a chosen ``(depth, rate, leaves)`` and number of trees on all of
    ``(x, y)`` (no held-out rows: the settings come from an earlier :func:`fit_proxy`;
    ``leaves=None``: ``2^depth``)."""
    import lightgbm as lgb

    base = _base_params(x.shape[0], seed)
    params = {**base, "max_depth": depth, "num_leaves": _leaves(depth, leaves),
              "learning_rate": rate}  # fmt: skip
    data_params = {k: base[k] for k in ("verbosity", "max_bin", "min_data_in_bin",
                                        "feature_pre_filter", "num_threads")}  # fmt: skip
    train = lgb.Dataset(x, y, params=data_params, free_raw_data=False)
    return lgb.train(params, train, num_boost_round=max(1, rounds), keep_training_booster=True)


def fit_proxy(
    x: np.ndarray,
    y: np.ndarray,
    valid: np.ndarray,
    configs: Sequence[tuple[int, float] | tuple[int, float, int]],
    max_rounds: int,
    patience: int,
    seed: int,
    min_gain: float = 0.0,
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
    data_params = {k: base[k] for k in ("verbosity", "max_bin", "min_data_in_bin",
                                        "feature_pre_filter", "num_threads")}
    train = lgb.Dataset(x[~valid], y[~valid], params=data_params, free_raw_data=False)
    held = lgb.Dataset(
        x[valid], y[valid], params=data_params, reference=train, free_raw_data=False
    )
    train.construct()
    held.construct()
    best: tuple[float, Any, int, float, int] | None = None
    min_delta = float(min_gain * np.var(y[valid]))
    for config in configs:
        depth, rate = config[0], config[1]
        leaves = _leaves(depth, config[2] if len(config) > 2 else None)
        params = {**base, "max_depth": depth, "num_leaves": leaves, "learning_rate": rate,
                  "metric": "l2"}  # fmt: skip
        # keep_training_booster: no text round trip of every fit (LightGBM otherwise rebuilds
        # the booster from its own model string after training)
        booster = lgb.train(
            params, train, num_boost_round=max_rounds, valid_sets=[held],
            callbacks=[lgb.early_stopping(patience, first_metric_only=True, verbose=False,
                                          min_delta=min_delta)],
            keep_training_booster=True,
        )
        mse = float(booster.best_score["valid_0"]["l2"])
        if best is None or mse < best[0]:
            best = (mse, booster, depth, rate, leaves)
    assert best is not None
    mse, booster, depth, rate, leaves = best
    rounds = max(1, booster.best_iteration or booster.current_iteration())
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
